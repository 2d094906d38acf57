"""The user-facing entry points run end to end: the example TRL script (YAML via TrlParser) and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from sec_rl.cli import main as cli_main
from sec_rl.tasks.arithmetic import make_arithmetic_dataset

ROOT = Path(__file__).parents[1]


def test_example_script_with_yaml_config(tiny_model_dir, tmp_path):
    data = tmp_path / "arithmetic"
    make_arithmetic_dataset((1, 2, 3), n_per_level=8).save_to_disk(str(data))
    config = yaml.safe_load((ROOT / "examples/arithmetic/sec_grpo.yaml").read_text())
    config.update(
        model_name_or_path=tiny_model_dir,
        dataset_name=str(data),
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=4,
        max_steps=2,
        logging_steps=1,
        save_steps=2,
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/sec_grpo.py"), "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((tmp_path / "out" / "curriculum_state.json").read_text())
    assert state["curriculum"]["name"] == "sec" and state["curriculum"]["num_updates"] == 2
    assert (tmp_path / "out" / "checkpoint-2" / "curriculum_state.json").exists()


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert cli_main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli_main(["train-everything"]) == 2
    assert "unknown command 'train-everything'" in capsys.readouterr().err


def test_demo_runs_end_to_end_at_tiny_scale(tmp_path):
    out = tmp_path / "demo"
    argv = [
        "demo", "--domain", "arithmetic", "--output_dir", str(out), "--hidden_size", "32", "--sft_steps", "4",
        "--grpo_steps", "2", "--prompts_per_step", "4", "--num_generations", "4", "--eval_per_level", "8",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    before, after = results["accuracy"].values()
    assert set(before) == {"1", "2", "3", "4", "all"} == set(after)
    assert all(0.0 <= v <= 1.0 for v in [*before.values(), *after.values()])
    assert (out / "grpo" / "curriculum_probabilities.png").stat().st_size > 0
    assert "| after SFT |" in (out / "report.md").read_text()


def test_every_help_text_survives_argparse():
    """argparse %-formats help texts: a bare '%' (as in '95% interval') makes `--help` crash with a TypeError."""
    import ast
    import re

    bare_percent = re.compile(r"%(?!\()")  # searched after removing the escaped '%%'; '%(default)s' is a field
    offenders = []
    for path in [*ROOT.glob("sec_rl/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values):
                help_text = value.value if isinstance(value, ast.Constant) else None
                if (
                    getattr(key, "value", None) == "help"
                    and isinstance(help_text, str)
                    and bare_percent.search(help_text.replace("%%", ""))
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{value.lineno}")
    assert not offenders, f"write '%%' for a percent sign in these help texts: {offenders}"
