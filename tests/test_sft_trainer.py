"""SECSFTTrainer on a tiny model: assistant-only masks, the loss signal, every strategy, resume, 2 processes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers.runs import record_draws, run_two_processes
from sft_run import SYSTEM, build_trainer, make_traces, sft_settings
from transformers import AutoModelForCausalLM, AutoTokenizer

from sec_rl import SECGRPOConfig, SECSFTConfig, SECSFTTrainer
from sec_rl.curriculum import CURRICULA, SelfEvolvingCurriculum
from sec_rl.models.tiny import CHAT_TEMPLATE
from sec_rl.trainers.mixin import CURRICULUM_STATE_NAME

CATEGORIES = ["choose-list", "click-button", "enter-text"]


class RecordingSEC(SelfEvolvingCurriculum):
    """The SEC strategy, keeping a copy of every update it receives (what the trainer fed it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[list[str], list[float], list[float]]] = []

    def update(self, categories, advantages, rewards=None):
        self.calls.append((list(categories), list(advantages), list(rewards)))
        super().update(categories, advantages, rewards)


def three_turn_trace() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Goal: click OK. [12] button 'OK'"},
        {"role": "assistant", "content": "The button is 12. click('12')"},
        {"role": "user", "content": "[13] textbox 'Name'"},
        {"role": "assistant", "content": "Type the name. fill('13', 'Ann')"},
        {"role": "user", "content": "[14] button 'Submit'"},
        {"role": "assistant", "content": "Done. click('14')"},
    ]


def masked_in_runs(input_ids: list[int], labels: list[int], tokenizer) -> list[str]:
    """Decoded maximal runs of tokens that carry a label (label == input id)."""
    runs, current = [], []
    for token, label in zip(input_ids, labels):
        assert label in (-100, token)
        if label == token:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def trace_dataset(messages: list[dict[str, str]], copies: int = 4) -> Dataset:
    return Dataset.from_list([{"messages": messages, "task": "click-button"}] * copies)


def test_assistant_only_mask_token_by_token(tiny_model_dir, tmp_path):
    messages = three_turn_trace()
    trainer = build_trainer(tiny_model_dir, str(tmp_path), 1, dataset=trace_dataset(messages))
    assert trainer.args.assistant_only_loss  # SECSFTConfig's default
    row = trainer.train_dataset[0]

    # An independent expectation: render the conversation, tokenize it with character offsets, and mark every
    # token that lies inside an assistant turn's content + <|im_end|> (the header and the newline stay out).
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    assert encoded["input_ids"] == row["input_ids"]
    spans, roles, cursor = [], [], 0
    for message in messages:
        header = f"<|im_start|>{message['role']}\n"
        start = text.index(header, cursor) + len(header)
        end = start + len(message["content"]) + len("<|im_end|>")
        assert text[start:end] == message["content"] + "<|im_end|>"
        spans.append((start, end))
        roles.append(message["role"])
        cursor = end
    expected = []
    for token, (lo, hi) in zip(row["input_ids"], encoded["offset_mapping"]):
        owner = [role for role, (s, e) in zip(roles, spans) if s <= lo and hi <= e]
        straddles = [role for role, (s, e) in zip(roles, spans) if lo < s < hi or lo < e < hi]
        assert not straddles, f"token {tokenizer.decode([token])!r} crosses a turn boundary"
        expected.append(token if owner == ["assistant"] else -100)
    assert row["labels"] == expected
    # In words: each assistant turn, and its end-of-turn token, is trained; no system or user token is.
    assistant = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    assert masked_in_runs(row["input_ids"], row["labels"], tokenizer) == assistant
    trained = tokenizer.decode([t for t, lbl in zip(row["input_ids"], row["labels"]) if lbl != -100])
    for message in messages:
        if message["role"] != "assistant":
            assert message["content"] not in trained
    assert sum(lbl != -100 for lbl in row["labels"]) == sum(len(tokenizer(a)["input_ids"]) for a in assistant)


def per_row_losses(model_dir: str, rows: list[dict]) -> tuple[list[float], float]:
    """Mean token NLL of each row on its labels, and the token-weighted mean over all rows (TRL's loss)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    losses, total, count = [], 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, labels = torch.tensor(row["input_ids"]), torch.tensor(row["labels"])
            logp = torch.log_softmax(model(ids[None]).logits[0, :-1].double(), dim=-1)
            target = labels[1:]
            mask = target != -100
            nll = -logp[mask.nonzero().squeeze(1), target[mask]]
            losses.append(float(nll.mean()))
            total, count = total + float(nll.sum()), count + int(mask.sum())
    return losses, total / count


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding_free"])
def test_signal_is_each_sequences_loss(tiny_model_dir, tmp_path, padding_free):
    """Padded batches or padding-free ones (all sequences in one row, split back by the collator's seq_idx)."""
    recorder = RecordingSEC(CATEGORIES, alpha=0.5, temperature=0.3)
    extra = {"padding_free": True, "max_length": None} if padding_free else {}
    trainer = build_trainer(tiny_model_dir, str(tmp_path), 1, strategy=recorder, save_steps=100, **extra)
    draws = record_draws(trainer)
    trainer.train()

    # The step's batch is the sampler's one draw: score its rows by hand with the untrained model.
    assert len(draws) == 1
    rows = [trainer.train_dataset[i] for i in draws[0][1]]
    losses, token_mean = per_row_losses(tiny_model_dir, rows)
    assert len(recorder.calls) == 1
    categories, advantages, rewards = recorder.calls[0]
    assert categories == [row["task"] for row in rows]
    np.testing.assert_allclose(advantages, losses, rtol=1e-5)
    np.testing.assert_allclose(rewards, np.exp(-np.array(losses)), rtol=1e-5)
    # The rows differ in length, so the per-sequence mean differs from the token mean TRL trains on...
    assert np.std(losses) > 1e-3
    # ...and TRL's own loss is untouched: the logged training loss is the batch's token-weighted mean.
    assert trainer.state.log_history[0]["loss"] == pytest.approx(token_mean, rel=1e-5)
    # SEC's value per task: alpha * mean loss (from Q = 0); the same per-task mean is logged.
    entry = trainer.state.log_history[0]
    for task in set(categories):
        mean = float(np.mean([loss for c, loss in zip(categories, losses) if c == task]))
        assert entry[f"curriculum/loss/{task}"] == pytest.approx(mean, rel=1e-5)
        assert entry[f"curriculum/value/{task}"] == pytest.approx(0.5 * mean, rel=1e-5)


def test_loss_decrease_is_each_tasks_learning_progress(tiny_model_dir, tmp_path):
    recorder = RecordingSEC(CATEGORIES, alpha=0.5, temperature=0.3)
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), 4, strategy=recorder, curriculum_signal="loss_decrease", save_steps=100
    )
    trainer.train()
    reference: dict[str, float] = {}
    for categories, advantages, rewards in recorder.calls:
        losses = -np.log(rewards)  # rewards are exp(-loss)
        means = {c: float(np.mean([x for k, x in zip(categories, losses) if k == c])) for c in set(categories)}
        for category, advantage in zip(categories, advantages):
            if category in reference:
                assert advantage == pytest.approx(reference[category] - means[category], rel=1e-6, abs=1e-9)
            else:  # a task's first batch: no progress measurable yet
                assert math.isnan(advantage)
        reference.update(means)
    assert trainer._loss_reference == pytest.approx(reference)
    assert any(not math.isnan(a) for _, adv, _ in recorder.calls for a in adv)


@pytest.mark.parametrize("name", sorted(CURRICULA))
def test_every_strategy_trains(tiny_model_dir, tmp_path, name):
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), 3, curriculum=name, curriculum_temperature=None, save_steps=100
    )
    draws = record_draws(trainer)
    trainer.train()
    strategy = trainer.curriculum
    assert strategy.name == CURRICULA[name][0].name and strategy.num_updates == 3
    assert strategy.counts.sum() == 3 * 4  # signal 'loss': every sequence is a finite sample
    logged = [e for e in trainer.state.log_history if "curriculum/prob/click-button" in e]
    assert len(logged) == 3
    for entry in logged:
        assert sum(entry[f"curriculum/prob/{c}"] for c in CATEGORIES) == pytest.approx(1.0)
    if name == "target_success":  # rewards are exp(-loss): probabilities of the trained tokens
        seen = strategy.success[~np.isnan(strategy.success)]
        assert len(seen) > 0 and np.all((seen > 0) & (seen < 1))
    if name in ("ordered", "reverse"):  # 3 planned updates, 3 tasks: one stage per step
        drawn = [trainer.train_dataset[i]["task"] for i in draws[0][1]]
        first = CATEGORIES[0] if name == "ordered" else CATEGORIES[-1]
        assert set(drawn) == {first}


def test_sec_progress_objective_reads_rewards(tiny_model_dir, tmp_path):
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), 3, curriculum_kwargs={"objective": "progress"}, save_steps=100
    )
    trainer.train()
    assert trainer.curriculum.objective == "progress" and trainer.curriculum.num_updates == 3
    assert np.any(~np.isnan(trainer.curriculum.last_mean_rewards))


def test_resume_continues_with_the_same_categories(tiny_model_dir, tmp_path):
    settings = dict(curriculum_signal="loss_decrease", save_steps=4)
    full = RecordingSEC(CATEGORIES, alpha=0.5, temperature=0.1)
    first = build_trainer(tiny_model_dir, str(tmp_path / "full"), 8, strategy=full, **settings)
    first.train()
    checkpoint = tmp_path / "full" / "checkpoint-4"
    saved = json.loads((checkpoint / CURRICULUM_STATE_NAME).read_text())
    assert saved["curriculum"]["num_updates"] == 4 and set(saved["signal"]["loss_reference"]) <= set(CATEGORIES)

    resumed = RecordingSEC(CATEGORIES, alpha=0.5, temperature=0.1)
    second = build_trainer(tiny_model_dir, str(tmp_path / "resumed"), 8, strategy=resumed, **settings)
    second.train(resume_from_checkpoint=str(checkpoint))

    assert len(full.calls) == 8 and len(resumed.calls) == 4
    assert [c for c, _, _ in resumed.calls] == [c for c, _, _ in full.calls[4:]]
    for (_, adv_full, rew_full), (_, adv_res, rew_res) in zip(full.calls[4:], resumed.calls):
        np.testing.assert_allclose(adv_res, adv_full, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(rew_res, rew_full, rtol=1e-5)
    np.testing.assert_allclose(resumed.q_values, full.q_values, rtol=1e-5, atol=1e-7)
    assert second.curriculum_sampler.state_dict() == first.curriculum_sampler.state_dict()
    # The batches must actually change with the strategy for this comparison to mean something.
    assert len({tuple(c) for c, _, _ in full.calls}) > 1


def test_template_without_generation_markers(tiny_model_dir, tmp_path):
    plain = CHAT_TEMPLATE.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = plain
    args = SECSFTConfig(**sft_settings(str(tmp_path), 1))
    with pytest.raises(ValueError, match=r"needs a chat template that marks .*\{% generation %\}.*Fix: wrap") as info:
        SECSFTTrainer(model=tiny_model_dir, args=args, train_dataset=make_traces(), processing_class=tokenizer)
    assert "assistant_only_loss=False" in str(info.value)

    # A family TRL knows (Qwen2.5, markerless) is patched by TRL's own training template instead.
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer.chat_template = qwen2_5_chat_template
    messages = three_turn_trace()
    trainer = SECSFTTrainer(
        model=tiny_model_dir, args=args, train_dataset=trace_dataset(messages), processing_class=tokenizer
    )
    assert trainer.chat_template is not None
    row = trainer.train_dataset[0]
    # Qwen2.5's training template puts the newline after the header and after <|im_end|> in the assistant span.
    expected = ["\n" + m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant"]
    assert masked_in_runs(row["input_ids"], row["labels"], tokenizer) == expected


def test_config_errors(tmp_path):
    base = dict(output_dir=str(tmp_path), curriculum_column="task", use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match=r"packing=True with curriculum='sec': packing concatenates rows"):
        SECSFTConfig(**base, packing=True)
    SECSFTConfig(**base, packing=True, curriculum="none")  # TRL's packing without a curriculum is fine
    with pytest.raises(ValueError, match=r"curriculum_signal='advantages' is a GRPO signal.*Use 'loss' .*'loss_decr"):
        SECSFTConfig(**base, curriculum_signal="advantages")
    with pytest.raises(ValueError, match=r"curriculum_signal='bogus' is not supported by SECSFTConfig: use one of "):
        SECSFTConfig(**base, curriculum_signal="bogus")
    with pytest.raises(ValueError, match=r"curriculum_signal='loss' is not supported by SECGRPOConfig.*'advantages'"):
        SECGRPOConfig(**base, curriculum_signal="loss")
    assert SECSFTConfig(**base).curriculum_signal == "loss"


def test_trainer_errors_and_plain_sft(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"the training set has 24 rows .* takes 32"):
        build_trainer(tiny_model_dir, str(tmp_path), 1, per_device_train_batch_size=8, gradient_accumulation_steps=4)
    with pytest.raises(ValueError, match=r"train_sampling_strategy='group_by_length' with a curriculum"):
        build_trainer(tiny_model_dir, str(tmp_path), 1, train_sampling_strategy="group_by_length")
    with pytest.raises(ValueError, match=r"curriculum_column \['level'\] not in the training dataset"):
        build_trainer(tiny_model_dir, str(tmp_path), 1, curriculum_column="level")
    with pytest.raises(ValueError, match=r"difficulty pools move problems by their group success.*SECGRPOTrainer"):
        build_trainer(tiny_model_dir, str(tmp_path), 1, curriculum_pools=True)
    # curriculum='none' is TRL's SFTTrainer unchanged: its own sampler, no category in the batches.
    plain = build_trainer(tiny_model_dir, str(tmp_path), 1, curriculum="none", save_steps=100)
    assert plain.curriculum is None and plain.curriculum_sampler is None
    assert "curriculum_arm" not in next(iter(plain.get_train_dataloader()))
    plain.train()


@pytest.mark.parametrize("workers", [0, 2])
def test_gradient_accumulation_updates_once_per_step(tiny_model_dir, tmp_path, workers):
    """Each micro-batch is drawn when its optimizer step starts: after every earlier update, prefetching or not."""
    recorder = RecordingSEC(CATEGORIES, alpha=0.5, temperature=0.3)
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), 3, strategy=recorder, per_device_train_batch_size=2,
        gradient_accumulation_steps=3, save_steps=100, dataloader_num_workers=workers,
    )  # fmt: skip
    draws = record_draws(trainer)
    trainer.train()
    assert [len(c) for c, _, _ in recorder.calls] == [6, 6, 6]
    assert [seen for seen, _ in draws] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for step, (categories, _, _) in enumerate(recorder.calls):
        rows = [i for _, indices in draws[3 * step : 3 * step + 3] for i in indices]
        assert categories == [trainer.train_dataset[i]["task"] for i in rows]


def test_two_processes_keep_one_strategy(tiny_model_dir, tmp_path):
    reports = run_two_processes("sft_run.py", tiny_model_dir, tmp_path / "ddp", max_steps=4)
    assert reports[0]["curriculum"] == reports[1]["curriculum"]
    assert reports[0]["sampler"] == reports[1]["sampler"]
    assert reports[0]["curriculum"]["num_updates"] == 4
    # Each step's batch is 2 rows x 2 processes, drawn once for both; both halves reached the strategy.
    assert sum(reports[0]["curriculum"]["counts"]) == 4 * 4
    assert reports[0]["sampler"]["num_draws"] == 4


def test_drop_in_on_data_trl_users_have(tiny_model_dir, tmp_path):
    """Plain-text and prompt-completion data train as in TRL with the import swapped; traces: assistant-only loss."""
    from trl import SFTConfig

    plain = Dataset.from_dict({"text": ["1+1=2", "2+2=4", "3+3=6", "4+4=8"], "task": ["a", "a", "b", "b"]})
    pairs = Dataset.from_dict({"prompt": ["1+1=", "2+2=", "3+3=", "4+4="], "completion": ["2", "4", "6", "8"]})
    common = dict(max_steps=1, per_device_train_batch_size=2, use_cpu=True, bf16=False, report_to="none",
                  save_strategy="no")  # fmt: skip
    for dataset, curriculum in ((plain, "none"), (plain, "sec"), (pairs, "none")):
        args = SECSFTConfig(output_dir=str(tmp_path), curriculum=curriculum, curriculum_column="task", **common)
        trainer = SECSFTTrainer(model=tiny_model_dir, args=args, train_dataset=dataset)
        assert trainer.args.assistant_only_loss is False  # TRL's default: this data has no assistant turns
        trainer.train()
    traces = SECSFTTrainer(model=tiny_model_dir, args=SECSFTConfig(**sft_settings(str(tmp_path), 1)),
                           train_dataset=make_traces())  # fmt: skip
    assert traces.args.assistant_only_loss is True
    explicit = SECSFTConfig(**sft_settings(str(tmp_path), 1), assistant_only_loss=False)
    kept = SECSFTTrainer(model=tiny_model_dir, args=explicit, train_dataset=make_traces())
    assert kept.args.assistant_only_loss is False
    # A plain TRL config: TRL's SFT, no curriculum.
    trainer = SECSFTTrainer(model=tiny_model_dir, args=SFTConfig(output_dir=str(tmp_path), **common),
                            train_dataset=plain)  # fmt: skip
    assert trainer.curriculum is None
    trainer.train()
