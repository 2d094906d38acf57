"""The terminal shows one readable line per log, not the Trainer's metric dictionaries."""

from __future__ import annotations

from datasets import Dataset
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from sec_rl.models.tiny import build_tiny_model_and_tokenizer
from sec_rl.trainers.progress import ConciseProgressCallback, format_log, use_concise_progress

WEB_LOG = {
    "loss": 0.021351, "grad_norm": 0.9, "learning_rate": 1e-4, "web/success_rate": 0.625,
    "web/invalid_action_rate": 0.0417, "reward": 0.625, "web/env_tokens": 428, "clip_ratio/low_min": None,
    "curriculum/prob/click-button": 0.2, "curriculum/prob/enter-text": 0.7, "curriculum/prob/click-tab": 0.1,
    "steps_skipped_without_signal": 2, "dynamic_sampling/generation_batches": 3.0, "epoch": 1.0,
}  # fmt: skip


def test_a_web_grpo_log_is_one_line_of_the_metrics_a_person_reads():
    assert format_log(WEB_LOG, 8, 12) == (
        "step 8/12 | loss 0.02135 | success 62% | reward 0.625 | invalid 4% | lr 1.0e-04 | skipped 2"
        " | batches 3 | curriculum: enter-text 70%"
    )


def test_missing_and_nan_metrics_are_left_out_and_the_end_says_how_long():
    line = format_log({"loss": float("nan"), "mean_token_accuracy": 0.875, "train_runtime": 61.4}, 40, 40)
    assert line == "step 40/40 | token acc 88% | done in 61 s"


def test_a_trainer_prints_a_line_per_log_and_no_dictionary(tmp_path, capsys):
    model, tokenizer = build_tiny_model_and_tokenizer(["one two three four five six"] * 4)
    rows = [{"input_ids": [3, 4, 5, 6], "labels": [3, 4, 5, 6]}] * 4
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, logging_steps=1, use_cpu=True, report_to="none",
                             save_strategy="no", disable_tqdm=True)  # fmt: skip
    trainer = use_concise_progress(Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows)))
    printers = [c for c in trainer.callback_handler.callbacks if isinstance(c, (ProgressCallback, PrinterCallback))]
    assert [type(c) for c in printers] == [ConciseProgressCallback]
    trainer.train()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["step 1/2", "step 2/2", "step 2/2"]
    assert lines[0].split(" | ")[1].startswith("loss ") and lines[-1].endswith(" s") and "{" not in "".join(lines)
