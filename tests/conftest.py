"""Shared fixtures: a tiny model built offline once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A saved tiny Llama + tokenizer (a path stands in for a Hub model name)."""
    from sec_rl.models.tiny import build_tiny_model_and_tokenizer
    from sec_rl.tasks.arithmetic import tokenizer_corpus

    path = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model_and_tokenizer(tokenizer_corpus(), output_dir=path)
    return str(path)
