"""examples/reasoning: the GPU recipe runs on CPU with --tiny (offline tiny model, one GRPO step)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "reasoning"


def load_script():
    spec = importlib.util.spec_from_file_location("sec_grpo_reasoning", EXAMPLES / "sec_grpo_reasoning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_configs_hold_the_paper_settings(tmp_path):
    countdown = yaml.safe_load((EXAMPLES / "countdown_qwen2.5-3b.yaml").read_text())
    assert countdown["curriculum_alpha"] == 0.5 and countdown["curriculum_temperature"] == 1.0
    assert countdown["num_generations"] == 8 and countdown["generation_batch_size"] == 256 * 8
    assert countdown["use_vllm"] and countdown["vllm_mode"] == "colocate" and countdown["bf16"]
    assert countdown["learning_rate"] == 1e-6 and countdown["beta"] == 0.0 and countdown["temperature"] == 1.0
    multi = yaml.safe_load((EXAMPLES / "multidomain_qwen2.5-3b.yaml").read_text())
    assert multi["curriculum_column"] == ["difficulty", "domain"] and multi["curriculum_temperature"] == 0.2
    math = yaml.safe_load((EXAMPLES / "math_qwen2.5-7b.yaml").read_text())
    assert math["curriculum_temperature"] == 0.4 and math["domain"] == "math"

    script = load_script()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**countdown, "tiny": True}))
    assert script.tiny_requested(["--config", str(config)])
    assert script.tiny_requested(["--tiny"]) and not script.tiny_requested(["--tiny", "false"])
    assert not script.tiny_requested(["--config", str(EXAMPLES / "countdown_qwen2.5-3b.yaml")])


def test_multidomain_recipe_runs_tiny_on_cpu(tmp_path):
    """The multi-domain GPU recipe, with --tiny: data from reasoning-gym, joint arms, one GRPO step, saved state."""
    pytest.importorskip("reasoning_gym", reason='needs reasoning-gym: pip install "sec-rl[reasoning]"')
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(EXAMPLES / "sec_grpo_reasoning.py"),
        "--config", str(EXAMPLES / "multidomain_qwen2.5-3b.yaml"),
        "--tiny", "--tiny_steps", "1", "--tiny_n_per_level", "2", "--num_proc", "1",
        "--output_dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["domain"] == "multidomain" and summary["steps"] == 1
    arms = {f"{level}-{domain}" for level in "123" for domain in ("arc_1d", "countdown", "zebra")}
    assert set(summary["probabilities"]) == arms  # the paper's 3 x 3 joint arms
    state = json.loads((out / "curriculum_state.json").read_text())
    assert state["curriculum"]["name"] == "sec" and state["curriculum"]["num_updates"] == 1
    assert len(state["curriculum"]["categories"]) == 9
