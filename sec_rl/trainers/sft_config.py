"""``SECSFTConfig``: TRL's ``SFTConfig`` plus the curriculum fields, with SFT's own curriculum signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from trl import SFTConfig

from sec_rl.trainers.curriculum_args import CurriculumArguments

#: What the curriculum can learn from in SFT, and what each value means (the help text and the errors use it).
SFT_SIGNALS: dict[str, str] = {
    "loss": "each sequence's mean token loss: the bandit favours the categories the model fits worst",
    "loss_decrease": "each category's drop in mean loss since its previous batch (learning progress): the bandit "
    "favours the categories that are being learnt fastest",
}


@dataclass
class SECSFTConfig(CurriculumArguments, SFTConfig):
    """Configuration of :class:`~sec_rl.SECSFTTrainer`: every ``SFTConfig`` field, plus the curriculum.

    With ``curriculum="sec"`` and ``curriculum_column="task"``, each optimizer step's batch is drawn from
    the tasks the SEC bandit chooses, scored by ``curriculum_signal``. Differences from ``SFTConfig``:
    ``assistant_only_loss`` follows the data when left unset (True for conversational ``messages`` traces: learn
    the agent's turns, not the observations; TRL's False otherwise), and ``packing`` is refused with a
    curriculum (a packed row mixes categories).
    """

    curriculum_signals: ClassVar[dict[str, str]] = SFT_SIGNALS

    curriculum_signal: str = field(
        default="loss",
        metadata={
            "help": "What the curriculum learns from. 'loss': "
            + SFT_SIGNALS["loss"]
            + ". 'loss_decrease': "
            + SFT_SIGNALS["loss_decrease"]
            + ". Strategies that read success rates (target_success, learning_progress, sec with "
            "objective='progress') receive exp(-loss), the geometric mean probability of the trained tokens.",
        },
    )
    assistant_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "Train only on the assistant turns (each turn's content and its end-of-turn token). Default "
            "(None): True when the training data is conversational with a `messages` column (agent traces: learn the "
            "agent's turns, not the observations), else TRL's False, so plain-text and prompt-completion data "
            "train as in TRL. Needs {%% generation %%} markers in the chat template: TRL adds them for the families "
            "it knows and sec-rl for ChatML templates; otherwise the trainer stops with an explanation.",
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.curriculum_enabled and self.packing:
            raise ValueError(
                f"packing=True with curriculum={self.curriculum!r}: packing concatenates rows of different "
                "categories into one training row and drops the category column, so the curriculum can neither "
                "choose a row's category nor score it. Set packing=False (padding_free=True saves most of the "
                "padding without mixing rows), or curriculum='none' to pack with TRL's own sampler."
            )

    def _validate_curriculum_signal(self) -> None:
        grpo_signals = CurriculumArguments.curriculum_signals
        if self.curriculum_signal in grpo_signals and self.curriculum_signal not in self.curriculum_signals:
            raise ValueError(
                f"curriculum_signal={self.curriculum_signal!r} is a GRPO signal: SFT trains on fixed traces, without "
                "rewards or advantages. Use 'loss' ("
                + SFT_SIGNALS["loss"]
                + ") or 'loss_decrease' ("
                + SFT_SIGNALS["loss_decrease"]
                + ")."
            )
        super()._validate_curriculum_signal()


def resolve_assistant_only_loss(args: SFTConfig, train_dataset: Any) -> None:
    """Set ``assistant_only_loss`` left at None from the data: True for conversational ``messages`` rows."""
    if getattr(args, "assistant_only_loss", False) is not None:
        return
    from trl.data_utils import is_conversational

    columns = getattr(train_dataset, "column_names", None) or []
    first = next(iter(train_dataset), None) if train_dataset is not None and "messages" in columns else None
    args.assistant_only_loss = bool(first is not None and is_conversational(first))
