"""Random-search sweeps and their statistical diagnosis, after arXiv 2507.04103.

Sample configurations from a YAML search space, run them, then bootstrap which value of each
hyperparameter wins (weighting runs by 1 / runs sharing the value) and compare strategies on the
compute-performance frontier::

    from sec_rl import diagnosis as dx

    dx.write_sweep(None, n=64, out_dir="sweeps/study")            # the study's space
    runs = dx.collect("sweeps/study", metric="eval_success")      # after the runs finished
    for d in dx.diagnose(runs, "temperature", budgets=[1e18, 5e18]):
        print(d.format())
    fronts = dx.frontiers(runs, strategy_key="pipeline")
    print(dx.compute_to_match(fronts["sft+rl"], fronts["sft"]).describe())

Depends on numpy, pyyaml and matplotlib only.
"""

from sec_rl.diagnosis.bootstrap import (
    Diagnosis,
    ValueStats,
    diagnose,
    diagnose_all,
    discretize,
    exact_win_rates,
    weighted_bootstrap,
)
from sec_rl.diagnosis.cli import diagnose_main, sweep_main
from sec_rl.diagnosis.collect import (
    MissingMetricError,
    RunResult,
    collect,
    read_run,
    read_table,
    status_counts,
    write_table,
)
from sec_rl.diagnosis.frontier import Frontier, Match, compute_to_match, frontiers, pareto_frontier
from sec_rl.diagnosis.report import plot_diagnosis, plot_frontiers, write_report
from sec_rl.diagnosis.sampling import DEFAULT_TEMPLATE, SweepPlan, read_sweep, write_sweep
from sec_rl.diagnosis.space import DiagnosisError, Param, SearchSpace, SpaceError, builtin_spaces, load_space

__all__ = [
    "DEFAULT_TEMPLATE",
    "Diagnosis",
    "DiagnosisError",
    "Frontier",
    "Match",
    "MissingMetricError",
    "Param",
    "RunResult",
    "SearchSpace",
    "SpaceError",
    "SweepPlan",
    "ValueStats",
    "builtin_spaces",
    "collect",
    "compute_to_match",
    "diagnose",
    "diagnose_all",
    "diagnose_main",
    "discretize",
    "exact_win_rates",
    "frontiers",
    "load_space",
    "pareto_frontier",
    "plot_diagnosis",
    "plot_frontiers",
    "read_run",
    "read_sweep",
    "read_table",
    "status_counts",
    "sweep_main",
    "weighted_bootstrap",
    "write_report",
    "write_sweep",
    "write_table",
]
