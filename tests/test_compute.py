"""FLOPs accounting: the formulas, the ledger file shared by processes, the callback on real tiny trainers."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch

from sec_rl.pipeline.compute import (
    ComputeCallback,
    ComputeLedger,
    count_parameters,
    inference_flops,
    training_flops,
)


def test_formulas():
    assert inference_flops(70e9, 1_000) == 2 * 70e9 * 1_000 == 1.4e14
    assert training_flops(8e9, 2_048) == 6 * 8e9 * 2_048
    assert training_flops(10, 3) == 3 * inference_flops(10, 3)  # backward costs twice the forward
    assert inference_flops(0, 5) == 0.0  # a teacher without a model (scripted) costs nothing
    with pytest.raises(ValueError, match="tokens must be a finite number >= 0"):
        inference_flops(1e9, -1)
    with pytest.raises(ValueError, match="num_parameters must be a finite number >= 0"):
        training_flops(float("nan"), 1)


def test_count_parameters(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    module = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3))
    assert count_parameters(module) == 10 * 4 + 4 * 3 + 3
    assert count_parameters(module, exclude_embeddings=True) == 4 * 3 + 3
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    embedding = model.get_input_embeddings().weight.numel()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model, exclude_embeddings=True) == count_parameters(model) - embedding
    with pytest.raises(TypeError, match="needs a torch.nn.Module"):
        count_parameters("gpt2")


def test_ledger_totals_table_and_errors(tmp_path):
    ledger = ComputeLedger()
    ledger.add("teacher", inference_flops(70e9, 1_000), 1_000, num_parameters=70_000_000_000)
    ledger.add("sft", training_flops(8e9, 500), 500)
    ledger.add("sft", training_flops(8e9, 500), 500)
    assert ledger.flops("sft") == training_flops(8e9, 1_000) and ledger.stages["sft"].tokens == 1_000
    assert ledger.total == inference_flops(70e9, 1_000) + training_flops(8e9, 1_000)
    assert ledger.flops("updates") == 0.0
    table = ledger.table()
    assert "| teacher | 1,000 | 1.400e+14 | 74.5% |" in table  # 1.4e14 of 1.88e14
    assert "| **total** | 2,000 | 1.880e+14 | |" in table
    with pytest.raises(ValueError, match="stage 'sft': flops and tokens must be finite and >= 0"):
        ledger.add("sft", -1.0)
    with pytest.raises(ValueError, match="a stage is a non-empty name"):
        ledger.add("", 1.0)
    (tmp_path / "compute.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        ComputeLedger.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no compute ledger at"):
        ComputeLedger.load(tmp_path / "missing")


def test_ledgers_of_two_processes_merge_in_one_file(tmp_path):
    path = tmp_path / "run" / "compute.json"
    collect, sft = ComputeLedger(), ComputeLedger()  # as in two processes: they share nothing but the file
    collect.add("teacher", 100.0, 10, num_parameters=5)
    collect.save(path)
    sft.add("sft", 600.0, 20)
    sft.save(path)
    assert sft.total == 700.0  # after saving, a ledger holds the merged totals
    collect.add("teacher", 50.0, 5)
    collect.save(path)
    collect.save(path)  # saving again adds nothing
    merged = ComputeLedger.load(tmp_path / "run")  # a folder finds its compute.json
    assert merged.flops("teacher") == 150.0 and merged.stages["teacher"].tokens == 15
    assert merged.flops("sft") == 600.0 and merged.total == 750.0
    assert merged.stages["teacher"].num_parameters == 5
    data = json.loads(path.read_text())
    assert data["total_flops"] == 750.0 and list(data["stages"]) == ["teacher", "sft"]
    # a base merged with a source name counts once
    rl = ComputeLedger()
    assert rl.merge(merged, source="sft-run") and not rl.merge(merged, source="sft-run")
    assert rl.total == 750.0


def _add_and_save(path: str, stage: str, times: int) -> None:
    ledger = ComputeLedger()
    for _ in range(times):
        ledger.add("shared", 1.0, 1)
        ledger.add(stage, 2.0, 1)
        ledger.save(path)


def test_concurrent_processes_lose_no_update(tmp_path):
    path = str(tmp_path / "compute.json")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_and_save, args=(path, f"p{i}", 25)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    ledger = ComputeLedger.load(path)
    assert ledger.flops("shared") == 50.0 and ledger.flops("p0") == ledger.flops("p1") == 50.0
    assert ledger.stages["shared"].tokens == 50


# -- the callback on real trainers -----------------------------------------------------------------
def sft_rows(n: int = 12) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"{i} + {i + 1} ="},
                {"role": "assistant", "content": str(2 * i + 1)},
            ]
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("count_tokens", ["all", "no"])
def test_callback_records_sft_flops(tiny_model_dir, tmp_path, count_tokens):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    # the student folder carries the teacher's ledger: the callback merges it in once ("auto" base)
    student = tmp_path / "student"
    shutil.copytree(tiny_model_dir, student)
    teacher = ComputeLedger()
    teacher.add("teacher", inference_flops(1e9, 1_000), 1_000)
    teacher.save(student)

    out = tmp_path / "sft"
    config = SFTConfig(
        output_dir=str(out),
        max_steps=4,
        per_device_train_batch_size=3,
        logging_steps=1,
        save_steps=2,
        include_num_input_tokens_seen=count_tokens,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(student)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(sft_rows()))
    trainer.add_callback(ComputeCallback("sft"))
    trainer.train()

    n = model.num_parameters(exclude_embeddings=True)
    state = trainer.state
    ledger = ComputeLedger.load(out)
    assert state.total_flos > 0
    # the exact relation: SFT FLOPs are the Trainer's total_flos = 6 x N(non-embedding) x input_ids seen
    assert ledger.flops("sft") == state.total_flos
    if count_tokens == "all":
        assert state.total_flos == training_flops(n, state.num_input_tokens_seen)
        assert ledger.stages["sft"].tokens == state.num_input_tokens_seen
    else:  # not tracked by the Trainer: TRL's own count of non-padding tokens (its logged num_tokens)
        assert state.num_input_tokens_seen == 0
        assert ledger.stages["sft"].tokens == max(e.get("num_tokens", 0) for e in state.log_history) > 0
    assert ledger.stages["sft"].num_parameters == n
    assert ledger.flops("teacher") == inference_flops(1e9, 1_000)
    assert ledger.total == ledger.flops("sft") + ledger.flops("teacher")

    # every checkpoint holds the compute behind it, teacher included
    for step in (2, 4):
        snapshot = ComputeLedger.load(out / f"checkpoint-{step}")
        flos = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["total_flos"]
        assert snapshot.flops("sft") == flos and snapshot.total == flos + ledger.flops("teacher")
    assert [c["step"] for c in ledger.checkpoints] == [2, 4]
    assert ledger.checkpoints[0]["total_flops"] < ledger.checkpoints[1]["total_flops"] == ledger.total

    # logged metrics, in trainer_state's log history too
    logged = [e for e in state.log_history if "compute/sft_flops" in e]
    assert len(logged) == 5  # 4 steps + the end-of-training summary
    assert logged[-1]["compute/total_flops"] == ledger.total and logged[-1]["compute/sft_flops"] == state.total_flos
    assert logged[-1]["compute/teacher_flops"] == inference_flops(1e9, 1_000)

    # resuming a finished run adds nothing (base not merged twice, no step trained twice)
    again = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(sft_rows()))
    again.add_callback(ComputeCallback("sft"))
    again.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    assert ComputeLedger.load(out).to_dict()["stages"] == ledger.to_dict()["stages"]


def test_callback_records_grpo_rollouts_and_updates(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from sec_rl.tasks.arithmetic import make_arithmetic_dataset

    def reward(completions, **kwargs):
        return [float(len(str(c)) % 2) for c in completions]

    config = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        num_iterations=2,
        beta=0.1,
        logging_steps=1,
        save_steps=2,
        learning_rate=1e-4,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=make_arithmetic_dataset(levels=(1, 2), n_per_level=4, seed=0),
        callbacks=[ComputeCallback()],  # the stage is inferred from GRPOConfig
    )
    trainer.train()

    n = model.num_parameters(exclude_embeddings=True)
    seen = trainer.state.num_input_tokens_seen  # TRL's prompt + completion tokens of every generation batch
    assert seen > 0 and trainer.state.total_flos == 0  # TRL 1.16's GRPO leaves total_flos at 0
    ledger = ComputeLedger.load(tmp_path / "grpo")
    assert ledger.flops("rollouts") == inference_flops(n, seen) and ledger.stages["rollouts"].tokens == seen
    # updates: forward + backward over every generation batch num_iterations times, + the reference forward (beta)
    assert ledger.flops("updates") == training_flops(n, 2 * seen) + inference_flops(n, seen)
    assert ledger.stages["updates"].tokens == 2 * seen
    assert ledger.total == ledger.flops("rollouts") + ledger.flops("updates")
    assert max(e.get("num_tokens", 0) for e in trainer.state.log_history) == seen  # what TRL logs
    assert ComputeLedger.load(tmp_path / "grpo" / "checkpoint-2").total == ledger.total


def test_rl_run_starting_from_an_sft_folder_counts_it_once(tmp_path):
    """An RL run's ledger holds the SFT ledger it started from; merging both files does not count SFT twice."""
    sft_dir, rl_dir = tmp_path / "sft", tmp_path / "rl"
    collect = ComputeLedger()
    collect.add("teacher", 10.0, 1)
    collect.save(tmp_path / "traces")
    sft = ComputeLedger()
    sft.merge(ComputeLedger.load(tmp_path / "traces"), source=str((tmp_path / "traces" / "compute.json").resolve()))
    sft.add("sft", 100.0, 2)
    sft.save(sft_dir)

    class Config:
        _name_or_path = str(sft_dir)

    class Model:  # what the callback reads of a model loaded from the SFT folder
        config = Config()

    base = ComputeCallback("rl")._base_file(Model())
    assert base == sft_dir / "compute.json"
    rl = ComputeLedger()
    rl.merge(ComputeLedger.load(base), source=str(base.resolve()))
    rl.add("rollouts", 1000.0, 3)
    rl.save(rl_dir)
    both = ComputeLedger.merged(tmp_path / "traces", sft_dir, rl_dir, tmp_path / "not-run-yet")
    assert both.total == 1110.0 and both.flops("teacher") == 10.0 and both.flops("sft") == 100.0
    assert ComputeLedger.merged(sft_dir).total == 110.0 and ComputeLedger.merged().total == 0.0


def test_callback_refuses_unknown_stage_and_missing_base(tmp_path):
    with pytest.raises(ValueError, match="stage is 'sft' or 'rl'"):
        ComputeCallback("ppo")
    callback = ComputeCallback("sft", base=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="ComputeCallback base .* does not exist"):
        callback._base_file(None)


def test_compute_file_paths(tmp_path):
    ledger = ComputeLedger()
    ledger.add("sft", 1.0)
    assert ledger.save(tmp_path / "a" / "compute.json") == tmp_path / "a" / "compute.json"
    assert ledger.save(tmp_path / "b") == tmp_path / "b" / "compute.json"
    assert Path(tmp_path / "b" / "compute.json").is_file()
