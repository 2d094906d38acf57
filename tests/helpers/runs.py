"""What tests need to run things: a browser (or why there is none), two training processes, a curriculum spy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def browser_missing() -> str | None:
    """Why the real-browser tests cannot run here (the install command to fix it), or None."""
    for module, install in (
        ("browsergym.miniwob", "pip install browsergym-miniwob==0.14.3"),
        ("miniwob", "pip install --no-deps miniwob==1.1.0"),
    ):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed ({install})"
    from sec_rl.web.browser import ChromiumNotFoundError, find_chromium

    try:
        find_chromium()
    except ChromiumNotFoundError as error:
        return str(error)
    return None


def pythonpath_with_tests() -> str:
    """``PYTHONPATH`` for a script launched from the tests: ``tests/`` first, so that it imports ``helpers``."""
    return os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)


def run_two_processes(
    script: str, model_dir: str, output_dir: Path, max_steps: int, extra: tuple[str, ...] = ()
) -> list[dict]:
    """Run ``tests/scripts/<script>`` on 2 CPU processes under ``accelerate launch``; each rank's JSON report."""
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(TESTS / "scripts" / script),
        "--model", model_dir, "--output_dir", str(output_dir), "--max_steps", str(max_steps), *extra,
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath_with_tests()}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((output_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    return reports


def record_draws(trainer) -> list[tuple[int, list[int]]]:
    """Spy on the trainer's curriculum sampler: (updates made before the draw, indices drawn) for every draw."""
    draws: list[tuple[int, list[int]]] = []
    draw = trainer.curriculum_sampler.draw

    def spy(n: int) -> list[int]:
        seen = trainer.curriculum.num_updates
        indices = draw(n)
        draws.append((seen, list(indices)))
        return indices

    trainer.curriculum_sampler.draw = spy
    return draws
