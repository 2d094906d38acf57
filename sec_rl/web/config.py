"""The web settings every command shares: environment, workers, timeouts, turns, sample layout and prompt.

:class:`WebConfig` is the one declaration of these settings. The training config
(:class:`~sec_rl.trainers.web_grpo.WebAgentArguments`, mixed into ``SECWebGRPOConfig``), the evaluation
arguments (:class:`~sec_rl.pipeline.stages.WebEvalArguments`) and the collection config
(:class:`~sec_rl.pipeline.collect.CollectConfig`) all inherit it, so ``--web_max_turns``, ``--web_layout``,
``--web_max_page_tokens``... mean the same in ``sec-rl collect``, ``grpo`` and ``evaluate``, and one YAML block
of ``web_*`` keys configures all three: an agent sees in evaluation the prompts it was trained on.

Contract: importing this module imports neither torch, transformers nor TRL (evaluation and collection
configs parse without them); the environment classes load only when a factory or a pool is built.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from sec_rl.web.observation import PromptConfig

if TYPE_CHECKING:
    from sec_rl.web.pool import EnvironmentPool

__all__ = [
    "ENVIRONMENTS",
    "HIDDEN",
    "LAYOUTS",
    "VIEWS",
    "Layout",
    "WebConfig",
    "check_layout",
    "json_option",
    "with_default",
]

logger = logging.getLogger(__name__)

#: The built-in environments; ``"my_pkg.module:MyEnvironment"`` names one of your own.
ENVIRONMENTS: tuple[str, ...] = ("browsergym", "text")
#: How an episode becomes model inputs and training samples: one growing conversation (``"episode"``) or a fresh
#: prompt every turn (``"per_step"``). Training samples, evaluation prompts and trace files all follow it.
Layout = Literal["episode", "per_step"]
LAYOUTS: tuple[str, ...] = ("episode", "per_step")
VIEWS: tuple[str, ...] = ("axtree", "html")
#: Hidden from ``--help``: an option kept working under its old name (see ``WebConfig._renamed``).
HIDDEN = {"help": argparse.SUPPRESS}


def json_option(name: str, value: Any, example: str) -> Any:
    """A dict option as given from a flag or YAML (a JSON string) or in code (a dict), as a dict."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON ({err}): pass e.g. '{example}'.") from err


def check_layout(layout: str, name: str = "layout") -> None:
    """One error for an unknown sample layout, wherever a layout is given."""
    if layout not in LAYOUTS:
        raise ValueError(f"{name}={layout!r} is not supported: use one of {list(LAYOUTS)}.")


@dataclass
class WebConfig:
    """The web-agent settings shared by training, evaluation and collection (flags and YAML keys ``web_*``)."""

    web_env: str = field(
        default="browsergym",
        metadata={
            "help": f"Environment of each pool worker: one of {ENVIRONMENTS} ('text': the fast text world), or the "
            "import path of a WebEnvironment subclass of your own, 'my_pkg.module:MyEnvironment' (built with "
            "web_env_kwargs)."
        },
    )
    web_env_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": 'Keyword arguments of the environment class, as a dict or JSON (e.g. \'{"reuse": "page"}\').'
        },
    )
    web_num_workers: int = field(
        default=4, metadata={"help": "Environments (worker processes) per process: episodes run at once."}
    )
    web_step_timeout: float = field(
        default=30.0, metadata={"help": "Seconds one step may take before its worker is restarted (env error)."}
    )
    web_reset_timeout: float | None = field(
        default=None, metadata={"help": "Seconds one reset may take. Default: max(web_step_timeout, 60)."}
    )
    web_episode_timeout: float | None = field(
        default=600.0, metadata={"help": "Wall-clock seconds per episode; beyond, it ends as an environment error."}
    )
    web_max_turns: int = field(default=10, metadata={"help": "Actions per episode at most (then it has failed)."})
    web_layout: str = field(
        default="per_step",
        metadata={
            "help": "Sample layout. 'per_step': a fresh prompt every turn (observation and last actions); training "
            "makes every step a sample with its discounted return (the web-agent study). 'episode': one growing "
            "conversation; training makes the episode one completion, observations masked out of the loss, and a "
            "trace is one SFT sample. Evaluate a student in the layout it was trained in.",
            "choices": list(LAYOUTS),
        },
    )
    web_view: str = field(
        default="axtree",
        metadata={"help": "Page view in prompts: 'axtree' or 'html'.", "choices": list(VIEWS)},
    )
    web_max_page_chars: int | None = field(
        default=8000, metadata={"help": "Character budget of the page text in a prompt (None: no limit)."}
    )
    web_max_page_tokens: int | None = field(
        default=None,
        metadata={"help": "Token budget of the page text in a prompt, in the student's tokens (None: no limit)."},
    )
    web_history: int = field(default=3, metadata={"help": "per_step: how many previous actions the prompt shows."})
    web_error_feedback: bool = field(
        default=True, metadata={"help": "Show the last action's error in the prompt (the study's error logs)."}
    )
    web_actions: list[str] | None = field(
        default=None,
        metadata={"help": "Allowed actions or groups ('bid', 'coord', 'chat', ...). Default: the environment's set."},
    )
    web_system_prompt: str | None = field(
        default=None, metadata={"help": "A system prompt replacing the default one (which documents the actions)."}
    )
    web_sample_mode: str | None = field(default=None, metadata=HIDDEN)  # renamed web_layout

    #: Old option name -> its name now. Subclasses extend it; each old name is a hidden field defaulting to None.
    _renamed: ClassVar[dict[str, str]] = {"web_sample_mode": "web_layout"}

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):  # mixed into a TRL config: its checks first
            super().__post_init__()  # type: ignore[misc]
        for old, new in self._renamed.items():
            value = getattr(self, old)
            if value is not None:
                logger.warning("--%s is deprecated: use --%s (same meaning).", old, new)
                setattr(self, new, value)
                setattr(self, old, None)
        self.web_env_kwargs = json_option("web_env_kwargs", self.web_env_kwargs, '{"reuse": "page"}')
        custom = ":" in self.web_env
        for name, allowed in (("web_env", ENVIRONMENTS), ("web_view", VIEWS)):
            value = getattr(self, name)
            if value not in allowed and not (name == "web_env" and custom):
                raise ValueError(f"{name}={value!r} is not supported: use one of {list(allowed)}.")
        check_layout(self.web_layout, "web_layout")
        if custom:  # an environment of the user's: fail now if its path is wrong
            from sec_rl.web.env import resolve_environment

            resolve_environment(self.web_env)
        for name, low in (("web_num_workers", 1), ("web_max_turns", 1), ("web_history", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)} must be at least {low}.")

    def prompt_config(self) -> PromptConfig:
        """How observations become prompts, from the ``web_*`` fields."""
        return PromptConfig(
            view=self.web_view,  # type: ignore[arg-type]
            max_page_chars=self.web_max_page_chars,
            max_page_tokens=self.web_max_page_tokens,
            history=self.web_history,
            error_feedback=self.web_error_feedback,
            actions=tuple(self.web_actions) if self.web_actions else None,
            system=self.web_system_prompt,
        )

    def env_factory(self) -> Callable[[], Any]:
        """A picklable factory of one environment, for the pool's worker processes."""
        from sec_rl.web.env import BrowserGymEnvironment, TextEnvironment, resolve_environment

        builtin = {"browsergym": BrowserGymEnvironment, "text": TextEnvironment}
        cls = builtin[self.web_env] if self.web_env in builtin else resolve_environment(self.web_env)
        kwargs = dict(self.web_env_kwargs or {})  # type: ignore[arg-type]
        if self.web_actions:
            kwargs.setdefault("actions", list(self.web_actions))
        return functools.partial(cls, **kwargs)

    def make_pool(self, num_goals: int | None = None, env_factory: Callable[[], Any] | None = None) -> EnvironmentPool:
        """The environments: ``web_num_workers`` (fewer when fewer goals are to run), with these timeouts.

        ``env_factory`` replaces :meth:`env_factory` (an environment built in code rather than named by ``web_env``).
        """
        from sec_rl.web.pool import EnvironmentPool

        workers = self.web_num_workers if num_goals is None else max(1, min(self.web_num_workers, num_goals))
        return EnvironmentPool(
            env_factory or self.env_factory(),
            num_workers=workers,
            step_timeout=self.web_step_timeout,
            reset_timeout=self.web_reset_timeout,
            episode_timeout=self.web_episode_timeout,
        )


def with_default(name: str, default: Any) -> Any:
    """A :class:`WebConfig` option with another default in one command's config (same help, same choices)."""
    return field(default=default, metadata=WebConfig.__dataclass_fields__[name].metadata)
