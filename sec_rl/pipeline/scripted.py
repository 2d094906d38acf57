"""A scripted MiniWoB++ expert: hand-written solvers that read the prompt text, no model and no browser.

:class:`ScriptedTeacher` answers the same conversations a model teacher gets (the user message rendered by
:func:`sec_rl.web.observation.render_observation`: goal, previous actions, last error, accessibility tree)
with a short thought and one action in :data:`~sec_rl.web.actions.ACTION_FORMAT`. It is a free,
deterministic source of expert traces for the tasks it knows, and a check of the whole pipeline
(environment, prompts, parsing, evaluation) that does not depend on a model being any good.

Everything a solver uses comes from the text: the goal, the AXTree (parsed into :class:`AXNode` lines,
the task name read from the page's URL) and the actions taken so far. Those come from the assistant turns in
the ``"episode"`` layout and from the ``# Previous actions`` section in the ``"per_step"`` layout, which
shows only the last few; solvers therefore read progress from the page wherever the page shows it (field
values, checked boxes, expanded sections) and from the last action otherwise.

:class:`TextWorldTeacher` is the same expert for the built-in text world (:class:`sec_rl.web.env.TextEnvironment`),
whose pages it reads the same way: expert traces, and a whole pipeline, without a browser.

A page it cannot read, a task it does not know, or a page that lacks what its solver needs gets
an honest ``noop()`` reply saying why; the teacher never raises on a conversation.

Left out on purpose, as measured in BrowserGym: search-engine (a result link navigates to ``#`` and BrowserGym
ends the episode with reward 0 on the changed URL, whatever is clicked), sign-agreement (its text area pushes
the buttons past the default 8,000-character page budget of the prompt), and the tasks whose targets have
no bid in the AXTree (click-link, click-tab-2, email-inbox, social-media: the links are spans).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sec_rl.pipeline.teachers import Teacher
from sec_rl.web.actions import InvalidActionError, parse_action
from sec_rl.web.observation import Messages
from sec_rl.web.policies import Reply

__all__ = [
    "SOLVERS",
    "AXNode",
    "AXPage",
    "PageParseError",
    "ScriptedTeacher",
    "Move",
    "TEXT_WORLD_SOLVERS",
    "TaskUnsolvableError",
    "TextWorldTeacher",
    "Turn",
    "read_turn",
    "solve",
]


class PageParseError(ValueError):
    """The conversation holds no readable goal or accessibility tree."""


class TaskUnsolvableError(RuntimeError):
    """The page lacks what the task's solver needs (an element, a value): the reply says so and waits."""


# -- the accessibility tree ------------------------------------------------------------------------
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_LINE = re.compile(
    rf"^(?P<indent>\t*)(?:\[(?P<bid>[^\]\s]+)\] )?(?P<role>[A-Za-z][\w-]*)"
    rf"(?: (?P<name>{_QUOTED}))?(?: value=(?P<value>{_QUOTED}|[^,\s]+))?(?P<attrs>,.*)?$"
)
_ATTR = re.compile(rf",\s*(?P<key>[A-Za-z][\w-]*)(?:=(?P<value>{_QUOTED}|[^,]*))?")
_TASK_URL = re.compile(r"(?:/miniwob/|^text://)(?P<task>[\w-]+)(?:\.html|$)")  # MiniWoB++ pages; the text world's


def _literal(text: str | None) -> Any:
    """A printed value back to Python (BrowserGym writes names and values with ``repr``)."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass(frozen=True)
class AXNode:
    """One line of BrowserGym's flattened AXTree: ``[bid] role 'name' value=..., key=value, flag``."""

    index: int
    depth: int
    bid: str | None
    role: str
    name: str
    value: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def flag(self, key: str) -> bool:
        """A boolean property (``checked='true'``, ``expanded=True``, ``disabled=True``, ``focused``)."""
        value = self.attrs.get(key)
        return value is True or (isinstance(value, str) and value.lower() == "true")


class AXPage:
    """The parsed AXTree: nodes in document order, with tree helpers (parents from indentation)."""

    def __init__(self, nodes: Sequence[AXNode]):
        if not nodes:
            raise PageParseError("the page has no accessibility-tree lines ('[bid] role 'name'').")
        self.nodes = list(nodes)
        self._parents: list[int | None] = []
        stack: list[AXNode] = []
        for node in self.nodes:
            while stack and stack[-1].depth >= node.depth:
                stack.pop()
            self._parents.append(stack[-1].index if stack else None)
            stack.append(node)

    @classmethod
    def parse(cls, text: str) -> AXPage:
        """Parse the AXTree text; lines that are not nodes (a truncation marker, a cut line) are skipped."""
        nodes: list[AXNode] = []
        for line in text.splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            attrs = {
                m.group("key"): (True if m.group("value") is None else _literal(m.group("value").strip()))
                for m in _ATTR.finditer(match.group("attrs") or "")
            }
            value = _literal(match.group("value"))
            nodes.append(
                AXNode(
                    index=len(nodes),
                    depth=len(match.group("indent")),
                    bid=match.group("bid"),
                    role=match.group("role"),
                    name=str(_literal(match.group("name")) or ""),
                    value=None if value is None else str(value),
                    attrs=attrs,
                )
            )
        return cls(nodes)

    @property
    def task(self) -> str | None:
        """The task name, from the root's URL (``.../miniwob/<task>.html``, or ``text://<task>`` in the text world)."""
        for node in self.nodes[:3]:
            match = _TASK_URL.search(str(node.attrs.get("url", "")))
            if match:
                return match.group("task")
        return None

    def parent(self, node: AXNode) -> AXNode | None:
        index = self._parents[node.index]
        return None if index is None else self.nodes[index]

    def descendants(self, node: AXNode) -> list[AXNode]:
        out = []
        for other in self.nodes[node.index + 1 :]:
            if other.depth <= node.depth:
                break
            out.append(other)
        return out

    def find(
        self, role: str | tuple[str, ...] | None = None, name: str | None = None, *, within: AXNode | None = None
    ) -> list[AXNode]:
        """Nodes with a bid, by role(s) and exact name (case-insensitive), optionally under ``within``."""
        roles = (role,) if isinstance(role, str) else role
        pool = self.nodes if within is None else self.descendants(within)
        return [
            n
            for n in pool
            if n.bid is not None
            and (roles is None or n.role in roles)
            and (name is None or n.name.casefold() == name.casefold())
        ]

    def one(self, role: str | tuple[str, ...], name: str | None = None, *, within: AXNode | None = None) -> AXNode:
        """The first matching node, or :class:`TaskUnsolvableError` naming what is missing."""
        found = self.find(role, name, within=within)
        if not found:
            what = f"{role} {name!r}" if name is not None else f"{role}"
            raise TaskUnsolvableError(f"the page has no {what}")
        return found[0]

    def texts(self, start: int = 0, stop: int | None = None) -> list[AXNode]:
        """StaticText nodes between two node indices."""
        return [n for n in self.nodes[start:stop] if n.role == "StaticText" and n.name.strip()]

    def next_with_bid(self, node: AXNode, role: str | tuple[str, ...]) -> AXNode:
        """The first node of ``role`` after ``node`` in document order (a field after its label)."""
        roles = (role,) if isinstance(role, str) else role
        for other in self.nodes[node.index + 1 :]:
            if other.bid is not None and other.role in roles:
                return other
        raise TaskUnsolvableError(f"no {'/'.join(roles)} follows {node.role} {node.name!r}")


# -- one turn, as read from the conversation ------------------------------------------------------
_SECTION = re.compile(
    r"^# (?P<title>Goal|Previous actions[^\n]*|Error from your last action|Current page[^\n]*)$", re.M
)
_NUMBERED = re.compile(r"^\s*\d+\.\s+(?P<action>.+?)\s*$")


@dataclass(frozen=True)
class Turn:
    """What a solver sees: the goal, the parsed page, the actions so far (canonical strings) and the last error."""

    goal: str
    page: AXPage
    history: tuple[str, ...] = ()
    error: str = ""

    @property
    def last_action(self) -> str:
        return self.history[-1] if self.history else ""


def _canonical(text: str) -> str:
    try:
        return str(parse_action(text))
    except InvalidActionError:
        return "(invalid action)"


def read_turn(messages: Messages) -> Turn:
    """Parse the last user message (and, in the episode layout, the earlier assistant turns) into a :class:`Turn`.

    Raises:
        PageParseError: no user message, no ``# Goal`` / ``# Current page`` section, or an HTML page.
    """
    if not isinstance(messages, Sequence) or not all(isinstance(m, dict) for m in messages):
        raise PageParseError("a conversation must be a list of {'role', 'content'} messages.")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise PageParseError("the conversation has no user message holding the observation.")
    text = str(users[-1].get("content", ""))
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[match.group("title")] = text[match.end() : end].strip("\n")
    goal = sections.get("Goal", "").strip()
    page_title = next((t for t in sections if t.startswith("Current page")), None)
    if not goal or page_title is None:
        raise PageParseError(
            "the user message needs a '# Goal' and a '# Current page' section, as render_observation writes them."
        )
    if "HTML" in page_title:
        raise PageParseError(
            "the scripted teacher reads the accessibility tree: render with PromptConfig(view='axtree')."
        )
    page = AXPage.parse(sections[page_title])
    assistants = [m for m in messages if m.get("role") == "assistant"]
    if assistants:  # episode layout: every earlier reply is in the conversation
        history = tuple(_canonical(str(m.get("content", ""))) for m in assistants)
    else:  # per-step layout: the last few actions, as listed in the prompt
        listed = next((body for title, body in sections.items() if title.startswith("Previous actions")), "")
        history = tuple(m.group("action") for line in listed.splitlines() if (m := _NUMBERED.match(line)))
    return Turn(goal, page, history, sections.get("Error from your last action", "").strip())


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    """A solver's answer: why, and the action (canonical code, as :func:`parse_action` prints it)."""

    thought: str
    action: str

    @property
    def text(self) -> str:
        return f"Thought: {self.thought}\nAction: {self.action}"


def _click(node: AXNode, why: str) -> Move:
    return Move(why, f"click({node.bid!r})")


def _fill(node: AXNode, value: str, why: str) -> Move:
    return Move(why, f"fill({node.bid!r}, {value!r})")


def _select(node: AXNode, options: str | list[str], why: str) -> Move:
    return Move(why, f"select_option({node.bid!r}, {options!r})")


T = TypeVar("T")
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}


def _ordinal(goal: str, noun: str) -> int:
    """The position in "the 3rd <noun>" (1-based; -1 for "last")."""
    match = re.search(rf"\b(\d+)(?:st|nd|rd|th)\s+{noun}", goal) or re.search(
        rf"\b({'|'.join(_ORDINALS)})\s+{noun}", goal, re.I
    )
    if match is None:
        raise TaskUnsolvableError(f"the goal names no position of a {noun}")
    word = match.group(1)
    return int(word) if word.isdigit() else _ORDINALS[word.lower()]


def _nth(items: Sequence[T], position: int, what: str) -> T:
    """The item at a 1-based position (negative: from the end)."""
    if position == 0 or abs(position) > len(items):
        raise TaskUnsolvableError(f"the page has {len(items)} {what}, not a number {position}")
    return items[position - 1] if position > 0 else items[position]


def _quoted(goal: str) -> list[str]:
    return re.findall(r'"([^"]*)"', goal)


def _submit(page: AXPage, name: str = "Submit") -> Move:
    return _click(page.one("button", name), f"everything is filled in: I press {name}.")


def _fill_then_submit(page: AXPage, fields: Sequence[tuple[AXNode, str, str]], button: str = "Submit") -> Move:
    """Fill each (field, value, label) whose shown value differs, then press ``button``."""
    for node, value, label in fields:
        if not _shows(node, value):
            return _fill(node, value, f"the {label} field has bid {node.bid}: I type {value!r} into it.")
    return _submit(page, button)


def _shows(node: AXNode, value: str) -> bool:
    """Whether a field shows ``value`` (a password field shows one bullet per character)."""
    shown = node.value or ""
    if shown == value or str(node.attrs.get("valuetext", "")) == value:  # a spinbutton shows its text apart
        return True
    return bool(value) and shown == "\u2022" * len(value)


def _plan_next(turn: Turn, plan: Sequence[Move]) -> Move:
    """The step after the last action taken, for pages that do not show their progress (a fixed plan)."""
    actions = [step.action for step in plan]
    if turn.last_action in actions:
        position = len(actions) - 1 - actions[::-1].index(turn.last_action)
        return plan[min(position + 1, len(plan) - 1)]
    return plan[0]


# -- solvers ---------------------------------------------------------------------------------------
Solver = Callable[[Turn], Move]
SOLVERS: dict[str, Solver] = {}


def _solver(*tasks: str) -> Callable[[Solver], Solver]:
    def register(function: Solver) -> Solver:
        for task in tasks:
            SOLVERS[task] = function
        return function

    return register


@_solver("click-test")
def _click_test(turn: Turn) -> Move:
    return _click(turn.page.one("button"), "there is one button: I click it.")


@_solver("click-test-2", "click-test-transfer")
def _click_named_button(turn: Turn) -> Move:
    match = re.search(r"Click button (\S+?)\.?$", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no button")
    button = turn.page.one("button", match.group(1))
    return _click(button, f"button {button.name} has bid {button.bid}.")


def _click_quoted_button(turn: Turn) -> Move:  # the text world's click-button (TEXT_WORLD_SOLVERS)
    labels = _quoted(turn.goal)
    if not labels:
        raise TaskUnsolvableError("the goal quotes no button label")
    button = turn.page.one("button", labels[0])
    return _click(button, f"the {button.name!r} button has bid {button.bid}.")


@_solver("click-dialog", "click-dialog-2")
def _click_dialog(turn: Turn) -> Move:
    labels = _quoted(turn.goal)
    label = labels[0] if labels else "x"
    name = "Close" if label.lower() == "x" else label  # the "x" of a jQuery UI dialog is the button 'Close'
    dialog = turn.page.one("dialog")
    button = turn.page.one("button", name, within=dialog)
    return _click(button, f"the dialog's {label!r} button is {button.role} {button.name!r}, bid {button.bid}.")


@_solver("click-button-sequence")
def _click_button_sequence(turn: Turn) -> Move:
    one, two = turn.page.one("button", "ONE"), turn.page.one("button", "TWO")
    plan = [_click(one, f"first button ONE (bid {one.bid})."), _click(two, f"ONE is done: now TWO (bid {two.bid}).")]
    return _plan_next(turn, plan)


@_solver("focus-text-2")
def _focus_text(turn: Turn) -> Move:
    box = _nth(turn.page.find("textbox"), _ordinal(turn.goal, r"input"), "textboxes")
    return _click(box, f"the textbox at that position has bid {box.bid}: clicking it gives it the focus.")


@_solver("enter-text", "enter-text-dynamic")
def _enter_text(turn: Turn) -> Move:
    text = _quoted(turn.goal)
    if not text:
        raise TaskUnsolvableError("the goal quotes no text to enter")
    return _fill_then_submit(turn.page, [(turn.page.one("textbox"), text[0], "text")])


@_solver("click-tab")
def _click_tab(turn: Turn) -> Move:
    match = re.search(r"Tab #\d+", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no tab")
    tab = turn.page.one("tab", match.group(0))
    link = turn.page.find("link", match.group(0), within=tab)
    return _click(link[0] if link else tab, f"{match.group(0)} is bid {(link[0] if link else tab).bid}.")


@_solver("choose-list")
def _choose_list(turn: Turn) -> Move:
    match = re.search(r"Select (.+) from the list", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no list item")
    item, box = match.group(1), turn.page.one("combobox")
    if (box.value or "") != item:
        return _select(box, item, f"the list is the combobox {box.bid}: I select {item!r}.")
    return _submit(turn.page)


def _labelled_field(page: AXPage, label: str, role: str | tuple[str, ...] = "textbox") -> AXNode:
    """The field after the text ``label`` (a LabelText's StaticText, a row header, a paragraph's text)."""
    for node in page.nodes:
        if node.name.strip().rstrip(":").casefold() == label.casefold() and node.role != "textbox":
            return page.next_with_bid(node, role)
    named = page.find(role, label)
    if named:
        return named[0]
    raise TaskUnsolvableError(f"no field labelled {label!r}")


@_solver("login-user", "login-user-popup")
def _login_user(turn: Turn) -> Move:
    page = turn.page
    if any("Exit to home page" in n.name for n in page.nodes):  # login-user-popup's interruption
        return _click(page.find("button", "Cancel")[-1], "a popup asks to leave the page: I cancel it.")
    match = re.search(r'username "(.*?)" and the password "(.*?)"', turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no username and password")
    user, password = match.groups()
    button = next((n.name for n in page.find("button") if n.name.casefold() in ("login", "ok")), "Login")
    fields = [
        (_labelled_field(page, "Username"), user, "username"),
        (_labelled_field(page, "Password"), password, "password"),
    ]
    return _fill_then_submit(page, fields, button)


@_solver("click-checkboxes-transfer")
def _click_checkboxes(turn: Turn) -> Move:
    match = re.search(r"^Select (.*) and click Submit", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no words to select")
    listed = match.group(1)
    wanted = set() if listed == "nothing" else {w for w in re.split(r",\s*|\s+and\s+|\s+", listed) if w}
    boxes = turn.page.find("checkbox")
    missing = wanted - {b.name for b in boxes}
    if missing:
        raise TaskUnsolvableError(f"no checkbox for {sorted(missing)}")
    for box in boxes:
        if box.flag("checked") != (box.name in wanted):
            verb = "check" if box.name in wanted else "uncheck"
            return _click(box, f"I {verb} {box.name!r} (bid {box.bid}).")
    return _submit(turn.page)


@_solver("copy-paste", "copy-paste-2")
def _copy_paste(turn: Turn) -> Move:
    boxes = turn.page.find("textbox")
    if len(boxes) < 2:
        raise TaskUnsolvableError("the page needs a text area and a text input")
    # the layout varies (the input before or after the text areas): the input is the one empty box,
    # and once filled, the box the last fill went to
    empty = [b for b in boxes if not b.value]
    filled = [m.group(1) for a in turn.history if (m := re.match(r"fill\('([^']*)'", a))]
    by_bid = {b.bid: b for b in boxes}
    if len(empty) == 1:
        target = empty[0]
    elif filled and filled[-1] in by_bid:
        target = by_bid[filled[-1]]
    else:
        raise TaskUnsolvableError("cannot tell the text input from the text areas (no single empty box)")
    areas = [b for b in boxes if b is not target]
    try:
        source = _nth(areas, _ordinal(turn.goal, "text area"), "text areas")
    except TaskUnsolvableError:
        source = areas[0]
    return _fill_then_submit(turn.page, [(target, source.value or "", "input")])


def _alnum(word: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]", "", word)


@_solver("find-word")
def _find_word(turn: Turn) -> Move:
    paragraph = turn.page.one("paragraph")
    words = " ".join(n.name for n in turn.page.texts(paragraph.index, None) if n.depth > paragraph.depth).split()
    word = _alnum(_nth(words, _ordinal(turn.goal, "word"), "words"))
    return _fill_then_submit(turn.page, [(turn.page.find("textbox")[-1], word, "answer")])


@_solver("scroll-text")
def _scroll_text(turn: Turn) -> Move:
    boxes = turn.page.find("textbox")
    if len(boxes) < 2 or not (boxes[0].value or "").split():
        raise TaskUnsolvableError("the page shows no text area with text")
    word = _alnum((boxes[0].value or "").split()[-1])
    return _fill_then_submit(turn.page, [(boxes[-1], word, "answer")])


@_solver("simple-algebra")
def _simple_algebra(turn: Turn) -> Move:
    equation = next((n.name for n in turn.page.texts() if "=" in n.name and re.search(r"\d", n.name)), "")
    match = re.fullmatch(r"\s*(x|-?\d+)\s*([+-])\s*(x|-?\d+)\s*=\s*(-?\d+)\s*", equation)
    if match is None or (match.group(1) == "x") == (match.group(3) == "x"):
        raise TaskUnsolvableError(f"no equation 'a +/- b = c' with one x on the page ({equation!r})")
    left, op, right, total = match.group(1), match.group(2), match.group(3), int(match.group(4))
    if left == "x":  # x + d = m, x - d = m
        x = total - int(right) if op == "+" else total + int(right)
    else:  # d + x = m, d - x = m
        x = total - int(left) if op == "+" else int(left) - total
    return _fill_then_submit(turn.page, [(turn.page.one("textbox"), str(x), f"answer ({equation}: x = {x})")])


@_solver("odd-or-even")
def _odd_or_even(turn: Turn) -> Move:
    nodes, plan = turn.page.nodes, []
    for i, node in enumerate(nodes):
        if node.role == "StaticText" and re.fullmatch(r"-?\d+", node.name.strip()):
            number = int(node.name)
            label = "Odd" if number % 2 else "Even"
            side = reversed(nodes[:i]) if label == "Odd" else iter(nodes[i + 1 :])
            button = next((n for n in side if n.role == "button" and n.name == label), None)
            if button is None:
                raise TaskUnsolvableError(f"no {label} button next to {number}")
            plan.append(_click(button, f"{number} is {label.lower()}: I click its {label} button (bid {button.bid})."))
    if not plan:
        raise TaskUnsolvableError("the page shows no numbers")
    return _plan_next(turn, [*plan, _submit(turn.page)])


@_solver("read-table")
def _read_table(turn: Turn) -> Move:
    match = re.search(r"value of (.+?) into", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no table row")
    value = _table_value(turn.page, match.group(1))
    return _fill_then_submit(turn.page, [(turn.page.find("textbox")[-1], value, match.group(1))])


def _table_value(page: AXPage, label: str) -> str:
    for cell in page.find("cell", label):
        row = page.parent(cell)
        cells = page.find("cell", within=row) if row is not None else []
        if len(cells) >= 2 and cells[0] is cell:
            return cells[1].name
    raise TaskUnsolvableError(f"the table has no row {label!r}")


@_solver("read-table-2")
def _read_table_2(turn: Turn) -> Move:
    page, fields = turn.page, []
    for node in page.nodes:
        if node.role == "StaticText" and node.name.strip().endswith(":") and page.parent(node) is not None:
            parent = page.parent(node)
            if parent is not None and parent.role == "LabelText":
                label = node.name.strip().rstrip(":")
                fields.append((page.next_with_bid(node, "textbox"), _table_value(page, label), label))
    if not fields:
        raise TaskUnsolvableError("the form has no labelled fields")
    return _fill_then_submit(page, fields)


@_solver("form-sequence-2")
def _form_sequence_2(turn: Turn) -> Move:
    number = _quoted(turn.goal)
    if not number:
        raise TaskUnsolvableError("the goal quotes no number")
    radio = _nth(turn.page.find("radio"), _ordinal(turn.goal, "radio"), "radio buttons")
    if not radio.flag("checked"):
        return _click(radio, f"the radio button at that position has bid {radio.bid}.")
    box = _nth(turn.page.find("textbox"), _ordinal(turn.goal, "textbox"), "textboxes")
    return _fill_then_submit(turn.page, [(box, number[0], "requested")])


@_solver("enter-date")
def _enter_date(turn: Turn) -> Move:
    match = re.search(r"(\d{2})/(\d{2})/(\d{4})", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal holds no date mm/dd/yyyy")
    month, day, year = match.groups()
    field_ = turn.page.one("Date")  # a date input takes ISO dates when filled
    return _fill_then_submit(turn.page, [(field_, f"{year}-{month}-{day}", "date")])


@_solver("enter-time")
def _enter_time(turn: Turn) -> Move:
    match = re.search(r"(\d{1,2}):(\d{2})\s*([AP]M)", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal holds no time h:mm AM/PM")
    hour, minute, half = int(match.group(1)) % 12, match.group(2), match.group(3)
    hour += 12 if half == "PM" else 0
    field_ = turn.page.one("InputTime")  # a time input takes 24-hour HH:MM when filled
    return _fill_then_submit(turn.page, [(field_, f"{hour:02d}:{minute}", "time")])


@_solver("click-collapsible-nodelay")
def _click_collapsible(turn: Turn) -> Move:
    section = next((t for t in turn.page.find("tab") if t.name.startswith("Section")), None)
    if section is not None and not section.flag("expanded"):
        return _click(section, f"the section header {section.name!r} (bid {section.bid}) is collapsed: I expand it.")
    return _click(turn.page.one("button", "Submit"), "the section is open: I click Submit.")


@_solver("use-spinner")
def _use_spinner(turn: Turn) -> Move:
    match = re.search(r"Select (-?\d+) with the spinner", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no value for the spinner")
    return _fill_then_submit(turn.page, [(turn.page.one("spinbutton"), match.group(1), "spinner")])


@_solver("text-transform")
def _text_transform(turn: Turn) -> Move:
    box = turn.page.one("textbox")
    text = "".join(n.name.strip() for n in turn.page.texts(1, box.index) if n.depth <= box.depth)
    if not text:
        raise TaskUnsolvableError("no characters shown above the text field")
    return _fill_then_submit(turn.page, [(box, text, "text")])


@_solver("click-scroll-list")
def _click_scroll_list(turn: Turn) -> Move:
    match = re.search(r"Select (.+) from the scroll list", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no items")
    wanted = [w.strip() for w in match.group(1).split(",") if w.strip()]
    box = turn.page.one("listbox")
    chosen = {o.name for o in turn.page.find("option", within=box) if o.flag("selected")}
    if chosen != set(wanted):
        return _select(box, wanted, f"the list is bid {box.bid}: I select {', '.join(wanted)}.")
    return _submit(turn.page)


def _meets(goal: str, number: int) -> bool:
    """Whether ``number`` meets generate-number's condition (less than / greater than / odd / even)."""
    if m := re.search(r"less than (-?\d+)", goal):
        return number < int(m.group(1))
    if m := re.search(r"greater than (-?\d+)", goal):
        return number > int(m.group(1))
    if "odd number" in goal or "even number" in goal:
        return number % 2 == (1 if "odd number" in goal else 0)
    raise TaskUnsolvableError("the goal states no condition on the number")


@_solver("generate-number")
def _generate_number(turn: Turn) -> Move:
    generate = turn.page.one("button", "Generate")
    shown = [n.name.strip() for n in turn.page.texts(1, generate.index)]
    number = int(shown[-1]) if shown and re.fullmatch(r"-?\d+", shown[-1]) else None
    _meets(turn.goal, 0)  # fails early on a goal without a condition
    if number is not None and _meets(turn.goal, number):
        return _click(turn.page.one("button", "Submit"), f"{number} meets the condition: I submit.")
    why = "no number yet" if number is None else f"{number} does not meet the condition"
    return _click(generate, f"{why}: I generate another.")


@_solver("phone-book")
def _phone_book(turn: Turn) -> Move:
    match = re.search(r"Find (.+?) in the contact book and click on their (phone|email|address)", turn.goal)
    if match is None:
        raise TaskUnsolvableError("the goal names no contact and property")
    person, prop = match.groups()
    page = turn.page
    if page.find("heading", person):
        label = {"phone": "Phone:", "email": "Email:", "address": "Address:"}[prop]
        text = next((n for n in page.nodes if n.role == "StaticText" and n.name.strip() == label), None)
        if text is None:
            raise TaskUnsolvableError(f"the contact card shows no {label}")
        link = page.next_with_bid(text, "link")
        return _click(link, f"this is {person}'s card: their {prop} is the link {link.bid}.")
    return _click(page.one("link", ">"), f"{person} is not on this page: I go to the next one.")


# -- the teacher -----------------------------------------------------------------------------------
def solve(messages: Messages, solvers: dict[str, Solver] | None = None) -> Move:
    """The next step for one conversation; a ``noop()`` step with the reason when there is none."""
    solvers = SOLVERS if solvers is None else solvers
    try:
        turn = read_turn(messages)
    except PageParseError as error:
        return Move(f"I cannot read this page ({error}), so I wait.", "noop()")
    task = turn.page.task
    solver = solvers.get(task or "")
    if solver is None:
        known = "an unknown task" if task is None else f"task {task!r}"
        return Move(f"I have no script for {known}, so I wait.", "noop()")
    try:
        step = solver(turn)
    except (TaskUnsolvableError, PageParseError) as error:
        return Move(f"I cannot solve {task}: {error}. I wait.", "noop()")
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as error:  # a page unlike any seen
        return Move(f"my script for {task} failed on this page ({type(error).__name__}: {error}). I wait.", "noop()")
    try:
        action = parse_action(step.action)
    except InvalidActionError as error:
        return Move(f"my script for {task} produced an invalid action ({error}). I wait.", "noop()")
    return Move(step.thought, str(action))


class ScriptedTeacher(Teacher):
    """A deterministic MiniWoB++ expert for the training tasks in :attr:`tasks` (see the module docstring).

    Args:
        tasks: restrict the teacher to these tasks (others get ``noop()``); default: every task it knows.
    """

    name = "scripted-expert"
    num_parameters = 0
    solvers: Mapping[str, Solver] = SOLVERS  # task -> solver: what a subclass for another environment replaces
    tasks: tuple[str, ...] = tuple(sorted(SOLVERS))

    def __init__(self, tasks: Sequence[str] | None = None):
        if isinstance(tasks, str):
            tasks = [tasks]
        if tasks is not None:
            unknown = sorted(set(tasks) - set(self.solvers))
            if unknown:
                raise ValueError(
                    f"the scripted teacher has no solver for {unknown}: choose among {sorted(self.solvers)}."
                )
            self.tasks = tuple(sorted(set(tasks)))
        self._solvers = {task: self.solvers[task] for task in self.tasks}

    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        return [Reply(solve(messages, self._solvers).text, 0, 0) for messages in conversations]


TEXT_WORLD_SOLVERS: dict[str, Solver] = {
    "click-button": _click_quoted_button,
    "enter-text": _enter_text,
    "click-checkboxes": _click_checkboxes,
}


class TextWorldTeacher(ScriptedTeacher):
    """The scripted expert of the text world (:class:`sec_rl.web.env.TextEnvironment`): traces without a browser.

    Its tasks share their names with MiniWoB++ tasks that the study holds out, so they have a table of their own:
    :class:`ScriptedTeacher` still knows only MiniWoB++ training tasks.
    """

    name = "scripted-text-world"
    solvers = TEXT_WORLD_SOLVERS
    tasks = tuple(sorted(TEXT_WORLD_SOLVERS))
