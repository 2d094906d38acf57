"""The MiniWoB++ split of the web-agent study (arXiv 2507.04103) and datasets of goals for the trainer.

A *goal* is a (task, seed) pair: the seed fixes the task's random content (which button, which
word). The study trains on 99 tasks with seeds 3 and above, and evaluates on held-out *goals*
(seeds 0-2 of the training tasks) and held-out *tasks* (23 other tasks, seeds 0-9). The split ships
with the package (``sec_rl/data/miniwob_split.json``).

Goal datasets have the columns ``prompt`` (a placeholder: the real prompt is the first observation,
known only after the environment's reset), ``task`` (the curriculum's category) and ``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "HELDOUT_GOAL_SEEDS",
    "HELDOUT_TASKS",
    "HELDOUT_TASK_SEEDS",
    "TRAIN_SEEDS_START",
    "TRAIN_TASKS",
    "goals_dataset",
    "heldout_goals",
    "heldout_task_goals",
    "miniwob_split",
    "train_goals",
]


@cache
def miniwob_split() -> dict[str, Any]:
    """The split as stored in the package: train/held-out tasks and seeds."""
    text = resources.files("sec_rl").joinpath("data", "miniwob_split.json").read_text()
    return json.loads(text)


_SPLIT = miniwob_split()
TRAIN_TASKS: tuple[str, ...] = tuple(_SPLIT["train_tasks"])
HELDOUT_TASKS: tuple[str, ...] = tuple(_SPLIT["heldout_tasks"])
HELDOUT_GOAL_SEEDS: tuple[int, ...] = tuple(_SPLIT["heldout_goal_seeds"])
HELDOUT_TASK_SEEDS: tuple[int, ...] = tuple(_SPLIT["heldout_task_seeds"])
TRAIN_SEEDS_START: int = int(_SPLIT["train_seeds_start"])


def goals_dataset(tasks: Iterable[str], seeds: Iterable[int]) -> Dataset:
    """Every (task, seed) pair as a ``datasets.Dataset`` with columns ``prompt``, ``task``, ``seed``."""
    from datasets import Dataset

    tasks, seeds = list(tasks), [int(s) for s in seeds]
    if not tasks or not seeds:
        raise ValueError("a goals dataset needs at least one task and one seed.")
    rows = [{"prompt": f"{task} (seed {seed})", "task": task, "seed": seed} for task in tasks for seed in seeds]
    return Dataset.from_list(rows)


def train_goals(seeds: int | Sequence[int] = 100, tasks: Iterable[str] | None = None) -> Dataset:
    """Training goals: the training tasks (or ``tasks``) with ``seeds`` seeds from 3 on, or the seeds given.

    Seeds 0-2 are the held-out goals of the training tasks: asking for them here is refused.
    """
    tasks = list(TRAIN_TASKS if tasks is None else tasks)
    seed_list = list(range(TRAIN_SEEDS_START, TRAIN_SEEDS_START + seeds)) if isinstance(seeds, int) else list(seeds)
    reserved = sorted(set(seed_list) & set(HELDOUT_GOAL_SEEDS))
    if reserved:
        raise ValueError(
            f"seeds {reserved} are held-out goals (seeds {list(HELDOUT_GOAL_SEEDS)} of the training tasks): "
            f"train on seeds >= {TRAIN_SEEDS_START}, or build the dataset with goals_dataset() on purpose."
        )
    return goals_dataset(tasks, seed_list)


def heldout_goals() -> Dataset:
    """Held-out goals: seeds 0-2 of the 99 training tasks."""
    return goals_dataset(TRAIN_TASKS, HELDOUT_GOAL_SEEDS)


def heldout_task_goals() -> Dataset:
    """Held-out tasks: the 23 tasks never trained on, seeds 0-9."""
    return goals_dataset(HELDOUT_TASKS, HELDOUT_TASK_SEEDS)
