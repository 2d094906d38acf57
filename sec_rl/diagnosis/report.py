"""A sweep's diagnosis as a markdown report with PNG plots.

Figures are drawn with matplotlib's object API on an Agg canvas: no display is needed, pyplot's global
state and the user's backend (e.g. in a notebook) are left alone, and matplotlib loads only when plotting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sec_rl.diagnosis.bootstrap import Diagnosis
from sec_rl.diagnosis.collect import RunResult, describe_counts, param_columns, status_counts
from sec_rl.diagnosis.frontier import Frontier, Match, frontier_points


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _budget_label(budget: float | None) -> str:
    return "all runs" if budget is None else f"compute <= {budget:.3g}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_diagnosis(diagnoses: Sequence[Diagnosis], path: str | Path) -> Path:
    """Win rate (bars) and best score (points) per value, one colour per compute budget, with intervals."""
    path = Path(path)
    first = diagnoses[0]
    labels = [str(v.value) for v in first.values]
    x = np.arange(len(labels))
    width = 0.8 / len(diagnoses)
    fig = _figure(max(8.0, 1.1 * len(labels) + 5), 3.6)
    ax_win, ax_best = fig.subplots(1, 2)
    for i, d in enumerate(diagnoses):
        shift = (i - (len(diagnoses) - 1) / 2) * width
        win = np.array([v.win_rate for v in d.values])
        err = np.array([[v.win_rate - v.win_low, v.win_high - v.win_rate] for v in d.values]).T.clip(min=0)
        label = f"{_budget_label(d.budget)} ({d.n_runs})"
        ax_win.bar(x + shift, win, width, yerr=err, capsize=2, label=label)
        best = np.array([v.best for v in d.values])
        berr = np.array([[v.best - v.best_low, v.best_high - v.best] for v in d.values]).T
        berr = np.nan_to_num(berr).clip(min=0)
        ax_best.errorbar(x + shift, best, yerr=berr, fmt="o", capsize=3, label=label)
    pct = round(100 * first.confidence)
    ax_win.set(title=f"{first.param}: win rate ({pct}% interval)", ylabel="share of resamples won", ylim=(0, 1.05))
    ax_best.set(title=f"{first.param}: best score ({pct}% interval)", ylabel="best score")
    for ax in (ax_win, ax_best):
        long = max(map(len, labels)) > 6
        ax.set_xticks(x, labels, rotation=30 if long else 0, ha="right" if long else "center")
        ax.grid(axis="y", alpha=0.3)
    if len(diagnoses) > 1:
        ax_win.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_frontiers(
    fronts: Mapping[str, Frontier],
    path: str | Path,
    runs: Sequence[RunResult] = (),
    strategy_key: str | None = None,
    matches: Sequence[Match] = (),
    use_curves: bool = True,
) -> Path:
    """Each strategy's points (faint) and Pareto frontier (step line); dashed lines mark compute-to-match."""
    path = Path(path)
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    for i, (name, front) in enumerate(fronts.items()):
        colour = f"C{i}"
        if strategy_key:
            group = [r for r in runs if str(r.params.get(strategy_key)) == name]
            c, s = frontier_points(group, use_curves)
            ax.scatter(c, s, s=8, alpha=0.25, color=colour)
        ax.step(front.compute, front.score, where="post", color=colour, label=f"{name} (peak {front.peak_score:.3g})")
        ax.plot(front.compute, front.score, "o", color=colour, ms=4)
    for m in matches:
        if math.isfinite(m.compute_a):
            ax.axhline(m.target_score, color="grey", ls=":", lw=0.8)
            ax.axvline(m.compute_a, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="compute (FLOPs)", ylabel="score", title="compute-performance frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.{digits}g}"
    return str(x)


def _value_table(d: Diagnosis) -> list[str]:
    pct = round(100 * d.confidence)
    lines = [
        f"**{_budget_label(d.budget)}**: {d.n_runs} runs, {d.n_resamples} resamples.",
        "",
        f"| value | runs | win rate | {pct}% interval | best score | {pct}% interval |",
        "|---|---:|---:|---|---:|---|",
    ]
    for v in d.values:
        mark = " **(winner)**" if v.n_runs and v.value == d.winner else ""
        lines.append(
            f"| `{v.value}`{mark} | {v.n_runs} | {v.win_rate:.1%} | [{v.win_low:.1%}, {v.win_high:.1%}] | "
            f"{_fmt(v.best)} | [{_fmt(v.best_low)}, {_fmt(v.best_high)}] |"
        )
    lines.extend(f"\n_{note}_" for note in d.notes)
    return [*lines, ""]


def write_report(
    out_dir: str | Path,
    runs: Sequence[RunResult],
    diagnoses: Mapping[str, Sequence[Diagnosis]],
    *,
    fronts: Mapping[str, Frontier] | None = None,
    matches: Sequence[Match] = (),
    strategy_key: str | None = None,
    metric: str = "score",
    compute_key: str = "compute",
    title: str = "Sweep diagnosis",
    use_curves: bool = True,
    top: int = 10,
) -> Path:
    """Write ``report.md``, ``diagnosis.json`` and ``plots/*.png`` into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    higher = next((ds[0].higher_is_better for ds in diagnoses.values() if ds), True)
    md = [
        f"# {title}",
        "",
        f"{describe_counts(runs)}. Score: `{metric}` ({'higher' if higher else 'lower'} is better). "
        f"Compute: `{compute_key}`.",
        "",
        "Each hyperparameter is diagnosed as in arXiv 2507.04103: runs are resampled with replacement, each "
        "weighted by 1 / (runs sharing its value); the best run of a resample wins for its value. The win-rate "
        "interval shows how much the win rate would move if the sweep were run again; the best-score interval "
        "is the spread of the value's best run across resamples.",
        "",
    ]

    failed = [r for r in runs if not r.ok]
    if failed:
        md += ["## Runs left out (not finished, or no finite score)", "", "| run | status | reason |", "|---|---|---|"]
        md += [f"| `{r.run_id}` | {r.status} | {r.reason} |" for r in failed]
        md.append("")

    finished = sorted((r for r in runs if r.ok), key=lambda r: r.score, reverse=higher)[:top]
    if finished:
        columns = param_columns(finished, list(diagnoses))
        md += [f"## Best {len(finished)} runs", ""]
        md += ["| run | score | compute | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
        for r in finished:
            cells = " | ".join(_fmt(r.params.get(c, "")) for c in columns)
            md.append(f"| `{r.run_id}` | {_fmt(r.score)} | {_fmt(r.compute, 3)} | {cells} |")
        md.append("")

    if diagnoses:
        budget_labels = [_budget_label(d.budget) for d in next(iter(diagnoses.values()))]
        md += ["## Verdicts", "", "Winner (win rate) per budget; * marks a win clearing all other intervals.", ""]
        md += ["| parameter | " + " | ".join(budget_labels) + " |", "|---" * (len(budget_labels) + 1) + "|"]
        for param, ds in diagnoses.items():
            cells = []
            for d in ds:
                w = next(v for v in d.values if v.value == d.winner)
                cells.append(f"`{d.winner}` ({w.win_rate:.0%}){'*' if d.clear_winner else ''}")
            md.append(f"| {param} | " + " | ".join(cells) + " |")
        md.append("")
        for param, ds in diagnoses.items():
            image = plot_diagnosis(ds, plots / f"{_slug(param)}.png")
            md += [f"### {param}", "", f"![{param}](plots/{image.name})", ""]
            for d in ds:
                md += _value_table(d)

    if fronts:
        image = plot_frontiers(fronts, plots / "frontier.png", runs, strategy_key, matches, use_curves)
        md += ["## Compute frontier", "", f"![frontier](plots/{image.name})", ""]
        md += ["| strategy | peak score | compute at peak |", "|---|---:|---:|"]
        md += [f"| {f.strategy} | {_fmt(f.peak_score)} | {_fmt(f.peak_compute, 3)} |" for f in fronts.values()]
        md.append("")
        if matches:
            md += ["| A | B | B's peak | A's compute to match | B's compute | ratio |", "|---|---|--:|--:|--:|--:|"]
            for m in matches:
                ratio = "never" if math.isinf(m.compute_a) else f"{m.ratio:.0%}"
                cells = [m.a, m.b, _fmt(m.target_score), _fmt(m.compute_a, 3), _fmt(m.compute_b, 3), ratio]
                md.append("| " + " | ".join(cells) + " |")
            md += [""] + [f"- {m.describe()}" for m in matches] + [""]

    report = out_dir / "report.md"
    report.write_text("\n".join(md))
    payload = {
        "runs": status_counts(runs),
        "diagnoses": {p: [d.to_dict() for d in ds] for p, ds in diagnoses.items()},
        "frontiers": {k: f.to_dict() for k, f in (fronts or {}).items()},
        "matches": [m.to_dict() for m in matches],
    }
    (out_dir / "diagnosis.json").write_text(json.dumps(_plain(payload), indent=2))
    return report


def _plain(x: Any) -> Any:
    """Strict JSON: numpy scalars to Python, NaN/inf to null, unknown objects to strings."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)
