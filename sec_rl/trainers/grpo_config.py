"""``SECGRPOConfig``: TRL's ``GRPOConfig`` plus the curriculum fields."""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig

from sec_rl.trainers.curriculum_args import CurriculumArguments


@dataclass
class SECGRPOConfig(CurriculumArguments, GRPOConfig):
    """Configuration of :class:`~sec_rl.SECGRPOTrainer`: every ``GRPOConfig`` field, plus the curriculum.

    With ``curriculum="sec"`` and ``curriculum_column="difficulty"``, each generation batch is drawn
    from the difficulty levels that the SEC bandit chooses. See :class:`CurriculumArguments` for the
    curriculum fields; ``curriculum="none"`` gives TRL's behaviour unchanged.
    """
