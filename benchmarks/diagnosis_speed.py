"""How long the bootstrap diagnosis of a large sweep takes (issue 6's benchmark).

Builds N synthetic runs from the web-agent study's space (temperature 0.25 is best, scores grow with
compute), then times ``sec_rl.diagnosis.diagnose`` with B resamples: one hyperparameter over all runs, the
same at 3 compute budgets, and all 12 hyperparameters at all runs + 3 budgets. Prints the median wall time
of a few repeats (the first, cold call is printed separately).

    python benchmarks/diagnosis_speed.py                 # 2,000 runs, 1,000 resamples
    python benchmarks/diagnosis_speed.py --runs 500 --resamples 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from sec_rl.diagnosis import RunResult, diagnose, diagnose_all, load_space
from sec_rl.provenance import describe_environment


def synthetic_sweep(n: int, seed: int = 0) -> list[RunResult]:
    space = load_space(None)
    rng = np.random.default_rng(seed)
    runs = []
    for i, config in enumerate(space.sample_many(n, seed=seed)):
        compute = float(10 ** rng.uniform(17, 19))
        score = 0.4 + 0.08 * (config["temperature"] == 0.25) + 0.02 * np.log10(compute / 1e17) + 0.04 * rng.normal()
        runs.append(RunResult(f"run-{i:05d}", config, score=float(score), compute=compute))
    return runs


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(first call, median of the following ``repeats`` calls) in seconds."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="number of synthetic runs")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after the first call")
    args = parser.parse_args()

    runs = synthetic_sweep(args.runs)
    budgets = [float(b) for b in np.quantile([r.compute for r in runs], [1 / 3, 2 / 3, 1.0])]
    kw = {"n_resamples": args.resamples}
    (verdict,) = diagnose(runs, "temperature", **kw)
    assert verdict.winner == 0.25, verdict.format()

    cases = {
        "1 hyperparameter, all runs": lambda: diagnose(runs, "temperature", **kw),
        "1 hyperparameter, 3 budgets": lambda: diagnose(runs, "temperature", budgets=budgets, **kw),
        "12 hyperparameters, all runs + 3 budgets": lambda: (
            diagnose_all(runs, **kw),
            diagnose_all(runs, budgets=budgets, **kw),
        ),
    }
    print(f"{args.runs} runs, {args.resamples} resamples, median of {args.repeats} repeats")
    print(f"environment: {describe_environment()}")
    for name, fn in cases.items():
        first, median = timed(fn, args.repeats)
        print(f"  {name:<42} {median:6.2f} s   (first call {first:.2f} s)")


if __name__ == "__main__":
    main()
