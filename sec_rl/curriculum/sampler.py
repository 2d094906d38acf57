"""Draws problems for a batch: each problem's category from the curriculum, then a problem of that category.

The trainers call :meth:`CurriculumSampler.draw` at the moment a batch is about to be used (a GRPO generation
batch when it is generated, an SFT micro-batch when the optimizer step that trains on it starts), never when a
data loader prefetches indices, so every draw sees every update before it, whatever the batch layout. After a
batch is scored, :meth:`CurriculumSampler.observe` records each problem's group success rate (its difficulty).

Every process builds the same sampler with the same seed, updates its curriculum from the same gathered
data and draws the same global batch, then keeps its own slice of it: no communication is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sec_rl.curriculum.base import Curriculum
from sec_rl.curriculum.pools import POOLS, DifficultyPools, ProblemDifficulty

#: The one queue of a pool strategy, whose arms are pools rather than categories of rows.
ALL_ROWS = "*"


class CurriculumSampler:
    """Draws each problem's arm from ``curriculum`` and a problem of that arm without replacement.

    Args:
        row_categories: the category (arm key) of every dataset row, in row order.
        curriculum: the strategy consulted at each draw. A pool strategy (``DifficultyPoolCurriculum``) draws
            across all rows, whatever their category.
        shuffle: shuffle each category's problems (else take them in dataset order).
        seed: seed of the sampler's private generator; the global RNGs are never touched.
        pools: difficulty pools inside each category (the curriculum picks the category, the pools the problem);
            None draws a category's problems in turn.
    """

    def __init__(
        self,
        row_categories: Sequence[str],
        curriculum: Curriculum,
        shuffle: bool = True,
        seed: int = 0,
        pools: DifficultyPools | None = None,
    ):
        self.curriculum = curriculum
        self.shuffle = shuffle
        self.num_samples = len(row_categories)
        self.pool_arms = bool(getattr(curriculum, "arms_are_pools", False))
        if self.pool_arms and pools is not None:
            raise ValueError(
                f"curriculum {curriculum.name!r} already draws by difficulty pools, so pools inside its categories "
                "cannot compose with it: pass pools=None, or a category strategy (sec, random, ...) with pools."
            )
        #: Latest group success rate of every row (see :meth:`observe`); saved with the sampler's state.
        self.difficulty = ProblemDifficulty(self.num_samples)
        if self.pool_arms:
            curriculum.bind(self.difficulty)
            self.pools: DifficultyPools | None = curriculum.pools
            self.rows = {ALL_ROWS: np.arange(self.num_samples, dtype=np.int64)}
        else:
            self.pools = pools
            self.rows = _rows_by_category(row_categories, curriculum.categories)
        self.rng = np.random.default_rng(seed)
        self.queues: dict[str, list[int]] = {c: [] for c in self.rows}
        #: How many times :meth:`draw` ran (saved with the state: a resumed run continues the count).
        self.num_draws = 0
        #: The indices of the latest draw, and the arm each was drawn for (a category, or a pool).
        self.last_draw: list[int] = []
        self.last_arms: list[str] = []

    def draw(self, n: int) -> list[int]:
        """Draw ``n`` arms i.i.d. from the curriculum, then the next problem of each (of a pool, with pools)."""
        if n < 1:
            raise ValueError(f"draw(n={n}): a batch needs at least one problem.")
        probs = self.curriculum.probability_vector()
        arms = self.rng.choice(len(self.curriculum.categories), size=n, p=probs / probs.sum())
        # Problems move between pools only in observe(), so one snapshot serves the whole draw.
        pool_of = None if self.pools is None else self.pools.pool_of(self.difficulty.success)
        pool_probs: dict[str, np.ndarray] = {}  # per category, for this draw
        self.last_draw, self.last_arms = [], []
        for a in arms:
            arm = self.curriculum.categories[a]
            if self.pool_arms:
                row = self._next_problem(ALL_ROWS, pool_of, POOLS.index(arm))
            elif pool_of is not None:
                if arm not in pool_probs:
                    pool_probs[arm] = self.pools.probabilities(pool_of[self.rows[arm]])
                row = self._next_problem(arm, pool_of, int(self.rng.choice(len(POOLS), p=pool_probs[arm])))
            else:
                row = self._next_problem(arm)
            self.last_draw.append(row)
            self.last_arms.append(arm)
        self.num_draws += 1
        return self.last_draw

    def observe(self, problems: Sequence[int], success_rates: Sequence[float]) -> None:
        """The trainer's hook after a batch is scored: each drawn problem's group success rate, in [0, 1] or NaN.

        ``problems`` are dataset row indices (one per group, not per rollout); NaN rates (no rollout scored) are
        skipped. Feed every process the same gathered values, so that every process keeps the same pools.
        """
        self.difficulty.observe(problems, success_rates)

    def _next_problem(self, key: str, pool_of: np.ndarray | None = None, pool: int | None = None) -> int:
        """The next queued row of ``key`` (of ``pool``, when given), refilling the queue with a fresh pass if none is.

        A queue never holds a row twice: it is refilled with the rows it lacks (all of them, or the pool's), so
        every problem comes round once per pass even as problems move between pools.
        """
        queue = self.queues[key]  # stored reversed, so that pop() takes the next one
        if pool is None:
            if not queue:
                queue.extend(self._pass(self.rows[key])[::-1].tolist())
            return queue.pop()
        hits = np.flatnonzero(pool_of[np.asarray(queue, dtype=np.int64)] == pool) if queue else []
        if not len(hits):
            rows = self.rows[key]
            queue[:0] = self._pass(rows[pool_of[rows] == pool])[::-1].tolist()  # drawn after those queued
            hits = np.flatnonzero(pool_of[np.asarray(queue, dtype=np.int64)] == pool)
        return queue.pop(int(hits[-1]))

    def _pass(self, rows: np.ndarray) -> np.ndarray:
        return self.rng.permutation(rows) if self.shuffle else rows

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (generator, per-category queues, draw count, problems' difficulty)."""
        return {
            "rng": self.rng.bit_generator.state,
            "queues": {c: list(q) for c, q in self.queues.items()},
            "num_draws": self.num_draws,
            "difficulty": self.difficulty.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; files of sec-rl 0.1 (with prefetch history, no difficulty) load too."""
        if set(state["queues"]) != set(self.queues):
            raise ValueError(
                f"sampler state has categories {sorted(state['queues'])}, this sampler {sorted(self.queues)}: "
                "resume with the same dataset, category columns and strategy."
            )
        self.rng.bit_generator.state = _json_state(state["rng"])
        self.queues = {c: list(q) for c, q in state["queues"].items()}
        self.num_draws = int(state.get("num_draws", state.get("chunks_drawn", 0)))
        if "difficulty" in state:
            self.difficulty.load_state_dict(state["difficulty"])


def _rows_by_category(row_categories: Sequence[str], categories: Sequence[str]) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {c: [] for c in categories}
    for index, category in enumerate(row_categories):
        category = str(category)
        if category not in rows:
            raise ValueError(
                f"row {index} has category {category!r}, which is not among the curriculum's categories "
                f"{list(categories)}."
            )
        rows[category].append(index)
    empty = [c for c, r in rows.items() if not r]
    if empty:
        raise ValueError(
            f"categories {empty} have no rows in the dataset: remove them from the curriculum's categories "
            "or add rows for them."
        )
    return {c: np.array(r, dtype=np.int64) for c, r in rows.items()}


def _json_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """numpy's bit-generator state after a JSON round trip (ints stay ints, dicts stay dicts)."""
    return {k: _json_state(v) if isinstance(v, Mapping) else v for k, v in state.items()}
