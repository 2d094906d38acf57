"""Offline model builders (tiny models for tests, the demo and benchmarks)."""

from sec_rl.models.tiny import (
    CHAT_TEMPLATE,
    build_tiny_model,
    build_tiny_model_and_tokenizer,
    train_tokenizer,
)

__all__ = ["CHAT_TEMPLATE", "build_tiny_model", "build_tiny_model_and_tokenizer", "train_tokenizer"]
