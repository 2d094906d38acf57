"""Difficulty-ordered curricula, the SEC paper's "ordered" (easy to hard) and "reverse" (hard to easy) baselines.

The planned training is cut into one stage per category; each stage trains only on its category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sec_rl.curriculum.base import Curriculum, check_range


class OrderedCurriculum(Curriculum):
    """All probability on one category at a time, moving through ``categories`` (given easy to hard).

    With ``K`` categories, after ``n`` updates the stage is ``min(K - 1, floor(n * K / total_updates))``:
    the ``total_updates`` planned updates are split into ``K`` equal stages, and the last stage
    continues if training runs longer than planned.

    Args:
        categories: the arms, easiest first.
        total_updates: planned number of curriculum updates (one per generation batch), >= 1.
        reverse: walk the categories hard to easy instead.
    """

    name: ClassVar[str] = "ordered"
    adaptive: ClassVar[bool] = False

    def __init__(self, categories: Sequence[str], total_updates: int, reverse: bool = False):
        super().__init__(categories)
        check_range("total_updates", total_updates, 1, float("inf"))
        if int(total_updates) != total_updates:
            raise ValueError(f"total_updates={total_updates!r} must be a whole number of updates.")
        self.total_updates = int(total_updates)
        self.reverse = bool(reverse)
        self.order = self.categories[::-1] if self.reverse else list(self.categories)

    @property
    def stage(self) -> int:
        k = len(self.categories)
        return min(k - 1, self.num_updates * k // self.total_updates)

    def probabilities(self) -> dict[str, float]:
        current = self.order[self.stage]
        return {c: 1.0 if c == current else 0.0 for c in self.categories}

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        pass  # the stage follows from num_updates, which the base class increments

    # The direction is configuration, not learned state: it is saved so that an "ordered" checkpoint
    # cannot silently resume a "reverse" run (both share the name "ordered"). ``total_updates`` is
    # saved for reference only; the constructor's value wins, so a resumed run may plan a new length.
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reverse": self.reverse, "total_updates": self.total_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") == self.name and bool(state.get("reverse", False)) != self.reverse:
            saved, mine = ("reverse", "ordered") if state.get("reverse") else ("ordered", "reverse")
            raise ValueError(f"state was saved by the {saved!r} curriculum, this one is {mine!r}.")
        super().load_state_dict(state)

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "curriculum/stage": float(self.stage)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(categories={self.categories}, total_updates={self.total_updates}, "
            f"reverse={self.reverse})"
        )
