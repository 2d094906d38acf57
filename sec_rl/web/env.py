"""Environments: a small interface, BrowserGym behind it, and a text world for fast tests.

The interface is deliberately small (in the spirit of ``verifiers``)::

    observation = env.reset(task, seed)
    result = env.step(model_output)      # StepResult(observation, reward, done, info)
    env.close()

``step`` takes the model's raw output: the environment parses it with
:func:`~sec_rl.web.actions.parse_action`, so an invalid action becomes the ``last_action_error`` of
the next observation and nothing the model writes is ever executed as written. Two implementations:

- :class:`BrowserGymEnvironment`: MiniWoB++ (or WorkArena) tasks in a real Chromium. It keeps its
  browser between episodes: a reset re-runs the task's setup in the open page (~0.2-0.3 s here)
  instead of BrowserGym's relaunch of two browsers (~2.5 s).
- :class:`TextEnvironment`: a deterministic world of buttons, text fields and checkboxes rendered like
  an accessibility tree, with binary rewards: the same interface in microseconds.

Run many of either in parallel with :class:`~sec_rl.web.pool.EnvironmentPool`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sec_rl.web.actions import Action, InvalidActionError, parse_action, resolve_actions
from sec_rl.web.observation import Observation

__all__ = [
    "BrowserGymEnvironment",
    "EnvironmentCrashedError",
    "StepResult",
    "TextEnvironment",
    "UnknownTaskError",
    "WebEnvironment",
]

logger = logging.getLogger(__name__)


class _ChosenSlowMo(logging.Filter):
    """Drops BrowserGym's warning, at each browser launch, that the task's ``slow_mo`` is overridden: sec-rl sets it on
    purpose (``slow_mo=0`` skips MiniWoB's 100 ms per browser operation), and every worker repeats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Overriding the task's slow_mo parameter")


logging.getLogger("browsergym.core.env").addFilter(_ChosenSlowMo())


class UnknownTaskError(ValueError):
    """A task id that does not exist; the message lists the closest ones. A caller's error, never retried."""

    def __init__(self, task: str, known: Iterable[str], kind: str = "task"):
        self.task, self.known, self.kind = task, sorted(set(known)), kind
        self.close_matches = difflib.get_close_matches(task, self.known, n=5, cutoff=0.5)
        if self.close_matches:
            hint = f"Did you mean {', '.join(map(repr, self.close_matches))}?"
        else:
            hint = f"Known {kind}s: {', '.join(self.known[:20])}{', ...' if len(self.known) > 20 else ''}."
        super().__init__(f"unknown {kind} {task!r}. {hint}")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (pool workers)
        return type(self), (self.task, self.known, self.kind)


class EnvironmentCrashedError(RuntimeError):
    """The environment itself failed (browser died, page hung): not the agent's fault."""


@dataclass
class StepResult:
    """What one step returns.

    Attributes:
        observation: the new observation.
        reward: the task's reward for this step (MiniWoB: 1.0 on success, else 0.0).
        done: the episode is over.
        info: ``action`` (the canonical action executed, or None when the output was invalid),
            ``invalid_action`` (bool), and environment-specific details.
        env_error: the environment failed during this episode (crash, hang, timeout); set by the pool.
            Such episodes say nothing about the agent: leave them out of the loss and of success rates.
    """

    observation: Observation
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    env_error: bool = False


class WebEnvironment(ABC):
    """One environment, one episode at a time. Not thread-safe; one per process in a pool."""

    @abstractmethod
    def reset(self, task: str, seed: int) -> Observation:
        """Start an episode of ``task`` with ``seed``; raises :class:`UnknownTaskError` for an unknown task."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply the model's output (a thought and an action, see :mod:`sec_rl.web.actions`)."""

    def close(self) -> None:  # noqa: B027 - optional: environments holding nothing need not override it
        """Release what the environment holds (browsers, files)."""

    def __enter__(self) -> WebEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_environment(path: str) -> type[WebEnvironment]:
    """The :class:`WebEnvironment` subclass at ``"module.path:ClassName"`` (``web_env`` of your own)."""
    from sec_rl.imports import load_subclass

    return load_subclass(path, WebEnvironment, "web_env", "Write an environment")


def _invalid(previous: Observation, error: InvalidActionError) -> StepResult:
    """The result of an unparseable output: the page is untouched, the error is shown next turn."""
    observation = replace(
        previous, last_action="", last_action_error=f"InvalidActionError: {error}", step=previous.step + 1
    )
    return StepResult(observation, 0.0, False, {"action": None, "invalid_action": True})


# -- the text world --------------------------------------------------------------------------------
_WORDS = (  # noqa: SIM905 - a word list reads best as words
    "apple amber anchor arrow autumn basket beacon birch blue bramble breeze cactus candle canyon cedar "
    "cherry cobalt copper coral cotton crimson daisy delta desert ember falcon fern forest garnet "
    "glacier harbor hazel indigo island ivory jasmine juniper lemon lilac linen maple marble meadow mint "
    "nectar olive orchid pebble pepper pine plum quartz raven river saffron sage silver spruce stone "
    "sunset thistle topaz tulip velvet violet walnut willow"
).split()
_BUTTONS = ("Submit", "Cancel", "OK", "Next", "Back", "Save", "Delete", "Open", "Close", "Yes", "No", "Retry")


@dataclass
class _Element:
    bid: str
    role: str  # button, textbox, checkbox
    name: str
    value: str = ""
    checked: bool = False


class TextEnvironment(WebEnvironment):
    """A deterministic text world with MiniWoB-like tasks, for unit tests and rollout-engine tests.

    Tasks (``TextEnvironment.TASKS``):

    - ``click-button``: click the button with a given label among 3-5 (1 step). A wrong button ends
      the episode with reward 0, as in MiniWoB.
    - ``enter-text``: fill a word into the text field, then click Submit (2 steps).
    - ``click-checkboxes``: tick the named boxes among 3-5, then click Submit (2-3 steps).

    The page is rendered like BrowserGym's accessibility tree (``[bid] role 'name'``). An action on a
    bid that does not exist gives BrowserGym's error message; actions that make no sense here
    (``scroll``, ``hover``, ...) do nothing. ``noop(wait_ms)`` sleeps ``wait_ms * time_scale``
    milliseconds: 0 by default, so tests stay fast; ``time_scale=1`` simulates real waits (for
    timeout tests).
    """

    TASKS: tuple[str, ...] = ("click-button", "enter-text", "click-checkboxes")

    def __init__(self, *, actions: Iterable[str] | None = None, time_scale: float = 0.0):
        self.actions = resolve_actions(actions)
        self.time_scale = time_scale
        self._elements: list[_Element] = []
        self._observation: Observation | None = None
        self._done = True
        self._targets: set[str] = set()
        self._word = ""

    def reset(self, task: str, seed: int) -> Observation:
        if task not in self.TASKS:
            raise UnknownTaskError(task, self.TASKS)
        rng = random.Random(f"{task}/{seed}")
        bids = iter(str(b) for b in rng.sample(range(2, 100), 8))
        if task == "click-button":
            labels = rng.sample(_BUTTONS, rng.randint(3, 5))
            target = rng.choice(labels)
            self._elements = [_Element(next(bids), "button", label) for label in labels]
            self._targets = {target}
            goal = f'Click on the "{target}" button.'
        elif task == "enter-text":
            self._word = rng.choice(_WORDS)
            self._elements = [_Element(next(bids), "textbox", "Answer"), _Element(next(bids), "button", "Submit")]
            goal = f'Enter "{self._word}" into the text field and press Submit.'
        else:
            labels = rng.sample(_WORDS, rng.randint(3, 5))
            self._targets = set(rng.sample(labels, rng.randint(1, 2)))
            self._elements = [_Element(next(bids), "checkbox", label) for label in labels]
            self._elements.append(_Element(next(bids), "button", "Submit"))
            wanted = [label for label in labels if label in self._targets]
            goal = f"Select {' and '.join(wanted)} and click Submit."
        self._title = task.replace("-", " ").title()
        self._done = False
        self._observation = Observation(goal=goal, task=task, seed=seed, url=f"text://{task}")
        self._observation = self._render(last_action="", error="", step=0)
        return self._observation

    def step(self, action: str) -> StepResult:
        if self._observation is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task, seed) first.")
        try:
            parsed = parse_action(action, self.actions)
        except InvalidActionError as error:
            result = _invalid(self._observation, error)
            self._observation = result.observation
            return result
        reward, error = self._apply(parsed)
        self._observation = self._render(last_action=str(parsed), error=error, step=self._observation.step + 1)
        return StepResult(self._observation, reward, self._done, {"action": str(parsed), "invalid_action": False})

    def _apply(self, action: Action) -> tuple[float, str]:
        args = action.kwargs
        if action.name == "noop":
            time.sleep(max(0.0, float(args.get("wait_ms", 1000))) * self.time_scale / 1000)
            return 0.0, ""
        bid = args.get("bid")
        if bid is None:
            return 0.0, ""  # scroll, coordinates, messages: nothing to do in this world
        element = next((e for e in self._elements if e.bid == bid), None)
        if element is None:
            return 0.0, f'ValueError: Could not find element with bid "{bid}"'
        if action.name == "fill":
            if element.role != "textbox":
                return 0.0, f"Error: Element is not an <input>, <textarea> or [contenteditable] element (bid {bid})"
            element.value = str(args["value"])
        elif action.name == "clear" and element.role == "textbox":
            element.value = ""
        elif action.name in ("click", "dblclick"):
            return self._click(element), ""
        return 0.0, ""

    def _click(self, element: _Element) -> float:
        task = self._observation.task if self._observation else ""
        if element.role == "checkbox":
            element.checked = not element.checked
            return 0.0
        if element.role != "button":
            return 0.0
        self._done = True
        if task == "click-button":
            return float(element.name in self._targets)
        if element.name != "Submit":
            self._done = False  # only Submit ends the form tasks
            return 0.0
        if task == "enter-text":
            return float(self._elements[0].value.strip() == self._word)
        checked = {e.name for e in self._elements if e.role == "checkbox" and e.checked}
        return float(checked == self._targets)

    def _render(self, last_action: str, error: str, step: int) -> Observation:
        assert self._observation is not None
        lines = [f"RootWebArea '{self._title} Task', focused, url='{self._observation.url}'"]
        html = [f"<body><h1>{self._title} Task</h1>"]
        for e in self._elements:
            state = ""
            if e.role == "textbox":
                state = f" value='{e.value}'" if e.value else ""  # as BrowserGym writes it
                html.append(f'<input bid="{e.bid}" type="text" aria-label="{e.name}" value="{e.value}">')
            elif e.role == "checkbox":
                state = f", checked='{str(e.checked).lower()}'"
                html.append(
                    f'<label><input bid="{e.bid}" type="checkbox"{" checked" if e.checked else ""}>{e.name}</label>'
                )
            else:
                html.append(f'<button bid="{e.bid}">{e.name}</button>')
            lines.append(f"\t[{e.bid}] {e.role} '{e.name}'{state}")
        return replace(
            self._observation,
            axtree="\n".join(lines),
            html="\n".join([*html, "</body>"]),
            last_action=last_action,
            last_action_error=error,
            step=step,
        )


# -- BrowserGym --------------------------------------------------------------------------------------
class _TextChat:
    """Stands in for BrowserGym's chat window (a second Chromium per environment) when no one looks at it.

    Keeps the message list, which task validation reads (e.g. answers sent with ``send_msg_to_user``).
    """

    def __init__(self, *_: Any, **__: Any) -> None:
        self.messages: list[dict[str, Any]] = []

    def add_message(self, role: str, msg: str) -> None:
        if role not in ("user", "user_image", "assistant", "info", "infeasible"):
            raise ValueError(f"Invalid role: {role}")
        if role != "info":
            self.messages.append({"role": role, "timestamp": time.time(), "message": msg})

    def wait_for_user_message(self) -> None:
        raise RuntimeError("no chat window: create the environment with chat_browser=True to wait for a user.")

    def close(self) -> None:
        pass


@contextmanager
def _swapped(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


_NO_SCREENSHOT = None  # built lazily (numpy)
_BENCHMARK_PACKAGES = {
    "miniwob": "browsergym-miniwob==0.14.3 && pip install --no-deps miniwob==1.1.0",
    "workarena": "browsergym-workarena",
    "webarena": "browsergym-webarena",
    "visualwebarena": "browsergym-visualwebarena",
    "assistantbench": "browsergym-assistantbench",
}
_BROWSER_SETTINGS = ("viewport", "slow_mo", "locale", "timezone_id")
_GREETING = "Hi! I am your UI assistant, I can perform web tasks for you. What can I help you with?"  # BrowserGym's


def gym_id(task: str) -> str:
    """BrowserGym's gym id of a task: ``click-test`` or ``miniwob.click-test`` -> ``browsergym/miniwob.click-test``."""
    if task.startswith("browsergym/"):
        return task
    return f"browsergym/{task}" if "." in task else f"browsergym/miniwob.{task}"


#: What the folder of MiniWoB++'s local pages reads as in observations (see :func:`_portable`).
LOCAL_PAGES_URL = "file:///miniwob/"


def _portable(text: str) -> str:
    """``text`` with the ``file://`` folder of the local task pages (``MINIWOB_URL``: the install path) shown as
    :data:`LOCAL_PAGES_URL`: where sec-rl is installed is no part of a page, and prompts, traces and the students
    trained on them must not change with it."""
    pages = os.environ.get("MINIWOB_URL", "")
    return text.replace(pages, LOCAL_PAGES_URL) if pages.startswith("file://") else text


class BrowserGymEnvironment(WebEnvironment):
    """BrowserGym tasks (MiniWoB++, WorkArena, ...) in one Chromium that lives as long as the environment.

    Args:
        actions: allowed action names/groups (default :data:`~sec_rl.web.actions.DEFAULT_ACTIONS`).
        reuse: what survives between episodes. ``"page"`` (default): browser, context and page; a reset
            re-runs the task's setup in the open page (MiniWoB's setup navigates to the task's page).
            ``"browser"``: the browser process; BrowserGym's own reset makes a fresh context and page
            (clean cookies and storage, ~1 s). ``"none"``: BrowserGym's own reset, relaunching Chromium.
            ``"page"`` falls back to ``"browser"`` when the next task needs other browser settings.
        pre_observation_delay: seconds BrowserGym sleeps before reading the page after an action (its default 0.5).
        slow_mo: Playwright's delay per operation in ms (MiniWoB's default 100); None keeps the task's.
        action_timeout_ms: Playwright's default timeout for the task's operations; None keeps the task's.
        screenshot: extract a screenshot each step (a third of a step's time; text agents do not need it).
        html: also produce pruned HTML in ``Observation.html``.
        chat_browser: keep BrowserGym's chat window (a second Chromium); by default a browserless chat
            keeps the messages, which is all task validation reads.
        axtree_options: keyword arguments of BrowserGym's ``flatten_axtree_to_str``.
        headless: run Chromium headless.
        env_kwargs: other ``BrowserEnv`` arguments (``viewport``, ``tags_to_mark``, ...).
        task_kwargs: keyword arguments for every task's constructor.

    The hard per-step limit (a hung page) is the pool's ``step_timeout``: a Playwright call cannot be
    interrupted from inside the process that waits on it.
    """

    def __init__(
        self,
        *,
        actions: Iterable[str] | None = None,
        reuse: Literal["page", "browser", "none"] = "page",
        pre_observation_delay: float = 0.0,
        slow_mo: int | None = 0,
        action_timeout_ms: int | None = None,
        screenshot: bool = False,
        html: bool = False,
        chat_browser: bool = False,
        axtree_options: dict[str, Any] | None = None,
        headless: bool = True,
        env_kwargs: dict[str, Any] | None = None,
        task_kwargs: dict[str, Any] | None = None,
    ):
        if reuse not in ("page", "browser", "none"):
            raise ValueError(f"reuse must be 'page', 'browser' or 'none', not {reuse!r}.")
        self.actions = resolve_actions(actions)
        self.reuse = reuse
        self.screenshot = screenshot
        self.html = html
        self.chat_browser = chat_browser
        self.axtree_options = dict(axtree_options or {})
        self._env_kwargs: dict[str, Any] = {
            "headless": headless,
            "pre_observation_delay": pre_observation_delay,
            "slow_mo": slow_mo,
            "timeout": action_timeout_ms,
            "task_kwargs": dict(task_kwargs or {}),
            **(env_kwargs or {}),
        }
        self._env: Any = None  # the BrowserEnv that hosts every episode
        self._entrypoints: dict[str, Any] = {}
        self._settings: dict[str, Any] | None = None  # browser settings the live context was made with
        self._observation: Observation | None = None
        self._done = True
        self.soft_resets = 0
        self.full_resets = 0

    # -- tasks ------------------------------------------------------------------------------------
    def _entrypoint(self, task: str) -> tuple[str, Any]:
        """The gym id and BrowserGym task class (a partial) of a task, importing its benchmark on demand."""
        try:
            import gymnasium as gym

            importlib.import_module("browsergym.core")
        except ImportError as error:
            raise ImportError(
                "BrowserGymEnvironment needs BrowserGym: `pip install 'sec-rl[browsergym]'` and "
                "`pip install --no-deps miniwob==1.1.0` (the MiniWoB++ pages)."
            ) from error

        name = gym_id(task)
        if name not in self._entrypoints:
            benchmark = name.removeprefix("browsergym/").split(".")[0]
            try:
                importlib.import_module(f"browsergym.{benchmark}")
            except ImportError as error:
                if benchmark in _BENCHMARK_PACKAGES:
                    raise ImportError(
                        f"task {task!r} needs `pip install {_BENCHMARK_PACKAGES[benchmark]}`."
                    ) from error
            if name not in gym.registry:
                importlib.import_module("browsergym.miniwob")  # so that the close matches include MiniWoB's
                known = [k.removeprefix("browsergym/") for k in gym.registry if k.startswith("browsergym/")]
                if "." not in task:  # a bare MiniWoB name: suggest bare names
                    known = [k.removeprefix("miniwob.") for k in known if k.startswith("miniwob.")]
                raise UnknownTaskError(task, known)
            from sec_rl.web.browser import prepare_browser

            prepare_browser()  # MINIWOB_URL before a task reads it; Chromium wired in before any launch
            env = gym.make(name, disable_env_checker=True, **self._env_kwargs).unwrapped
            self._entrypoints[name] = env.task_entrypoint
        return name, self._entrypoints[name]

    # -- episodes ---------------------------------------------------------------------------------
    def reset(self, task: str, seed: int) -> Observation:
        name, entry = self._entrypoint(task)
        with self._browsergym_patches():
            raw = None
            if self.reuse == "page" and self._env is not None and self._env.task is not None:
                try:
                    raw = self._soft_reset(entry, seed)
                except Exception as error:  # noqa: BLE001 - e.g. a crashed renderer: start over below
                    logger.warning(
                        "reusing the page failed (%s: %s); relaunching the browser", type(error).__name__, error
                    )
                    self._discard()
            if raw is None:
                raw = self._full_reset(name, entry, seed)
        self._done = False
        self._observation = self._convert(raw, task=task, seed=seed, step=0)
        return self._observation

    def _full_reset(self, name: str, entry: Any, seed: int) -> dict[str, Any]:
        """BrowserGym's own reset (with the browser kept alive unless reuse='none')."""
        from sec_rl.web.browser import keep_browsers_alive

        if self._env is not None and not self._browser_alive():
            self._discard()
        if self._env is None:
            import gymnasium as gym

            self._env = gym.make(name, disable_env_checker=True, **self._env_kwargs).unwrapped
        self._env.task_entrypoint = entry
        with keep_browsers_alive(self.reuse != "none"):
            raw, _ = self._env.reset(seed=seed)
        self._settings = self._browser_settings(self._env.task)
        self.full_resets += 1
        return raw

    def _soft_reset(self, entry: Any, seed: int) -> dict[str, Any] | None:
        """Re-run a task's setup in the open page; None if the browser cannot be reused for this task.

        Mirrors the second half of ``BrowserEnv.reset`` (browsergym-core 0.14.3): everything after the
        browser, context and page are created.
        """
        env = self._env
        if not self._browser_alive():
            return None
        task = entry(seed=seed, **env.task_kwargs)
        if self._browser_settings(task) != self._settings:
            return None
        env.task.teardown()
        page = env.page if not env.page.is_closed() else env.context.pages[0]
        for other in env.context.pages:
            if other != page:
                other.close()
        env.page, env.page_history = page, {page: None}
        env.task = task
        env.context.set_default_timeout(env.timeout if env.timeout is not None else task.timeout)
        env.chat.messages.clear()
        goal, _ = task.setup(page=page)
        env.goal_object = [{"type": "text", "text": goal}] if isinstance(goal, str) else list(goal or [])
        env.chat.add_message(role="assistant", msg=_GREETING)
        for message in env.goal_object:
            if message["type"] == "text":
                env.chat.add_message(role="user", msg=message["text"])
        env._wait_dom_loaded()
        env._active_page_check()
        env.start_time = time.time()
        env.last_action, env.last_action_error, env.infeasible_message_received = "", "", False
        self.soft_resets += 1
        return env._get_obs()

    def _browser_settings(self, task: Any) -> dict[str, Any]:
        env = self._env
        return {
            k: getattr(env, k) if getattr(env, k) is not None else getattr(task, k, None) for k in _BROWSER_SETTINGS
        }

    def _browser_alive(self) -> bool:
        env = self._env
        try:
            return bool(env.browser is not None and env.browser.is_connected() and env.context.pages)
        except Exception:  # noqa: BLE001 - any failure to ask means it is not usable
            return False

    def step(self, action: str) -> StepResult:
        if self._observation is None or self._env is None:
            raise RuntimeError("call reset(task, seed) before step().")
        try:
            parsed = parse_action(action, self.actions)
        except InvalidActionError as error:
            result = _invalid(self._observation, error)
            self._observation = result.observation
            return result
        try:
            with self._browsergym_patches():
                raw, reward, terminated, truncated, info = self._env.step(str(parsed))
        except Exception as error:  # noqa: BLE001 - BrowserGym reports the agent's errors in the observation
            raise EnvironmentCrashedError(
                f"BrowserGym failed during step({parsed}): {type(error).__name__}: {error}"
            ) from error
        self._done = bool(terminated or truncated)
        self._observation = self._convert(
            raw, task=self._observation.task, seed=self._observation.seed, step=self._observation.step + 1
        )
        details = {"action": str(parsed), "invalid_action": False, "truncated": bool(truncated)}
        details["task_info"] = _plain(info.get("task_info", {}))
        return StepResult(self._observation, float(reward), self._done, details)

    # -- helpers ----------------------------------------------------------------------------------
    @contextmanager
    def _browsergym_patches(self) -> Iterator[None]:
        """BrowserGym's module-level hooks swapped for the duration of one call: chat and screenshot."""
        import browsergym.core.env as core

        with ExitStack() as stack:
            if not self.chat_browser:
                stack.enter_context(_swapped(core, "Chat", _TextChat))
            if not self.screenshot:
                stack.enter_context(_swapped(core, "extract_screenshot", _no_screenshot))
            yield

    def _convert(self, raw: dict[str, Any], task: str, seed: int | None, step: int) -> Observation:
        from browsergym.utils.obs import flatten_axtree_to_str, flatten_dom_to_str, prune_html

        axtree = flatten_axtree_to_str(
            raw["axtree_object"], extra_properties=raw.get("extra_element_properties"), **self.axtree_options
        )
        html = prune_html(flatten_dom_to_str(raw["dom_object"])) if self.html else ""
        return Observation(
            goal=raw.get("goal", ""),
            axtree=_portable(axtree),
            html=_portable(html),
            url=_portable(raw.get("url", "")),
            last_action=raw.get("last_action", ""),
            last_action_error=raw.get("last_action_error", ""),
            focused_bid=raw.get("focused_element_bid") or "",
            task=task,
            seed=seed,
            step=step,
        )

    def browser_pids(self) -> list[int]:
        """Process ids of the Chromium browsers this process runs (a pooled reset must not change them)."""
        from sec_rl.web.browser import browser_processes

        return sorted(p.pid for p in browser_processes())

    def _discard(self) -> None:
        """Forget a broken BrowserEnv (its browser died): the next reset builds a new one."""
        from sec_rl.web.browser import close_kept_browsers

        env, self._env = self._env, None
        self._settings = None
        for closer in (getattr(env, "close", None), close_kept_browsers):
            try:
                if closer is not None:
                    closer()
            except Exception:  # noqa: BLE001 - closing a dead browser fails; there is nothing left to free
                pass

    def close(self) -> None:
        if self._env is not None:
            with self._browsergym_patches():
                self._discard()
        self._observation = None


def _no_screenshot(page: Any) -> Any:
    global _NO_SCREENSHOT
    if _NO_SCREENSHOT is None:
        import numpy as np

        _NO_SCREENSHOT = np.zeros((1, 1, 3), dtype=np.uint8)
    return _NO_SCREENSHOT


def _plain(value: Any) -> Any:
    """A picklable, numpy-free copy of small info values (they cross process boundaries)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    return repr(value)
