"""Target-success curriculum (arXiv 2507.04103): prefer categories whose success rate is near a target.

The web-agent study samples tasks from a Boltzmann distribution centred on a target return
``mu_target`` with temperature ``rho``: categories that are neither solved nor hopeless get most of
the data, which is where a policy-gradient update has signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range, softmax


class TargetSuccessCurriculum(Curriculum):
    """Boltzmann over the distance of each arm's running success rate to ``target``.

    Per arm, ``R <- alpha * mean_reward_t + (1 - alpha) * R`` on the steps where it has rewards,
    ``R = mean_reward_t`` the first time. ``score(c) = -|R(c) - target|``, 0 for arms never seen (as if
    exactly on target, so they get explored first); ``p = softmax(score / temperature)``.

    Args:
        categories: the arms.
        target: success rate to aim for, in [0, 1] (the study: 0.25, 0.5 or 0.75); rewards should be
            success indicators or scores in [0, 1].
        temperature: softmax temperature rho > 0 (the study: 0.1 or 0.3).
        alpha: EMA step size in (0, 1]; 1 keeps only the latest step's success rate.
    """

    name: ClassVar[str] = "target_success"
    needs_rewards: ClassVar[bool] = True
    _state_fields: ClassVar[tuple[str, ...]] = ("success",)

    def __init__(self, categories: Sequence[str], target: float = 0.5, temperature: float = 0.1, alpha: float = 0.5):
        super().__init__(categories)
        check_range("target", target, 0.0, 1.0)
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        self.target, self.temperature, self.alpha = float(target), float(temperature), float(alpha)
        #: Running mean reward per arm; NaN until the arm is first seen.
        self.success = np.full(len(self.categories), np.nan)

    def scores(self) -> np.ndarray:
        return np.where(np.isnan(self.success), 0.0, -np.abs(self.success - self.target))

    def probabilities(self) -> dict[str, float]:
        return dict(zip(self.categories, softmax(self.scores(), self.temperature).tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        for i, c in enumerate(self.categories):
            if rewards[c]:
                mean_reward = float(np.mean(rewards[c]))
                previous = self.success[i]
                seen = not np.isnan(previous)
                self.success[i] = self.alpha * mean_reward + (1.0 - self.alpha) * previous if seen else mean_reward

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        for c, r, s in zip(self.categories, self.success, self.scores()):
            if not np.isnan(r):
                metrics[f"curriculum/success/{c}"] = float(r)
            metrics[f"curriculum/score/{c}"] = float(s)
        return metrics
