"""DUMP (arXiv 2504.09710): a UCB bandit over categories, scored by recent mean |advantage|.

The exploitation term is the arm's mean |A| over a sliding window (recent learnability); the
exploration term favours arms with few rollouts so far; a low-temperature softmax turns the scores
into a sampling distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range, softmax


class DUMPCurriculum(Curriculum):
    """UCB over sliding windows of |A|.

    ``score(c) = mean(window_c) + sqrt(2 ln(N + 1) / (n_c + 1))``, ``p = softmax(score / temperature)``,
    where ``window_c`` holds the last ``window`` values of |A| of arm ``c`` (mean 0 while empty),
    ``n_c`` is the number of rollouts of arm ``c`` seen so far and ``N = sum_c n_c``. Counts are the
    base class's ``counts`` (finite advantages only); :meth:`probabilities` reads the state *after*
    the last update, so ``N`` and ``n_c`` include the step just learnt from.

    Args:
        categories: the arms.
        window: |A| values kept per arm (the paper: 300).
        temperature: softmax temperature > 0 (the paper: 0.1).
    """

    name: ClassVar[str] = "dump"
    _state_fields: ClassVar[tuple[str, ...]] = ("windows",)

    def __init__(self, categories: Sequence[str], window: int = 300, temperature: float = 0.1):
        super().__init__(categories)
        check_range("window", window, 1, float("inf"))
        if int(window) != window:
            raise ValueError(f"window={window!r} must be a whole number of rollouts.")
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        self.window, self.temperature = int(window), float(temperature)
        #: Last ``window`` values of |A| per arm, oldest first (plain lists, saved as they are).
        self.windows: list[list[float]] = [[] for _ in self.categories]

    def scores(self) -> np.ndarray:
        means = np.array([float(np.mean(w)) if w else 0.0 for w in self.windows])
        total = float(self.counts.sum())
        bonus = np.sqrt(2.0 * np.log(total + 1.0) / (self.counts + 1.0))
        return means + bonus

    def probabilities(self) -> dict[str, float]:
        return dict(zip(self.categories, softmax(self.scores(), self.temperature).tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        for i, c in enumerate(self.categories):
            if advantages[c]:
                self.windows[i] = (self.windows[i] + [abs(a) for a in advantages[c]])[-self.window :]

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        for c, w, s in zip(self.categories, self.windows, self.scores()):
            metrics[f"curriculum/value/{c}"] = float(np.mean(w)) if w else 0.0
            metrics[f"curriculum/score/{c}"] = float(s)
        return metrics
