"""What the agent sees: the :class:`Observation` an environment returns, and how it becomes a prompt.

Environments convert the browser's state to text inside their worker process (the accessibility
tree flattened by BrowserGym, optionally pruned HTML), so only small strings cross process
boundaries. This module turns an observation into chat messages: a system prompt documenting the
action format, then the goal, the last k actions, optionally the last action's error (the
web-agent study's error-log feedback) and the page, truncated to a character or token budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sec_rl.web.actions import ACTION_FORMAT, describe_actions

__all__ = [
    "Messages",
    "Observation",
    "PromptConfig",
    "render_messages",
    "render_observation",
    "system_prompt",
    "truncate",
]

#: A chat conversation, as ``apply_chat_template`` takes it: ``[{"role": ..., "content": ...}, ...]``.
Messages = list[dict[str, str]]
TRUNCATION_MARKER = "[... page truncated: {n} more {unit} not shown ...]"


@dataclass
class Observation:
    """The state of one episode, as text.

    Attributes:
        goal: the task's instruction.
        axtree: the page's accessibility tree, one element per line, ``[bid] role 'name'``.
        html: pruned HTML of the page (empty unless the environment was asked for it).
        url: the active page's URL.
        last_action: the canonical form of the last action executed ("" after a reset or an invalid action).
        last_action_error: why the last action failed ("" if it did not).
        focused_bid: the bid of the focused element, if any.
        task, seed, step: which goal this is and how many actions were taken.
        extra: environment-specific details (small, picklable values only).
    """

    goal: str
    axtree: str = ""
    html: str = ""
    url: str = ""
    last_action: str = ""
    last_action_error: str = ""
    focused_bid: str = ""
    task: str = ""
    seed: int | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def page(self, view: Literal["axtree", "html"] = "axtree") -> str:
        """The page in the requested view, falling back to the other when it is empty."""
        first, second = (self.axtree, self.html) if view == "axtree" else (self.html, self.axtree)
        return first or second


@dataclass(frozen=True)
class PromptConfig:
    """How observations are rendered into prompts.

    Args:
        view: ``"axtree"`` (accessibility tree) or ``"html"`` (pruned HTML; the environment must produce it).
        max_page_chars: character budget of the page text (None: no limit).
        max_page_tokens: token budget of the page text; needs a tokenizer at render time.
        history: how many of the previous actions to show (0: none).
        error_feedback: show the last action's error (the study's error-log feedback).
        actions: the allowed actions (names or groups) listed in the system prompt; None: the default set.
        system: a system prompt replacing :func:`system_prompt`'s.
    """

    view: Literal["axtree", "html"] = "axtree"
    max_page_chars: int | None = 8_000
    max_page_tokens: int | None = None
    history: int = 3
    error_feedback: bool = True
    actions: tuple[str, ...] | None = None
    system: str | None = None


def system_prompt(actions: Iterable[str] | None = None) -> str:
    """The default system prompt: the agent's role, the output format, and the allowed actions."""
    return (
        "You are a web agent. You complete a task in a web browser, one action per turn. Each turn you see the "
        "task's goal, your previous actions, the error of your last action if it failed, and the current page as "
        "an accessibility tree where each element you can act on starts with its bid in square brackets.\n\n"
        f"{ACTION_FORMAT}\n\nAllowed actions:\n{describe_actions(actions)}"
    )


def truncate(text: str, max_chars: int | None = None, max_tokens: int | None = None, tokenizer: Any = None) -> str:
    """Cut ``text`` to a character and/or token budget, ending with a marker that says how much was cut."""
    if max_chars is not None and len(text) > max_chars:
        text = f"{text[:max_chars]}\n{TRUNCATION_MARKER.format(n=len(text) - max_chars, unit='characters')}"
    if max_tokens is not None:
        if tokenizer is None:
            raise ValueError("max_page_tokens needs a tokenizer: pass tokenizer=... or use max_page_chars.")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            kept = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
            text = f"{kept}\n{TRUNCATION_MARKER.format(n=len(ids) - max_tokens, unit='tokens')}"
    return text


def render_observation(
    observation: Observation,
    history: Sequence[str] = (),
    config: PromptConfig | None = None,
    tokenizer: Any = None,
) -> str:
    """The user message of one turn: goal, last actions, last error, page.

    Args:
        observation: the current observation.
        history: the actions taken so far in the episode (canonical strings), oldest first.
        config: rendering options.
        tokenizer: needed only with ``config.max_page_tokens``.
    """
    config = config or PromptConfig()
    parts = [f"# Goal\n{observation.goal.strip()}"]
    if config.history > 0 and history:
        shown = list(history)[-config.history :]
        first = len(history) - len(shown) + 1
        title = "# Previous actions" + (f" (last {len(shown)} of {len(history)})" if len(shown) < len(history) else "")
        parts.append(title + "\n" + "\n".join(f"{first + i}. {action}" for i, action in enumerate(shown)))
    if config.error_feedback and observation.last_action_error:
        parts.append(f"# Error from your last action\n{observation.last_action_error.strip()}")
    page = truncate(observation.page(config.view), config.max_page_chars, config.max_page_tokens, tokenizer)
    title = "accessibility tree" if config.view == "axtree" else "HTML"
    parts.append(f"# Current page ({title})\n{page}")
    return "\n\n".join(parts)


def render_messages(
    observation: Observation,
    history: Sequence[str] = (),
    config: PromptConfig | None = None,
    tokenizer: Any = None,
) -> Messages:
    """Chat messages (system + user) for ``tokenizer.apply_chat_template``."""
    config = config or PromptConfig()
    system = config.system if config.system is not None else system_prompt(config.actions)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": render_observation(observation, history, config, tokenizer)},
    ]
