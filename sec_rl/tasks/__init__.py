"""Synthetic tasks with difficulty levels (offline demo, tests, benchmarks)."""

from sec_rl.tasks.arithmetic import (
    arithmetic_reward,
    evaluate_accuracy,
    extract_answer,
    make_arithmetic_dataset,
    sft_examples,
    tokenizer_corpus,
)

__all__ = [
    "arithmetic_reward",
    "evaluate_accuracy",
    "extract_answer",
    "make_arithmetic_dataset",
    "sft_examples",
    "tokenizer_corpus",
]
