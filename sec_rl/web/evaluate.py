"""Evaluate an agent on web tasks: success rates with bootstrap intervals, per task and overall.

An agent is anything the episode loop (:class:`~sec_rl.web.rollout.RolloutEngine`) accepts: a token policy such
as :class:`~sec_rl.web.policies.ModelAgent` (a ``transformers`` model, prompted exactly as in training), or a
chat agent: a callable ``agent(messages) -> str``, an object with ``act_batch``, a
:class:`~sec_rl.pipeline.teachers.Teacher`. The web settings (environment, workers, turns, layout, prompt) are
a :class:`~sec_rl.web.config.WebConfig`, the same one training reads. An episode that fails because of the
environment (``env_error``) is retried, and if it fails again it is reported apart and left out of the
success rates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sec_rl.web.config import WebConfig
from sec_rl.web.pool import EnvironmentPool
from sec_rl.web.rollout import Episode, RolloutEngine

__all__ = ["EvalReport", "TaskScore", "bootstrap_interval", "evaluate", "score"]


# -- scores ----------------------------------------------------------------------------------------
def bootstrap_interval(
    groups: Sequence[Sequence[float]], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-group means and its percentile bootstrap interval, resampling within each group.

    With one group this is the ordinary bootstrap of a mean; with one group per task it is the
    stratified bootstrap of the task-averaged success rate (every task keeps its number of episodes).
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([g.mean() for g in groups]))
    resampled = np.zeros(n_resamples)
    for g in groups:
        picks = rng.integers(0, len(g), size=(n_resamples, len(g)))
        resampled += g[picks].mean(axis=1)
    resampled /= len(groups)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return estimate, float(low), float(high)


@dataclass
class TaskScore:
    """Success rate of one task (or overall) with its bootstrap interval; env-error episodes left out."""

    success_rate: float
    low: float
    high: float
    episodes: int
    env_errors: int


@dataclass
class EvalReport:
    """Per-episode results, per-task and overall scores; ``table()`` renders them as markdown."""

    episodes: list[Episode]
    per_task: dict[str, TaskScore]
    overall: TaskScore
    confidence: float = 0.95

    def table(self) -> str:
        level = f"{self.confidence:.0%}"
        lines = [
            f"| task | episodes | success | {level} interval | env errors |",
            "|---|---:|---:|---:|---:|",
        ]

        def row(name: str, score: TaskScore) -> str:
            interval = f"[{score.low:.1%}, {score.high:.1%}]" if score.episodes else "-"
            rate = f"{score.success_rate:.1%}" if score.episodes else "-"
            return f"| {name} | {score.episodes} | {rate} | {interval} | {score.env_errors} |"

        lines += [row(task, score) for task, score in self.per_task.items()]
        lines.append(row("**overall (mean over tasks)**", self.overall))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Scores and per-episode outcomes; conversations are left out (they can run to megabytes: write traces)."""
        return {
            "overall": vars(self.overall),
            "per_task": {task: vars(score) for task, score in self.per_task.items()},
            "episodes": [episode.summary() for episode in self.episodes],
        }


def score(episodes: Sequence[Episode], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> EvalReport:
    """Per-task and overall success rates of finished episodes, with bootstrap intervals."""
    by_task: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        by_task[episode.task].append(episode)
    per_task, outcomes = {}, []
    for task, results in by_task.items():
        valid = [float(e.success) for e in results if not e.env_error]
        errors = sum(e.env_error for e in results)
        rate, low, high = bootstrap_interval([valid], n_resamples, confidence, seed)
        per_task[task] = TaskScore(rate, low, high, len(valid), errors)
        outcomes.append(valid)
    rate, low, high = bootstrap_interval(outcomes, n_resamples, confidence, seed)
    overall = TaskScore(rate, low, high, sum(len(v) for v in outcomes), sum(s.env_errors for s in per_task.values()))
    return EvalReport(list(episodes), per_task, overall, confidence)


def evaluate(
    agent: Any,
    tasks: Iterable[str],
    seeds: Iterable[int],
    web: WebConfig | None = None,
    *,
    pool: EnvironmentPool | None = None,
    retries: int = 1,
    on_episode: Callable[[Episode], None] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvalReport:
    """Success rate of ``agent`` on every (task, seed), per task and overall, with bootstrap intervals.

    Args:
        agent: a policy or a chat agent (see the module docstring).
        tasks: the tasks, each run once with every seed.
        seeds: the seeds.
        web: environment, workers, timeouts, ``web_max_turns``, ``web_layout`` and prompt (default: WebConfig()).
        pool: an existing pool to use (left open); by default one is made from ``web`` and closed.
        retries: attempts after an environment error before the episode is reported as one.
        on_episode: called with each finished episode at once (see :meth:`RolloutEngine.run`).
        n_resamples: bootstrap resamples.
        confidence: level of the bootstrap intervals.
        seed: the bootstrap's random seed.
    """
    web = web or WebConfig()
    goals = [(task, int(s)) for task in tasks for s in seeds]
    own_pool = pool is None
    if pool is None:
        pool = web.make_pool(len(goals))
    try:
        engine = RolloutEngine.from_config(agent, pool, web, retries=retries, retry_crashed=True)
        episodes = engine.run(goals, on_episode).episodes
    finally:
        if own_pool:
            pool.close()
    return score(episodes, n_resamples, confidence, seed)
