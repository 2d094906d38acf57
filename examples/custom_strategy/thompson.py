"""A strategy of your own: Thompson sampling over each arm's success rate, in about 60 lines.

Use it by import path, from Python, a YAML config or the command line:

    SECGRPOConfig(..., curriculum="thompson:ThompsonSampling", curriculum_kwargs={"target": 0.5})

(with this folder on PYTHONPATH). A strategy says how likely each arm is (``probabilities``), learns from each
batch (``_update``: each arm's finite advantages and rewards of the batch), and lists the attributes that make up
its state (``_state_fields``), which checkpoints save and resume restores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from sec_rl.curriculum import Curriculum
from sec_rl.curriculum.base import check_range


class ThompsonSampling(Curriculum):
    """Each arm's success rate has a Beta posterior; an arm is worth ``p(1 - p)`` near ``target``.

    The probabilities are estimated by drawing ``draws`` samples from every posterior and counting how often
    each arm scores best, with a generator of its own seeded by the number of updates, so that every process
    computes the same distribution.

    Args:
        categories: the arms.
        target: the success rate worth most (0.5: the GRPO frontier).
        draws: posterior samples per call.
    """

    name: ClassVar[str] = "thompson"
    needs_rewards: ClassVar[bool] = True
    _state_fields: ClassVar[tuple[str, ...]] = ("successes", "failures")

    def __init__(self, categories: Sequence[str], target: float = 0.5, draws: int = 256):
        super().__init__(categories)
        check_range("target", target, 0.0, 1.0, low_open=True)
        self.target, self.draws = float(target), int(draws)
        self.successes = np.ones(len(self.categories))  # Beta(1, 1) priors
        self.failures = np.ones(len(self.categories))

    def probabilities(self) -> dict[str, float]:
        rng = np.random.default_rng(self.num_updates)
        samples = rng.beta(self.successes, self.failures, size=(self.draws, len(self.categories)))
        score = -np.abs(samples - self.target)  # closest to the target wins
        wins = np.bincount(score.argmax(axis=1), minlength=len(self.categories)) + 1  # +1: every arm stays possible
        return dict(zip(self.categories, (wins / wins.sum()).tolist()))

    def _update(self, advantages: dict[str, list[float]], rewards: dict[str, list[float]] | None) -> None:
        for i, arm in enumerate(self.categories):
            values = np.clip(rewards[arm], 0.0, 1.0)  # rewards of this arm's rollouts in the batch
            self.successes[i] += values.sum()
            self.failures[i] += len(values) - values.sum()
