"""Turn a search space into a sweep on disk: one config per run plus the commands that launch them.

Layout written under the sweep folder::

    sweep.yaml                 the space, seed and template (``sec-rl diagnose`` reads it back)
    runs/run-0000/config.yaml  sampled parameters + output_dir/run_name, one folder per run
    commands_local.sh          runs every config one after the other on this machine (resumable)
    commands_accelerate.txt    one launch command per line, for a cluster scheduler (job arrays, xargs, ...)
"""

from __future__ import annotations

import shlex
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sec_rl.diagnosis.space import DiagnosisError, SearchSpace, load_space

DEFAULT_TEMPLATE = "accelerate launch {script} --config {config}"
TEMPLATE_FIELDS = ("script", "config", "output_dir", "run_id")
SWEEP_FILE = "sweep.yaml"
RUNS_DIR = "runs"
CONFIG_NAME = "config.yaml"
#: Keys the sweep adds to every config beside the sampled parameters; the diagnosis ignores them.
RESERVED_KEYS = ("output_dir", "run_name")


@dataclass
class SweepPlan:
    """What :func:`write_sweep` wrote."""

    root: Path
    run_ids: list[str]
    configs: list[dict[str, Any]]
    commands: list[str]
    local_script: Path
    cluster_commands: Path


def check_template(template: str) -> None:
    """Fail early on a template with unknown ``{fields}`` (a typo would otherwise surface on the cluster)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise DiagnosisError(
            f"launch template {template!r} is malformed ({err}); write literal braces as {{{{ }}}}."
        ) from None
    unknown = sorted(names - set(TEMPLATE_FIELDS))
    if unknown:
        raise DiagnosisError(f"launch template uses unknown fields {unknown}: available are {list(TEMPLATE_FIELDS)}.")
    if not names & {"config", "output_dir", "run_id"}:
        raise DiagnosisError(
            f"launch template {template!r} never passes {{config}} (or {{output_dir}}, {{run_id}}): "
            "every run would train the same configuration."
        )


def run_id(index: int, width: int = 4) -> str:
    return f"run-{index:0{width}d}"


def write_sweep(
    space: SearchSpace | str | Path | None,
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    script: str = "train.py",
    template: str = DEFAULT_TEMPLATE,
    local_template: str | None = None,
    start: int = 0,
    relative_paths: bool = False,
    overwrite: bool = False,
) -> SweepPlan:
    """Sample ``n`` configs and write them with their launch commands.

    Args:
        space: a :class:`SearchSpace`, a YAML path, a built-in name, or ``None`` for the study's space.
        template: command per run; fields ``{script} {config} {output_dir} {run_id}`` (paths shell-quoted).
        local_template: command used by ``commands_local.sh`` (default: ``template``),
            e.g. ``python {script} --config {config}``.
        start: index of the first run; ``start=64`` adds runs 64.. to an existing sweep with the same seed.
        relative_paths: write paths relative to the sweep folder (run the commands from there) instead of absolute.
        overwrite: replace existing run folders of the same ids instead of refusing.
    """
    space = load_space(space)
    check_template(template)
    check_template(local_template or template)
    root = Path(out_dir)
    runs_root = root / RUNS_DIR
    ids = [run_id(i) for i in range(start, start + n)]
    taken = [i for i in ids if (runs_root / i).exists()]
    if taken and not overwrite:
        raise DiagnosisError(
            f"{runs_root} already has {len(taken)} of these runs (e.g. {taken[0]}): pass --start {start + n} "
            "to add new runs, a new output folder, or --overwrite to replace them."
        )
    configs = space.sample_many(n, seed=seed, start=start)

    def shown(path: Path) -> Path:
        return path.relative_to(root) if relative_paths else path.resolve()

    commands, local_commands = [], []
    for rid, config in zip(ids, configs):
        run_dir = runs_root / rid
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {**config, "output_dir": str(shown(run_dir)), "run_name": rid}
        (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False))
        fields = {
            "script": script,
            "config": shlex.quote(str(shown(run_dir / CONFIG_NAME))),
            "output_dir": shlex.quote(str(shown(run_dir))),
            "run_id": rid,
        }
        commands.append(template.format(**fields))
        local_commands.append((rid, fields["output_dir"], (local_template or template).format(**fields)))

    # Appending (start > 0) keeps the earlier batches' record; a fresh sweep starts the files over.
    sweep_file, cluster, local = root / SWEEP_FILE, root / "commands_accelerate.txt", root / "commands_local.sh"
    append = start > 0 and sweep_file.is_file()
    batches = (yaml.safe_load(sweep_file.read_text()) or {}).get("batches", []) if append else []
    meta = {
        "script": script,
        "template": template,
        "batches": [*batches, {"seed": seed, "start": start, "n": n}],
        "space": space.to_dict(),
    }
    sweep_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    with cluster.open("a" if append else "w") as f:
        f.writelines(c + "\n" for c in commands)
    _write_local_runner(local, local_commands, append=append and local.is_file())
    return SweepPlan(root, ids, configs, commands, local, cluster)


_LOCAL_HEADER = """#!/usr/bin/env bash
# Runs the sweep's configurations one after the other on this machine.
# Re-running skips runs whose exit_code file says 0, so an interrupted sweep resumes where it stopped.
# Each run's output goes to <run folder>/train.log and its exit status to <run folder>/exit_code;
# a failing run does not stop the others (sec-rl diagnose reports it as crashed).
set -u
cd "$(dirname "$0")"
failed=0
run() {  # run <run_id> <run_dir> <command...>
  local rid="$1" dir="$2"; shift 2
  if [ "$(cat "$dir/exit_code" 2>/dev/null)" = "0" ]; then echo "[skip] $rid (done)"; return; fi
  echo "[run]  $rid"
  ( "$@" ) >"$dir/train.log" 2>&1
  local code=$?
  echo "$code" >"$dir/exit_code"
  if [ "$code" != "0" ]; then echo "[fail] $rid exit $code, see $dir/train.log"; failed=$((failed + 1)); fi
}
"""
_LOCAL_FOOTER = 'echo "done: $failed run(s) failed"\n'


def _write_local_runner(path: Path, commands: list[tuple[str, str, str]], append: bool) -> None:
    lines = [f"run {rid} {run_dir} bash -c {shlex.quote(cmd)}\n" for rid, run_dir, cmd in commands]
    if append:
        body = path.read_text().removesuffix(_LOCAL_FOOTER)
        path.write_text(body + "".join(lines) + _LOCAL_FOOTER)
    else:
        path.write_text(_LOCAL_HEADER + "".join(lines) + _LOCAL_FOOTER)
    path.chmod(0o755)


def read_sweep(root: str | Path) -> dict[str, Any] | None:
    """The ``sweep.yaml`` of a sweep folder (or of the parent of a ``runs/`` folder), if any."""
    root = Path(root)
    for candidate in (root / SWEEP_FILE, root.parent / SWEEP_FILE):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    return None
