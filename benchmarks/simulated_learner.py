"""Curriculum efficiency on a simulated learner: GRPO steps until the hardest level reaches 80% success.

Every strategy of the registry (plus SEC at other temperatures, written ``sec:temperature=0.2``) trains
the learner of :mod:`sec_rl.simulation` from the same seeds; the table gives the median number of steps
until the hardest level's success rate reaches the target, with a bootstrap 95% interval, and the ratio
of each strategy's median to ``random``'s, with its own bootstrap interval. Runs that never reach the
target within ``--max-steps`` are censored: they count as "more than max-steps" (so a median is exact
while fewer than half of the runs are censored, and is shown as ``> max-steps`` otherwise).

    python benchmarks/simulated_learner.py                       # the seven strategies + SEC at tau 0.4, 0.2
    python benchmarks/simulated_learner.py --scale-rewards none --out benchmarks/results/simulated_learner/none
    python benchmarks/simulated_learner.py --sweep                # SEC / random ratio as the simulator changes
    python benchmarks/simulated_learner.py --strategies random sec+pools sec+filter=4 difficulty_pools

A strategy is a registry name with parameters (``sec:temperature=0.2``), optionally followed by ``+pools``
(difficulty pools inside each level) and ``+filter`` or ``+filter=N`` (DAPO's filter-and-refill, at most N extra
generation batches per step, 4 by default); every generated rollout is counted.

Writes ``results.md`` (table), ``results.json`` (every run) and ``simulated_learner.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sec_rl.curriculum.pools import DifficultyPools
from sec_rl.provenance import describe_environment, environment_info
from sec_rl.simulation import LearnerConfig, SimulatedLearner, simulate

#: SEC as the paper describes it (Boltzmann over the raw values); plain ``sec`` divides the values by their spread.
PAPER_SEC = "sec:value_scale=none"
STRATEGIES = (PAPER_SEC, "random", "ordered", "reverse", "dump", "target_success", "learning_progress")
#: The registry's other strategies with their defaults, plus the paper's SEC at its MATH and multi-domain temperatures.
DEFAULT_STRATEGIES = (*STRATEGIES, f"{PAPER_SEC},temperature=0.4", f"{PAPER_SEC},temperature=0.2")
#: Compared with random in every setting of ``--sweep``.
SWEEP_STRATEGIES = (
    PAPER_SEC,
    f"{PAPER_SEC},temperature=0.4",
    f"{PAPER_SEC},temperature=0.2",
    "dump",
    "target_success",
)
#: The comparison of docs/which-strategy.md (``--which``): SEC as published and as now, pools, dynamic sampling.
WHICH_STRATEGIES = (
    "random",
    PAPER_SEC,
    f"{PAPER_SEC},selection=normalized_q,objective=unnormalized_adv",
    "sec",
    "sec:temperature=0.5",
    "target_success",
    "difficulty_pools",
    "random+pools",
    "sec+pools",
    "random+filter",
    "random+filter=1",
    "sec+filter=1",
    "difficulty_pools+filter=1",
)
REFERENCE = "random"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "simulated_learner"


# -- strategies ------------------------------------------------------------------------------------
def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """``"sec:temperature=0.2,unsampled=keep"`` -> ``("sec", {"temperature": 0.2, "unsampled": "keep"})``."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"strategy {spec!r}: parameters are written key=value, separated by commas.")
        params[key.strip()] = _literal(value.strip())
    return name.strip(), params


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"sec:temperature=0.2+pools+filter=4"`` -> ``("sec:temperature=0.2", {"pools": True, "max_refills": 4})``."""
    strategy, *extras = spec.split("+")
    options: dict[str, Any] = {"pools": False, "dynamic_sampling": "none", "max_refills": 4}
    for extra in extras:
        key, _, value = extra.strip().partition("=")
        if key == "pools" and not value:
            options["pools"] = True
        elif key == "filter":
            options["dynamic_sampling"] = "filter"
            options["max_refills"] = int(value) if value else 4
        else:
            raise ValueError(f"strategy {spec!r}: unknown option {extra!r}; options are '+pools' and '+filter[=N]'.")
    return strategy.strip(), options


def _literal(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def build_curriculum(spec: str, learner: SimulatedLearner, max_steps: int):
    from sec_rl.curriculum import POOL_STRATEGIES, POOLS, make_curriculum  # late: only needed to run

    name, params = parse_strategy(parse_spec(spec)[0])
    sizes = np.bincount(learner.problem_category, minlength=len(learner.categories)).tolist()
    categories = list(POOLS) if name in POOL_STRATEGIES else learner.categories
    return make_curriculum(name, categories, sizes=sizes, total_updates=max_steps, **params)


# -- running ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """Everything but the strategy and the seed that a run depends on."""

    config: LearnerConfig = field(default_factory=LearnerConfig)
    max_steps: int = 1000
    batch_size: int = 32
    group_size: int = 8
    scale_rewards: str = "group"
    target: float = 0.8


def run_one(spec: str, seed: int, setting: Setting, keep_curves: bool = True) -> dict[str, Any]:
    """One training run; the learner's problems depend on ``seed`` only, so every strategy meets the same ones."""
    learner = SimulatedLearner(setting.config, seed=np.random.SeedSequence([seed, 0]))
    curriculum = build_curriculum(spec, learner, setting.max_steps)
    options = parse_spec(spec)[1]
    trajectory = simulate(
        curriculum,
        learner,
        setting.max_steps,
        batch_size=setting.batch_size,
        group_size=setting.group_size,
        scale_rewards=setting.scale_rewards,  # type: ignore[arg-type]
        seed=np.random.SeedSequence([seed, 1]),
        target=setting.target,
        stop_at_target=not keep_curves,
        pools=DifficultyPools() if options["pools"] else None,
        dynamic_sampling=options["dynamic_sampling"],
        max_refills=options["max_refills"],
    )
    reached = trajectory.steps_to_target
    per_step = setting.batch_size * setting.group_size
    levels = trajectory.level_steps_to_target()
    out: dict[str, Any] = {
        "strategy": spec,
        "seed": seed,
        "steps": math.inf if reached is None else float(reached),
        # rollouts generated until the target (every extra generation of dynamic sampling included)
        "rollouts": math.inf if reached is None else float(trajectory.rollouts_until(reached)),
        "level_steps": [math.inf if s is None else float(s) for s in levels],
        # generated rollouts per step relative to plain GRPO's batch_size * group_size
        "cost": float(trajectory.rollouts[: reached or None].mean() / per_step),
        # share of GRPO groups with a learning signal, over the steps until the target (or the whole run)
        "informative": float(trajectory.informative[: reached or None].mean()),
    }
    if keep_curves:
        out["hardest"] = trajectory.success[:, -1].astype(np.float32)
        out["probabilities"] = trajectory.probabilities.astype(np.float32)
        out["final_success"] = trajectory.success[-1].tolist()
    return out


def _run_task(task: tuple[str, int, Setting, bool]) -> dict[str, Any]:
    return run_one(*task)


@dataclass
class BenchmarkResult:
    strategies: list[str]
    seeds: list[int]
    setting: Setting
    steps: dict[str, np.ndarray]  # (seeds,) steps to target per strategy, inf when censored
    informative: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds,) share of non-uniform groups
    rollouts: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds,) rollouts to target, inf when censored
    level_steps: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds, K) steps until each level's target
    cost: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds,) rollouts per step / (batch x group)
    hardest: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds, max_steps + 1) hardest-level success
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # (max_steps, K) of the first seed
    final_success: dict[str, np.ndarray] = field(default_factory=dict)  # (seeds, K) after max_steps
    wall_s: float = 0.0


def run_benchmark(
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int | Sequence[int] = 20,
    setting: Setting | None = None,
    *,
    workers: int = 1,
    keep_curves: bool = True,
) -> BenchmarkResult:
    """Run every strategy on every seed; ``keep_curves=False`` stops each run at the target (faster, no plot)."""
    setting = setting or Setting()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    strategies = list(dict.fromkeys(strategies))
    for spec in strategies:  # fail before any work on a misspelt strategy or parameter
        build_curriculum(spec, SimulatedLearner(setting.config), setting.max_steps)
    tasks = [(spec, seed, setting, keep_curves) for spec in strategies for seed in seed_list]
    start = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            runs = list(pool.map(_run_task, tasks, chunksize=max(1, len(tasks) // (8 * workers))))
    else:
        runs = [_run_task(task) for task in tasks]
    wall = time.perf_counter() - start
    result = BenchmarkResult(strategies, seed_list, setting, steps={}, wall_s=wall)
    for spec in strategies:
        mine = [r for r in runs if r["strategy"] == spec]
        result.steps[spec] = np.array([r["steps"] for r in mine])
        result.rollouts[spec] = np.array([r["rollouts"] for r in mine])
        result.level_steps[spec] = np.array([r["level_steps"] for r in mine])
        result.cost[spec] = np.array([r["cost"] for r in mine])
        result.informative[spec] = np.array([r["informative"] for r in mine])
        if keep_curves:
            result.hardest[spec] = np.stack([r["hardest"] for r in mine])
            result.probabilities[spec] = mine[0]["probabilities"]
            result.final_success[spec] = np.array([r["final_success"] for r in mine])
    return result


# -- statistics ------------------------------------------------------------------------------------
def _median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median that stays exact with censored (inf) values: the mean of the two middle order statistics."""
    s = np.sort(x, axis=axis)
    n = s.shape[axis]
    lo, hi = np.take(s, (n - 1) // 2, axis=axis), np.take(s, n // 2, axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(lo == hi, lo, (lo + hi) / 2.0)


def bootstrap_median(x: np.ndarray, n_boot: int = 10_000, rng: np.random.Generator | None = None, level: float = 0.95):
    """Median of ``x`` and its percentile-bootstrap interval (``x`` may hold inf for censored runs)."""
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, dtype=np.float64)
    boot = _median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    q = (1.0 - level) / 2.0
    return (
        float(_median(x)),
        float(np.quantile(boot, q, method="lower")),
        float(np.quantile(boot, 1.0 - q, method="higher")),
    )


def bootstrap_ratio(
    x: np.ndarray,
    y: np.ndarray,
    n_boot: int = 10_000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
    cap: float | None = None,
):
    """``median(x) / median(y)`` and its bootstrap interval (x and y resampled independently).

    Censored runs (inf) count as ``cap`` when it is given (the run length: a lower bound of their true
    value), so a ratio whose numerator's median is censored is a lower bound, one whose denominator's is
    an upper bound; see :func:`ratio_bound`. Without ``cap``, any censored median makes the ratio 0, inf or NaN.
    """
    rng = rng or np.random.default_rng(0)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if cap is not None:
        x, y = np.minimum(x, cap), np.minimum(y, cap)
    bx = _median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    by = _median(y[rng.integers(0, len(y), size=(n_boot, len(y)))], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = bx / by  # inf / inf is NaN: neither reached the target, no ratio
        point = float(_median(x) / _median(y))
    ratio = ratio[~np.isnan(ratio)]
    if not len(ratio) or math.isnan(point):
        return point, math.nan, math.nan
    q = (1.0 - level) / 2.0
    return point, float(np.quantile(ratio, q, method="lower")), float(np.quantile(ratio, 1.0 - q, method="higher"))


def ratio_bound(x: np.ndarray, y: np.ndarray) -> str:
    """How to read ``median(x) / median(y)`` with censored runs capped: ``""`` exact, ``">"`` a lower bound
    (x's median is censored), ``"<"`` an upper bound (y's is), ``"n/a"`` (both are: no information)."""
    cx, cy = math.isinf(_median(np.asarray(x, float))), math.isinf(_median(np.asarray(y, float)))
    return "n/a" if cx and cy else ">" if cx else "<" if cy else ""


def summarize(result: BenchmarkResult, n_boot: int = 10_000, reference: str = REFERENCE) -> list[dict[str, Any]]:
    """One row per strategy: reached count, median steps and CI, ratio to ``reference`` and CI."""
    rows = []
    for i, spec in enumerate(result.strategies):
        x = result.steps[spec]
        median, lo, hi = bootstrap_median(x, n_boot, np.random.default_rng([i, 1]))
        row = {
            "strategy": spec,
            "reached": int(np.isfinite(x).sum()),
            "runs": len(x),
            "median": median,
            "ci_low": lo,
            "ci_high": hi,
            "informative": float(np.median(result.informative[spec])),
        }
        if reference in result.steps:
            y = result.steps[reference]
            cap = result.setting.max_steps
            ratio, rlo, rhi = bootstrap_ratio(x, y, n_boot, np.random.default_rng([i, 2]), cap=cap)
            row.update(ratio=ratio, ratio_low=rlo, ratio_high=rhi, ratio_bound=ratio_bound(x, y))
        if result.rollouts:
            row["rollouts"] = float(_median(result.rollouts[spec]))
            row["cost"] = float(np.median(result.cost[spec]))
            if reference in result.rollouts:
                row.update(paired_rollouts(result.rollouts[spec], result.rollouts[reference], n_boot, i))
        rows.append(row)
    return rows


def paired_rollouts(x: np.ndarray, y: np.ndarray, n_boot: int, i: int) -> dict[str, float]:
    """Rollouts to target against the reference, paired by seed: median of per-seed ratios and differences.

    Both get :func:`bootstrap_median`'s percentile interval (seeds resampled). A censored run (inf) makes its
    seed's ratio and difference inf (or NaN when both are censored, dropped), which a median tolerates while
    fewer than half the seeds are censored.
    """
    with np.errstate(invalid="ignore"):
        ratios, diffs = x / y, x - y
    keep = ~np.isnan(ratios)
    ratio = bootstrap_median(ratios[keep], n_boot, np.random.default_rng([i, 3]))
    diff = bootstrap_median(diffs[keep], n_boot, np.random.default_rng([i, 4]))
    return dict(zip(("paired_ratio", "paired_ratio_low", "paired_ratio_high"), ratio)) | dict(
        zip(("paired_diff", "paired_diff_low", "paired_diff_high"), diff)
    )


# -- reporting -------------------------------------------------------------------------------------
def _steps(value: float, max_steps: int) -> str:
    return f"> {max_steps}" if math.isinf(value) else f"{value:g}"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def ratio_cell(row: dict[str, Any]) -> str:
    """``0.59 [0.57, 0.60]``; a bound from censored runs is written ``> 2.24`` or ``< 0.93``, without interval."""
    bound = row.get("ratio_bound", "")
    if bound == "n/a":
        return "n/a (both censored)"
    if bound:
        return f"{bound} {_ratio(row['ratio'])} (censored)"
    return f"{_ratio(row['ratio'])} [{_ratio(row['ratio_low'])}, {_ratio(row['ratio_high'])}]"


def table_rows(rows: list[dict[str, Any]], max_steps: int) -> list[list[str]]:
    out = []
    for r in rows:
        ratio = ratio_cell(r) if "ratio" in r else ""
        cells = [
            r["strategy"],
            f"{r['reached']}/{r['runs']}",
            _steps(r["median"], max_steps),
            f"[{_steps(r['ci_low'], max_steps)}, {_steps(r['ci_high'], max_steps)}]",
            ratio,
            f"{100 * r['informative']:.0f}%",
        ]
        if "rollouts" in r:
            cells += [_thousands(r["rollouts"]), f"{r['cost']:.2f}"]
            if "paired_ratio" in r:
                cells += [
                    f"{_ratio(r['paired_ratio'])} [{_ratio(r['paired_ratio_low'])}, {_ratio(r['paired_ratio_high'])}]",
                    f"{_thousands(r['paired_diff'])} [{_thousands(r['paired_diff_low'])}, "
                    f"{_thousands(r['paired_diff_high'])}]",
                ]
        out.append(cells)
    return out


def _thousands(value: float) -> str:
    """Rollouts in thousands (``12.3k``); ``inf`` for censored."""
    return "inf" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value / 1000:+.1f}k".lstrip("+")


def level_table(result: BenchmarkResult) -> str:
    """Median steps until each level reaches the target (``> max`` when more than half the runs never did)."""
    k = result.setting.config.num_categories
    header = ["strategy", *[f"L{c + 1}" for c in range(k)]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * k]) + "|"]
    for spec in result.strategies:
        medians = _median(result.level_steps[spec].T, axis=1)
        lines.append("| " + " | ".join([spec, *[_steps(m, result.setting.max_steps) for m in medians]]) + " |")
    return "\n".join(lines)


HEADER = [
    "strategy",
    "reached target",
    "median steps",
    "95% CI",
    f"median / {REFERENCE} [95% CI]",
    "groups with signal",
    "rollouts to target",
    "generation cost",
    f"rollouts / {REFERENCE}, paired [95% CI]",
    f"rollouts - {REFERENCE}, paired [95% CI]",
]


def describe(setting: Setting, seeds: int) -> str:
    c = setting.config
    return (
        f"{c.num_categories} levels x {c.problems_per_category} problems, gap {c.gap:g}, spread {c.spread:g}, "
        f"transfer {c.transfer:g}, lr {c.learning_rate:g}; batch {setting.batch_size} prompts x "
        f"{setting.group_size} rollouts, scale_rewards={setting.scale_rewards!r}; target {setting.target:g} on the "
        f"hardest level; {seeds} seeds, max {setting.max_steps} steps"
    )


def print_table(rows: list[dict[str, Any]], result: BenchmarkResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Steps until the hardest level reaches the target", caption=describe(result.setting, len(result.seeds))
    )
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i == 0 else "right")
    for cells in table_rows(rows, result.setting.max_steps):
        table.add_row(*cells)
    Console(width=max(Console().width, 120)).print(table)


def markdown_table(rows: list[dict[str, Any]], max_steps: int) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join([":---", *["---:"] * (len(HEADER) - 1)]) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows, max_steps)]
    return "\n".join(lines)


def write_markdown(path: Path, rows: list[dict[str, Any]], result: BenchmarkResult, command: str) -> None:
    text = [
        "# Simulated learner: steps until the hardest level reaches the target",
        "",
        f"Setting: {describe(result.setting, len(result.seeds))}.",
        "",
        markdown_table(rows, result.setting.max_steps),
        "",
        f"Median steps until each level reaches {result.setting.target:g}:",
        "",
        level_table(result),
        "",
        f"Medians with percentile-bootstrap 95% intervals (10,000 resamples); `> {result.setting.max_steps}` marks "
        "censored values (runs that never reached the target count as longer than every run that did). A ratio "
        "written `> r` or `< r` is a bound: one of the two medians is censored and counts as the run length. "
        "Groups with signal: median over seeds of the share of GRPO groups whose rewards are not all equal "
        "(non-zero advantages), over the steps until the target. Rollouts to target: median over seeds of every "
        "rollout generated until the hardest level reached the target; generation cost: rollouts generated per step "
        "over batch x group (1.00 without dynamic sampling); paired columns: median over seeds of the per-seed "
        "ratio and difference to random, with percentile-bootstrap 95% intervals (seeds resampled).",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time: {result.wall_s:.1f} s of simulation ({_machine()}).",
        "",
        f"Environment: {describe_environment()}.",
        "",
    ]
    path.write_text("\n".join(text))


def write_json(path: Path, rows: list[dict[str, Any]], result: BenchmarkResult, command: str) -> None:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else "inf"
        return v

    data = {
        "command": command,
        "machine": _machine(),
        "wall_s": result.wall_s,
        "setting": {
            **asdict(result.setting.config),
            **{k: v for k, v in asdict(result.setting).items() if k != "config"},
        },
        "seeds": result.seeds,
        "summary": [{k: clean(v) for k, v in row.items()} for row in rows],
        "steps": {s: [clean(float(v)) for v in x] for s, x in result.steps.items()},
        "rollouts": {s: [clean(float(v)) for v in x] for s, x in result.rollouts.items()},
        "level_steps": {s: [[clean(float(v)) for v in row] for row in x] for s, x in result.level_steps.items()},
        "cost": {s: np.round(x, 4).tolist() for s, x in result.cost.items()},
        "informative": {s: np.round(x, 4).tolist() for s, x in result.informative.items()},
        "final_success": {s: np.round(x, 4).tolist() for s, x in result.final_success.items()},
        "environment": environment_info(),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def plot(path: Path, result: BenchmarkResult) -> None:
    """Hardest-level success vs step (median over seeds, 25-75% band) and SEC's distribution for the first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sec_specs = [s for s in result.strategies if parse_strategy(parse_spec(s)[0])[0] == "sec"]
    panels = 1 + len(sec_specs)
    cols = min(panels, 2)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.4 * rows), squeeze=False, constrained_layout=True)
    axes = axes.ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    ax = axes[0]
    steps = np.arange(result.setting.max_steps + 1)
    colors = plt.get_cmap("tab10").colors
    for i, spec in enumerate(result.strategies):
        curves = result.hardest[spec]
        q25, q50, q75 = np.quantile(curves, [0.25, 0.5, 0.75], axis=0)
        is_sec = parse_strategy(parse_spec(spec)[0])[0] == "sec"
        color = colors[i % len(colors)]
        ax.plot(steps, q50, label=spec, color=color, lw=1.8 if is_sec else 1.1, ls="-" if i < 10 else "--")
        ax.fill_between(steps, q25, q75, color=color, alpha=0.15, lw=0)
    ax.axhline(result.setting.target, color="k", ls=":", lw=0.8)
    ax.set(xlabel="training step", ylabel="success rate of the hardest level", ylim=(0, 1), xlim=(0, steps[-1]))
    ax.set_title(f"median over {len(result.seeds)} seeds (band: 25-75%)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    for ax, spec in zip(axes[1:], sec_specs):
        probs = result.probabilities[spec]
        levels = [f"level {c}" for c in range(1, probs.shape[1] + 1)]
        ax.stackplot(np.arange(len(probs)), probs.T, labels=levels, alpha=0.85)
        reached = result.steps[spec][0]
        if math.isfinite(reached):
            ax.axvline(reached, color="k", ls="--", lw=0.8)
        ax.set(xlabel="training step", ylabel="probability of drawing the level", ylim=(0, 1), xlim=(0, len(probs)))
        ax.set_title(f"{spec}: distribution, seed {result.seeds[0]}", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


# -- sensitivity sweep -----------------------------------------------------------------------------
def sweep_settings(base: Setting) -> list[tuple[str, Setting]]:
    """One factor at a time around ``base``: group size, advantage scaling, transfer, gap, number of levels."""
    c = base.config
    return [
        ("base", base),
        ("G = 2", replace(base, group_size=2)),
        ("G = 4", replace(base, group_size=4)),
        ("G = 16", replace(base, group_size=16)),
        ('scale_rewards = "none"', replace(base, scale_rewards="none")),
        ("transfer 0.25", replace(base, config=replace(c, transfer=0.25))),
        ("transfer 0.75", replace(base, config=replace(c, transfer=0.75))),
        ("gap 1.5", replace(base, config=replace(c, gap=1.5))),
        ("gap 3", replace(base, config=replace(c, gap=3.0))),
        ("3 levels", replace(base, config=replace(c, num_categories=3))),
        ("8 levels, gap 1.25", replace(base, config=replace(c, num_categories=8, gap=1.25))),
        ("lr 0.25", replace(base, config=replace(c, learning_rate=0.25))),
        ("lr 1", replace(base, config=replace(c, learning_rate=1.0))),
        ("batch 128", replace(base, batch_size=128)),
    ]


def run_sweep(strategies: Sequence[str], seeds: int, base: Setting, workers: int, n_boot: int) -> str:
    """Ratio of each strategy's median to random's in every sweep setting (runs stop at the target)."""
    strategies = list(dict.fromkeys([REFERENCE, *strategies]))
    others = [s for s in strategies if s != REFERENCE]
    header = ["setting", f"{REFERENCE} median", *others]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    for label, setting in sweep_settings(base):
        result = run_benchmark(strategies, seeds, setting, workers=workers, keep_curves=False)
        rows = {r["strategy"]: r for r in summarize(result, n_boot)}
        cells = [label, _steps(rows[REFERENCE]["median"], setting.max_steps)]
        for s in others:
            r = rows[s]
            cells.append(ratio_cell(r))
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------
def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20, help="seeds per strategy (default 20)")
    parser.add_argument("--max-steps", type=int, help="training steps per run (default 1000; --sweep: 3000)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        help="registry names, optionally with parameters: sec:temperature=0.2,unsampled=keep (default: the "
        f"registry's {len(STRATEGIES)} and SEC at tau 0.4 and 0.2; --sweep: {' '.join(SWEEP_STRATEGIES)})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per step (default 32)")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per prompt (default 8)")
    parser.add_argument("--scale-rewards", choices=["group", "none"], default="group", help="GRPO's advantage scaling")
    parser.add_argument("--levels", type=int, default=LearnerConfig.num_categories, help="difficulty levels")
    parser.add_argument("--gap", type=float, default=LearnerConfig.gap, help="logit gap between levels")
    parser.add_argument("--transfer", type=float, default=LearnerConfig.transfer, help="transfer between levels")
    parser.add_argument("--target", type=float, default=0.8, help="success rate of the hardest level to reach")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument("--sweep", action="store_true", help="ratio to random across simulator settings instead")
    parser.add_argument("--which", action="store_true", help="the strategies of docs/which-strategy.md")
    args = parser.parse_args(None if argv is None else list(argv))

    if args.max_steps is None:
        args.max_steps = 3000 if args.sweep else 1000
    if args.strategies is None:
        default = SWEEP_STRATEGIES if args.sweep else WHICH_STRATEGIES if args.which else DEFAULT_STRATEGIES
        args.strategies = list(default)
    config = replace(LearnerConfig(), num_categories=args.levels, gap=args.gap, transfer=args.transfer)
    setting = Setting(config, args.max_steps, args.batch_size, args.group_size, args.scale_rewards, args.target)
    command = shlex.join(["python", "benchmarks/simulated_learner.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.sweep:
        table = run_sweep(args.strategies, args.seeds, setting, args.workers, args.bootstrap)
        wall = time.perf_counter() - start
        (args.out / "sweep.md").write_text(
            f"# SEC / random across simulator settings\n\nMedian steps of each strategy divided by random's "
            f"[bootstrap 95% CI]; base: {describe(setting, args.seeds)}.\n\n{table}\n\nCommand: `{command}`\n\n"
            f"Wall time: {wall:.1f} s ({_machine()}).\n"
        )
        print(f"wrote {args.out / 'sweep.md'} in {wall:.1f} s")
        return 0
    result = run_benchmark(args.strategies, args.seeds, setting, workers=args.workers)
    rows = summarize(result, args.bootstrap)
    print_table(rows, result)
    write_markdown(args.out / "results.md", rows, result, command)
    write_json(args.out / "results.json", rows, result, command)
    plot(args.out / "simulated_learner.png", result)
    print(f"simulation {result.wall_s:.1f} s, total {time.perf_counter() - start:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
