"""A tiny model that reads text-world prompts, and scripted actors that show the episode loop's token hook.

:class:`OracleActor` and :class:`KillingActor` are :class:`~sec_rl.web.policies.Actor` implementations (token
contexts in, :class:`~sec_rl.web.policies.Reply` with ``completion_ids`` out), the hook a
:class:`~sec_rl.web.policies.TokenPolicy` calls each turn: the first answers right where it may (episodes with known
lengths and rewards, and different outcomes within a goal); the second kills a pool worker mid-rollout.
"""

from __future__ import annotations

import os
import re
import signal
import time

from sec_rl.models.tiny import build_tiny_model_and_tokenizer
from sec_rl.web import TextEnvironment, render_messages
from sec_rl.web.observation import PromptConfig
from sec_rl.web.policies import Reply

SYSTEM = "You are a web agent. Write a thought, then one line: Action: click('bid')"
PROMPT = PromptConfig(system=SYSTEM, history=2)


def web_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: rendered text-world prompts and actions."""
    env = TextEnvironment()
    corpus = [SYSTEM, "Thought: the Submit button.\nAction: click('12')", "Action: fill('7', 'apple')"] * 5
    for task in TextEnvironment.TASKS:
        for seed in range(12):
            observation = env.reset(task, seed)
            corpus.append(render_messages(observation, ["click('12')", "fill('3', 'apple')"], PROMPT)[1]["content"])
    return corpus


def build_web_model(output_dir=None):
    return build_tiny_model_and_tokenizer(web_corpus(), max_position_embeddings=4096, output_dir=output_dir)


def oracle_action(context: str) -> str:
    """The right next action for a text-world page (click-button, enter-text), else a click on the first button."""
    user = context.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
    goal = user.split("# Goal\n", 1)[1].split("\n", 1)[0]
    page = user.split("accessibility tree)\n", 1)[1]
    if target := re.search(r'Click on the "(.+?)" button', goal):
        bid = re.search(rf"\[(\w+)\] button '{re.escape(target.group(1))}'", page).group(1)
        return f"Thought: the {target.group(1)} button.\nAction: click('{bid}')"
    if word := re.search(r'Enter "(.+?)" into', goal):
        box = re.search(r"\[(\w+)\] textbox 'Answer'( value=)?", page)
        if box.group(2) is None:
            return f"Thought: type it.\nAction: fill('{box.group(1)}', '{word.group(1)}')"
    bid = re.search(r"\[(\w+)\] button 'Submit'", page) or re.search(r"\[(\w+)\] button", page)
    return f"Thought: submit.\nAction: click('{bid.group(1)}')"


class OracleActor:
    """Answers right (see :func:`oracle_action`) in every ``every``-th episode; ``inner`` (the model) plays the others.

    An episode is the oracle's if its first context was the ``k``-th first context of a call with
    ``k % every == 0`` (the episodes of a goal are consecutive, so they alternate); later, if its context shows
    an action the oracle wrote (in the conversation, or in the prompt's previous actions). Without ``inner`` it
    answers everything: a scripted agent whose episodes have known lengths and rewards. With a model as
    ``inner``, episodes of the same goal get different outcomes, so advantages are not zero.
    """

    def __init__(self, tokenizer, inner=None, every: int = 2):
        self.tokenizer, self.inner, self.every = tokenizer, inner, every
        self.actions: set[str] = set()

    def generate(self, prompts):
        outputs = self.inner.generate(prompts) if self.inner is not None else [None] * len(prompts)
        first = 0
        for i, ids in enumerate(prompts):
            context = self.tokenizer.decode(ids)
            if context.count("<|im_start|>assistant") == 1 and "# Previous actions" not in context:
                mine, first = first % self.every == 0, first + 1
            else:
                mine = any(action in context for action in self.actions)
            if self.inner is None or mine:
                text = oracle_action(context)
                self.actions.add(text.rsplit("Action: ", 1)[1])
                answer = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
                outputs[i] = Reply(completion_ids=answer)
        return outputs


class KillingActor:
    """Kills pool worker ``slot`` (SIGKILL) just before generation call ``at_call``: a crash mid-episode."""

    def __init__(self, inner, pool, at_call: int = 2, slot: int = 0):
        self.inner, self.pool, self.at_call, self.slot = inner, pool, at_call, slot
        self.calls = 0

    def generate(self, prompts):
        self.calls += 1
        if self.calls == self.at_call:
            pool = self.pool() if callable(self.pool) else self.pool
            os.kill(pool.worker_pids()[self.slot], signal.SIGKILL)
            time.sleep(0.2)
        return self.inner.generate(prompts)
