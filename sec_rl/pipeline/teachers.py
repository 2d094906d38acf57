"""Teachers: whatever writes the expert traces the student learns from by SFT.

A teacher answers a batch of chat conversations (system prompt, observations, its own earlier turns)
with one :class:`Reply` each: the text (a thought, then one action) and the tokens it cost, which
the trace records and compute accounting turns into FLOPs. Every teacher is also an agent for
:func:`sec_rl.web.evaluate.evaluate` (``act_batch``), so a teacher's success rate is measured the
same way as the student's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Messages", "Reply", "Teacher"]

Messages = list[dict[str, str]]


@dataclass
class Reply:
    """One teacher turn: the text the environment receives, and its token counts (0 when not counted)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Teacher(ABC):
    """Maps conversations to replies, many at once (one batched call per turn of all live episodes).

    Attributes:
        name: recorded in every trace (e.g. the served model's name).
        num_parameters: the model's parameter count, for inference FLOPs (2 x parameters x tokens);
            0 for a teacher without a model, None when unknown (its compute is then not counted).
    """

    name: str = "teacher"
    num_parameters: int | None = None

    @abstractmethod
    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        """One reply per conversation, in order. A failed turn is a reply whose text holds no action."""

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]:
        """The agent interface of :mod:`sec_rl.web.evaluate`: texts only."""
        return [reply.text for reply in self.generate(conversations)]

    def close(self) -> None:  # noqa: B027 - optional: teachers holding no resources need not override it
        """Release clients, models or threads."""

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
