"""benchmarks/gpu_check.py: its ~100M-parameter size, and an end-to-end run of its --smoke mode on CPU."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A benchmark script, not a package module: loaded from its file.
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)  # registered: it has dataclasses
_spec.loader.exec_module(gpu_check)
SIZES = gpu_check.SIZES


def llama_parameters(vocab: int, hidden: int, layers: int, intermediate: int) -> int:
    """Tied embeddings + per layer (q, k, v, o; gate, up, down; two RMSNorms) + the final norm."""
    return vocab * hidden + layers * (4 * hidden**2 + 3 * hidden * intermediate + 2 * hidden) + hidden


def test_full_size_is_about_100m_parameters():
    full = SIZES["full"]
    for vocab in (1000, full.vocab):  # the trained vocabulary may come out smaller than asked
        n = llama_parameters(vocab, full.hidden, full.layers, full.intermediate)
        assert 95e6 < n < 105e6, n


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    out = tmp_path / "gpu_check.json"
    script = ROOT / "benchmarks" / "gpu_check.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    smoke = SIZES["smoke"]
    assert result["mode"] == "smoke" and result["device"] == "cpu"
    assert result["sec_over_grpo"] == pytest.approx(result["sec_step_s"] / result["grpo_step_s"])
    for name in ("grpo", "sec"):
        (run,) = result["runs"][name]
        assert len(run["steps_s"]) == smoke.steps and len(run["losses"]) == smoke.steps
        assert run["step_s"] > 0 and run["peak_memory_mb"] > 0
    assert len(result["web"]["steps_s"]) == smoke.web_steps
    assert result["environment"]["packages"]["trl"] == importlib.metadata.version("trl")
    assert "SECGRPOTrainer / GRPOTrainer step time" in proc.stdout
