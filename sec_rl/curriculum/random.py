"""The papers' baseline: no curriculum, every problem equally likely.

Drawing a category with probability proportional to its number of rows, then a problem of that
category, is the same as drawing a problem uniformly from the whole dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range


class RandomCurriculum(Curriculum):
    """Fixed distribution: proportional to ``sizes`` (rows per category), uniform when ``sizes`` is None.

    ``update`` only counts rollouts (for logging); it never changes the distribution.
    """

    name: ClassVar[str] = "random"
    adaptive: ClassVar[bool] = False

    def __init__(self, categories: Sequence[str], sizes: Sequence[int] | None = None):
        super().__init__(categories)
        if sizes is None:
            weights = np.ones(len(self.categories))
        else:
            if len(sizes) != len(self.categories):
                raise ValueError(
                    f"sizes has {len(sizes)} entries but there are {len(self.categories)} categories: "
                    "pass the number of rows of each category, in category order."
                )
            for category, size in zip(self.categories, sizes):
                check_range(f"sizes[{category!r}]", size, 0.0, float("inf"), low_open=True)
            weights = np.asarray(sizes, dtype=np.float64)
        self.probs = weights / weights.sum()

    def probabilities(self) -> dict[str, float]:
        return dict(zip(self.categories, self.probs.tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        pass  # the base class counts rollouts; the distribution is fixed
