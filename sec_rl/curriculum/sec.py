"""Self-Evolving Curriculum (SEC, arXiv 2505.14970): a non-stationary bandit over categories.

Each step, every arm's reward is the mean absolute advantage of its rollouts (a proxy for how much
the policy can still learn there: with binary rewards it peaks at a 50% success rate); the arm's
value follows TD(0), ``Q <- alpha * r + (1 - alpha) * Q``; the next batch's categories are drawn
from ``softmax(Q / tau)``.

The values' scale depends on how the trainer scales advantages (std-normalised GRPO advantages give
mean |A| up to 0.87 for G = 8, raw ones up to 0.44), so a temperature tuned for one is wrong for the other.
``value_scale="reward_std"`` divides the values by the standard deviation of every arm reward seen so far
before the Boltzmann, which makes tau a number of standard deviations: the same tau means the same for
any scaling of the advantages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from sec_rl.curriculum.base import Curriculum, check_range, softmax

#: ``normalized_q`` floors each value at this share before normalising (the official code's 0.01).
NORMALIZED_Q_FLOOR = 0.01


class SelfEvolvingCurriculum(Curriculum):
    """SEC bandit.

    Args:
        categories: the arms.
        alpha: TD(0) step size in (0, 1]; the paper uses 0.5.
        temperature: Boltzmann temperature tau > 0 (paper: 1.0 Countdown, 0.4 MATH, 0.2 multi-domain).
        unsampled: ``"decay"`` gives arms absent from a step the reward 0, so their value decays toward 0
            (the official verl code); ``"keep"`` leaves their value unchanged (the paper's text). An arm that was
            drawn but whose rollouts were all NaN (environment errors) keeps its value either way.
        objective: ``"abs_advantage"`` (mean |A| of the advantages the trainer passes), ``"unnormalized_adv"``
            (the same of reward minus group mean, which the trainer passes when ``signal == "raw_advantages"``;
            the official code's name), or ``"progress"`` (change of the arm's mean reward since the last step it
            was sampled, from a reference of 0, as in the official code; needs rewards).
        selection: ``"boltzmann"``, ``"epsilon_greedy"`` (probability ``1 - epsilon`` split over the arms of
            highest value, ``epsilon`` spread uniformly) or ``"normalized_q"`` (the official code's
            ``p = max(Q, 0.01) / sum max(Q, 0.01)``; no temperature).
        epsilon: exploration rate of ``"epsilon_greedy"``.
        value_scale: ``"reward_std"`` (the default): values divided by the standard deviation of all arm rewards
            seen so far before the selection, so that tau does not depend on the advantages' scale; ``"none"``: the
            paper's Boltzmann over the raw values (``value_scale="none"`` with the other defaults is the paper's SEC).
    """

    name: ClassVar[str] = "sec"
    _state_fields: ClassVar[tuple[str, ...]] = ("q_values", "last_rewards", "last_mean_rewards", "reward_moments")

    def __init__(
        self,
        categories: Sequence[str],
        alpha: float = 0.5,
        temperature: float = 1.0,
        unsampled: Literal["decay", "keep"] = "decay",
        objective: Literal["abs_advantage", "unnormalized_adv", "progress"] = "abs_advantage",
        selection: Literal["boltzmann", "epsilon_greedy", "normalized_q"] = "boltzmann",
        epsilon: float = 0.1,
        value_scale: Literal["none", "reward_std"] = "reward_std",
    ):
        super().__init__(categories)
        check_range("alpha", alpha, 0.0, 1.0, low_open=True)
        check_range("temperature", temperature, 0.0, float("inf"), low_open=True)
        check_range("epsilon", epsilon, 0.0, 1.0)
        for arg, value, allowed in (
            ("unsampled", unsampled, ("decay", "keep")),
            ("objective", objective, ("abs_advantage", "unnormalized_adv", "progress")),
            ("selection", selection, ("boltzmann", "epsilon_greedy", "normalized_q")),
            ("value_scale", value_scale, ("none", "reward_std")),
        ):
            if value not in allowed:
                raise ValueError(f"{arg}={value!r} is not supported: choose one of {list(allowed)}.")
        if selection == "normalized_q" and objective == "progress":
            raise ValueError(
                "selection='normalized_q' cannot compose with objective='progress': it draws arms in proportion to "
                "their values, and progress values can be negative. Use selection='boltzmann' with progress, or "
                "objective='abs_advantage' / 'unnormalized_adv' with normalized_q."
            )
        self.alpha, self.temperature, self.epsilon = float(alpha), float(temperature), float(epsilon)
        self.unsampled, self.objective, self.selection, self.value_scale = unsampled, objective, selection, value_scale
        self.needs_rewards = objective == "progress"  # per instance: only the progress objective reads rewards
        #: What the trainer should pass as ``advantages``: its own, or reward minus group mean.
        self.signal = "raw_advantages" if objective == "unnormalized_adv" else "advantages"
        k = len(self.categories)
        self.q_values = np.zeros(k)
        #: r_t(c) of the last step, NaN for arms absent from it (for logging).
        self.last_rewards = np.full(k, np.nan)
        #: Mean task reward when each arm was last sampled (the "progress" objective's reference).
        self.last_mean_rewards = np.full(k, np.nan)
        #: Count, mean and sum of squared deviations of every arm reward seen (Welford), for ``value_scale``.
        self.reward_moments = [0, 0.0, 0.0]

    def scaled_values(self) -> np.ndarray:
        """The values the selection sees: Q, or Q over the arm rewards' standard deviation (1 until it exists)."""
        n, _, m2 = self.reward_moments
        std = (m2 / n) ** 0.5 if n > 1 else 0.0
        return self.q_values / std if self.value_scale == "reward_std" and std > 0 else self.q_values.copy()

    def probabilities(self) -> dict[str, float]:
        values = self.scaled_values()
        if self.selection == "boltzmann":
            probs = softmax(values, self.temperature)
        elif self.selection == "normalized_q":
            floored = np.maximum(values, NORMALIZED_Q_FLOOR)  # a decayed arm keeps a little probability
            probs = floored / floored.sum()
        else:
            best = np.isclose(values, values.max())
            probs = np.full(len(self.categories), self.epsilon / len(self.categories))
            probs[best] += (1.0 - self.epsilon) / best.sum()
        return dict(zip(self.categories, probs.tolist()))

    def arm_rewards(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> np.ndarray:
        """r_t(c) for every arm; NaN where the arm had no usable rollout this step."""
        out = np.full(len(self.categories), np.nan)
        for i, c in enumerate(self.categories):
            if self.objective != "progress":
                if advantages[c]:
                    out[i] = float(np.mean(np.abs(advantages[c])))
            elif rewards[c]:
                mean_reward = float(np.mean(rewards[c]))
                # The official code starts every arm's reference at 0, so a first visit scores its mean reward.
                # NaN (never visited) is kept in the state as "no reference yet", so older state files read the same.
                previous = self.last_mean_rewards[i]
                out[i] = mean_reward - (0.0 if np.isnan(previous) else previous)
                self.last_mean_rewards[i] = mean_reward
        return out

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        r = self.arm_rewards(advantages, rewards)
        self.last_rewards = r
        sampled = ~np.isnan(r)
        self.q_values[sampled] = self.alpha * r[sampled] + (1.0 - self.alpha) * self.q_values[sampled]
        if self.unsampled == "decay":
            # Drawn arms without a usable rollout (environment errors) are left alone rather than decayed.
            decayed = ~sampled & ~np.isin(self.categories, sorted(self.uninformative))
            self.q_values[decayed] = (1.0 - self.alpha) * self.q_values[decayed]
        n, mean, m2 = self.reward_moments
        for x in r[sampled]:  # Welford's running variance of the arm rewards
            n += 1
            delta = float(x) - mean
            mean += delta / n
            m2 += delta * (float(x) - mean)
        self.reward_moments = [n, mean, m2]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # States saved before value_scale existed have no reward moments: start them afresh.
        super().load_state_dict({"reward_moments": [0, 0.0, 0.0], **state})

    def metrics(self) -> dict[str, float]:
        metrics = super().metrics()
        for c, q, r in zip(self.categories, self.q_values, self.last_rewards):
            metrics[f"curriculum/value/{c}"] = float(q)
            if not np.isnan(r):
                metrics[f"curriculum/reward/{c}"] = float(r)
        return metrics
