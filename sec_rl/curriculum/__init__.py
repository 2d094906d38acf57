"""Curriculum strategies: numpy only, no torch or TRL, reusable in any training loop."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from sec_rl.curriculum.base import Curriculum, arm_key, softmax
from sec_rl.curriculum.dump import DUMPCurriculum
from sec_rl.curriculum.keys import split_arm_key, upgrade_curriculum_state
from sec_rl.curriculum.learning_progress import LearningProgressCurriculum
from sec_rl.curriculum.ordered import OrderedCurriculum
from sec_rl.curriculum.pools import POOLS, DifficultyPoolCurriculum, DifficultyPools, ProblemDifficulty
from sec_rl.curriculum.random import RandomCurriculum
from sec_rl.curriculum.sampler import CurriculumSampler
from sec_rl.curriculum.sec import SelfEvolvingCurriculum
from sec_rl.curriculum.target_success import TargetSuccessCurriculum
from sec_rl.imports import load_subclass

#: Strategy names accepted by ``SECGRPOConfig.curriculum`` and :func:`make_curriculum`.
CURRICULA: dict[str, tuple[type[Curriculum], dict[str, Any]]] = {
    "sec": (SelfEvolvingCurriculum, {}),
    "random": (RandomCurriculum, {}),
    "ordered": (OrderedCurriculum, {"reverse": False}),
    "reverse": (OrderedCurriculum, {"reverse": True}),
    "dump": (DUMPCurriculum, {}),
    "target_success": (TargetSuccessCurriculum, {}),
    "learning_progress": (LearningProgressCurriculum, {}),
}

#: Strategies whose arms are difficulty pools, not the data's categories (build them with ``categories=POOLS``).
#: Kept apart from ``CURRICULA`` because a trainer must feed them success rates through ``CurriculumSampler.observe``.
POOL_STRATEGIES: dict[str, tuple[type[Curriculum], dict[str, Any]]] = {
    "difficulty_pools": (DifficultyPoolCurriculum, {}),
}

#: Context a caller may offer every strategy; each one takes the items its constructor names.
CONTEXT_ARGS = ("sizes", "total_updates")


def make_curriculum(name: str, categories: Sequence[str], **kwargs: Any) -> Curriculum:
    """Build a strategy by registry name, or by import path ``"my_pkg.module:MyStrategy"`` for one of your own.

    ``kwargs`` are the strategy's parameters plus optional context (``sizes``: rows per category,
    ``total_updates``: planned curriculum updates), which is passed only to strategies that use it.
    """
    cls, fixed = _strategy(name)
    accepted = strategy_parameters(name)
    params = {k: v for k, v in kwargs.items() if k not in CONTEXT_ARGS or k in accepted}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"curriculum {name!r} does not take {unknown}; its parameters are {sorted(accepted)}.")
    return cls(categories, **{**params, **fixed})


def strategy_parameters(name: str) -> set[str]:
    """The parameters a strategy takes (registry name or import path), e.g. whether it has a ``temperature``."""
    cls, fixed = _strategy(name)
    return set(inspect.signature(cls.__init__).parameters) - {"self", "categories", *fixed}


def _strategy(name: str) -> tuple[type[Curriculum], dict[str, Any]]:
    strategies = {**CURRICULA, **POOL_STRATEGIES}
    if ":" in name:
        return resolve_strategy(name), {}
    if name not in strategies:
        raise ValueError(
            f"unknown curriculum {name!r}: choose one of {sorted(strategies)}, or give your own strategy's import "
            "path, 'my_pkg.module:MyStrategy'."
        )
    return strategies[name]


def resolve_strategy(path: str) -> type[Curriculum]:
    """The :class:`Curriculum` subclass at ``"module.path:ClassName"`` (how configs name a strategy of your own)."""
    return load_subclass(path, Curriculum, "curriculum", "Write a strategy")


__all__ = [
    "CURRICULA",
    "Curriculum",
    "CurriculumSampler",
    "DUMPCurriculum",
    "DifficultyPoolCurriculum",
    "DifficultyPools",
    "LearningProgressCurriculum",
    "OrderedCurriculum",
    "POOLS",
    "POOL_STRATEGIES",
    "ProblemDifficulty",
    "RandomCurriculum",
    "SelfEvolvingCurriculum",
    "TargetSuccessCurriculum",
    "arm_key",
    "make_curriculum",
    "resolve_strategy",
    "softmax",
    "split_arm_key",
    "strategy_parameters",
    "upgrade_curriculum_state",
]
