"""Behaviour of the offline tiny model builder: chat template, assistant mask, digits, shapes, save/load."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sec_rl.models import build_tiny_model, build_tiny_model_and_tokenizer, train_tokenizer
from sec_rl.tasks import tokenizer_corpus

MESSAGES = [{"role": "user", "content": "12+7="}, {"role": "assistant", "content": "19"}]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tokenizer_corpus())


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        # each special token is one token, never split by BPE
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    # no BOS is inserted, as with Qwen: what the chat template renders is what the model sees
    assert tokenizer("1+1=")["input_ids"] == tokenizer("1+1=", add_special_tokens=False)["input_ids"]


def test_chat_template_renders_chatml(tokenizer):
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert text == "<|im_start|>user\n12+7=<|im_end|>\n<|im_start|>assistant\n19<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n12+7=<|im_end|>\n<|im_start|>assistant\n"
    assert text.startswith(prompt)  # prefix-preserving, as TRL's prompt/completion split expects


def test_assistant_mask_covers_exactly_the_answer_and_end_of_turn(tokenizer):
    out = tokenizer.apply_chat_template(MESSAGES, return_assistant_tokens_mask=True, return_dict=True)
    tokens = tokenizer.convert_ids_to_tokens(out["input_ids"])
    masked = [t for t, m in zip(tokens, out["assistant_masks"]) if m]
    assert masked == ["1", "9", "<|im_end|>"]
    # token by token: the mask is a single contiguous run ending on the assistant's <|im_end|>, then the newline
    start = tokens.index("assistant") + 2  # skip "assistant" and "\n"
    expected = [0] * start + [1, 1, 1] + [0] * (len(tokens) - start - 3)
    assert out["assistant_masks"] == expected
    assert tokens[start - 1 : start + 4] == ["Ċ", "1", "9", "<|im_end|>", "Ċ"]


def test_trl_accepts_template_for_assistant_only_loss(tokenizer):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_digits_are_single_tokens(tokenizer):
    for number in ("0", "7", "1234567890", "99999", "100"):
        tokens = tokenizer.tokenize(number)
        assert tokens == list(number)
    ids = tokenizer("123+456=579", add_special_tokens=False)["input_ids"]
    assert len(ids) == 11
    assert tokenizer.decode(ids) == "123+456=579"


def test_model_matches_tokenizer_and_forward_shapes(tokenizer):
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    ids = torch.randint(0, len(tokenizer), (3, 7))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (3, 7, len(tokenizer))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_seed_makes_weights_deterministic(tokenizer):
    a = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=3)
    b = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=3)
    c = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=4)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_save_and_reload_by_path(tmp_path):
    model, tokenizer = build_tiny_model_and_tokenizer(
        tokenizer_corpus(), hidden_size=32, num_layers=1, num_heads=2, output_dir=tmp_path
    )
    reloaded_tok = AutoTokenizer.from_pretrained(str(tmp_path))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert reloaded_tok.get_vocab() == tokenizer.get_vocab()
    assert reloaded_tok.chat_template == tokenizer.chat_template
    assert reloaded_tok.eos_token == "<|im_end|>" and reloaded_tok.pad_token == "<|endoftext|>"
    assert reloaded_tok.apply_chat_template(MESSAGES, tokenize=False) == tokenizer.apply_chat_template(
        MESSAGES, tokenize=False
    )
    assert reloaded_tok.tokenize("4096") == ["4", "0", "9", "6"]
    assert reloaded.generation_config.eos_token_id == tokenizer.eos_token_id
    ids = torch.tensor([tokenizer("12+7=")["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits)


def test_generate_stops_and_decodes(tokenizer):
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)
    prompt = tokenizer.apply_chat_template(
        MESSAGES[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and 1 <= out.shape[1] - prompt["input_ids"].shape[1] <= 4
