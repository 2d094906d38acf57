"""Offline tiny models: a tokenizer trained on the spot and a config-built Llama causal LM.

Nothing can be downloaded in tests, CI or the offline demo, so these build a complete, TRL-ready model/tokenizer pair
from a few KB of text in well under a second. The pair behaves like a small chat model from the Hub (ChatML template,
special tokens, generation config), so the trainers exercise the same code paths as with a real model; a Hub name
or a folder written by :func:`build_tiny_model_and_tokenizer` can be passed to TRL as a path string alike.

Special tokens follow Qwen2.5-Instruct, the models the SEC paper trains:

* ``eos_token = "<|im_end|>"``: closes every chat turn, so generation stops at the end of the assistant turn and
  GRPO's completion mask ends there.
* ``pad_token = bos_token = "<|endoftext|>"``: a dedicated pad distinct from eos, so padding can never be mistaken for
  an end of turn (TRL falls back to ``pad = eos`` only when no pad is set). No BOS is inserted when tokenizing,
  as with Qwen.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

# ChatML. The assistant content *and* its closing <|im_end|> sit inside {% generation %}, so TRL SFT's
# `assistant_only_loss=True` trains the model to stop (TRL warns when the end-of-turn token is left out of the mask);
# the role header and the trailing newline stay outside. `add_generation_prompt` opens an assistant turn, and the
# prompt it renders is a prefix of the full conversation, as TRL's prompt-completion tokenization expects.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, min_frequency: int = 2, chat_template: str = CHAT_TEMPLATE
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a chat tokenizer.

    Digits are split one per token before BPE, so numbers never merge into opaque multi-digit tokens: column-wise
    arithmetic stays learnable for a tiny model. Byte-level BPE covers any input (all 256 bytes are in the base
    alphabet). The vocabulary may come out smaller than ``vocab_size`` on a small corpus.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        unk_token=None,
        additional_special_tokens=[IM_START],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """Build a randomly initialised Llama causal LM whose vocabulary and special ids match ``tokenizer``.

    Llama rather than Qwen2: transformers 5 rebuilds a ``Qwen2Tokenizer`` for ``model_type=qwen2`` folders and would
    drop the trained tokenizer on reload, while a Llama folder keeps it. Embeddings are tied to keep it small.
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def build_tiny_model_and_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
    output_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Train a tokenizer on ``texts`` and build a matching tiny model.

    With ``output_dir``, both are saved there so that ``AutoModelForCausalLM.from_pretrained(output_dir)`` and
    ``AutoTokenizer.from_pretrained(output_dir)`` load them back: the path string can then go wherever a Hub model
    name goes (TRL trainers, CLI configs).
    """
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_model(
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        seed=seed,
    )
    if output_dir is not None:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    return model, tokenizer
