"""Read run folders into a table of (parameters, score, compute, status).

Each sub-folder of the runs folder is one run. Where the numbers come from, first match wins:

- parameters: ``config.yaml`` (written by ``sec-rl sweep``; any flat YAML mapping works);
- score: ``eval_results.json`` / ``all_results.json`` (``trainer.save_metrics``), else the
  ``log_history`` of ``trainer_state.json`` (the run folder's, else its latest ``checkpoint-*``);
- compute: the same files, under the key the user names (default ``total_flos``, which the HF Trainer
  stores at the top level of ``trainer_state.json``).

A run that crashed (an ``exit_code`` file that is non-zero or not a number, such as ``Killed``; unreadable
files) or has not finished (``global_step < max_steps``, no results yet) is kept in the table with its status
and the reason, never dropped. A run whose only state is its last ``checkpoint-*`` counts as finished when
that checkpoint is at ``max_steps``. A finished run whose metric is there but is not a finite number
(``NaN``, ``Infinity``, a string) has status ``invalid``, its value in the reason: a diverged run must not
win the bootstrap nor vanish from it. A *finished* run without the metric raises :class:`MissingMetricError`:
that is almost always a misspelled metric name, and the error lists the keys that do exist.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sec_rl.diagnosis.sampling import CONFIG_NAME, RESERVED_KEYS, RUNS_DIR
from sec_rl.diagnosis.space import DiagnosisError

Status = Literal["ok", "unfinished", "crashed", "invalid"]
#: Every status, in the order reports count them.
STATUSES: tuple[Status, ...] = ("ok", "unfinished", "crashed", "invalid")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads thousands of configs faster
RESULT_FILES = ("eval_results.json", "all_results.json")


def metric_keys(metric: str) -> list[str]:
    """Keys a metric is looked up under: as given, then with the HF Trainer's ``eval_`` prefix."""
    return [metric] if metric.startswith("eval_") else [metric, f"eval_{metric}"]


class MissingMetricError(DiagnosisError):
    """A finished run has no value for the requested metric."""

    def __init__(self, metric: str, folder: Path, available: Iterable[str]):
        self.metric, self.folder, self.available = metric, folder, sorted(set(available))
        looked = " or ".join(repr(k) for k in metric_keys(metric))
        super().__init__(
            f"metric {metric!r} not found in run folder {folder} (looked for {looked} in "
            f"{', '.join(RESULT_FILES)} and trainer_state.json's log_history). Keys that exist: {self.available}. "
            "Pass one of them with --metric, or --skip-missing-metric to report such runs as crashed."
        )


@dataclass
class RunResult:
    """One run. ``curve`` holds (compute, score) at each evaluation, for the compute frontier."""

    run_id: str
    params: dict[str, Any]
    score: float = math.nan
    compute: float = math.nan
    status: Status = "ok"
    reason: str = ""
    path: str = ""
    curve: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _read_json(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _latest_checkpoint_state(run_dir: Path) -> Path | None:
    def step(p: Path) -> int:
        m = re.search(r"(\d+)$", p.parent.name)
        return int(m.group(1)) if m else -1

    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=step)
    return states[-1] if states else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool, a string, NaN or an infinity)."""
    number = _number(value)
    return number if number is not None and math.isfinite(number) else None


def _describe_value(value: Any) -> str:
    """How a value that is not a finite number reads in a reason: ``NaN``, ``Infinity``, ``the string '0.5'``."""
    number = _number(value)
    if number is not None:
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def read_run(
    run_dir: str | Path,
    metric: str,
    compute_key: str = "total_flos",
    *,
    reduce: Literal["last", "max", "min"] = "last",
    compute_offset_key: str | None = None,
    config_name: str = CONFIG_NAME,
    strict: bool = True,
) -> RunResult:
    """Read one run folder (see the module docstring for the rules)."""
    run_dir = Path(run_dir)
    rid = run_dir.name
    params: dict[str, Any] = {}
    config_path = run_dir / config_name
    if config_path.is_file():
        try:
            loaded = yaml.load(config_path.read_text(), Loader=_YAML_LOADER)
            reason = "" if isinstance(loaded, Mapping) else f"{config_name} is not a mapping of parameters"
        except yaml.YAMLError as err:
            reason = f"{config_name} is not valid YAML ({str(err).splitlines()[0]})"
        if reason:
            return RunResult(rid, {}, status="crashed", reason=reason, path=str(run_dir))
        params = {k: v for k, v in loaded.items() if k not in RESERVED_KEYS}

    def result(status: Status, reason: str = "", **kw: Any) -> RunResult:
        return RunResult(rid, params, status=status, reason=reason, path=str(run_dir), **kw)

    exit_code: int | str | None = None  # an int, or the file's text when it is not one (e.g. "Killed")
    if (run_dir / "exit_code").is_file():
        text = (run_dir / "exit_code").read_text(errors="replace").strip()
        exit_code = int(text) if text.lstrip("-").isdigit() else text

    results: dict[str, Any] = {}
    source: dict[str, str] = {}  # which results file each key was read from
    state: dict[str, Any] | None = None
    state_path = run_dir / "trainer_state.json"
    from_checkpoint = False
    if not state_path.is_file():
        state_path = _latest_checkpoint_state(run_dir)
        from_checkpoint = state_path is not None
    try:
        for name in reversed(RESULT_FILES):  # eval_results.json overrides all_results.json
            if (run_dir / name).is_file():
                data = _read_json(run_dir / name)
                results.update(data)
                source.update(dict.fromkeys(data, name))
        if state_path is not None:
            state = _read_json(state_path)
    except (OSError, ValueError) as err:
        return result("crashed", f"unreadable results file: {err}")

    if isinstance(exit_code, str):  # the shell or a scheduler wrote something else than a status: not a success
        return result("crashed", f"exit_code file reads {exit_code!r}, not an exit status (killed before it ended?)")
    if state is None and not results:
        if exit_code not in (None, 0):
            return result("crashed", f"exit code {exit_code}, no trainer_state.json or eval_results.json")
        if exit_code == 0:
            return result("crashed", "exited 0 but wrote no trainer_state.json or eval_results.json")
        return result("unfinished", "no trainer_state.json or eval_results.json yet")

    history = [e for e in (state or {}).get("log_history", []) if isinstance(e, Mapping)]
    available = set(results) | {k for e in history for k in e}
    key = next((k for k in metric_keys(metric) if k in available), None)

    # Score: the results file is the final evaluation; otherwise reduce the logged evaluations. A value that is
    # not a finite number is kept aside (bad_value) so that the run is reported with it, never scored with it.
    logged = [e for e in history if key is not None and key in e]
    points = [e for e in logged if _finite(e[key]) is not None]
    score, bad_value, bad_where = math.nan, None, ""
    if key is not None and key in results:
        if _finite(results[key]) is None:
            bad_value, bad_where = results[key], source[key]
        else:
            score = float(results[key])
    elif logged:
        entering = logged[-1:] if reduce == "last" else logged
        bad = [e for e in entering if _finite(e[key]) is None]
        if bad:
            bad_value, bad_where = bad[-1][key], f"trainer_state.json's log_history at step {bad[-1].get('step', '?')}"
        else:
            values = [float(e[key]) for e in points]
            score = {"last": values[-1], "max": max(values), "min": min(values)}[reduce]

    # Compute: results file, then the state's top level (HF keeps total_flos there), then the last log entry.
    compute = _number(results.get(compute_key))
    if compute is None and state is not None:
        compute = _number(state.get(compute_key))
    if compute is None:
        compute = next((_number(e[compute_key]) for e in reversed(history) if _number(e.get(compute_key))), None)
    offset = 0.0
    if compute_offset_key is not None:
        offset = _number(params.get(compute_offset_key)) or 0.0
    compute = math.nan if compute is None else compute + offset

    # Curve: compute at each evaluation; entries without a compute key are placed pro rata of their step
    # (the Trainer logs total_flos only at the end; cost per step is assumed constant).
    steps = [_number(e.get("step")) or 0.0 for e in history] + [_number((state or {}).get("global_step")) or 0.0]
    last_step = max(steps)
    curve = []
    for e in points:
        c = _number(e.get(compute_key))
        if c is not None:
            c += offset
        elif math.isfinite(compute) and last_step > 0 and _number(e.get("step")) is not None:
            c = offset + (compute - offset) * float(e["step"]) / last_step
        if c is not None:
            curve.append((c, float(e[key])))
    if not curve and math.isfinite(score) and math.isfinite(compute):
        curve = [(compute, score)]

    global_step = _number((state or {}).get("global_step"))
    max_steps = _number((state or {}).get("max_steps"))
    stopped_early = state is not None and bool(max_steps) and global_step is not None and global_step < max_steps
    # Finished: exit code 0, a results file, or a state (the run's, or its last checkpoint's) at max_steps.
    # A run-folder state short of max_steps may be early stopping: it is reported, --include-unfinished uses it.
    finished = exit_code == 0 or bool(results) or (state is not None and not stopped_early)
    where = f"step {int(global_step or 0)}/{int(max_steps or 0)}"
    fields = {"score": score, "compute": compute, "curve": curve}

    if exit_code not in (None, 0):
        return result("crashed", f"exit code {exit_code} at {where}", **fields)
    if bad_value is not None:
        what = f"{key!r} is {_describe_value(bad_value)} in {bad_where}, not a finite number"
        if not finished:
            return result("unfinished", f"at {where}; {what}", **fields)
        return result("invalid", f"{what}: the run is not scored (diverged, or the metric is broken)", **fields)
    if math.isnan(score):
        if not finished:
            return result("unfinished", f"at {where}, no {metric!r} logged yet", **fields)
        if strict:
            raise MissingMetricError(metric, run_dir, available)
        return result("crashed", f"finished without {metric!r}", **fields)
    if not finished:
        what = "last checkpoint" if from_checkpoint else "training stopped before max_steps"
        return result("unfinished", f"{what} at {where}", **fields)
    return result("ok", **fields)


def run_folders(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (or under ``root/runs`` for a sweep folder), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DiagnosisError(f"runs folder {root} does not exist: pass the sweep folder or its runs/ folder.")
    if (root / RUNS_DIR).is_dir():
        root = root / RUNS_DIR
    # Hidden folders and earlier diagnosis outputs (which hold diagnosis.json) are not runs.
    folders = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and not (p / "diagnosis.json").is_file()
    )
    if not folders:
        raise DiagnosisError(f"{root} has no run folders: each run should be a sub-folder (e.g. runs/run-0000/).")
    return folders


def collect(
    root: str | Path,
    metric: str,
    compute_key: str = "total_flos",
    *,
    reduce: Literal["last", "max", "min"] = "last",
    compute_offset_key: str | None = None,
    config_name: str = CONFIG_NAME,
    strict: bool = True,
) -> list[RunResult]:
    """Every run folder under ``root`` as a :class:`RunResult`, finished or not."""
    return [
        read_run(
            folder,
            metric,
            compute_key,
            reduce=reduce,
            compute_offset_key=compute_offset_key,
            config_name=config_name,
            strict=strict,
        )
        for folder in run_folders(root)
    ]


def status_counts(runs: Sequence[RunResult]) -> dict[str, int]:
    """Runs per status, every status present (0 when none has it)."""
    counts = dict.fromkeys(STATUSES, 0)
    for run in runs:
        counts[run.status] += 1
    return counts


def describe_counts(runs: Sequence[RunResult]) -> str:
    """``"40 runs: 37 finished, 1 unfinished, 1 crashed, 1 with an invalid score"`` (the last only when > 0)."""
    counts = status_counts(runs)
    text = f"{len(runs)} runs: {counts['ok']} finished, {counts['unfinished']} unfinished, {counts['crashed']} crashed"
    if counts["invalid"]:
        text += f", {counts['invalid']} with an invalid score (not a finite number)"
    return text


def param_columns(runs: Sequence[RunResult], order: Sequence[str] = ()) -> list[str]:
    """Parameter names across runs: ``order`` first (e.g. the space's), then the rest as first seen."""
    seen = dict.fromkeys(order)
    for run in runs:
        seen.update(dict.fromkeys(run.params))
    return [name for name in seen if any(name in run.params for run in runs)]


# ---------------------------------------------------------------------------------------------- CSV table

_BASE_COLUMNS = ("run_id", "status", "reason", "score", "compute", "path")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _parse_cell(text: str) -> Any:
    """Inverse of :func:`_cell` for scalars: empty -> None, true/false -> bool, numbers -> int/float."""
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def write_table(runs: Sequence[RunResult], path: str | Path, order: Sequence[str] = ()) -> Path:
    """One row per run, parameters as columns (empty where a parameter was inactive)."""
    path = Path(path)
    columns = param_columns(runs, order)
    clash = sorted(set(columns) & set(_BASE_COLUMNS))
    if clash:
        raise DiagnosisError(f"parameters {clash} clash with the table's columns {list(_BASE_COLUMNS)}: rename them.")
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*_BASE_COLUMNS, *columns])
        for run in runs:
            base = [run.run_id, run.status, run.reason, run.score, run.compute, run.path]
            writer.writerow([_cell(v) for v in base] + [_cell(run.params.get(c)) for c in columns])
    return path


def read_table(path: str | Path, metric: str = "score", compute_key: str = "compute") -> list[RunResult]:
    """Runs from a CSV: ``write_table``'s output, or any table with a score column (e.g. a W&B export).

    Columns other than run_id/status/reason/score/compute/path are parameters. ``metric`` and
    ``compute_key`` name the score and compute columns when they are not called ``score``/``compute``.
    """
    path = Path(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DiagnosisError(f"{path} has no rows.")
    header = list(rows[0])
    score_col = next((c for c in [*metric_keys(metric), "score"] if c in header), None)
    if score_col is None:
        raise DiagnosisError(f"{path} has no column {metric!r} or 'score'; columns are {header}. Pass --metric.")
    compute_col = next((c for c in (compute_key, "compute") if c in header), None)
    skip = {*_BASE_COLUMNS, score_col, compute_col}
    runs = []
    for i, row in enumerate(rows):
        score, compute = _parse_cell(row[score_col]), _parse_cell(row[compute_col]) if compute_col else None
        status = row.get("status") or ("ok" if score is not None else "crashed")
        reason = row.get("reason") or ""
        if status not in STATUSES:
            raise DiagnosisError(f"{path} row {i + 2}: status {status!r} is not one of {', '.join(STATUSES)}.")
        if score is not None and _finite(score) is None:
            what = f"{score_col!r} is {_describe_value(score)}, not a finite number"
            if status == "ok":
                status, reason = "invalid", f"{what}: the run is not scored"
            else:
                reason = f"{reason}; {what}" if reason else what
        params = {k: _parse_cell(v) for k, v in row.items() if k not in skip and v not in ("", None)}
        runs.append(
            RunResult(
                run_id=row.get("run_id") or f"row-{i}",
                params=params,
                score=_finite(score) if _finite(score) is not None else math.nan,
                compute=_finite(compute) if _finite(compute) is not None else math.nan,
                status=status,
                reason=reason,
                path=row.get("path") or "",
            )
        )
    return runs
