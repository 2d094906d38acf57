"""The teacher -> student pipeline as a user runs it: the stage commands, the example configs, the web demo.

The end-to-end test drives a real Chromium through BrowserGym on MiniWoB++ pages: the scripted teacher
collects traces, a tiny student built offline is trained by SFT then SEC-GRPO, and every stage is evaluated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.runs import browser_missing
from trl import ModelConfig, TrlParser

from sec_rl.cli import _demo_domain
from sec_rl.cli import main as cli_main
from sec_rl.pipeline.collect import CollectConfig
from sec_rl.pipeline.stages import PushArguments, WebEvalArguments, WebGRPOArguments, WebSFTArguments, parse_stages
from sec_rl.trainers import SECSFTConfig
from sec_rl.trainers.web_grpo import SECWebGRPOConfig
from sec_rl.web.env import TextEnvironment

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "web_agent"


@pytest.mark.parametrize("command", ["collect", "sft", "grpo", "evaluate", "push", "demo"])
def test_every_stage_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: sec-rl {command}" in text
    expected = {
        "collect": "--teacher",
        "sft": "--curriculum_signal",
        "grpo": "--web_layout",
        "evaluate": "--stages",
        "push": "--repo_id",
        "demo": "--collect_seeds",
    }[command]
    assert expected in text


def test_evaluate_lists_only_what_evaluation_uses(capsys):
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for option in ("--web_max_turns", "--web_layout", "--web_max_page_tokens", "--chat_template_kwargs"):
        assert option in text
    for training_only in ("gamma", "advantage", "--web_failure_reward", "--web_episodes_per_goal", "--learning_rate"):
        assert training_only not in text
    assert "--layout " not in text and "--web_sample_mode" not in text  # old names: still parsed, not listed


def test_configs_without_torch_and_one_web_block_for_every_command(tmp_path):
    """The evaluation and collection configs import no torch, TRL or transformers; one YAML block of web_*
    settings parses into collection, training and evaluation alike, and renders the same prompts."""
    code = (
        "import sys\n"
        "import sec_rl.web.config, sec_rl.pipeline.stages, sec_rl.pipeline.collect\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

    web = {"web_env": "text", "web_max_turns": 4, "web_layout": "per_step", "web_max_page_chars": 500,
           "web_history": 1, "web_actions": ["bid"], "web_system_prompt": "Act.", "web_step_timeout": 9.0}  # fmt: skip
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump({**web, "output_dir": str(tmp_path)}))
    (collect,) = TrlParser(CollectConfig).parse_args_and_config(["--config", str(path)])
    (evaluation,) = TrlParser(WebEvalArguments).parse_args_and_config(["--config", str(path)])
    _, grpo, _ = TrlParser((WebGRPOArguments, SECWebGRPOConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(path), "--use_cpu", "--bf16", "false"]
    )
    for config in (collect, evaluation, grpo):
        assert {name: getattr(config, name) for name in web} == web
        factory = config.env_factory()
        assert config.prompt_config() == grpo.prompt_config()
        assert (factory.func, factory.keywords) == (TextEnvironment, {"actions": ["bid"]})


def test_demo_domain_comes_from_flags_or_yaml(tmp_path, capsys):
    assert _demo_domain([]) == "web"
    assert _demo_domain(["--domain", "arithmetic"]) == "arithmetic"
    assert _demo_domain(["--output_dir", "x", "--domain=arithmetic"]) == "arithmetic"
    config = tmp_path / "demo.yaml"
    config.write_text("domain: arithmetic\nsft_steps: 3\n")
    assert _demo_domain(["--config", str(config)]) == "arithmetic"
    assert cli_main(["demo", "--domain", "chess"]) == 2
    assert "unknown --domain 'chess'" in capsys.readouterr().err


def test_stage_specs_are_checked():
    assert parse_stages(["sft=outputs/sft", "sft+rl=outputs/grpo/checkpoint-4"]) == {
        "sft": "outputs/sft",
        "sft+rl": "outputs/grpo/checkpoint-4",
    }
    with pytest.raises(ValueError, match=r"stage 'outputs/sft' is not name=path"):
        parse_stages(["outputs/sft"])
    with pytest.raises(ValueError, match="no stage to evaluate"):
        parse_stages([])


@pytest.mark.parametrize(
    "name, types",
    [
        ("collect", (CollectConfig,)),
        ("sft", (WebSFTArguments, SECSFTConfig, ModelConfig)),
        ("grpo", (WebGRPOArguments, SECWebGRPOConfig, ModelConfig)),
        ("evaluate", (WebEvalArguments,)),
        ("push", (PushArguments,)),
    ],
)
def test_example_configs_parse_with_the_study_settings(name, types, tmp_path):
    """Every YAML of examples/web_agent parses into its script's dataclasses (bf16 switched off: no GPU here)."""
    config = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    if "bf16" in config:
        config.update(bf16=False, use_cpu=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    parsed = TrlParser(types).parse_args_and_config(["--config", str(path)])
    if name == "grpo":
        _, grpo, _ = parsed
        # The web-agent study's robust settings.
        assert (grpo.temperature, grpo.learning_rate, grpo.beta) == (0.25, 1e-6, 0.0)
        assert grpo.web_zero_advantage_filter and grpo.per_device_train_batch_size * 8 * 4 == 512
        assert grpo.web_layout == "episode"
    if name == "sft":
        _, sft, _ = parsed
        assert sft.assistant_only_loss and sft.curriculum_signal == "loss"
    if name == "evaluate":
        assert parse_stages(parsed[0].stages) == {"sft": "outputs/sft", "sft+rl": "outputs/grpo"}


@pytest.mark.browser
def test_web_demo_runs_the_whole_pipeline_and_resumes(tmp_path, capfd):
    missing = browser_missing()
    if missing:
        pytest.skip(f"needs Chromium and BrowserGym: {missing}")
    out = tmp_path / "demo"
    argv = [
        "demo", "--output_dir", str(out), "--tasks", "click-test", "click-dialog", "--heldout_tasks", "focus-text",
        "--collect_seeds", "3", "--eval_goal_seeds", "3", "--eval_task_seeds", "1", "--hidden_size", "32",
        "--sft_steps", "6", "--sft_batch_size", "4", "--grpo_steps", "1", "--prompts_per_step", "2",
        "--num_generations", "2", "--max_turns", "2",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())

    # The terminal: progress and one line per logging step, without the libraries' repeated notices.
    terminal = "".join(capfd.readouterr())
    assert "step 1/1 | loss" in terminal and "step 6/6 | loss" in terminal
    for noise in ("Loading weights", "Overriding the task's slow_mo", "gradient_checkpointing` is deprecated"):
        assert noise not in terminal

    # The teacher's traces: every goal once, all successful on these tasks.
    assert report["traces"] == {"episodes": 6, "successful": 6}
    # Every stage evaluated on the held-out goals (2 tasks x seeds 0-2) and held-out task (1 seed).
    stages = {entry["stage"]: entry["splits"] for entry in report["evaluation"]["stages"]}
    assert list(stages) == ["untrained", "sft", "sft+rl", "teacher (scripted)"]
    for splits in stages.values():
        assert splits["goals"]["overall"]["episodes"] == 6 and splits["tasks"]["overall"]["episodes"] == 1
        assert splits["goals"]["seeds"] == [0, 1, 2] and splits["tasks"]["tasks"] == ["focus-text"]
    assert stages["teacher (scripted)"]["goals"]["overall"]["success_rate"] == 1.0
    # Compute: SFT and RL counted, the RL ledger carrying SFT's (and the teacher's, 0 FLOPs: no model).
    flops = {name: entry["flops"] for name, entry in report["compute"]["stages"].items()}
    assert set(flops) == {"teacher", "sft", "rollouts", "updates"} and flops["teacher"] == 0.0
    assert flops["sft"] > 0 and flops["rollouts"] > 0 and flops["updates"] == pytest.approx(3 * flops["rollouts"])
    # The curriculum chose tasks in both training stages and its state travels with the models.
    for stage in ("sft", "grpo"):
        probabilities = report["curriculum"][stage]
        assert set(probabilities) == {"click-test", "click-dialog"}
        assert sum(probabilities.values()) == pytest.approx(1.0)
    # The RL training curve: the rollouts' sampled success at each step (one step here), read back from the
    # trainer_state.json the GRPO stage leaves beside its model.
    assert list(report["rl_curve"]) == ["1"] and 0.0 <= report["rl_curve"]["1"] <= 1.0
    text = (out / "report.md").read_text()
    assert f"## RL training curve: the rollouts' sampled success per step\n\n1: {report['rl_curve']['1']:.0%}" in text
    assert "| untrained |" in text and "| sft+rl |" in text and "## Compute (FLOPs)" in text
    # RL's gain, paired on the same held-out goals and tasks as the table's (6 and 1 episodes).
    assert {split: gain["episodes"] for split, gain in report["rl_gain"].items()} == {"goals": 6, "tasks": 1}
    assert f"- held-out goals (6 episodes): {report['rl_gain']['goals']['mean']:+.1%} [" in text
    # Where the change lies: success per training task on the held-out goals, before and after RL.
    sft, rl = report["per_task"]["sft"], report["per_task"]["sft+rl"]
    assert set(sft) == set(rl) == {"click-test", "click-dialog"}
    assert f"click-test {sft['click-test']:.0%} -> {rl['click-test']:.0%}" in text
    assert (out / "eval" / "success.png").stat().st_size > 0

    # Run again: every stage finds its work on disk and nothing is redone.
    models = {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    assert cli_main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")} == models
    again = json.loads((out / "report.json").read_text())
    assert again["evaluation"] == report["evaluation"]
    assert len(list((out / "traces").glob("traces-*.jsonl"))) == 1


def test_sft_stage_trains_lora_adapters_from_traces_and_carries_the_teacher_compute(tiny_model_dir, tmp_path):
    """`sec-rl sft`'s function with `--use_peft`: LoRA adapters through TRL's ModelConfig, curriculum over tasks."""
    from sec_rl.pipeline.compute import ComputeLedger
    from sec_rl.pipeline.stages import run_sft
    from sec_rl.pipeline.traces import Trace, TraceWriter

    traces = tmp_path / "traces"
    with TraceWriter(traces) as writer:
        for seed in range(3, 11):
            task = "click-button" if seed % 2 else "enter-text"
            messages = [
                {"role": "system", "content": "You are a web agent."},
                {"role": "user", "content": f"# Goal\nDo {task} number {seed}."},
                {"role": "assistant", "content": "Thought: the button.\nAction: click('1')"},
            ]
            writer.write(Trace(f"{task}/{seed}", task, seed, messages, 1.0, True, 1, "teacher-70b"))
    teacher = ComputeLedger()
    teacher.add("teacher", 1.0e15, 1000, 70_000_000_000)
    teacher.save(traces / "compute.json")

    lora = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    model_args = ModelConfig(tiny_model_dir, **lora)
    args = SECSFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=3, per_device_train_batch_size=2, use_cpu=True, bf16=False,
        report_to="none", curriculum="sec", curriculum_column=["task"], save_strategy="no",
        gradient_checkpointing=False,
    )  # fmt: skip
    trainer = run_sft(WebSFTArguments(traces=str(traces)), args, model_args)

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    assert type(trainer.model).__name__ == "PeftModelForCausalLM" and 0 < trainable < total / 10
    saved = {p.name for p in (tmp_path / "sft").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "curriculum_state.json", "compute.json"} <= saved
    assert trainer.curriculum.num_updates == 3
    ledger = ComputeLedger.load(tmp_path / "sft" / "compute.json")
    assert ledger.flops("teacher") == 1.0e15 and ledger.flops("sft") > 0


def test_every_command_fails_in_one_line(tmp_path, capsys, monkeypatch):
    """An error is one line naming the command and the fix; SEC_RL_DEBUG=1 gives the traceback instead."""
    traces = tmp_path / "traces"
    traces.mkdir()
    argv = ["sft", "--traces", str(traces), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true",
            "--model_name_or_path", str(tmp_path / "no-model")]  # fmt: skip
    monkeypatch.delenv("SEC_RL_DEBUG", raising=False)
    assert cli_main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sec-rl")]
    assert len(lines) == 1 and lines[0].startswith("sec-rl sft: error: ") and "SEC_RL_DEBUG=1" in lines[0]
    assert "curriculum_column" not in lines[0]  # `task`, which every trace has, is the default category column
    monkeypatch.setenv("SEC_RL_DEBUG", "1")
    with pytest.raises(Exception):  # noqa: B017 - whatever the command raised, unchanged
        cli_main(argv)
