"""A synthetic arithmetic task with difficulty levels, for the offline demo, tests and benchmarks.

Level ``d`` means operands with ``d`` digits, so difficulty is explicit and a harder held-out level is one argument
away (``levels=(4,)``). A tiny model trained on the spot learns level 1 quickly and level 3 slowly: a curriculum has
room to matter, and everything runs on a CPU in seconds.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset

OPERATORS = {"add": "+", "sub": "-", "mul": "*"}
_INT = re.compile(r"-?\d+")


def _operand(rng: random.Random, digits: int) -> int:
    """A number with exactly ``digits`` digits (level 1 includes 0)."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def make_arithmetic_dataset(
    levels: Sequence[int] = (1, 2, 3), n_per_level: int = 1000, seed: int = 0, operation: str = "add"
) -> Dataset:
    """Build ``n_per_level`` problems per level, with columns ``prompt`` (conversational), ``answer``, ``difficulty``.

    Prompts are bare equations (``"12+7="``): short and regular, so a tiny model spends its capacity on the
    arithmetic. ``difficulty`` is the level as a string, the arm key a curriculum groups by. ``sub`` keeps the first
    operand the larger, so answers are never negative. Deterministic for a given seed.
    """
    if operation not in OPERATORS:
        raise ValueError(f"operation must be one of {sorted(OPERATORS)}, got {operation!r}")
    symbol = OPERATORS[operation]
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"prompt": [], "answer": [], "difficulty": []}
    for level in levels:
        for _ in range(n_per_level):
            a, b = _operand(rng, level), _operand(rng, level)
            if operation == "sub" and a < b:
                a, b = b, a
            result = {"add": a + b, "sub": a - b, "mul": a * b}[operation]
            rows["prompt"].append([{"role": "user", "content": f"{a}{symbol}{b}="}])
            rows["answer"].append(str(result))
            rows["difficulty"].append(str(level))
    return Dataset.from_dict(rows)


def _text(completion: str | list[dict[str, Any]]) -> str:
    """The completion's text: a plain string, or the contents of a conversational completion's messages."""
    if isinstance(completion, str):
        return completion
    return "\n".join(str(message.get("content") or "") for message in completion)


def extract_answer(text: str) -> str | None:
    """The first integer in ``text`` (as a canonical string), or ``None``."""
    match = _INT.search(text)
    return str(int(match.group())) if match else None


def arithmetic_reward(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """TRL GRPO reward: 1.0 when the first integer in the completion equals the answer, else 0.0.

    ``completions`` are strings or conversational message lists (``[{"role": "assistant", "content": "19"}]``);
    ``answer`` is the dataset column TRL forwards as a keyword argument. Binary rewards give the
    success-rate-driven advantages SEC's bandit reads.
    """
    return [
        1.0 if extract_answer(_text(c)) == str(int(str(a).strip())) else 0.0
        for c, a in zip(completions, answer, strict=True)
    ]


def sft_examples(dataset: Dataset) -> Dataset:
    """Turn a problem dataset into ``messages`` conversations (user prompt + assistant answer) for TRL SFT warm-up."""
    return dataset.map(
        lambda row: {"messages": row["prompt"] + [{"role": "assistant", "content": row["answer"]}]},
        remove_columns=dataset.column_names,
    )


@torch.no_grad()
def evaluate_accuracy(
    model: Any, tokenizer: Any, dataset: Dataset, batch_size: int = 64, max_new_tokens: int = 8
) -> dict[str, float]:
    """Greedy-decode every prompt and return accuracy per difficulty level and over ``"all"``.

    Batched with left padding (decoder-only models continue from the right end); the model is restored to its
    previous train/eval mode afterwards.
    """
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    correct: dict[str, list[float]] = defaultdict(list)
    try:
        for start in range(0, len(dataset), batch_size):
            batch = dataset[start : start + batch_size]
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch["prompt"]
            ]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            completions = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            rewards = arithmetic_reward(completions, batch["answer"])
            for level, reward in zip(batch["difficulty"], rewards, strict=True):
                correct[str(level)].append(reward)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    result = {level: sum(v) / len(v) for level, v in sorted(correct.items())}
    every = [r for v in correct.values() for r in v]
    result["all"] = sum(every) / len(every) if every else 0.0
    return result


def tokenizer_corpus(n_problems: int = 300, seed: int = 0) -> list[str]:
    """Text to train a tokenizer for this task: rendered ChatML conversations, every operator, a few words.

    Rendering the chat markup makes ``user``/``assistant`` single tokens, which keeps sequences short.
    """
    rng = random.Random(seed)
    texts = []
    for i in range(n_problems):
        level = 1 + i % 4
        a, b = sorted((_operand(rng, level), _operand(rng, level)), reverse=True)
        symbol, result = [("+", a + b), ("-", a - b), ("*", a * b)][i % 3]
        texts.append(f"<|im_start|>user\n{a}{symbol}{b}=<|im_end|>\n<|im_start|>assistant\n{result}<|im_end|>\n")
    texts += [
        "system user assistant tool",
        "The answer is 0 1 2 3 4 5 6 7 8 9.",
        "What is 12 + 7? Answer: 19. What is 9 - 4? Answer: 5. 6 * 7 = 42.",
        "Solve the problem step by step and give the final answer.",
    ] * 3
    return texts
