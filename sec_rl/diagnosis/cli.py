"""``sec-rl sweep`` and ``sec-rl diagnose``: random-search sweeps and their bootstrap diagnosis."""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sec_rl.diagnosis.bootstrap import diagnose_all
from sec_rl.diagnosis.collect import collect, describe_counts, read_table, status_counts, write_table
from sec_rl.diagnosis.frontier import compute_to_match, frontiers
from sec_rl.diagnosis.report import write_report
from sec_rl.diagnosis.sampling import DEFAULT_TEMPLATE, TEMPLATE_FIELDS, read_sweep, write_sweep
from sec_rl.diagnosis.space import DEFAULT_SPACE, DiagnosisError, SearchSpace, builtin_spaces, load_space


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout and shows a default only where it says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not quiet and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 1


def _say(text: str) -> None:
    """Print a line; once the reader has gone (``sec-rl diagnose ... | head``), keep working silently.

    The files a command writes matter more than its console output, so a closed pipe must neither stop
    the command nor end it in a BrokenPipeError traceback.
    """
    try:
        print(text)
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    # Later writes, and the interpreter's final flush, go to /dev/null instead of the closed pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _flush_stdout() -> None:
    """Flush buffered output now, while a closed pipe can still be handled quietly."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()


# ------------------------------------------------------------------------------------------------- sweep


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sec-rl sweep",
        formatter_class=_Formatter,
        description=textwrap.fill(
            "Sample N random configurations from a search space and write one config per run plus the commands "
            "that launch them: commands_local.sh (runs them one after the other here, resumable) and "
            "commands_accelerate.txt (one command per line for a cluster scheduler).",
            88,
        ),
        epilog=(
            "examples:\n"
            "  sec-rl sweep -n 64 -o sweeps/study                       # the web-agent study's space\n"
            "  sec-rl sweep my_space.yaml -n 32 -o sweeps/mine --script train_agent.py\n"
            "  sec-rl sweep -n 32 -o sweeps/study --start 64            # 32 more runs in the same sweep\n"
            "  sec-rl sweep -n 4 --dry-run                              # print configs, write nothing"
        ),
    )
    parser.add_argument(
        "space",
        nargs="?",
        default=DEFAULT_SPACE,
        help=f"search-space YAML file, or a built-in space name ({', '.join(builtin_spaces())}).",
    )
    parser.add_argument("-n", "--num-runs", type=int, required=True, help="number of configurations to sample.")
    parser.add_argument("-o", "--out", type=Path, help="sweep folder to write (required unless --dry-run).")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; run i's config depends only on (seed, i).")
    parser.add_argument("--script", default="train.py", help="training script put in place of {script}.")
    parser.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        help="command per run for commands_accelerate.txt; fields: "
        + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        + " (paths are shell-quoted).",
    )
    parser.add_argument(
        "--local-template",
        default=None,
        help="command per run for commands_local.sh (default: --template), e.g. 'python {script} --config {config}'.",
    )
    parser.add_argument("--start", type=int, default=0, help="index of the first run; use it to add runs to a sweep.")
    parser.add_argument(
        "--relative-paths",
        action="store_true",
        help="write paths relative to the sweep folder (launch from there) instead of absolute paths.",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing run folders with the same ids.")
    parser.add_argument("--dry-run", action="store_true", help="print the sampled configs and write nothing.")
    return parser


def sweep_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sec-rl sweep``; returns the exit status."""
    parser = sweep_parser()
    args = parser.parse_args(argv)
    if args.out is None and not args.dry_run:
        parser.error("pass --out FOLDER for the sweep (or --dry-run to only print configurations).")
    try:
        return _sweep(parser, args)
    finally:
        _flush_stdout()


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        space = load_space(args.space)
        if args.dry_run:
            for i, config in enumerate(space.sample_many(args.num_runs, args.seed, args.start), start=args.start):
                _say(f"# run {i}\n{yaml.safe_dump(config, sort_keys=False)}")
            return 0
        plan = write_sweep(
            space,
            args.num_runs,
            args.out,
            seed=args.seed,
            script=args.script,
            template=args.template,
            local_template=args.local_template,
            start=args.start,
            relative_paths=args.relative_paths,
            overwrite=args.overwrite,
        )
    except DiagnosisError as err:
        return _fail(parser.prog, err)
    _say(f"wrote {len(plan.run_ids)} configs of space {space.name!r} to {plan.root / 'runs'}")
    _say(f"  run them here:     bash {plan.local_script}")
    _say(f"  or on a cluster:   {plan.cluster_commands} (one command per line)")
    _say(f"  then diagnose:     sec-rl diagnose {plan.root}")
    return 0


# ---------------------------------------------------------------------------------------------- diagnose


def diagnose_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sec-rl diagnose",
        formatter_class=_Formatter,
        description=textwrap.fill(
            "Collect a sweep's results, then find which value of each hyperparameter wins with the weighted "
            "bootstrap of arXiv 2507.04103; optionally compare strategies on the compute frontier. Writes "
            "results.csv, report.md (with plots) and diagnosis.json.",
            88,
        ),
        epilog=(
            "examples:\n"
            "  sec-rl diagnose sweeps/study --metric eval_success\n"
            "  sec-rl diagnose sweeps/study --params temperature,gamma --budgets auto\n"
            "  sec-rl diagnose runs/ --strategy-key pipeline --compute-key flos     # SFT vs SFT+RL frontier\n"
            "  sec-rl diagnose results.csv --metric success                         # a table from elsewhere"
        ),
    )
    parser.add_argument(
        "runs",
        type=Path,
        help="sweep folder (with runs/), folder of run folders, or a CSV table with a score column.",
    )
    parser.add_argument(
        "--metric",
        default="success",
        help="score to maximise; also looked up with an 'eval_' prefix (the HF Trainer's naming).",
    )
    parser.add_argument("--lower-is-better", action="store_true", help="the metric is a loss: lower wins.")
    parser.add_argument(
        "--reduce",
        choices=("last", "max", "min"),
        default="last",
        help="which logged evaluation is a run's score when it has no eval_results.json.",
    )
    parser.add_argument(
        "--compute-key",
        default="total_flos",
        help="key holding a run's compute (FLOPs) in trainer_state.json / eval_results.json / the CSV.",
    )
    parser.add_argument(
        "--compute-offset-key",
        default=None,
        help="config key whose value is added to a run's compute (e.g. the SFT and teacher FLOPs spent before RL).",
    )
    parser.add_argument(
        "--params",
        default=None,
        help="comma-separated hyperparameters to diagnose (default: the sweep space's, else every varied config key).",
    )
    parser.add_argument(
        "--budgets",
        default=None,
        help="compute budgets, comma-separated (e.g. 1e18,5e18), or 'auto' for the thirds of the runs' compute; "
        "each budget repeats the diagnosis on the runs whose compute is at most the budget.",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples.")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage.")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed.")
    parser.add_argument("--bins", type=int, default=5, help="bins for continuous parameters (> 12 distinct values).")
    parser.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also diagnose unfinished/crashed runs that logged a score (they are always listed either way).",
    )
    parser.add_argument(
        "--skip-missing-metric",
        action="store_true",
        help="report finished runs without the metric as crashed instead of stopping with an error.",
    )
    parser.add_argument(
        "--strategy-key",
        default=None,
        help="config key naming each run's strategy (e.g. pipeline: sft / sft+rl): adds the compute frontier "
        "and the compute each strategy needs to match another's peak.",
    )
    parser.add_argument(
        "--final-points-only",
        action="store_true",
        help="frontier from each run's final (compute, score) only, not from every evaluation along its curve.",
    )
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: <runs>/diagnosis).")
    parser.add_argument("--no-report", action="store_true", help="print the verdicts only; write no files.")
    return parser


def _budgets(text: str | None, compute: np.ndarray) -> list[float] | None:
    if text is None:
        return None
    if text.strip() == "auto":
        compute = compute[np.isfinite(compute)]
        if not len(compute):
            raise DiagnosisError("--budgets auto needs runs with compute: check --compute-key.")
        return sorted({float(np.quantile(compute, q)) for q in (1 / 3, 2 / 3, 1.0)})
    try:
        return [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise DiagnosisError(f"--budgets {text!r}: pass numbers separated by commas (1e18,5e18) or 'auto'.") from None


def diagnose_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sec-rl diagnose``; returns the exit status."""
    parser = diagnose_parser()
    args = parser.parse_args(argv)
    if args.resamples < 1 or not 0 < args.confidence < 1:
        parser.error("--resamples must be >= 1 and --confidence in (0, 1).")
    try:
        return _diagnose(args)
    except DiagnosisError as err:
        return _fail(parser.prog, err)
    finally:
        _flush_stdout()


def _diagnose(args: argparse.Namespace) -> int:
    source: Path = args.runs
    if source.is_file():
        runs = read_table(source, args.metric, args.compute_key)
        default_out, sweep = source.parent / "diagnosis", None
    else:
        runs = collect(
            source,
            args.metric,
            args.compute_key,
            reduce=args.reduce,
            compute_offset_key=args.compute_offset_key,
            strict=not args.skip_missing_metric,
        )
        default_out, sweep = source / "diagnosis", read_sweep(source)
    space: SearchSpace | None = SearchSpace.from_dict(sweep["space"]) if sweep and "space" in sweep else None

    counts = status_counts(runs)
    left_out = len(runs) - counts["ok"]
    _say(describe_counts(runs))
    for run in [r for r in runs if not r.ok][:20]:
        _say(f"  {run.status:<10} {run.run_id}: {run.reason}")
    if left_out > 20:
        _say(f"  ... and {left_out - 20} more (see results.csv)")
    if not any(r.ok and math.isfinite(r.score) for r in runs) and not args.include_unfinished:
        raise DiagnosisError("no finished run has a score yet: nothing to diagnose (see the statuses above).")

    if args.params:
        params = [p.strip() for p in args.params.split(",") if p.strip()]
    elif space is not None:
        params = [p for p in space.params if any(p in r.params for r in runs)]
    else:
        params = None
    values: dict[str, Any] = {}
    if space is not None:
        values = {name: list(p.values) for name, p in space.params.items() if p.type == "choice"}
    budgets = _budgets(args.budgets, np.array([r.compute for r in runs if r.ok]))
    diagnoses = diagnose_all(
        runs,
        params,
        budgets=budgets,
        n_resamples=args.resamples,
        confidence=args.confidence,
        seed=args.seed,
        higher_is_better=not args.lower_is_better,
        values=values,
        include_unfinished=args.include_unfinished,
        n_bins=args.bins,
    )
    for ds in diagnoses.values():
        for d in ds:
            _say("\n" + d.format())

    fronts, matches = None, []
    if args.strategy_key:
        fronts = frontiers(
            runs, args.strategy_key, use_curves=not args.final_points_only, higher_is_better=not args.lower_is_better
        )
        matches = [compute_to_match(fa, fb) for fa in fronts.values() for fb in fronts.values() if fa is not fb]
        _say("\ncompute frontier:")
        for m in matches:
            _say(f"  {m.describe()}")

    if args.no_report:
        return 0
    out = args.out or default_out
    out.mkdir(parents=True, exist_ok=True)
    table = write_table(runs, out / "results.csv", list(space.params) if space else ())
    report = write_report(
        out,
        runs,
        diagnoses,
        fronts=fronts,
        matches=matches,
        strategy_key=args.strategy_key,
        metric=args.metric,
        compute_key=args.compute_key,
        title=f"Sweep diagnosis: {source}",
        use_curves=not args.final_points_only,
    )
    _say(f"\nwrote {table}, {report} and {out / 'diagnosis.json'}")
    return 0
