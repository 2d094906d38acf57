"""The student's model card and push, without network.

The pipeline's records are real files (traces written by ``TraceWriter``, a curriculum state saved from a real
``SelfEvolvingCurriculum`` as the trainer saves it). The Hub is the one thing that cannot exist here:
the push goes to a *local stand-in for huggingface.co*, a stdlib ``http.server`` started by the test that
implements only the endpoints ``huggingface_hub.HfApi.create_repo`` and ``upload_folder`` call (repo creation,
README metadata validation, preupload, commit), answers "regular" upload mode for every file so that contents
arrive base64-encoded in the NDJSON commit, and records everything it receives.
"""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pytest
from helpers.hub import StandInHub

from sec_rl.curriculum import SelfEvolvingCurriculum
from sec_rl.pipeline.hub import (
    PipelineRecord,
    load_curriculum_state,
    model_card,
    pipeline_record,
    push_student_to_hub,
    training_steps,
)
from sec_rl.pipeline.report import StageReport, StageResult
from sec_rl.pipeline.traces import Trace, TraceWriter
from sec_rl.web.evaluate import TaskScore

TASKS = ["click-button", "enter-text", "click-checkboxes"]
TEACHER = "Llama-3.3-70B-Instruct"


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    # conftest sets HF_HUB_OFFLINE=1 (no downloads in tests); this stand-in is local, so requests may go out.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = StandInHub()
    yield server
    server.close()


# -- the pipeline's records, as real files ---------------------------------------------------------
def _sec_curriculum(temperature: float = 0.3) -> SelfEvolvingCurriculum:
    curriculum = SelfEvolvingCurriculum(TASKS, temperature=temperature)
    for step in range(4):
        curriculum.update(TASKS * 2, [0.9, 0.1, 0.4 + 0.1 * step, 0.8, -0.2, 0.5])
    return curriculum


@pytest.fixture
def runs(tmp_path):
    """Folders as the pipeline writes them: traces, an SFT run, an RL run (curriculum in a checkpoint), evaluation."""
    with TraceWriter(tmp_path / "traces", shard_size=4) as writer:
        for seed in range(10):
            success, env_error = seed < 6, seed == 9
            messages = [
                {"role": "system", "content": "You are a web agent."},
                {"role": "user", "content": f"page {seed}"},
                {"role": "assistant", "content": "Action: click('3')"},
            ]
            trace = Trace(f"click-button/{seed}", "click-button", seed, messages, float(success), success, 1, TEACHER)
            trace.env_error = env_error
            writer.write(trace)

    sft = tmp_path / "sft"
    (sft / "checkpoint-40").mkdir(parents=True)
    (sft / "checkpoint-40" / "trainer_state.json").write_text(json.dumps({"global_step": 40}))
    (sft / "checkpoint-20").mkdir()
    (sft / "checkpoint-20" / "trainer_state.json").write_text(json.dumps({"global_step": 20}))

    rl = tmp_path / "grpo"
    (rl / "checkpoint-25").mkdir(parents=True)
    (rl / "checkpoint-25" / "trainer_state.json").write_text(json.dumps({"global_step": 25}))
    # As SECGRPOTrainer.save_model writes it: the state, the strategy's parameters, the next draw's probabilities.
    curriculum = _sec_curriculum()
    state = {
        "curriculum": curriculum.state_dict(),
        "params": {"temperature": 0.3},
        "probabilities": curriculum.probabilities(),
        "sampler": {},
    }
    (rl / "curriculum_state.json").write_text(json.dumps(state))
    compute = {"stages": {name: {"flops": flops, "tokens": 1} for name, flops in FLOPS.items()}}
    (rl / "compute.json").write_text(json.dumps(compute))

    evaluation = StageReport(
        {
            "untrained": StageResult("untrained", scores={"goals": TaskScore(0.295, 0.25, 0.34, 297, 0)}),
            "sft+rl": StageResult(
                "sft+rl",
                scores={"goals": TaskScore(0.672, 0.62, 0.72, 297, 1), "tasks": TaskScore(0.633, 0.55, 0.71, 230, 0)},
            ),
        }
    )
    evaluation.save(tmp_path / "eval")
    return {"traces": tmp_path / "traces", "sft_dir": sft, "rl_dir": rl, "eval_dir": tmp_path / "eval"}


FLOPS = {"teacher": 4.0e15, "sft": 1.0e15, "rollouts": 2.0e15, "updates": 1.0e15}


@pytest.fixture
def model_dir(tmp_path, tiny_model_dir):
    """A copy of the tiny model, with what a training output folder also holds (left out of the upload)."""
    folder = tmp_path / "student"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "checkpoint-25").mkdir()
    (folder / "checkpoint-25" / "optimizer.pt").write_bytes(b"\0" * 64)
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "curriculum_state.json").write_text("{}")
    return folder


# -- tests -----------------------------------------------------------------------------------------
def test_curriculum_state_and_steps_are_read_from_the_runs(runs, tmp_path):
    expected = _sec_curriculum().probabilities()
    assert len(set(np.round(list(expected.values()), 6))) == 3  # learned: not uniform

    state = load_curriculum_state(runs["rl_dir"])  # the probabilities the trainer saved
    assert state.strategy == "sec" and state.params == {"temperature": 0.3}
    assert state.probabilities == pytest.approx(expected)
    assert state.num_updates == 4 and state.counts == dict.fromkeys(TASKS, 8)
    # Rebuilt from the saved values with the saved parameters: the same probabilities.
    saved = json.loads((runs["rl_dir"] / "curriculum_state.json").read_text())
    del saved["probabilities"]
    (tmp_path / "rebuilt").mkdir()
    (tmp_path / "rebuilt" / "curriculum_state.json").write_text(json.dumps(saved))
    assert load_curriculum_state(tmp_path / "rebuilt").probabilities == pytest.approx(expected)
    # Other settings (the default temperature 1.0) give other, flatter probabilities from the same values.
    flatter = load_curriculum_state(runs["rl_dir"] / "curriculum_state.json", params={})
    assert flatter.probabilities == pytest.approx(_sec_curriculum(temperature=1.0).probabilities())
    assert max(flatter.probabilities.values()) < max(expected.values())

    assert training_steps(runs["sft_dir"]) == 40  # the newest checkpoint
    assert training_steps(runs["rl_dir"]) == 25
    with pytest.raises(FileNotFoundError, match="curriculum_state.json.*output_dir"):
        load_curriculum_state(runs["sft_dir"])


def test_pipeline_record_and_model_card(runs, caplog):
    record = pipeline_record(**{k: str(v) for k, v in runs.items()}, base_model="meta-llama/Llama-3.1-8B-Instruct")
    assert record.teacher == TEACHER
    assert (record.episodes, record.successful_traces) == (10, 6)
    assert (record.sft_steps, record.rl_steps) == (40, 25)
    assert record.curriculum_strategy == "sec" and record.curriculum_stage == "rl"
    assert record.curriculum_probabilities == pytest.approx(_sec_curriculum().probabilities())
    assert record.compute == FLOPS
    assert list(record.evaluation.stages) == ["untrained", "sft+rl"]
    assert json.loads(json.dumps(record.to_dict()))["evaluation"]["stages"][1]["stage"] == "sft+rl"

    record.datasets = ["your-name/web-agent-traces"]
    card = model_card(record, "your-name/web-agent")
    assert card.data.library_name == "transformers"
    assert {"sec-rl", "trl", "web-agent"} <= set(card.data.tags)
    assert card.data.base_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert card.data.datasets == ["your-name/web-agent-traces"]
    text = card.text
    assert f"| teacher | {TEACHER} |" in text
    assert "| teacher traces | 10 episodes collected, 6 successful kept for SFT |" in text
    assert "| SFT | 40 steps |" in text and "| RL (multi-turn GRPO) | 25 steps |" in text
    assert "| curriculum | sec |" in text
    for task, p in _sec_curriculum().probabilities().items():
        assert f"| {task} | {p:.4f} |" in text
    assert "| sft+rl | 67.2% [62.0, 72.0] | 63.3% [55.0, 71.0] |" in text
    assert "| untrained | 29.5% [25.0, 34.0] | - |" in text
    assert "| teacher | 4.000e+15 | 50.0% |" in text and "| **total** | 8.000e+15 | |" in text
    assert 'AutoModelForCausalLM.from_pretrained("your-name/web-agent")' in text

    with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.hub"):
        partial = pipeline_record(traces=runs["traces"], rl_dir="nowhere")
    assert "rl_dir='nowhere' does not exist" in caplog.text
    assert partial.rl_steps is None and partial.curriculum_strategy is None and partial.episodes == 10
    assert "| RL (multi-turn GRPO) | - |" in model_card(partial, "your-name/web-agent").text


def test_push_uploads_the_model_with_its_card(hub, runs, model_dir):
    record = pipeline_record(**runs)
    url = push_student_to_hub(
        model_dir, "your-name/web-agent", record, token="hf_stand_in", private=True, endpoint=hub.url
    )
    assert hub.repos == {
        "your-name/web-agent": {
            "name": "web-agent",
            "organization": "your-name",
            "visibility": "private",
            "type": "model",
        }
    }
    (commit,) = hub.commits
    assert url == f"{hub.url}/your-name/web-agent/commit/{1:040x}"
    assert commit["repo_id"] == "your-name/web-agent" and commit["revision"] == "main"
    assert commit["header"]["summary"] == "Upload the student of the sec-rl web-agent pipeline"
    names = set(commit["files"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert "curriculum_state.json" in names  # the run's records travel with the model
    assert not any(n.startswith("checkpoint-") or n == "training_args.bin" for n in names)
    assert commit["files"]["config.json"] == (model_dir / "config.json").read_bytes()
    assert commit["files"]["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    readme = commit["files"]["README.md"].decode()
    assert readme == str(model_card(record, "your-name/web-agent"))
    assert readme.startswith("---\n") and "library_name: transformers" in readme
    assert f"| teacher | {TEACHER} |" in readme and "10 episodes collected, 6 successful" in readme
    assert "| SFT | 40 steps |" in readme and "| RL (multi-turn GRPO) | 25 steps |" in readme
    assert "Strategy `sec`" in readme and "| sft+rl | 67.2% [62.0, 72.0] | 63.3% [55.0, 71.0] |" in readme
    assert not (model_dir / "README.md").exists()  # the card went to the upload, not into the folder
    assert {r["authorization"] for r in hub.requests} == {"Bearer hf_stand_in"}
    assert [r["path"] for r in hub.requests] == [
        "/api/repos/create",
        "/api/validate-yaml",
        "/api/models/your-name/web-agent/preupload/main",
        "/api/models/your-name/web-agent/commit/main",
    ]

    # A second push to the existing repository (create answers 409) is a second commit.
    push_student_to_hub(model_dir, "your-name/web-agent", PipelineRecord(teacher="scripted"), endpoint=hub.url)
    assert len(hub.commits) == 2 and "| teacher | scripted |" in hub.commits[1]["files"]["README.md"].decode()


def test_push_refuses_what_is_not_a_model(hub, tmp_path, model_dir):
    with pytest.raises(FileNotFoundError, match="does not exist.*save_model"):
        push_student_to_hub(tmp_path / "missing", "your-name/web-agent", PipelineRecord(), endpoint=hub.url)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"missing weights.*save_pretrained"):
        push_student_to_hub(empty, "your-name/web-agent", PipelineRecord(), endpoint=hub.url)
    with pytest.raises(ValueError, match="not a Hub repository id"):
        push_student_to_hub(model_dir, "your name/web agent!", PipelineRecord(), endpoint=hub.url)
    assert hub.requests == []


def test_load_curriculum_state_reads_a_file_with_old_joint_names(tmp_path):
    # sec-rl 0.1.0 joined several category columns with an unescaped "-": ("a-b", "c") was saved as "a-b-c".
    # The file is read as it is, names included (they cannot be split back into columns without the data).
    state = {
        "curriculum": {
            "name": "sec", "categories": ["a-b-c", "x-y"], "num_updates": 1, "counts": [2, 1],
            "q_values": [0.3, 0.1], "last_rewards": [0.6, 0.2], "last_mean_rewards": [None, None],
        },
        "params": {"alpha": 0.5, "temperature": 1.0},
        "probabilities": {"a-b-c": 0.549834, "x-y": 0.450166},
    }  # fmt: skip
    (tmp_path / "curriculum_state.json").write_text(json.dumps(state))
    read = load_curriculum_state(tmp_path)
    assert read.probabilities == {"a-b-c": 0.549834, "x-y": 0.450166}
    assert read.counts == {"a-b-c": 2, "x-y": 1} and read.num_updates == 1
    # Rebuilt from the values: softmax([0.3, 0.1] / 1.0)
    rebuilt = load_curriculum_state(tmp_path, params={"temperature": 1.0})
    expected = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert rebuilt.probabilities["a-b-c"] == pytest.approx(expected)
