"""Per-problem difficulty and difficulty pools (prime-rl's ``DifficultyPoolSampler``, PR 3261).

GRPO learns nothing from a group whose rollouts all succeed or all fail, and a problem's latest group success
rate is the cheapest predictor of that. Every problem seen keeps its latest rate (:class:`ProblemDifficulty`);
the rate puts it in one of three pools (:class:`DifficultyPools`): ``hard`` (rate <= 0.25), ``normal``
(<= 0.75) or ``easy``, unseen problems in ``normal``. A draw picks a pool with probability proportional to its
weight (0.2 / 1.0 / 0.2) among the pools that hold a problem, then a problem of that pool.

The pools serve twice: inside each category under any category strategy (``CurriculumSampler(...,
pools=DifficultyPools())``: the bandit picks the category, the pools the problem), or as a strategy of their own
(:class:`DifficultyPoolCurriculum`, arms ``easy / normal / hard``, which the sampler draws across the whole dataset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sec_rl.curriculum.base import Curriculum

#: The pools, in the order of every pool array (index 0 is ``easy``).
POOLS: tuple[str, ...] = ("easy", "normal", "hard")
EASY, NORMAL, HARD = range(3)


class ProblemDifficulty:
    """The latest group success rate of every problem (NaN until it is first observed).

    Args:
        num_problems: rows of the dataset; problems are row indices ``0 .. num_problems - 1``.
    """

    def __init__(self, num_problems: int):
        if num_problems < 1:
            raise ValueError(f"num_problems={num_problems}: a dataset needs at least one row.")
        self.success = np.full(int(num_problems), np.nan)
        #: Groups observed so far (each call to :meth:`observe` adds its finite rates).
        self.num_observed = 0

    def observe(self, problems: Sequence[int], success_rates: Sequence[float]) -> None:
        """Record each problem's group success rate; NaN rates (no scored rollout) are skipped.

        A problem listed twice keeps its last rate. Rates must lie in [0, 1]: the share of a group's rollouts
        that succeeded, so that the pools' thresholds mean the same on every task.
        """
        problems = np.asarray(problems, dtype=np.int64).reshape(-1)
        rates = np.asarray(success_rates, dtype=np.float64).reshape(-1)
        if len(problems) != len(rates):
            raise ValueError(
                f"observe() got {len(problems)} problems but {len(rates)} success rates: pass one rate per problem "
                "(per group, not per rollout)."
            )
        outside = problems[(problems < 0) | (problems >= len(self.success))]
        if len(outside):
            raise ValueError(
                f"problem index {int(outside[0])} is not a row of this dataset (0 .. {len(self.success) - 1}): pass "
                "the dataset row indices the sampler drew."
            )
        finite = np.isfinite(rates)
        bad = rates[finite & ((rates < 0.0) | (rates > 1.0))]
        if len(bad) or np.isinf(rates).any():
            value = float(bad[0]) if len(bad) else float(rates[np.isinf(rates)][0])
            raise ValueError(
                f"success rate {value!r} is outside [0, 1]: pass the share of the group's rollouts that succeeded "
                "(e.g. the mean of 0/1 rewards), not a raw reward."
            )
        self.success[problems[finite]] = rates[finite]
        self.num_observed += int(finite.sum())

    def seen(self) -> int:
        """How many distinct problems have a rate."""
        return int(np.isfinite(self.success).sum())

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable: NaN (never seen) is stored as None."""
        return {
            "success": [None if math.isnan(v) else v for v in self.success.tolist()],
            "num_observed": self.num_observed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` in place (objects holding this tracker keep seeing it)."""
        success = np.array([np.nan if v is None else v for v in state["success"]], dtype=np.float64)
        if len(success) != len(self.success):
            raise ValueError(
                f"difficulty state has {len(success)} problems, this dataset {len(self.success)}: resume with the "
                "same training dataset."
            )
        self.success[:] = success
        self.num_observed = int(state["num_observed"])


@dataclass(frozen=True)
class DifficultyPools:
    """Where a success rate puts a problem, and how likely each pool is to be drawn (prime-rl's defaults).

    Args:
        hard: a problem whose latest rate is ``<= hard`` is ``hard``.
        normal: one whose rate is ``<= normal`` (and above ``hard``) is ``normal``; higher is ``easy``.
        easy_weight, normal_weight, hard_weight: relative probability of drawing each pool, among those that
            hold a problem (>= 0, not all 0).
    """

    hard: float = 0.25
    normal: float = 0.75
    easy_weight: float = 0.2
    normal_weight: float = 1.0
    hard_weight: float = 0.2

    def __post_init__(self) -> None:
        for name in ("hard", "normal"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(
                    f"pool threshold {name}={value!r} is outside [0, 1]: thresholds are success rates (defaults: "
                    "hard=0.25, normal=0.75)."
                )
        if self.hard > self.normal:
            raise ValueError(
                f"pool thresholds out of order: hard={self.hard} > normal={self.normal}; a hard problem must succeed "
                "less often than a normal one: pass hard <= normal (defaults 0.25 <= 0.75)."
            )
        weights = self.weights
        if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError(
                f"pool weights (easy, normal, hard) = {weights.tolist()} must be finite, >= 0 and not all 0 "
                "(defaults 0.2, 1.0, 0.2)."
            )

    @property
    def weights(self) -> np.ndarray:
        return np.array([self.easy_weight, self.normal_weight, self.hard_weight], dtype=np.float64)

    def pool_of(self, success: np.ndarray) -> np.ndarray:
        """Pool index (0 easy, 1 normal, 2 hard) of each success rate; NaN (unseen) is ``normal``."""
        success = np.asarray(success, dtype=np.float64)
        pools = np.full(success.shape, NORMAL, dtype=np.int64)
        pools[success <= self.hard] = HARD
        pools[success > self.normal] = EASY
        return pools  # NaN compares False both times: it stays normal

    def probabilities(self, pools: np.ndarray) -> np.ndarray:
        """Probability of each pool given the pool index of every candidate problem: weight over non-empty pools.

        When every non-empty pool has weight 0, those pools are drawn uniformly (a draw must return a problem).
        """
        present = np.bincount(np.asarray(pools, dtype=np.int64), minlength=len(POOLS)) > 0
        mass = np.where(present, self.weights, 0.0)
        if mass.sum() == 0.0:
            mass = present.astype(np.float64)
        return mass / mass.sum()


class DifficultyPoolCurriculum(Curriculum):
    """Difficulty pools as a strategy: the arms are the pools ``easy / normal / hard``, across the whole dataset.

    It learns through :meth:`CurriculumSampler.observe <sec_rl.curriculum.CurriculumSampler.observe>` (each
    problem's group success rate moves it between pools), not through :meth:`update`, which only counts
    rollouts. The sampler binds its :class:`ProblemDifficulty` to the strategy when it is built; before that every
    problem is unseen, hence ``normal``. The dataset's categories play no part: pass ``POOLS`` (or nothing).

    Args:
        categories: must be ``POOLS`` (the parameter exists so the registry can build every strategy alike).
        hard, normal, easy_weight, normal_weight, hard_weight: see :class:`DifficultyPools`.
    """

    name: ClassVar[str] = "difficulty_pools"
    #: Tells the sampler that the arms are pools (problems move between them) rather than fixed categories.
    arms_are_pools: ClassVar[bool] = True

    def __init__(
        self,
        categories: Sequence[str] = POOLS,
        hard: float = 0.25,
        normal: float = 0.75,
        easy_weight: float = 0.2,
        normal_weight: float = 1.0,
        hard_weight: float = 0.2,
    ):
        if [str(c) for c in categories] != list(POOLS):
            raise ValueError(
                f"difficulty_pools' arms are the pools {list(POOLS)}, not categories {list(categories)}: problems "
                "move between pools as they are solved. Build it with categories=POOLS; to combine pools with "
                "your categories, use a category strategy with CurriculumSampler(..., pools=DifficultyPools())."
            )
        super().__init__(POOLS)
        self.pools = DifficultyPools(hard, normal, easy_weight, normal_weight, hard_weight)
        #: The sampler's tracker, bound by :meth:`bind`; None until then (every problem counts as unseen).
        self.difficulty: ProblemDifficulty | None = None

    def bind(self, difficulty: ProblemDifficulty) -> None:
        """Read problems' success rates from ``difficulty`` (the sampler's tracker, saved with the sampler)."""
        self.difficulty = difficulty

    def pool_sizes(self) -> np.ndarray:
        """Problems in each pool, in ``POOLS`` order."""
        if self.difficulty is None:
            return np.array([0, 1, 0])
        return np.bincount(self.pools.pool_of(self.difficulty.success), minlength=len(POOLS))

    def probabilities(self) -> dict[str, float]:
        present = np.repeat(np.arange(len(POOLS)), self.pool_sizes() > 0)
        return dict(zip(POOLS, self.pools.probabilities(present).tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        pass  # problems move between pools through the sampler's observe(); the base class counts rollouts

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        metrics.update({f"curriculum/pool_size/{p}": float(n) for p, n in zip(POOLS, self.pool_sizes())})
        return metrics
