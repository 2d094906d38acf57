"""The action parser: every valid action kind, the output-format variants, and a hostile corpus.

The corpus (more than 10,000 strings generated from a seeded RNG) mixes payloads that would create a
sentinel file or set a global if they ever ran, with the ways a model's output could smuggle them
in. Every string goes through ``parse_action``; whatever is accepted is then *executed* -- its
canonical form, as BrowserGym would -- against fake action functions, and the sentinel must not
exist afterwards.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import random
import time

import pytest

from sec_rl.web import InvalidActionError, parse_action
from sec_rl.web.actions import (
    ACTION_GROUPS,
    ACTION_SPECS,
    DEFAULT_ACTIONS,
    MAX_ACTION_CHARS,
    Action,
    describe_actions,
    resolve_actions,
)

ALL = tuple(ACTION_SPECS)


# -- valid actions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACTION_SPECS))
def test_every_action_example_parses_and_round_trips(name):
    spec = ACTION_SPECS[name]
    action = parse_action(f"Thought: this is the step.\nAction: {spec.example}", allowed=ALL)
    assert action.name == name
    assert parse_action(str(action), allowed=ALL) == action  # the canonical form is a fixed point


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("click('12')", "click('12')"),
        ("click(12)", "click('12')"),  # an int bid is accepted and quoted
        (
            'click("a51", button="right", modifiers=["Shift", "Alt"])',
            "click('a51', button='right', modifiers=['Shift', 'Alt'])",
        ),
        ("dblclick('3', 'middle')", "dblclick('3', button='middle')"),
        ("fill('7', \"it's\")", "fill('7', \"it's\")"),
        ("fill('7', 'a' 'b')", "fill('7', 'ab')"),  # implicit concatenation is still a literal
        ("fill(bid='7', value='x', enable_autocomplete_menu=True)", "fill('7', 'x', enable_autocomplete_menu=True)"),
        ("fill('7', 'line1\\nline2')", "fill('7', 'line1\\nline2')"),
        ("select_option('31', ['Blue', 'Red'])", "select_option('31', ['Blue', 'Red'])"),
        ("select_option('31', ('Blue',))", "select_option('31', ['Blue'])"),
        ("press('88', 'ControlOrMeta+a')", "press('88', 'ControlOrMeta+a')"),
        ("scroll(0, -200.5)", "scroll(0, -200.5)"),
        ("scroll(+3, 1e3)", "scroll(3, 1000.0)"),
        ("noop()", "noop()"),
        ("noop(500)", "noop(wait_ms=500)"),
        ("mouse_click(10.5, 20, button='right')", "mouse_click(10.5, 20, button='right')"),
        ("mouse_drag_and_drop(1, 2, 3, 4)", "mouse_drag_and_drop(1, 2, 3, 4)"),
        ("keyboard_type('héllo wörld ✓')", "keyboard_type('héllo wörld ✓')"),
        ("send_msg_to_user('The answer is 42.')", "send_msg_to_user('The answer is 42.')"),
        ("drag_and_drop('12', '15')", "drag_and_drop('12', '15')"),
        ("click('1')  # the submit button", "click('1')"),
    ],
)
def test_valid_actions_serialise_canonically(text, expected):
    assert str(parse_action(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Thought: the button has bid 12.\nAction: click('12')",
        "thought: x\naction: click('12')",
        "**Action:** click('12')",
        "Action: `click('12')`",
        "Action:\n```python\nclick('12')\n```",
        "Thought: I click.\n```\nclick('12')\n```",
        "I will click the button.\nclick('12')",
        "Action: click('12')\nThis should submit the form.",
        "Action: noop()\nThought: on second thought...\nAction: click('12')",  # the last Action line counts
        "  Action:   click('12')   ",
        "> Action: click('12')",
    ],
)
def test_output_format_variants(text):
    assert str(parse_action(text)) == "click('12')"


def test_action_is_hashable_and_exposes_kwargs():
    action = parse_action("click('1', modifiers=['Shift'])")
    assert isinstance(action, Action)
    assert action.kwargs == {"bid": "1", "modifiers": ["Shift"]}
    assert hash(action) == hash(parse_action("click('1', modifiers=['Shift'])"))


def test_groups_and_default_set():
    assert resolve_actions(["bid"])[0] == "noop"
    assert set(ACTION_GROUPS["bid"]) <= set(DEFAULT_ACTIONS)
    assert "goto" not in DEFAULT_ACTIONS and "upload_file" not in ACTION_SPECS
    with pytest.raises(ValueError, match="unknown action or action group"):
        resolve_actions(["teleport"])
    with pytest.raises(InvalidActionError, match="not an allowed action"):
        parse_action("goto('file:///etc/passwd')")
    assert parse_action("goto('http://x')", allowed=["nav"]).name == "goto"
    assert "click(bid, button='left', modifiers=[])" in describe_actions()


# -- helpful errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "output was empty"),
        ("   \n ", "output was empty"),
        ("Action: click('12", "incomplete"),
        ("Action: fill('3', 'hello wor", "cut off"),
        ("Action: click(", "incomplete"),
        ("Action: teleport('1')", "not an allowed action"),
        ("Action: click()", "click needs bid"),
        ("Action: click('1', '2', '3', '4')", "at most 3 arguments"),
        ("Action: click('1', colour='red')", "has no argument 'colour'"),
        ("Action: click('1', bid='2')", "given twice"),
        ("Action: click('1', button='up')", "must be one of"),
        ("Action: fill('1', 5)", "must be a string"),
        ("Action: scroll('a', 0)", "must be a number"),
        ("Action: scroll(True, 0)", "must be a number"),
        ("Action: scroll(1e9, 0)", "out of range"),
        ("Action: noop(1e999)", "out of range"),
        ("Action: noop(-5)", "out of range"),
        ("Action: scroll_at(1.5, 2, 3, 4)", "must be an integer"),
        ("Action: click('')", "element bid"),
        ("Action: click(None)", "NoneType values are not allowed"),
        ("Action: click(b'1')", "bytes values are not allowed"),
        ("Action: fill('1', 'x' * 3)", "not a BinOp"),
        ("Action: click('1') click('2')", "not one valid call"),
        ("Action: " + "x" * (MAX_ACTION_CHARS + 5), "too long"),
        ("x" * 200_000, "too long"),
    ],
)
def test_errors_say_what_is_wrong(text, message):
    with pytest.raises(InvalidActionError, match=message):
        parse_action(text)


def test_rejects_non_text():
    with pytest.raises(InvalidActionError, match="expected text"):
        parse_action(None)  # type: ignore[arg-type]


# -- agreement with BrowserGym ---------------------------------------------------------------------
def test_schemas_match_browsergym_signatures():
    functions = pytest.importorskip("browsergym.core.action.functions", reason="browsergym-core not installed")
    for name, spec in ACTION_SPECS.items():
        signature = inspect.signature(getattr(functions, name))
        assert [p.name for p in spec.params] == list(signature.parameters), name
        for param in spec.params:
            default = signature.parameters[param.name].default
            assert (param.default if not param.required else inspect.Parameter.empty) == default, (name, param.name)


TRICKY_VALUES = [
    "plain",
    "it's",
    'say "hi"',
    "both ' and \"",
    "back\\slash",
    "new\nline\ttab",
    "ünïcödé ✓ 漢字",
    "zero\u200bwidth",
    "'); __import__('os').system('x'); ('",
    "\\x41\\u0042",
    "",
]


def test_browsergym_parser_reads_canonical_actions_identically():
    parsers = pytest.importorskip("browsergym.core.action.parsers", reason="browsergym-core not installed")
    highlevel = pytest.importorskip("browsergym.core.action.highlevel")
    action_set = highlevel.HighLevelActionSet(
        subsets=["chat", "infeas", "bid", "coord", "nav", "tab"], strict=True, multiaction=False
    )
    actions = [parse_action(ACTION_SPECS[name].example, allowed=ALL) for name in ACTION_SPECS]
    actions += [parse_action(f"fill('1', {value!r})") for value in TRICKY_VALUES]
    actions += [parse_action(f"select_option('1', {[value, 'x']!r})") for value in TRICKY_VALUES]
    actions += [parse_action("scroll(-0.5, 1e-05)"), parse_action("click('1', button='right', modifiers=[])")]
    for action in actions:
        code = str(action)
        ((name, args),) = parsers.highlevel_action_parser.parse_string(code, parse_all=True).as_list()
        assert name == action.name
        values = [a.value if isinstance(a, parsers.NamedArgument) else a for a in args]
        assert values == [value for _, value in action.arguments], code
        assert action_set.to_python_code(code).endswith(code + "\n")


# -- the hostile corpus ----------------------------------------------------------------------------
def _payloads(sentinel: str) -> list[str]:
    s = repr(sentinel)
    return [
        f"open({s}, 'w')",
        f"__import__('pathlib').Path({s}).touch()",
        f"__import__('os').system('touch ' + {s})",
        f"exec(\"open({s}, 'w')\")",
        f"eval(\"__import__('pathlib').Path({s}).touch()\")",
        f"getattr(__builtins__, 'open')({s}, 'w')",
        f"__builtins__.__dict__['open']({s}, 'w')",
        f"__import__('builtins').open({s}, 'w')",
        f"(lambda: open({s}, 'w'))()",
        f"(lambda f=open: f({s}, 'w'))()",
        f"[open({s}, 'w') for _ in [0]]",
        f"{{open({s}, 'w') for _ in 'a'}}",
        f"(x := open({s}, 'w'))",
        "globals().__setitem__('PWNED', 1)",
        "setattr(__import__('builtins'), 'PWNED', 1)",
        f"().__class__.__base__.__subclasses__()[0]({s})",
        f"compile(\"open({s}, 'w')\", 'x', 'exec')",
        f"breakpoint() or open({s}, 'w')",
        f"page.evaluate('1') or open({s}, 'w')",
        f"send_message_to_user(open({s}, 'w'))",
    ]


TEMPLATES = [
    "{p}",
    "click({p})",
    "click('1', {p})",
    "fill('1', {p})",
    "click(bid={p})",
    "click('1', button={p})",
    "click('1', modifiers=[{p}])",
    "select_option('1', [{p}])",
    "noop(-{p})",
    "click('1'); {p}",
    "click('1');{p}",
    "{p}; click('1')",
    "click('1')\n{p}",
    "click('1') \\\n; {p}",
    "click('1') or {p}",
    "click('1') and {p}",
    "click('1') if {p} else None",
    "[click('1'), {p}]",
    "(click('1'), {p})",
    "click('1')[{p}]",
    "click('1').__class__.__init__.__globals__",
    "click(*[{p}])",
    "click(**{{'bid': {p}}})",
    "fill('1', f'{{{p}}}')",
    "fill('1', F\"{{{p}!r}}\")",
    "fill('1', 'a' + {p})",
    "fill('1', '%s' % {p})",
    "fill('1', '{{}}'.format({p}))",
    "click(({p}, '1')[1])",
    "click(str({p}))",
    "click('1' if {p} else '2')",
    "lambda: {p}",
    "click(lambda: {p})",
    "click((yield {p}))",
    "click(await {p})",
    "import os; {p}",
    "from os import system; {p}",
    "def f(): return {p}\nf()",
    "click('1')\n# {p}\n{p}",
    "__import__('os'); {p}",
    "click.__globals__['open']('x', 'w') or {p}",
    "exec('{p}')",
    # The payload as data: accepted, and it must stay data after canonicalisation and BrowserGym's exec.
    "fill('1', {q})",
    "send_msg_to_user({q})",
    "select_option('1', [{q}, 'x'])",
    "keyboard_type({q} '')",
    "press('1', {q})",
]

DECORATIONS = [
    "{t}",
    "Action: {t}",
    "Thought: easy.\nAction: {t}",
    "**Action:** {t}",
    "Action: `{t}`",
    "```python\n{t}\n```",
    "Action: click('1')\nAction: {t}",
    "Action: {t}\nand that is all",
]

FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"}
HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445", "i": "\u0456"}
MATH_BOLD = {c: chr(0x1D41A + ord(c) - ord("a")) for c in "abcdefghijklmnopqrstuvwxyz"}  # NFKC folds these to ASCII
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060"]


def _mutate(text: str, rng: random.Random) -> str:
    """One unicode or encoding trick, applied to a random stretch of identifiers or to the whole string."""
    kind = rng.randrange(9)
    if kind == 0:
        return text
    if kind == 1:
        return "".join(FULLWIDTH.get(c, c) for c in text)
    if kind == 2:
        return "".join(HOMOGLYPHS.get(c, c) if rng.random() < 0.5 else c for c in text)
    if kind == 3:
        return "".join(MATH_BOLD.get(c, c) for c in text)  # 𝐨𝐩𝐞𝐧 is a valid spelling of open in Python
    if kind == 4:
        position = rng.randrange(len(text) + 1)
        return text[:position] + rng.choice(ZERO_WIDTH) + text[position:]
    if kind == 5:
        return "# -*- coding: utf-7 -*-\n" + text
    if kind == 6:
        return text.replace("open", "\\u006fpen").replace("click", "\\x63lick")
    if kind == 7:
        return text.replace("(", "\uff08").replace(")", "\uff09")  # fullwidth brackets
    return "\ufeff" + text.replace(" ", "\u00a0")  # BOM and non-breaking spaces


def hostile_corpus(sentinel: str, size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = list(itertools.product(_payloads(sentinel), TEMPLATES, DECORATIONS))
    rng.shuffle(combos)
    corpus = []
    for payload, template, decoration in itertools.islice(itertools.cycle(combos), size):
        action = template.format(p=payload, q=repr(payload))
        if rng.random() < 0.5:  # tricks on the function names too, not only on the payload
            action = _mutate(action, rng)
        corpus.append(decoration.format(t=action))
    return corpus


class Recorder:
    """Fake BrowserGym action functions: they only record that they were called."""

    def __init__(self):
        self.calls = []

    def namespace(self) -> dict:
        namespace = {}
        for name in ACTION_SPECS:
            namespace[name] = lambda *args, _name=name, **kwargs: self.calls.append((_name, args, kwargs))
        return namespace


def test_hostile_corpus_never_executes(tmp_path):
    sentinel = tmp_path / "PWNED"
    corpus = hostile_corpus(str(sentinel), size=12_000)
    assert len(corpus) >= 10_000
    assert len(set(corpus)) > 9_000  # generated, mostly distinct
    recorder = Recorder()
    accepted = 0
    try:  # when BrowserGym is installed, also check that its own parser reads every accepted action as we do
        from browsergym.core.action.parsers import NamedArgument, highlevel_action_parser
    except ImportError:
        highlevel_action_parser = None
    start = time.perf_counter()
    for text in corpus:
        try:
            action = parse_action(text, allowed=ALL)
        except InvalidActionError:
            continue
        accepted += 1
        code = str(action)
        # What BrowserGym would receive: one call of a whitelisted name with literal arguments only.
        call = ast.parse(code, mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in ACTION_SPECS
        for node in [*call.args, *(k.value for k in call.keywords)]:
            assert all(
                isinstance(n, ast.Constant | ast.List | ast.UnaryOp | ast.USub | ast.Load) for n in ast.walk(node)
            ), code
        if highlevel_action_parser is not None:
            ((name, args),) = highlevel_action_parser.parse_string(code, parse_all=True).as_list()
            values = [a.value if isinstance(a, NamedArgument) else a for a in args]
            assert (name, values) == (action.name, [v for _, v in action.arguments]), code
        namespace = recorder.namespace()
        exec(code, namespace)  # noqa: S102 - the point of the test: running what the parser accepts is harmless
        assert "PWNED" not in namespace
    elapsed = time.perf_counter() - start
    assert not sentinel.exists(), "a hostile payload was executed"
    assert not hasattr(builtins, "PWNED")
    assert accepted == len(recorder.calls)
    assert {name for name, _, _ in recorder.calls} <= set(ACTION_SPECS)
    assert 1_000 < accepted < len(corpus) // 2  # payloads inside string literals are data, and are accepted
    assert elapsed < 15, f"parsing the corpus took {elapsed:.1f} s"


def test_the_sentinel_payloads_do_work(tmp_path):
    """Control: the payloads really would create the sentinel if they ran (so the test above proves something)."""
    sentinel = tmp_path / "PWNED"
    for payload in _payloads(str(sentinel))[:3]:
        sentinel.unlink(missing_ok=True)
        exec(payload, {})  # noqa: S102
        assert sentinel.exists(), payload
    namespace = {}
    exec("globals().__setitem__('PWNED', 1)", namespace)  # noqa: S102
    assert namespace["PWNED"] == 1


def test_lookalike_names_are_refused_even_though_python_folds_them():
    # Python parses NFKC-equivalent identifiers as the same name: 𝐜𝐥𝐢𝐜𝐤 is click to the interpreter.
    bold = "".join(MATH_BOLD[c] for c in "click")
    assert ast.parse(f"{bold}('1')", mode="eval").body.func.id == "click"
    for name in (bold, "ｃｌｉｃｋ", "\u0441lick", "cl\u0456ck"):
        with pytest.raises(InvalidActionError, match="plain ASCII"):
            parse_action(f"Action: {name}('1')")
    with pytest.raises(InvalidActionError):
        parse_action("Action: cli\u200bck('1')")
