"""Episodes -> training samples: returns, advantages, and the fixed number of rows TRL's batch has.

Two sample layouts:

- ``"episode"``: an episode is one sample. Its prompt is the first context; its completion is every
  assistant turn *and* the observations between them, with ``env_mask`` 1 on generated tokens and 0 on
  the environment's (TRL turns ``env_mask`` into ``tool_mask``, which multiplies the loss mask). It carries
  the episode's return ``R``.
- ``"per_step"``: every agent step is a sample (prompt: the rendered observation history at that step;
  completion: the action text), carrying the discounted return ``gamma**(T-1-t) * R`` of step ``t`` in
  ``0..T-1`` (``gamma**(T-t) * R`` with steps counted from 1), as in the web-agent study.

Advantages (:func:`compute_advantages`) subtract a baseline (the mean return of the goal's samples, or of
the whole batch) and optionally divide by a standard deviation (the goal's or the batch's), mirroring TRL's
``scale_rewards``. Zero-advantage filtering leaves samples with ``A = 0`` out of the loss.

TRL's batch has one row per dataset row (each goal ``num_generations`` times). :func:`fit_step_rows` fills
each goal's rows with that goal's step samples: a random subset when there are more samples than rows,
fully masked filler rows when there are fewer. Every row keeps its goal, so the row's ``task`` column, the
curriculum's category and the reward kwargs stay right.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from sec_rl.web.pool import Goal
from sec_rl.web.rollout import Episode

__all__ = [
    "Baseline",
    "FitStats",
    "Sample",
    "Scale",
    "compute_advantages",
    "discounted_returns",
    "episode_return",
    "episode_sample",
    "filler_sample",
    "fit_step_rows",
    "mask_zero_advantage",
    "row_groups",
    "rollout_output",
    "step_samples",
]

Baseline = Literal["goal", "batch"]
Scale = Literal["group", "batch", "none"]
ZERO = 1e-9  # a raw advantage this small is zero (floating-point noise of a mean of equal returns)


@dataclass
class Sample:
    """One training row.

    Attributes:
        prompt_ids, completion_ids: the tokens (the completion includes observations in episode mode).
        env_mask: 1 for tokens the model generated and is trained on, 0 for the environment's.
        logprobs: sampling logprob per completion token (None where unknown), or None altogether.
        goal: the (task, seed) it came from.
        group: index of its goal's row group in the batch (see :func:`row_groups`).
        episode: index of its episode in the batch (-1 for a filler row).
        step: the step index in per_step mode; None for a whole episode or a filler.
        reward: the return it carries; None when it is excluded (environment error, filler).
        extra_rewards: the values of the user's reward functions for it (None where one abstained), after the
            environment's return in the order of ``reward_funcs``; empty without them or for an excluded sample.
        advantage, raw_advantage: set by the trainer from :func:`compute_advantages` (scaled and unscaled).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float | None] | None
    goal: Goal
    group: int
    episode: int
    step: int | None = None
    reward: float | None = None
    extra_rewards: tuple[float | None, ...] = ()
    advantage: float = 0.0
    raw_advantage: float = 0.0

    @property
    def trainable(self) -> bool:
        return self.reward is not None and any(self.env_mask)


# -- returns ---------------------------------------------------------------------------------------
def episode_return(episode: Episode, failure_reward: float | None = None) -> float | None:
    """The episode's return ``R``: the sum of its rewards, or ``failure_reward`` if it failed and that is set.

    None for an episode that hit an environment error: it says nothing about the agent.
    """
    if episode.env_error:
        return None
    if failure_reward is not None and not episode.success:
        return float(failure_reward)
    return float(episode.reward)


def discounted_returns(reward: float, num_steps: int, gamma: float) -> list[float]:
    """``[gamma**(T-1-t) * reward for t in 0..T-1]``: the last step gets the full return."""
    return [gamma ** (num_steps - 1 - t) * reward for t in range(num_steps)]


# -- samples ---------------------------------------------------------------------------------------
def filler_sample(goal: Goal, group: int, eos_token_id: int, episode: int = -1) -> Sample:
    """A row that trains nothing: one EOS as prompt and completion, masked out. Stands in for missing samples."""
    return Sample([eos_token_id], [eos_token_id], [0], None, goal, group, episode)


def episode_sample(
    episode: Episode,
    group: int,
    eos_token_id: int,
    failure_reward: float | None = None,
    invalid_action_penalty: float = 0.0,
) -> Sample:
    """The whole episode as one completion, with the observations between turns masked out (``env_mask`` 0).

    It carries ``R - invalid_action_penalty x`` its invalid turns: without the penalty, an episode that writes two
    malformed actions before the right one is rewarded like a clean one, and the malformed text with it.

    The step contexts are nested: step ``t+1``'s context is step ``t``'s context, its completion, and the
    environment's tokens (an EOS closing a turn cut at the length limit, the template's glue, the next
    observation, the next generation prompt). Those environment tokens are recovered by slicing, and the
    nesting is checked. An episode with an environment error becomes a filler row.
    """
    reward = episode_return(episode, failure_reward)
    if reward is None or not episode.steps:
        return filler_sample(episode.goal, group, eos_token_id, episode.index)
    steps = episode.steps
    completion: list[int] = []
    mask: list[int] = []
    with_logprobs = all(step.logprobs is not None for step in steps)
    logprobs: list[float | None] = []
    for t, step in enumerate(steps):
        completion += step.completion_ids
        mask += [1] * len(step.completion_ids)
        if with_logprobs:
            logprobs += list(step.logprobs or [])
        if t + 1 < len(steps):
            context, after = step.prompt_ids, steps[t + 1].prompt_ids
            generated_end = len(context) + len(step.completion_ids)
            if after[:generated_end] != [*context, *step.completion_ids]:
                raise ValueError(
                    f"episode {episode.index} ({episode.task}, seed {episode.seed}): the context of step {t + 1} "
                    f"does not extend the context and completion of step {t}; episode samples need the engine's "
                    "mode='episode'."
                )
            between = after[generated_end:]
            completion += between
            mask += [0] * len(between)
            if with_logprobs:
                logprobs += [None] * len(between)
    return Sample(
        prompt_ids=list(steps[0].prompt_ids),
        completion_ids=completion,
        env_mask=mask,
        logprobs=logprobs if with_logprobs else None,
        goal=episode.goal,
        group=group,
        episode=episode.index,
        reward=reward - invalid_action_penalty * sum(episode.invalid_turns),
    )


def step_samples(
    episode: Episode,
    group: int,
    gamma: float,
    failure_reward: float | None = None,
    invalid_action_penalty: float = 0.0,
) -> list[Sample]:
    """One sample per step, carrying the discounted return (less ``invalid_action_penalty`` on a step whose output
    held no valid action); none for an episode with an environment error."""
    reward = episode_return(episode, failure_reward)
    if reward is None:
        return []
    returns = [
        value - invalid_action_penalty * invalid
        for value, invalid in zip(discounted_returns(reward, len(episode.steps), gamma), episode.invalid_turns)
    ]
    return [
        Sample(
            prompt_ids=list(step.prompt_ids),
            completion_ids=list(step.completion_ids),
            env_mask=[1] * len(step.completion_ids),
            logprobs=list(step.logprobs) if step.logprobs is not None else None,
            goal=episode.goal,
            group=group,
            episode=episode.index,
            step=t,
            reward=value,
        )
        for t, (step, value) in enumerate(zip(episode.steps, returns))
    ]


# -- advantages ------------------------------------------------------------------------------------
def _std(values: np.ndarray) -> float:
    """Sample standard deviation (Bessel-corrected, as TRL's ``nanstd``); NaN for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def compute_advantages(
    rewards: Sequence[float],
    groups: Sequence[Hashable],
    *,
    baseline: Baseline = "goal",
    scale: Scale = "group",
    epsilon: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages of samples carrying ``rewards``, grouped by ``groups`` (the goal of each sample).

    ``A = (r - b) / (s + epsilon)``: ``b`` is the mean reward of the sample's goal (``baseline="goal"``) or
    of all samples (``"batch"``); ``s`` is the standard deviation of the goal's rewards (``scale="group"``),
    of all rewards (``"batch"``), or no division (``"none"``), as TRL's ``scale_rewards``. A standard
    deviation over fewer than two samples is undefined and gives ``A = 0``, as in TRL.

    Returns:
        ``(advantages, raw)``, where ``raw = r - b`` (the unscaled advantage). Values within floating-point
        noise of zero are exactly zero in both, so that zero-advantage filtering can test ``A == 0``.
    """
    if baseline not in ("goal", "batch"):
        raise ValueError(f"baseline must be 'goal' or 'batch', not {baseline!r}.")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', not {scale!r}.")
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) != len(groups):
        raise ValueError(f"{len(r)} rewards for {len(groups)} group labels.")
    if len(r) == 0:
        return np.zeros(0), np.zeros(0)
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    group_mean = np.empty_like(r)
    group_std = np.empty_like(r)
    for indices in members.values():
        group_mean[indices] = r[indices].mean()
        group_std[indices] = _std(r[indices])
    raw = r - (group_mean if baseline == "goal" else r.mean())
    raw[np.abs(raw) <= ZERO * np.maximum(1.0, np.abs(r))] = 0.0
    if scale == "none":
        advantages = raw.copy()
    else:
        std = group_std if scale == "group" else np.full_like(r, _std(r))
        advantages = np.where(np.isnan(std), 0.0, raw / (np.nan_to_num(std) + epsilon))
    advantages[raw == 0.0] = 0.0
    return advantages, raw


# -- rows ------------------------------------------------------------------------------------------
def row_groups(row_goals: Sequence[Goal]) -> list[tuple[Goal, int, int]]:
    """Runs of consecutive rows with the same goal, as ``(goal, start, stop)``: GRPO's groups in the batch.

    A process may hold part of a group (when its share of the batch is not a multiple of the group size);
    it is then a shorter run here.
    """
    runs: list[tuple[Goal, int, int]] = []
    for i, goal in enumerate(row_goals):
        if runs and runs[-1][0] == goal and runs[-1][2] == i:
            runs[-1] = (goal, runs[-1][1], i + 1)
        else:
            runs.append((goal, i, i + 1))
    return runs


@dataclass
class FitStats:
    """What fitting samples into rows did: how many samples there were, filtered, dropped and padded."""

    samples: int = 0
    filtered: int = 0  # zero advantage (with filtering on)
    dropped: int = 0  # more samples than rows: subsampled away
    padded: int = 0  # fewer samples than rows: filler rows

    def metrics(self) -> dict[str, float]:
        return {
            "samples": float(self.samples),
            "samples_filtered": float(self.filtered),
            "samples_dropped": float(self.dropped),
            "rows_padded": float(self.padded),
        }


def fit_step_rows(
    samples: Sequence[Sample],
    groups: Sequence[tuple[Goal, int, int]],
    rng: np.random.Generator,
    eos_token_id: int,
    *,
    drop_zero_advantage: bool = True,
) -> tuple[list[Sample], FitStats]:
    """Fill each row group with its own goal's step samples (advantages already set).

    Samples with ``A = 0`` are left out first when ``drop_zero_advantage``; then a group with more samples
    than rows keeps a uniformly random subset (in step order), and one with fewer gets filler rows. The
    dropped samples still counted in the advantages' baselines: the rows are an unbiased subset of the
    batch's step samples.
    """
    stats = FitStats(samples=len(samples))
    by_group: dict[int, list[Sample]] = {}
    for sample in samples:
        by_group.setdefault(sample.group, []).append(sample)
    rows: list[Sample] = []
    for index, (goal, start, stop) in enumerate(groups):
        size = stop - start
        candidates = [s for s in by_group.get(index, []) if s.trainable]
        if drop_zero_advantage:
            kept = [s for s in candidates if s.advantage != 0.0]
            stats.filtered += len(candidates) - len(kept)
            candidates = kept
        if len(candidates) > size:
            chosen = np.sort(rng.choice(len(candidates), size=size, replace=False))
            stats.dropped += len(candidates) - size
            candidates = [candidates[i] for i in chosen]
        stats.padded += size - len(candidates)
        rows += candidates + [filler_sample(goal, index, eos_token_id) for _ in range(size - len(candidates))]
    return rows, stats


def mask_zero_advantage(samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """Episode mode's zero-advantage filtering: the row stays (TRL's rows are fixed) but trains nothing."""
    out, masked = [], 0
    for sample in samples:
        if sample.trainable and sample.advantage == 0.0:
            sample = replace(sample, env_mask=[0] * len(sample.env_mask))
            masked += 1
        out.append(sample)
    return out, masked


def rollout_output(rows: Sequence[Sample], num_extra_rewards: int = 0) -> dict[str, Any]:
    """The dict a TRL ``rollout_func`` returns: token ids, sampling logprobs, ``env_mask``, and ``web_reward``.

    ``web_extra_reward_<i>`` carries the value of the user's ``i``-th reward function for each row (see
    :attr:`Sample.extra_rewards`), which TRL then reads back through the function's stand-in.

    ``logprobs`` is None unless some row has them (vLLM); rows without get None per token, which TRL reads as
    "unknown" and leaves out of its importance-sampling correction. ``web_reward`` reaches the reward function
    (:func:`sec_rl.trainers.web_grpo.web_reward`); None marks a row the loss and the reward statistics skip.
    """
    any_logprobs = any(row.logprobs is not None for row in rows)
    return {
        "prompt_ids": [list(row.prompt_ids) for row in rows],
        "completion_ids": [list(row.completion_ids) for row in rows],
        "logprobs": (
            [list(row.logprobs) if row.logprobs is not None else [None] * len(row.completion_ids) for row in rows]
            if any_logprobs
            else None
        ),
        "env_mask": [list(row.env_mask) for row in rows],
        "web_reward": [row.reward for row in rows],
        **{
            f"web_extra_reward_{i}": [row.extra_rewards[i] if row.extra_rewards else None for row in rows]
            for i in range(num_extra_rewards)
        },
    }
