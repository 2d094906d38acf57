"""Curriculum strategies: numpy only, no torch or TRL, reusable in any training loop."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from sec_rl.curriculum.base import Curriculum, arm_key, softmax
from sec_rl.curriculum.dump import DUMPCurriculum
from sec_rl.curriculum.learning_progress import LearningProgressCurriculum
from sec_rl.curriculum.ordered import OrderedCurriculum
from sec_rl.curriculum.random import RandomCurriculum
from sec_rl.curriculum.sampler import CurriculumSampler
from sec_rl.curriculum.sec import SelfEvolvingCurriculum
from sec_rl.curriculum.target_success import TargetSuccessCurriculum

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

#: Context a caller may offer every strategy; each one takes the items its constructor names.
CONTEXT_ARGS = ("sizes", "total_updates")


def make_curriculum(name: str, categories: Sequence[str], **kwargs: Any) -> Curriculum:
    """Build a strategy by registry name.

    ``kwargs`` are the strategy's parameters plus optional context (``sizes``: rows per category,
    ``total_updates``: planned curriculum updates), which is passed only to strategies that use it.
    """
    if name not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}: choose one of {sorted(CURRICULA)}.")
    cls, fixed = CURRICULA[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "categories", *fixed}
    params = {k: v for k, v in kwargs.items() if k not in CONTEXT_ARGS or k in accepted}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"curriculum {name!r} does not take {unknown}; its parameters are {sorted(accepted)}.")
    return cls(categories, **{**params, **fixed})


__all__ = [
    "CURRICULA",
    "Curriculum",
    "CurriculumSampler",
    "DUMPCurriculum",
    "LearningProgressCurriculum",
    "OrderedCurriculum",
    "RandomCurriculum",
    "SelfEvolvingCurriculum",
    "TargetSuccessCurriculum",
    "arm_key",
    "make_curriculum",
    "softmax",
]
