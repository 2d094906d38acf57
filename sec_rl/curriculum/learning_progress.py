"""Teacher-Student Curriculum Learning (Matiisen et al. 2017, "online" variant).

Train where the score changes fastest: an arm's value tracks the slope of its mean reward, and its
absolute value is used so that categories being forgotten (negative slope) are revisited too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range, softmax


class LearningProgressCurriculum(Curriculum):
    """Bandit on learning progress.

    For each arm sampled this step (finite rewards): ``r = mean_reward_t - mean_reward_prev`` (the mean
    reward the previous time the arm was sampled; ``r = 0`` the first time) and
    ``Q <- alpha * r + (1 - alpha) * Q``; other arms keep their ``Q``.
    ``p = (1 - epsilon) * softmax(|Q| / temperature) + epsilon / K``.

    Args:
        categories: the arms.
        alpha: step size of the value update, in (0, 1].
        temperature: softmax temperature > 0.
        epsilon: share of probability spread uniformly over the K arms, in [0, 1].
    """

    name: ClassVar[str] = "learning_progress"
    needs_rewards: ClassVar[bool] = True
    _state_fields: ClassVar[tuple[str, ...]] = ("q_values", "last_mean_rewards")

    def __init__(self, categories: Sequence[str], alpha: float = 0.5, temperature: float = 0.1, epsilon: float = 0.0):
        super().__init__(categories)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        check_range("epsilon", epsilon, 0.0, 1.0)
        self.alpha, self.temperature, self.epsilon = float(alpha), float(temperature), float(epsilon)
        k = len(self.categories)
        self.q_values = np.zeros(k)
        #: Mean reward the last time each arm was sampled; NaN until then.
        self.last_mean_rewards = np.full(k, np.nan)

    def probabilities(self) -> dict[str, float]:
        k = len(self.categories)
        probs = (1.0 - self.epsilon) * softmax(np.abs(self.q_values), self.temperature) + self.epsilon / k
        return dict(zip(self.categories, probs.tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        for i, c in enumerate(self.categories):
            if rewards[c]:
                mean_reward = float(np.mean(rewards[c]))
                previous = self.last_mean_rewards[i]
                progress = 0.0 if np.isnan(previous) else mean_reward - previous
                self.q_values[i] = self.alpha * progress + (1.0 - self.alpha) * self.q_values[i]
                self.last_mean_rewards[i] = mean_reward

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        for c, q, r in zip(self.categories, self.q_values, self.last_mean_rewards):
            metrics[f"curriculum/value/{c}"] = float(q)
            if not np.isnan(r):
                metrics[f"curriculum/success/{c}"] = float(r)
        return metrics
