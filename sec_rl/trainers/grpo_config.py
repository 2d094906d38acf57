"""``SECGRPOConfig``: TRL's ``GRPOConfig`` plus the curriculum fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from sec_rl.trainers.curriculum_args import CurriculumArguments
from sec_rl.trainers.dynamic_sampling import DYNAMIC_SAMPLING_MODES


@dataclass
class SECGRPOConfig(CurriculumArguments, GRPOConfig):
    """Configuration of :class:`~sec_rl.SECGRPOTrainer`: every ``GRPOConfig`` field, plus the curriculum.

    With ``curriculum="sec"`` and ``curriculum_column="difficulty"``, each generation batch is drawn
    from the difficulty levels that the SEC bandit chooses. See :class:`CurriculumArguments` for the
    curriculum fields; ``curriculum="none"`` gives TRL's behaviour unchanged.
    """

    dynamic_sampling: str = field(
        default="none",
        metadata={
            "help": "What to do with groups whose rewards are all equal (zero advantage, no gradient): "
            + "; ".join(f"'{k}': {v}" for k, v in DYNAMIC_SAMPLING_MODES.items())
            + ". Works with every curriculum (and with none: refill prompts are then drawn uniformly)."
        },
    )
    dynamic_sampling_max_batches: int = field(
        default=3,
        metadata={
            "help": "dynamic_sampling='filter': generation batches per step at most, the first one included (DAPO "
            "refills until the batch is full of informative groups; this bounds the cost)."
        },
    )

    skip_steps_without_signal: bool = field(
        default=True,
        metadata={
            "help": "Skip the optimizer step when no row of it has a non-zero advantage (every group's rewards "
            "equal) and beta == 0: its gradient is zero, but Adam's momentum would still move the weights. The "
            "step still counts for the schedule; `steps_skipped_without_signal` logs the total."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.dynamic_sampling not in DYNAMIC_SAMPLING_MODES:
            raise ValueError(
                f"dynamic_sampling={self.dynamic_sampling!r} is not supported: use one of "
                f"{list(DYNAMIC_SAMPLING_MODES)}."
            )
        if self.dynamic_sampling == "none":
            return
        if self.dynamic_sampling == "filter" and self.dynamic_sampling_max_batches < 1:
            raise ValueError(
                f"dynamic_sampling_max_batches={self.dynamic_sampling_max_batches}: at least the first generation "
                "batch is needed. Use 1 (no refill) or more (3 = up to two refills per step)."
            )
