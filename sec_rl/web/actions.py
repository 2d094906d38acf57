"""The agent's action language: one BrowserGym high-level call, parsed with ``ast`` into a whitelist.

BrowserGym executes action strings as Python code (``exec``). A model's output must never reach it
as written: :func:`parse_action` extracts the action from the model's text, parses it with
``ast.parse(mode="eval")``, accepts exactly one call to a whitelisted action whose arguments are
literals (str, int, float, bool, list of str), checks each argument against the action's schema,
and returns an :class:`Action` whose canonical form (``repr`` of each literal) is the only string
BrowserGym ever sees. Everything else raises :class:`InvalidActionError`, whose message is written
for the model: it becomes the error line of the next observation.

The output format the system prompt teaches (:data:`ACTION_FORMAT`)::

    Thought: the Submit button has bid 14.
    Action: click('14')

Tolerated variants: ``action:`` in any case or in markdown bold, the action in backticks or in a
fenced code block, and, when there is no ``Action:`` line, the last fenced block or the last line.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTION_FORMAT",
    "ACTION_GROUPS",
    "ACTION_SPECS",
    "DEFAULT_ACTIONS",
    "Action",
    "ActionSpec",
    "InvalidActionError",
    "Param",
    "describe_actions",
    "extract_action_text",
    "parse_action",
    "resolve_actions",
]

MAX_OUTPUT_CHARS = 100_000  # a whole model output; longer is refused before any parsing
MAX_ACTION_CHARS = 4_000  # the extracted action
MAX_TEXT_CHARS = 2_000  # one string argument
MAX_BID_CHARS = 64
MAX_LIST_ITEMS = 32
MAX_NUMBER = 1e6  # pixels, coordinates
MAX_WAIT_MS = 10_000  # noop(wait_ms): longer waits would only stall the worker until its step timeout

Literal = str | int | float | bool | list[str]


class InvalidActionError(ValueError):
    """The model's output holds no acceptable action. The message is meant to be shown to the model."""


# -- schemas ---------------------------------------------------------------------------------------
_NO_DEFAULT = object()


@dataclass(frozen=True)
class Param:
    """One argument of an action: its name, kind, and default (absent for required arguments).

    Kinds: ``bid`` (element id, a str; an int is accepted and converted), ``text`` (a str),
    ``number`` (int or float, finite, bounded), ``int``, ``bool``, ``button`` (left/middle/right),
    ``modifiers`` (a list of modifier keys), ``options`` (a str or a list of str).
    """

    name: str
    kind: str
    default: Any = _NO_DEFAULT
    limit: float = MAX_NUMBER

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True)
class ActionSpec:
    """A whitelisted action: BrowserGym's function name, its parameters and a one-line description."""

    name: str
    params: tuple[Param, ...]
    description: str
    example: str

    @property
    def signature(self) -> str:
        parts = [p.name if p.required else f"{p.name}={p.default!r}" for p in self.params]
        return f"{self.name}({', '.join(parts)})"


_BUTTONS = ("left", "middle", "right")
_MODIFIERS = ("Alt", "Control", "ControlOrMeta", "Meta", "Shift")


def _spec(name: str, params: Sequence[Param], description: str, example: str) -> ActionSpec:
    return ActionSpec(name, tuple(params), description, example)


def _bid(name: str = "bid") -> Param:
    return Param(name, "bid")


def _xy(*names: str) -> list[Param]:
    return [Param(n, "number") for n in names]


# Mirrors browsergym.core.action.functions (0.14.3); tests/test_web_actions.py checks the signatures.
# upload_file / mouse_upload_file are left out on purpose: they read files from the worker's disk.
ACTION_SPECS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in [
        _spec(
            "noop",
            [Param("wait_ms", "number", 1000, limit=MAX_WAIT_MS)],
            "Do nothing, optionally wait (milliseconds).",
            "noop()",
        ),
        _spec(
            "click",
            [_bid(), Param("button", "button", "left"), Param("modifiers", "modifiers", [])],
            "Click an element.",
            "click('12')",
        ),
        _spec(
            "dblclick",
            [_bid(), Param("button", "button", "left"), Param("modifiers", "modifiers", [])],
            "Double-click an element.",
            "dblclick('12')",
        ),
        _spec(
            "fill",
            [_bid(), Param("value", "text"), Param("enable_autocomplete_menu", "bool", False)],
            "Clear a text field and type a value into it.",
            "fill('7', 'hello')",
        ),
        _spec(
            "select_option",
            [_bid(), Param("options", "options")],
            "Select one option (or a list of options) of a <select> element.",
            "select_option('31', 'Blue')",
        ),
        _spec("hover", [_bid()], "Move the mouse over an element.", "hover('12')"),
        _spec(
            "press",
            [_bid(), Param("key_comb", "text")],
            "Focus an element and press a key combination.",
            "press('7', 'Enter')",
        ),
        _spec("focus", [_bid()], "Focus an element.", "focus('7')"),
        _spec("clear", [_bid()], "Clear a text field.", "clear('7')"),
        _spec(
            "drag_and_drop",
            [_bid("from_bid"), _bid("to_bid")],
            "Drag one element onto another.",
            "drag_and_drop('12', '15')",
        ),
        _spec(
            "scroll",
            _xy("delta_x", "delta_y"),
            "Scroll the page by (delta_x, delta_y) pixels.",
            "scroll(0, 200)",
        ),
        _spec(
            "mouse_click",
            [*_xy("x", "y"), Param("button", "button", "left")],
            "Click at page coordinates.",
            "mouse_click(120, 80)",
        ),
        _spec(
            "mouse_dblclick",
            [*_xy("x", "y"), Param("button", "button", "left")],
            "Double-click at page coordinates.",
            "mouse_dblclick(120, 80)",
        ),
        _spec("mouse_move", _xy("x", "y"), "Move the mouse to page coordinates.", "mouse_move(120, 80)"),
        _spec(
            "mouse_down",
            [*_xy("x", "y"), Param("button", "button", "left")],
            "Press a mouse button at page coordinates.",
            "mouse_down(120, 80)",
        ),
        _spec(
            "mouse_up",
            [*_xy("x", "y"), Param("button", "button", "left")],
            "Release a mouse button at page coordinates.",
            "mouse_up(120, 80)",
        ),
        _spec(
            "mouse_drag_and_drop",
            _xy("from_x", "from_y", "to_x", "to_y"),
            "Drag from one point to another.",
            "mouse_drag_and_drop(10, 10, 90, 40)",
        ),
        _spec(
            "scroll_at",
            [Param("x", "int"), Param("y", "int"), Param("dx", "int"), Param("dy", "int")],
            "Scroll by (dx, dy) with the mouse at (x, y).",
            "scroll_at(50, 100, 0, 200)",
        ),
        _spec("keyboard_press", [Param("key", "text")], "Press a key combination.", "keyboard_press('Enter')"),
        _spec("keyboard_down", [Param("key", "text")], "Hold a key down.", "keyboard_down('Shift')"),
        _spec("keyboard_up", [Param("key", "text")], "Release a key.", "keyboard_up('Shift')"),
        _spec(
            "keyboard_type",
            [Param("text", "text")],
            "Type text into the focused element.",
            "keyboard_type('hello')",
        ),
        _spec(
            "keyboard_insert_text",
            [Param("text", "text")],
            "Insert text into the focused element.",
            "keyboard_insert_text('hello')",
        ),
        _spec(
            "send_msg_to_user",
            [Param("text", "text")],
            "Send a message (for instance an answer) to the user.",
            "send_msg_to_user('42')",
        ),
        _spec(
            "report_infeasible",
            [Param("reason", "text")],
            "Say that the task cannot be done, and why.",
            "report_infeasible('no such form')",
        ),
        _spec("goto", [Param("url", "text")], "Navigate to a URL.", "goto('http://example.com')"),
        _spec("go_back", [], "Go back in the browser history.", "go_back()"),
        _spec("go_forward", [], "Go forward in the browser history.", "go_forward()"),
        _spec("new_tab", [], "Open a new tab.", "new_tab()"),
        _spec("tab_close", [], "Close the current tab.", "tab_close()"),
        _spec("tab_focus", [Param("index", "int", limit=100)], "Switch to the tab at an index.", "tab_focus(0)"),
    ]
}

# BrowserGym's action subsets, by the same names ("bid", "coord", "nav", "tab"; "chat" holds both messages).
ACTION_GROUPS: dict[str, tuple[str, ...]] = {
    "bid": (
        "click",
        "dblclick",
        "fill",
        "select_option",
        "hover",
        "press",
        "focus",
        "clear",
        "drag_and_drop",
        "scroll",
    ),
    "coord": (
        "mouse_click",
        "mouse_dblclick",
        "mouse_move",
        "mouse_down",
        "mouse_up",
        "mouse_drag_and_drop",
        "scroll_at",
        "keyboard_press",
        "keyboard_down",
        "keyboard_up",
        "keyboard_type",
        "keyboard_insert_text",
    ),
    "chat": ("send_msg_to_user", "report_infeasible"),
    "nav": ("goto", "go_back", "go_forward"),
    "tab": ("new_tab", "tab_close", "tab_focus"),
}
# MiniWoB needs element and coordinate actions; navigation would leave the task page and is off by default.
DEFAULT_ACTIONS: tuple[str, ...] = ("noop", *ACTION_GROUPS["bid"], *ACTION_GROUPS["coord"], *ACTION_GROUPS["chat"])


def resolve_actions(actions: Iterable[str] | None = None) -> tuple[str, ...]:
    """Action names from a mix of names and group names (``"bid"``, ``"coord"``, ...); ``noop`` is always in."""
    if actions is None:
        return DEFAULT_ACTIONS
    if isinstance(actions, str):
        actions = [actions]
    names = ["noop"]
    for item in actions:
        if item in ACTION_GROUPS:
            names.extend(ACTION_GROUPS[item])
        elif item in ACTION_SPECS:
            names.append(item)
        else:
            raise ValueError(
                f"unknown action or action group {item!r}: use groups {sorted(ACTION_GROUPS)} "
                f"or actions {sorted(ACTION_SPECS)}."
            )
    return tuple(dict.fromkeys(names))


ACTION_FORMAT = """\
Answer with a short thought, then exactly one action on a line of its own that starts with "Action:".
An action is one function call whose arguments are plain literals (strings in quotes, numbers, True/False,
or a list of strings). Refer to page elements by their bid, the number in square brackets in the page.
Example:
Thought: the search box has bid 12, I type the query into it.
Action: fill('12', 'hello world')"""


def describe_actions(actions: Iterable[str] | None = None) -> str:
    """The allowed actions, one per line with a description and an example, for the system prompt."""
    lines = []
    for name in resolve_actions(actions):
        spec = ACTION_SPECS[name]
        lines.append(f"{spec.signature}: {spec.description} Example: {spec.example}")
    return "\n".join(lines)


# -- the parsed action -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """A validated action. ``str(action)`` is its canonical code: required arguments by position,
    optional ones by keyword, every value written with ``repr``. Only this string goes to BrowserGym."""

    name: str
    arguments: tuple[tuple[str, Literal], ...]

    @property
    def kwargs(self) -> dict[str, Literal]:
        return {name: (list(value) if isinstance(value, list) else value) for name, value in self.arguments}

    def __str__(self) -> str:
        spec = ACTION_SPECS[self.name]
        required = {p.name for p in spec.params if p.required}
        parts = [repr(v) if n in required else f"{n}={v!r}" for n, v in self.arguments]
        return f"{self.name}({', '.join(parts)})"

    def __hash__(self) -> int:  # lists are not hashable; the canonical string identifies the action
        return hash(str(self))


# -- extraction ------------------------------------------------------------------------------------
_MARKER = re.compile(r"^[ \t>*_#-]*action[ \t*_]*:[ \t*_]*(?P<rest>.*)$", re.IGNORECASE | re.MULTILINE)
_FENCE = re.compile(r"```[ \t]*(?:[A-Za-z0-9_+-]*)[ \t]*\n(?P<body>.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"^```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n?")


def _clean(candidate: str) -> str:
    candidate = candidate.strip()
    candidate = _OPEN_FENCE.sub("", candidate)
    candidate = candidate.removesuffix("```").strip()
    if len(candidate) >= 2 and candidate[0] == candidate[-1] == "`":
        candidate = candidate.strip("`").strip()
    return candidate


def extract_action_text(text: str) -> list[str]:
    """Candidate action strings found in a model's output, most likely first (see the module docstring)."""
    candidates: list[str] = []
    markers = list(_MARKER.finditer(text))
    if markers:
        last = markers[-1]
        rest_of_line = _clean(last.group("rest"))
        remainder = _clean(text[last.start("rest") :])
        if rest_of_line:
            candidates.append(rest_of_line)
        if remainder and remainder != rest_of_line:
            candidates.append(remainder)
            first_line = next((line for line in remainder.splitlines() if line.strip()), "")
            if _clean(first_line) not in candidates:
                candidates.append(_clean(first_line))
        return [c for c in candidates if c]
    fences = list(_FENCE.finditer(text))
    if fences:
        candidates.append(_clean(fences[-1].group("body")))
    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        candidates.append(_clean(lines[-1]))
    return [c for c in dict.fromkeys(candidates) if c]


# -- parsing ---------------------------------------------------------------------------------------
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def parse_action(text: str, allowed: Iterable[str] | None = None) -> Action:
    """Parse a model's output into one whitelisted :class:`Action`, or raise :class:`InvalidActionError`.

    Args:
        text: the model's whole output (a thought and an ``Action:`` line), or just the action.
        allowed: action names and/or group names (default :data:`DEFAULT_ACTIONS`).
    """
    if not isinstance(text, str):
        raise InvalidActionError(f"expected text, got {type(text).__name__}.")
    if not text.strip():
        raise InvalidActionError(
            "the output was empty: write a short thought, then one action on a line starting with "
            "'Action:', e.g. Action: click('12')"
        )
    if len(text) > MAX_OUTPUT_CHARS:
        raise InvalidActionError(f"the output is too long ({len(text)} characters): keep it short.")
    names = resolve_actions(allowed) if allowed is not None else DEFAULT_ACTIONS
    candidates = extract_action_text(text)
    if not candidates:
        raise InvalidActionError("no action found: end with one line like Action: click('12')")
    first_error: InvalidActionError | None = None
    for candidate in candidates:
        try:
            return _parse_call(candidate, names)
        except InvalidActionError as error:
            first_error = first_error or error
    assert first_error is not None
    raise first_error


def _parse_call(source: str, allowed: Sequence[str]) -> Action:
    if len(source) > MAX_ACTION_CHARS:
        raise InvalidActionError(f"the action is too long ({len(source)} characters, at most {MAX_ACTION_CHARS}).")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise InvalidActionError(_syntax_message(source, error)) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as error:
        raise InvalidActionError(f"the action could not be parsed ({type(error).__name__}).") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise InvalidActionError(
            f"the action must be a single call such as click('12'), not a {type(call).__name__} expression."
        )
    # Python folds look-alike identifiers to ASCII (NFKC: 'ｃｌｉｃｋ' parses as 'click'): require the
    # name exactly as written to be a plain ASCII whitelisted name.
    written = _NAME.match(source)
    name = call.func.id
    if written is None or written.group(1) != name or not name.isascii():
        shown = unicodedata.normalize("NFKC", name)
        raise InvalidActionError(
            f"the action must start with its name in plain ASCII letters, e.g. click('12') (read {shown!r})."
        )
    if name not in allowed:
        spec_hint = "" if name in ACTION_SPECS else f" Known actions: {', '.join(allowed)}."
        raise InvalidActionError(f"{name!r} is not an allowed action.{spec_hint}")
    spec = ACTION_SPECS[name]
    return Action(name, _bind(spec, call))


def _syntax_message(source: str, error: SyntaxError) -> str:
    message = error.msg or "invalid syntax"
    if "never closed" in message or "unterminated" in message or "EOF" in message or "incomplete" in message:
        return f"the action is incomplete ({message}): was the output cut off? Write it on one line, e.g. click('12')"
    return f"the action is not one valid call ({message}): write exactly one call on one line, e.g. click('12')"


def _bind(spec: ActionSpec, call: ast.Call) -> tuple[tuple[str, Literal], ...]:
    params = spec.params
    if len(call.args) > len(params):
        raise InvalidActionError(f"{spec.name} takes at most {len(params)} arguments: {spec.signature}")
    given: dict[str, Literal] = {}
    for param, node in zip(params, call.args):
        if isinstance(node, ast.Starred):
            raise InvalidActionError("starred arguments are not allowed: write the values out.")
        given[param.name] = _check(spec, param, _literal(node))
    by_name = {p.name: p for p in params}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise InvalidActionError("'**' arguments are not allowed: write the values out.")
        if keyword.arg not in by_name or not keyword.arg.isascii():
            raise InvalidActionError(f"{spec.name} has no argument {keyword.arg!r}: {spec.signature}")
        if keyword.arg in given:
            raise InvalidActionError(f"argument {keyword.arg!r} of {spec.name} is given twice.")
        given[keyword.arg] = _check(spec, by_name[keyword.arg], _literal(keyword.value))
    missing = [p.name for p in params if p.required and p.name not in given]
    if missing:
        raise InvalidActionError(f"{spec.name} needs {', '.join(missing)}: {spec.signature}, e.g. {spec.example}")
    return tuple((p.name, given[p.name]) for p in params if p.name in given)


def _literal(node: ast.expr) -> Any:
    """The value of a literal node: a constant, a signed number, or a list/tuple of constants."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str | bool | int | float):
            return value
        raise InvalidActionError(f"{type(value).__name__} values are not allowed as arguments.")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            return -operand.value if isinstance(node.op, ast.USub) else operand.value
        raise InvalidActionError("only a plain number may carry a sign.")
    if isinstance(node, ast.List | ast.Tuple):
        if len(node.elts) > MAX_LIST_ITEMS:
            raise InvalidActionError(f"lists may hold at most {MAX_LIST_ITEMS} items.")
        items = []
        for element in node.elts:
            if not (isinstance(element, ast.Constant) and isinstance(element.value, str)):
                raise InvalidActionError("lists may hold only strings in quotes.")
            items.append(element.value)
        return items
    kind = "f-string" if isinstance(node, ast.JoinedStr) else type(node).__name__
    raise InvalidActionError(
        f"arguments must be literals (strings in quotes, numbers, True/False, lists of strings), not a {kind}."
    )


def _check(spec: ActionSpec, param: Param, value: Any) -> Literal:
    """Check (and lightly normalise) one argument against its parameter's kind."""
    where = f"{spec.name}: argument {param.name!r}"
    kind = param.kind
    if kind == "bid":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)  # click(12) means click('12')
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_BID_CHARS:
            raise InvalidActionError(f"{where} must be an element bid in quotes, e.g. '12'.")
        if not value.isprintable():
            raise InvalidActionError(f"{where} contains invisible characters.")
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidActionError(f"{where} must be a string in quotes.")
        if len(value) > MAX_TEXT_CHARS:
            raise InvalidActionError(f"{where} is too long ({len(value)} characters, at most {MAX_TEXT_CHARS}).")
        return value
    if kind in ("number", "int"):
        wanted = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise InvalidActionError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}.")
        if not math.isfinite(value) or abs(value) > param.limit or (param.name == "wait_ms" and value < 0):
            raise InvalidActionError(f"{where} is out of range (at most {param.limit:g} in absolute value).")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidActionError(f"{where} must be True or False.")
        return value
    if kind == "button":
        if value not in _BUTTONS:
            raise InvalidActionError(f"{where} must be one of {', '.join(map(repr, _BUTTONS))}.")
        return value
    if kind == "modifiers":
        if not isinstance(value, list) or any(item not in _MODIFIERS for item in value):
            raise InvalidActionError(f"{where} must be a list of keys among {', '.join(map(repr, _MODIFIERS))}.")
        return value
    if kind == "options":
        items = value if isinstance(value, list) else [value]
        if not items or any(not isinstance(item, str) or len(item) > MAX_TEXT_CHARS for item in items):
            raise InvalidActionError(f"{where} must be a string or a list of strings.")
        return value
    raise AssertionError(f"unknown parameter kind {kind!r}")
