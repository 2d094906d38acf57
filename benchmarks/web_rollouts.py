"""Episodes per minute of one GRPO generation batch: sec-rl's rollout engine against TRL's own tool loop.

Both sides run the same batch of MiniWoB goals (each ``--generations`` times) through a real
``_generate_and_score_completions`` call of a GRPO trainer, with the same tiny model, tokenizer and
per-turn length, the same environment class (:class:`~sec_rl.web.env.BrowserGymEnvironment`, one
browser kept per environment) and the same observation text. Each side's system prompt documents its
actions: sec-rl's default prompt lists ``click``, ``fill``, ``hover``; TRL's chat template lists the
three tools' JSON schemas (751 and 937 tokens with a text-world page).

- **sec-rl**: ``SECWebGRPOTrainer``: episodes scheduled on an ``EnvironmentPool`` of worker processes,
  one batched ``generate`` per turn, all environments stepped in parallel (``episode`` and ``per_step`` modes);
- **TRL**: ``GRPOTrainer(environment_factory=BrowserGymTools)``: TRL's tool-calling loop, one environment
  instance per rollout in the trainer's process, the page actions exposed as tools.

A tiny random model would not call tools or write actions, so both models are *scripted*: a logits processor
forces each turn's text (a filler thought and ``hover(<first bid>)``, as an ``Action:`` line for sec-rl and as
a ``<tool_call>`` for TRL), padded to the same number of tokens. Every forced token still costs a real forward
pass, so both sides do the same model work per turn, take the same ``--turns`` actions per episode, and see the
same observation text. TRL's loop generates once more after the last tool result (its stop condition); that turn
is forced to end at once.

    python benchmarks/web_rollouts.py                    # BrowserGym MiniWoB (needs Chromium)
    python benchmarks/web_rollouts.py --env text         # the text world instead (no browser)

All systems are built first, warmed up with one batch, then timed in rounds (each system once per round, in a
rotating order), so that the load of a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

TASKS = {
    "browsergym": ["click-test", "click-link", "enter-text", "focus-text"],
    "text": ["click-button", "enter-text", "click-checkboxes", "click-button"],
}
SYSTEM = "You are a web agent. Act on the page, one action per turn."
ACTIONS = ("click", "fill", "hover")
FILLER = " ok"


# -- the environment, as TRL's environment_factory wants it ----------------------------------------
class BrowserGymTools:
    """A minimal TRL ``environment_factory`` class: ``reset(**row)`` starts a goal, each public method is a tool.

    Every tool applies one page action through the same environment class sec-rl's pool uses, and returns the
    new page as the same text a sec-rl episode shows (goal, last error, accessibility tree).
    """

    env_name = "browsergym"
    seconds = 0.0  # time spent in resets and tools, all instances together (the benchmark reads it)

    def __init__(self) -> None:
        from sec_rl.web.env import BrowserGymEnvironment, TextEnvironment

        self.env = BrowserGymEnvironment() if self.env_name == "browsergym" else TextEnvironment()
        self.reward = 0.0

    def reset(self, task: str, seed: int, **kwargs: Any) -> str:
        start = time.perf_counter()
        self.reward = 0.0
        observation = _render(self.env.reset(task, int(seed)))
        BrowserGymTools.seconds += time.perf_counter() - start
        return observation

    def _act(self, action: str) -> str:
        start = time.perf_counter()
        try:
            result = self.env.step(f"Action: {action}")
        finally:
            BrowserGymTools.seconds += time.perf_counter() - start
        self.reward += result.reward
        if result.done:
            raise RuntimeError("the episode is over")
        return _render(result.observation)

    def click(self, bid: str) -> str:
        """Click an element of the page.

        Args:
            bid: the element's bid, the number in square brackets in the page.

        Returns:
            The page after the action.
        """
        return self._act(f"click({bid!r})")

    def fill(self, bid: str, value: str) -> str:
        """Type a value into a text field.

        Args:
            bid: the field's bid.
            value: the text to type.

        Returns:
            The page after the action.
        """
        return self._act(f"fill({bid!r}, {value!r})")

    def hover(self, bid: str) -> str:
        """Move the mouse over an element.

        Args:
            bid: the element's bid.

        Returns:
            The page after the action.
        """
        return self._act(f"hover({bid!r})")

    def get_reward(self) -> float:
        return self.reward


class TextTools(BrowserGymTools):
    env_name = "text"


def _render(observation: Any) -> str:
    from sec_rl.web.observation import PromptConfig, render_observation

    return render_observation(observation, (), PromptConfig(max_page_chars=2000))


# -- the scripted model ----------------------------------------------------------------------------
def _first_bid(page: str) -> str:
    match = re.search(r"\[(\w+)\] ", page)
    return match.group(1) if match else "0"


def _padded(tokenizer: Any, tail: str, length: int) -> list[int]:
    """``filler + tail`` tokenized, with as much filler as brings it to ``length`` tokens (at least the tail)."""
    filler = ""
    while len(tokenizer(filler + tail, add_special_tokens=False)["input_ids"]) < length:
        filler += FILLER
    return tokenizer(filler + tail, add_special_tokens=False)["input_ids"]


def sec_rl_script(tokenizer: Any, context: str, length: int, turns: int) -> list[int]:
    page = context.rsplit("<|im_start|>user\n", 1)[-1]
    return _padded(tokenizer, f"\nAction: hover('{_first_bid(page)}')", length)


def trl_script(tokenizer: Any, context: str, length: int, turns: int) -> list[int]:
    if context.count("<tool_response>") >= turns:
        return []  # TRL's extra generation after the last tool result: end at once
    page = context.rsplit("<tool_response>", 1)[-1] if "<tool_response>" in context else context
    call = json.dumps({"name": "hover", "arguments": {"bid": _first_bid(page)}})
    return _padded(tokenizer, f"\n<tool_call>\n{call}\n</tool_call>", length)


def install_script(model: Any, tokenizer: Any, script: Any, length: int, turns: int) -> None:
    """Make ``model.generate`` emit ``script(prompt)`` then EOS for each row, one real forward pass per token."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class Force(LogitsProcessor):
        def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            self.width = input_ids.shape[1]
            self.targets = []
            for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
                context = tokenizer.decode([t for t, m in zip(ids, mask) if m])
                self.targets.append([*script(tokenizer, context, length, turns), tokenizer.eos_token_id])

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            position = input_ids.shape[1] - self.width
            forced = torch.full_like(scores, -float("inf"))
            for row, target in enumerate(self.targets):
                forced[row, target[min(position, len(target) - 1)]] = 0.0
            return forced

    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(kwargs["input_ids"])
        kwargs["logits_processor"] = LogitsProcessorList([Force(kwargs["input_ids"], mask)])
        return original(*args, **kwargs)

    model.generate = generate


# -- the two trainers ------------------------------------------------------------------------------
def build_tokenizer(env: str) -> Any:
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template

    from sec_rl.models.tiny import train_tokenizer
    from sec_rl.web import TextEnvironment, render_messages

    world = TextEnvironment()
    corpus = [SYSTEM, FILLER * 20, "Action: hover('12')", '<tool_call>\n{"name": "hover", "arguments": {"bid": "12"}}']
    for task in TextEnvironment.TASKS:
        for seed in range(10):
            corpus.append(render_messages(world.reset(task, seed))[1]["content"])
    tokenizer = train_tokenizer(corpus * 3, vocab_size=1024)
    tokenizer.chat_template = qwen2_5_chat_template  # ChatML with tool calls, which TRL's tool loop needs
    return add_response_schema(tokenizer)


def batch_rows(env: str, goals: int, generations: int, conversational: bool) -> list[dict[str, Any]]:
    tasks = TASKS[env]
    rows = []
    for g in range(goals):
        task, seed = tasks[g % len(tasks)], 3 + g
        prompt: Any = f"{task} (seed {seed})"
        if conversational:
            prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ""}]
        rows += [{"prompt": prompt, "task": task, "seed": seed} for _ in range(generations)]
    return rows


def common_settings(out: str, batch: int, generations: int) -> dict[str, Any]:
    return dict(
        output_dir=out, per_device_train_batch_size=batch, num_generations=generations, use_cpu=True, bf16=False,
        report_to="none", gradient_checkpointing=False, save_strategy="no", disable_tqdm=True, seed=0,
    )  # fmt: skip


class System:
    """One side of the comparison: a trainer, its batch, and how to release its environments."""

    def __init__(self, trainer: Any, rows: list[dict[str, Any]], close: Any, actions: Any):
        self.trainer, self.rows, self.close, self.actions = trainer, rows, close, actions
        self.seconds: list[float] = []
        self.env_seconds: list[float] = []

    def run_batch(self) -> tuple[float, float]:
        """Seconds of one ``_generate_and_score_completions`` call, and the part spent in the environments."""
        self.trainer.model.train()
        start, env_start = time.perf_counter(), BrowserGymTools.seconds
        self.trainer._generate_and_score_completions([dict(row) for row in self.rows])
        seconds = time.perf_counter() - start
        web = self.trainer._metrics["train"].get("web/env_seconds")
        return seconds, (web[-1] if web else BrowserGymTools.seconds - env_start)


def build_sec_rl(args: argparse.Namespace, model_dir: str, out: str, tokenizer: Any, mode: str) -> System:
    from datasets import Dataset

    from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer

    rows = batch_rows(args.env, args.goals, args.generations, conversational=False)
    config = SECWebGRPOConfig(
        **common_settings(out, len(rows), args.generations),
        curriculum="none",
        web_env=args.env,
        web_num_workers=args.workers,
        web_max_turns=args.turns,
        web_layout=mode,
        web_actions=list(ACTIONS),
        web_history=0,
        web_max_page_chars=2000,
        web_zero_advantage_filter=False,
        max_completion_length=args.tokens + 8,
    )
    trainer = SECWebGRPOTrainer(
        model=model_dir, args=config, processing_class=tokenizer, train_dataset=Dataset.from_list(rows)
    )
    install_script(trainer.model, tokenizer, sec_rl_script, args.tokens, args.turns)

    def actions() -> float:
        return statistics.mean(e.num_turns for e in trainer.web_last_rollout.episodes)

    return System(trainer, rows, trainer.close_environments, actions)


def build_trl(args: argparse.Namespace, model_dir: str, out: str, tokenizer: Any) -> System:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = batch_rows(args.env, args.goals, args.generations, conversational=True)
    config = GRPOConfig(
        **common_settings(out, len(rows), args.generations),
        max_tool_calling_iterations=args.turns,
        max_completion_length=args.trl_max_completion_length,
    )
    trainer = GRPOTrainer(
        model=model_dir,
        args=config,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows),
        environment_factory=BrowserGymTools if args.env == "browsergym" else TextTools,
    )
    install_script(trainer.model, tokenizer, trl_script, args.tokens, args.turns)

    def close() -> None:
        for environments in trainer._environment_pool.values():
            for environment in environments:
                environment.env.close()

    def actions() -> float:
        return trainer._metrics["train"]["tools/call_frequency"][-1]

    return System(trainer, rows, close, actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=["browsergym", "text"], default="browsergym")
    parser.add_argument("--goals", type=int, default=4, help="distinct goals per generation batch")
    parser.add_argument("--generations", type=int, default=2, help="episodes per goal (num_generations)")
    parser.add_argument("--turns", type=int, default=3, help="actions per episode")
    parser.add_argument("--tokens", type=int, default=24, help="generated tokens per turn")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (one batch per system each)")
    parser.add_argument("--workers", type=int, default=None, help="sec-rl pool size (default: one per episode)")
    parser.add_argument("--trl_max_completion_length", type=int, default=8192)
    parser.add_argument("--out", default="benchmarks/results/web_rollouts.json")
    args = parser.parse_args()

    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from rich.console import Console
    from rich.table import Table

    from sec_rl.models.tiny import build_tiny_model

    episodes = args.goals * args.generations
    args.workers = args.workers or episodes
    tokenizer = build_tokenizer(args.env)
    systems: dict[str, System] = {}
    with tempfile.TemporaryDirectory() as model_dir, tempfile.TemporaryDirectory() as out:
        build_tiny_model(tokenizer, max_position_embeddings=16384).save_pretrained(model_dir)
        try:
            for mode in ("episode", "per_step"):
                systems[f"sec-rl {mode}"] = build_sec_rl(args, model_dir, out, tokenizer, mode)
            systems["TRL environment_factory"] = build_trl(args, model_dir, out, tokenizer)
            for system in systems.values():  # warm-up: browsers start, first resets
                system.run_batch()
            # Rounds, each system once per round in a rotating order: load on the machine hits all of them alike.
            names = list(systems)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    seconds, env_seconds = systems[name].run_batch()
                    systems[name].seconds.append(seconds)
                    systems[name].env_seconds.append(env_seconds)
        finally:
            for system in systems.values():
                system.close()

    table = Table(title=f"{episodes} episodes per generation batch, {args.turns} actions each ({args.env})")
    columns = ("rollouts", "s / batch (median)", "in environments", "episodes / min", "actions / episode", "vs TRL")
    for column in columns:
        table.add_column(column, justify="right" if column != "rollouts" else "left")
    reference = statistics.median(systems["TRL environment_factory"].seconds)
    results = {}
    for name, system in systems.items():
        median = statistics.median(system.seconds)
        results[name] = {
            "seconds": system.seconds,
            "env_seconds": system.env_seconds,
            "median_seconds": median,
            "episodes_per_minute": 60 * episodes / median,
            "actions_per_episode": system.actions(),
            "speedup_vs_trl": reference / median,
        }
        table.add_row(
            name, f"{median:.2f}", f"{statistics.median(system.env_seconds):.2f}", f"{60 * episodes / median:.1f}",
            f"{system.actions():.2f}", f"{reference / median:.2f}x",
        )  # fmt: skip
    Console(width=120).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from sec_rl.provenance import environment_info

    payload = {"settings": vars(args), "results": results, "environment": environment_info()}
    Path(args.out).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
