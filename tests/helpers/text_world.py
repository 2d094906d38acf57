"""A scripted policy and teacher for :class:`~sec_rl.web.env.TextEnvironment`, reading only the rendered prompt.

Shared by the environment, evaluation and collection tests (and ``scripts/collect_run.py``): :func:`solve` answers
every text-world task from the goal and the accessibility tree of the last user message; :class:`TextTeacher` is
that policy as a :class:`~sec_rl.pipeline.teachers.Teacher` (the chat-message hook of the episode loop), with word
counts as token counts so that tests can check the sums against a formula.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from sec_rl.pipeline.teachers import Messages, Reply, Teacher

ELEMENT = re.compile(r"\[(\w+)\] (\w+) '([^']*)'(.*)")


def section(text: str, title: str) -> str:
    match = re.search(rf"# {title}[^\n]*\n(.*?)(?=\n\n# |\Z)", text, re.S)
    return match.group(1) if match else ""


def solve(user: str) -> str:
    """The next action of TextEnvironment's tasks, from a user message (goal + accessibility tree)."""
    goal, page = section(user, "Goal"), section(user, "Current page")
    elements = ELEMENT.findall(page)

    def bid_of(role: str, name: str) -> str:
        return next(b for b, r, n, _ in elements if r == role and n == name)

    if goal.startswith("Click on the"):
        label = re.search(r'"(.+?)"', goal).group(1)
        return f"Thought: the {label} button.\nAction: click('{bid_of('button', label)}')"
    if goal.startswith("Enter"):
        word = re.search(r'"(.+?)"', goal).group(1)
        bid, rest = next((b, rest) for b, r, _, rest in elements if r == "textbox")
        if f"value='{word}'" not in rest:
            return f"Thought: type the word.\nAction: fill('{bid}', '{word}')"
        return f"Thought: submit.\nAction: click('{bid_of('button', 'Submit')}')"
    wanted = re.match(r"Select (.+) and click Submit\.", goal).group(1).split(" and ")
    for bid, role, name, rest in elements:
        if role == "checkbox" and name in wanted and "checked='false'" in rest:
            return f"Thought: tick {name}.\nAction: click('{bid}')"
    return f"Thought: submit.\nAction: click('{bid_of('button', 'Submit')}')"


def text_policy(messages: list[dict[str, str]]) -> str:
    """:func:`solve` as an agent: chat messages in, the reply to the last user message out."""
    return solve(messages[-1]["content"])


def words(messages: Messages) -> int:
    return sum(len(m["content"].split()) for m in messages)


class TextTeacher(Teacher):
    """A scripted expert of the text world; tokens are counted as words (prompt: all messages, completion: reply)."""

    name = "text-expert"
    num_parameters = 0

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0

    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        replies = []
        for messages in conversations:
            text = solve(messages[-1]["content"])
            replies.append(Reply(text, words(messages), len(text.split())))
        return replies
