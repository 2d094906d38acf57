"""The interface every curriculum strategy implements, and the helpers they share.

A strategy is a distribution over *arms* (task categories) that learns from the rollouts of each
training step. It knows nothing of torch, TRL or datasets: the trainer hands it plain sequences of
category names and numbers, so the same object can drive any training loop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from sec_rl.curriculum.keys import arm_key, match_saved_arms

__all__ = ["Curriculum", "arm_key", "check_range", "group_by_arm", "softmax"]


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Boltzmann distribution ``exp(s / tau) / sum exp(s / tau)``, computed stably."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def group_by_arm(arms: Sequence[str], categories: Sequence[str], values: Sequence[float]) -> dict[str, list[float]]:
    """Finite values of each arm, in arm order; NaN and infinite entries are dropped here, once for all strategies."""
    if len(categories) != len(values):
        raise ValueError(f"got {len(categories)} categories but {len(values)} values: pass one entry per rollout.")
    known = set(arms)
    grouped: dict[str, list[float]] = {a: [] for a in arms}
    for category, value in zip(categories, values):
        category = str(category)
        if category not in known:
            raise ValueError(f"unknown category {category!r}: this curriculum's arms are {list(arms)}.")
        value = float(value)
        if math.isfinite(value):
            grouped[category].append(value)
    return grouped


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok or not math.isfinite(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is out of range: it must lie in {bracket}{low}, {high}].")


class Curriculum(ABC):
    """A distribution over categories that is updated from each training step's rollouts.

    Subclasses implement :meth:`probabilities` and :meth:`update` and list the attributes that make
    up their state in ``_state_fields``; :meth:`state_dict` and :meth:`metrics` follow from those.
    """

    #: Registry name used by ``SECGRPOConfig.curriculum`` and :func:`make_curriculum`.
    name: ClassVar[str]
    #: Whether the strategy learns from rollouts. Non-adaptive strategies tolerate prefetching data loaders.
    adaptive: ClassVar[bool] = True
    #: Whether :meth:`update` needs ``rewards`` (success-rate based strategies do).
    needs_rewards: ClassVar[bool] = False
    #: Attributes saved by :meth:`state_dict`; numpy arrays are stored as lists.
    _state_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, categories: Sequence[str]):
        categories = [str(c) for c in categories]
        if not categories:
            raise ValueError("a curriculum needs at least one category.")
        duplicates = sorted({c for c in categories if categories.count(c) > 1})
        if duplicates:
            raise ValueError(f"categories must be unique, got duplicates {duplicates}.")
        self.categories: list[str] = categories
        self.num_updates = 0
        #: Arms drawn in the latest update whose values were all NaN (they carry no signal, see :meth:`update`).
        self.uninformative: set[str] = set()
        #: Rollouts seen per arm (finite advantages only), for logging and count-based strategies.
        self.counts = np.zeros(len(categories), dtype=np.int64)

    # -- the interface ---------------------------------------------------------------------------
    @abstractmethod
    def probabilities(self) -> dict[str, float]:
        """Probability of drawing each category for the next prompt; sums to 1."""

    @abstractmethod
    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        """Learn from one step, given each arm's finite advantages (and rewards) in this batch."""

    def update(
        self,
        categories: Sequence[str],
        advantages: Sequence[float],
        rewards: Sequence[float] | None = None,
    ) -> None:
        """Learn from one training step: one entry per rollout, in any order; NaN entries are ignored."""
        if self.needs_rewards and rewards is None:
            raise ValueError(f"{type(self).__name__} learns from success rates: pass `rewards` to update().")
        grouped_adv = group_by_arm(self.categories, categories, advantages)
        grouped_rew = None if rewards is None else group_by_arm(self.categories, categories, rewards)
        # Arms drawn in this batch whose rollouts all say nothing (NaN: an environment error, no reward function
        # scored them): strategies that decay undrawn arms leave these alone, since they were drawn.
        drawn = {str(c) for c in categories}
        self.uninformative = {c for c in drawn if not grouped_adv[c] and not (grouped_rew and grouped_rew[c])}
        self._update(grouped_adv, grouped_rew)
        self.counts += np.array([len(grouped_adv[c]) for c in self.categories], dtype=np.int64)
        self.num_updates += 1

    def probability_vector(self) -> np.ndarray:
        """:meth:`probabilities` as an array in ``self.categories`` order."""
        probs = self.probabilities()
        return np.array([probs[c] for c in self.categories], dtype=np.float64)

    # -- persistence and logging ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; ``load_state_dict(state_dict())`` is an exact round trip."""
        state: dict[str, Any] = {
            "name": self.name,
            "categories": list(self.categories),
            "num_updates": self.num_updates,
        }
        for field in ("counts", *self._state_fields):
            value = getattr(self, field)
            state[field] = _json_copy(value.tolist() if isinstance(value, np.ndarray) else value)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state was saved by curriculum {state.get('name')!r}, not {self.name!r}.")
        # Raises unless the saved arms are these, possibly under the names sec-rl 0.1.0 gave joint arms.
        match_saved_arms(state["categories"], self.categories)
        self.num_updates = int(state["num_updates"])
        for field in ("counts", *self._state_fields):
            current = getattr(self, field)
            value = state[field]
            if isinstance(current, np.ndarray):
                value = np.array(value, dtype=current.dtype)
            setattr(self, field, _json_copy(value) if not isinstance(value, np.ndarray) else value)

    def metrics(self) -> dict[str, float]:
        """Flat scalars for ``Trainer.log``: ``curriculum/prob/<arm>`` plus each strategy's own values."""
        metrics = {f"curriculum/prob/{c}": float(p) for c, p in self.probabilities().items()}
        metrics.update({f"curriculum/count/{c}": float(n) for c, n in zip(self.categories, self.counts)})
        return metrics

    def __repr__(self) -> str:
        return f"{type(self).__name__}(categories={self.categories})"


def _json_copy(value: Any) -> Any:
    """Deep copy of JSON-like data (dicts, lists, numbers, strings), so saved state never aliases live state.

    NaN becomes None, which strict JSON allows; ``np.array([None], dtype=float)`` reads it back as NaN.
    """
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(v) for v in value]
    return value
