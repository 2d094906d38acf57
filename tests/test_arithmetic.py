"""Behaviour of the synthetic arithmetic task: dataset, reward function, SFT examples, evaluation."""

from __future__ import annotations

import re

import pytest

from sec_rl.models import build_tiny_model_and_tokenizer
from sec_rl.tasks import (
    arithmetic_reward,
    evaluate_accuracy,
    make_arithmetic_dataset,
    sft_examples,
    tokenizer_corpus,
)


def _operands(prompt: list[dict[str, str]]) -> tuple[str, str, str]:
    match = re.fullmatch(r"(\d+)([+\-*])(\d+)=", prompt[0]["content"])
    assert match, prompt
    return match.group(1), match.group(2), match.group(3)


def test_dataset_columns_levels_and_format():
    ds = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=20, seed=0)
    assert set(ds.column_names) == {"prompt", "answer", "difficulty"}
    assert len(ds) == 60
    assert sorted(set(ds["difficulty"])) == ["1", "2", "3"]
    assert ds["difficulty"].count("2") == 20
    for row in ds:
        assert len(row["prompt"]) == 1 and row["prompt"][0]["role"] == "user"
        a, op, b = _operands(row["prompt"])
        assert op == "+"
        assert len(a) == len(b) == int(row["difficulty"])  # level = digits per operand, no leading zeros
        assert row["answer"] == str(int(a) + int(b))


@pytest.mark.parametrize(("operation", "fn"), [("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b)])
def test_other_operations(operation, fn):
    ds = make_arithmetic_dataset(levels=(2,), n_per_level=30, seed=1, operation=operation)
    for row in ds:
        a, _, b = _operands(row["prompt"])
        assert row["answer"] == str(fn(int(a), int(b)))
        assert int(row["answer"]) >= 0


def test_unknown_operation_rejected():
    with pytest.raises(ValueError):
        make_arithmetic_dataset(operation="div")


def test_dataset_is_deterministic_per_seed():
    a = make_arithmetic_dataset(n_per_level=10, seed=5)
    b = make_arithmetic_dataset(n_per_level=10, seed=5)
    c = make_arithmetic_dataset(n_per_level=10, seed=6)
    assert a.to_list() == b.to_list()
    assert a.to_list() != c.to_list()


def test_held_out_level():
    ds = make_arithmetic_dataset(levels=(4,), n_per_level=10)
    assert set(ds["difficulty"]) == {"4"}
    assert all(len(_operands(p)[0]) == 4 for p in ds["prompt"])


def test_reward_on_hand_made_completions():
    def conv(text):
        return [{"role": "assistant", "content": text}]

    completions = [conv("19"), conv("18"), conv(""), conv("The answer is 19."), conv("19 or 20"), conv("20, not 19")]
    assert arithmetic_reward(completions, answer=["19"] * 6) == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    # plain-string completions, extra TRL kwargs, int answers, leading zeros and surrounding text
    assert arithmetic_reward(
        ["19", " 0019\n", "x", "-3", "190"],
        answer=["19", 19, "19", "-3", "19"],
        prompts=[None] * 5,
        completion_ids=[[]] * 5,
        difficulty=["2"] * 5,
    ) == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_sft_examples_are_conversations():
    ds = make_arithmetic_dataset(levels=(1,), n_per_level=3)
    sft = sft_examples(ds)
    assert sft.column_names == ["messages"]
    for row, messages in zip(ds, sft["messages"]):
        assert messages == row["prompt"] + [{"role": "assistant", "content": row["answer"]}]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model_and_tokenizer(tokenizer_corpus(), hidden_size=32, num_layers=1, num_heads=2)


def test_tokenizer_corpus_covers_the_task(tiny):
    _, tokenizer = tiny
    ds = make_arithmetic_dataset(levels=(1, 4), n_per_level=5, operation="mul")
    for row in ds:
        tokens = tokenizer.tokenize(row["prompt"][0]["content"] + row["answer"])
        assert all(len(t) == 1 for t in tokens)  # digits and operators are single characters, nothing unknown
    assert len(tokenizer.tokenize("assistant")) == 1


def test_evaluate_accuracy_keys_and_range(tiny):
    model, tokenizer = tiny
    ds = make_arithmetic_dataset(levels=(1, 2), n_per_level=6)
    model.train()
    side = tokenizer.padding_side
    acc = evaluate_accuracy(model, tokenizer, ds, batch_size=4, max_new_tokens=3)
    assert set(acc) == {"1", "2", "all"}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert model.training and tokenizer.padding_side == side  # state restored


def test_sft_warmup_runs_with_assistant_only_loss(tiny, tmp_path):
    """TRL SFT accepts the template's generation markers and masks everything but the answer."""
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = tiny
    train = sft_examples(make_arithmetic_dataset(levels=(1, 2), n_per_level=8))
    config = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        assistant_only_loss=True,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    row = trainer.train_dataset[0]
    trained = [tok for tok, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tokenizer.decode(trained) == train[0]["messages"][1]["content"] + "<|im_end|>"
    trainer.train()
