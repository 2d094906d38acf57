"""How often the win-rate intervals of ``sec-rl diagnose`` hold the truth for a hyperparameter with no effect.

Each sweep has N runs whose scores are pure noise (i.i.d. standard normal); a hyperparameter with K values is
assigned to them in turn (balanced, as the random sampler gives on average), so every value's true win rate
is 1/K. For S such sweeps the script runs ``sec_rl.diagnosis.diagnose`` (B resamples, seed = sweep index)
at each confidence level asked for, and reports:

- coverage: the share of (sweep, value) pairs whose win-rate interval contains 1/K (nominal: the level);
- false clear winners: the share of sweeps in which a value is declared a clear winner (its interval above
  all others'), which for a no-effect hyperparameter is always wrong;
- the mean interval width and the mean |win rate - 1/K|.

    python benchmarks/diagnosis_calibration.py                       # N = 50, 200, 1000; K = 2, 5; 100 sweeps
    python benchmarks/diagnosis_calibration.py --runs 200 --values 5 --sweeps 20 --levels 0.95
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sec_rl.diagnosis import RunResult, diagnose
from sec_rl.provenance import environment_info


def noise_sweep(n_runs: int, n_values: int, seed: int) -> list[RunResult]:
    """``n_runs`` runs with N(0, 1) scores and a no-effect parameter ``p`` cycling through ``n_values`` values."""
    scores = np.random.default_rng(seed).standard_normal(n_runs)
    return [RunResult(f"run-{i:05d}", {"p": i % n_values}, score=float(s)) for i, s in enumerate(scores)]


def calibration(n_runs: int, n_values: int, sweeps: int, level: float, resamples: int) -> dict[str, Any]:
    """Coverage of 1/K, false clear winners, width and error over ``sweeps`` noise sweeps."""
    truth = 1.0 / n_values
    covered, widths, errors, clear = [], [], [], 0
    for seed in range(sweeps):
        (d,) = diagnose(noise_sweep(n_runs, n_values, seed), "p", n_resamples=resamples, confidence=level, seed=seed)
        covered += [v.win_low <= truth <= v.win_high for v in d.values]
        widths += [v.win_high - v.win_low for v in d.values]
        errors += [abs(v.win_rate - truth) for v in d.values]
        clear += d.clear_winner
    return {
        "runs": n_runs,
        "values": n_values,
        "level": level,
        "sweeps": sweeps,
        "coverage": float(np.mean(covered)),
        "false_clear_winner_rate": clear / sweeps,
        "mean_width": float(np.mean(widths)),
        "mean_abs_error": float(np.mean(errors)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[50, 200, 1000], help="runs per sweep (N)")
    parser.add_argument("--values", type=int, nargs="+", default=[2, 5], help="values of the parameter (K)")
    parser.add_argument("--sweeps", type=int, default=100, help="noise sweeps per setting (S)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.95, 0.99], help="confidence levels")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (B)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnosis_calibration.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    rows = []
    print(f"{'N':>5} {'K':>2} {'level':>5}  {'coverage':>8}  {'false clear':>11}  {'width':>5}  {'|err|':>5}")
    for n_runs in args.runs:
        for n_values in args.values:
            for level in args.levels:
                row = calibration(n_runs, n_values, args.sweeps, level, args.resamples)
                rows.append(row)
                coverage, clear = row["coverage"], row["false_clear_winner_rate"]
                width, error = row["mean_width"], row["mean_abs_error"]
                setting = f"{n_runs:>5} {n_values:>2} {level:>5}"
                print(f"{setting}  {coverage:>8.1%}  {clear:>11.1%}  {width:>5.2f}  {error:>5.2f}")
    seconds = time.perf_counter() - start
    print(f"{seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": rows,
        "seconds": seconds,
        "environment": environment_info(),
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
