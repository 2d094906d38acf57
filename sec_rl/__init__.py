"""sec-rl: Self-Evolving Curriculum and multi-turn web-agent training for TRL.

``sec_rl.curriculum`` depends on numpy only; the trainers (which import torch and TRL) load lazily,
so ``import sec_rl.curriculum`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SECGRPOConfig": "sec_rl.trainers",
    "SECGRPOTrainer": "sec_rl.trainers",
    "CurriculumArguments": "sec_rl.trainers",
    "CurriculumMixin": "sec_rl.trainers",
    "GRPOCurriculumMixin": "sec_rl.trainers",
    "SECSFTConfig": "sec_rl.trainers",
    "SECSFTTrainer": "sec_rl.trainers",
    "SFTCurriculumMixin": "sec_rl.trainers",
    "CurriculumCallback": "sec_rl.trainers",
    "SECWebGRPOConfig": "sec_rl.trainers",
    "SECWebGRPOTrainer": "sec_rl.trainers",
    "build_tiny_model": "sec_rl.models.tiny",
}
_CURRICULUM = (
    "Curriculum",
    "CurriculumSampler",
    "DUMPCurriculum",
    "LearningProgressCurriculum",
    "OrderedCurriculum",
    "RandomCurriculum",
    "SelfEvolvingCurriculum",
    "TargetSuccessCurriculum",
    "make_curriculum",
)
_LAZY.update({name: "sec_rl.curriculum" for name in _CURRICULUM})

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sec_rl' has no attribute {name!r}")
