"""Self-Evolving Curriculum (SEC, arXiv 2505.14970): a non-stationary bandit over categories.

Each step, every arm's reward is the mean absolute advantage of its rollouts (a proxy for how much
the policy can still learn there: with binary rewards it peaks at a 50% success rate); the arm's
value follows TD(0), ``Q <- alpha * r + (1 - alpha) * Q``; the next batch's categories are drawn
from ``softmax(Q / tau)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range, softmax


class SelfEvolvingCurriculum(Curriculum):
    """SEC bandit.

    Args:
        categories: the arms.
        alpha: TD(0) step size in (0, 1]; the paper uses 0.5.
        temperature: Boltzmann temperature tau > 0 (paper: 1.0 Countdown, 0.4 MATH, 0.2 multi-domain).
        unsampled: ``"decay"`` gives arms absent from a step the reward 0, so their value decays toward 0
            (the official verl code); ``"keep"`` leaves their value unchanged (the paper's text).
        objective: ``"abs_advantage"`` (mean |A| of the arm's rollouts) or ``"progress"`` (change of the
            arm's mean reward since the last step it was sampled; needs rewards).
        selection: ``"boltzmann"`` or ``"epsilon_greedy"`` (probability ``1 - epsilon`` split over the
            arms of highest value, ``epsilon`` spread uniformly).
        epsilon: exploration rate of ``"epsilon_greedy"``.
    """

    name: ClassVar[str] = "sec"
    _state_fields: ClassVar[tuple[str, ...]] = ("q_values", "last_rewards", "last_mean_rewards")

    def __init__(
        self,
        categories: Sequence[str],
        alpha: float = 0.5,
        temperature: float = 1.0,
        unsampled: Literal["decay", "keep"] = "decay",
        objective: Literal["abs_advantage", "progress"] = "abs_advantage",
        selection: Literal["boltzmann", "epsilon_greedy"] = "boltzmann",
        epsilon: float = 0.1,
    ):
        super().__init__(categories)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        check_range("epsilon", epsilon, 0.0, 1.0)
        for arg, value, allowed in (
            ("unsampled", unsampled, ("decay", "keep")),
            ("objective", objective, ("abs_advantage", "progress")),
            ("selection", selection, ("boltzmann", "epsilon_greedy")),
        ):
            if value not in allowed:
                raise ValueError(f"{arg}={value!r} is not supported: choose one of {list(allowed)}.")
        self.alpha, self.temperature, self.epsilon = float(alpha), float(temperature), float(epsilon)
        self.unsampled, self.objective, self.selection = unsampled, objective, selection
        self.needs_rewards = objective == "progress"  # per instance: only the progress objective reads rewards
        k = len(self.categories)
        self.q_values = np.zeros(k)
        #: r_t(c) of the last step, NaN for arms absent from it (for logging).
        self.last_rewards = np.full(k, np.nan)
        #: Mean task reward when each arm was last sampled (the "progress" objective's reference).
        self.last_mean_rewards = np.full(k, np.nan)

    def probabilities(self) -> dict[str, float]:
        if self.selection == "boltzmann":
            probs = softmax(self.q_values, self.temperature)
        else:
            best = np.isclose(self.q_values, self.q_values.max())
            probs = np.full(len(self.categories), self.epsilon / len(self.categories))
            probs[best] += (1.0 - self.epsilon) / best.sum()
        return dict(zip(self.categories, probs.tolist()))

    def arm_rewards(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> np.ndarray:
        """r_t(c) for every arm; NaN where the arm had no usable rollout this step."""
        out = np.full(len(self.categories), np.nan)
        for i, c in enumerate(self.categories):
            if self.objective == "abs_advantage":
                if advantages[c]:
                    out[i] = float(np.mean(np.abs(advantages[c])))
            elif rewards[c]:  # progress
                mean_reward = float(np.mean(rewards[c]))
                previous = self.last_mean_rewards[i]
                out[i] = 0.0 if np.isnan(previous) else mean_reward - previous
                self.last_mean_rewards[i] = mean_reward
        return out

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        r = self.arm_rewards(advantages, rewards)
        self.last_rewards = r
        sampled = ~np.isnan(r)
        if self.unsampled == "decay":
            r = np.where(sampled, r, 0.0)
            self.q_values = self.alpha * r + (1.0 - self.alpha) * self.q_values
        else:
            self.q_values[sampled] = self.alpha * r[sampled] + (1.0 - self.alpha) * self.q_values[sampled]

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        for c, q, r in zip(self.categories, self.q_values, self.last_rewards):
            metrics[f"curriculum/value/{c}"] = float(q)
            if not np.isnan(r):
                metrics[f"curriculum/reward/{c}"] = float(r)
        return metrics
