"""Tests of sec_rl.diagnosis: search spaces, sweeps, result collection, the weighted bootstrap, frontiers, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import yaml

from sec_rl.diagnosis import (
    DiagnosisError,
    MissingMetricError,
    RunResult,
    SearchSpace,
    SpaceError,
    collect,
    compute_to_match,
    diagnose,
    diagnose_main,
    exact_win_rates,
    frontiers,
    load_space,
    pareto_frontier,
    read_run,
    read_table,
    sweep_main,
    weighted_bootstrap,
    write_report,
    write_sweep,
    write_table,
)

STUDY_VALUES = {
    "temperature": [0.1, 0.25, 0.5, 0.75, 1.0],
    "curriculum": [True, False],
    "mu_target": [0.25, 0.5, 0.75],
    "rho": [0.1, 0.3],
    "gamma": [0.5, 0.8, 0.9, 0.95, 0.98, 1.0],
    "grouped_advantage": [True, False],
    "zero_advantage_filter": [True, False],
    "std_normalize_advantage": [True, False],
    "effective_batch_size": [64, 256, 512, 1024],
    "learning_rate": [1e-6, 5e-6, 5e-7],
    "error_log_feedback": [True, False],
    "importance_ratio": [True, False],
}


def normal_quantiles(n: int) -> np.ndarray:
    """Evenly spread standard-normal scores: a noise sample without sampling noise."""
    return np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])


def write_run(
    run_dir: Path,
    config: dict[str, Any] | None,
    score: float | None,
    flos: float = 1e18,
    *,
    metric: str = "eval_success",
    step: int = 100,
    max_steps: int = 100,
    evals: int = 4,
) -> Path:
    """A run folder as the HF Trainer leaves it: config.yaml + trainer_state.json with evals along the way."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    history: list[dict[str, Any]] = []
    for i in range(1, evals + 1):
        s = round(i * step / evals)
        history.append({"loss": 0.1, "step": s})
        if score is not None:
            history.append({metric: score * i / evals, "step": s})
    if step >= max_steps:
        history.append({"train_runtime": 10.0, "total_flos": flos, "step": step})
    state = {"global_step": step, "max_steps": max_steps, "total_flos": flos, "log_history": history}
    (run_dir / "trainer_state.json").write_text(json.dumps(state))
    return run_dir


def synthetic_runs(n: int, seed: int = 0, effect: float = 0.08, noise: float = 0.04) -> list[RunResult]:
    """Study-space runs whose score is best at temperature 0.25 and grows with compute."""
    space = load_space(None)
    rng = np.random.default_rng(seed)
    runs = []
    for i, config in enumerate(space.sample_many(n, seed=seed)):
        compute = float(10 ** rng.uniform(17, 19))
        score = 0.4 + effect * (config["temperature"] == 0.25) + 0.02 * np.log10(compute / 1e17) + noise * rng.normal()
        runs.append(RunResult(f"run-{i:04d}", config, score=float(score), compute=compute))
    return runs


# ------------------------------------------------------------------------------------------------- space


def test_default_space_is_the_study_space():
    space = load_space(None)
    assert space.name == "web_agent_study"
    assert {name: list(p.values) for name, p in space.params.items()} == STUDY_VALUES
    assert all(p.type == "choice" for p in space.params.values())
    assert all(isinstance(v, float) for v in space.params["learning_rate"].values)  # 1.0e-6 read as a number
    assert space.params["mu_target"].when == {"curriculum": (True,)}
    configs = space.sample_many(300, seed=1)
    for config in configs:
        assert ("mu_target" in config) == ("rho" in config) == config["curriculum"]
    assert {c["temperature"] for c in configs} == set(STUDY_VALUES["temperature"])


def test_space_types_conditions_and_reproducibility():
    space = SearchSpace.from_dict(
        {
            "fixed": {"max_steps": 50},
            "parameters": {
                "algo": {"type": "choice", "values": ["grpo", "rloo"]},
                "lr": {"type": "loguniform", "low": "1e-7", "high": 1e-5},  # YAML 1.1 reads 1e-7 as a string
                "beta": {"type": "uniform", "low": 0.0, "high": 0.1, "when": {"algo": "grpo"}},
                "groups": {"type": "int", "low": 2, "high": 16, "log": True},
            },
        }
    )
    configs = space.sample_many(200, seed=3)
    assert all(c["max_steps"] == 50 for c in configs)
    assert all(1e-7 <= c["lr"] <= 1e-5 and 2 <= c["groups"] <= 16 for c in configs)
    assert all(isinstance(c["groups"], int) for c in configs)
    assert all(("beta" in c) == (c["algo"] == "grpo") for c in configs)
    assert space.sample_many(5, seed=3) == configs[:5]
    assert space.sample_many(2, seed=3, start=3) == configs[3:5]  # run i depends only on (seed, i)
    assert SearchSpace.from_dict(space.to_dict()).sample_many(20, seed=3) == configs[:20]


def test_space_file_with_unknown_type(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("parameters:\n  lr: {type: normal, low: 0, high: 1}\n")
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert "'lr'" in message and "'normal'" in message and str(path) in message and "loguniform" in message


TWO_PARAMS = {
    "parameters": {
        "a": {"type": "choice", "values": [1, 2]},
        "b": {"type": "int", "low": 0, "high": 3, "when": {"a": 5}},
    }
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"parameters": {"a": {"type": "choice", "values": [1], "when": {"b": 1}}}}, "not defined before it"),
        (TWO_PARAMS, "never hold"),
        ({"parameters": {"a": {"type": "loguniform", "low": 0, "high": 1}}}, "low > 0"),
        ({"parameters": {"a": {"type": "choice", "values": []}}}, "non-empty"),
        ({"parameters": {"a": {"type": "uniform", "low": 1}}}, "high"),
        ({"params": {}}, "parameters:"),
    ],
)
def test_space_errors_name_the_problem(spec, expected):
    with pytest.raises(SpaceError, match=expected):
        SearchSpace.from_dict(spec)


# ------------------------------------------------------------------------------------------------- sweep


def test_write_sweep_files_and_commands(tmp_path):
    plan = write_sweep(None, 6, tmp_path / "sweep", seed=7, script="train_agent.py")
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    assert [p.name for p in runs] == [f"run-{i:04d}" for i in range(6)]
    config = yaml.safe_load((runs[2] / "config.yaml").read_text())
    assert config["run_name"] == "run-0002" and Path(config["output_dir"]) == runs[2].resolve()
    assert {k: v for k, v in config.items() if k not in ("run_name", "output_dir")} == plan.configs[2]
    lines = plan.cluster_commands.read_text().splitlines()
    assert lines[2] == f"accelerate launch train_agent.py --config {(runs[2] / 'config.yaml').resolve()}"
    local = plan.local_script.read_text()
    assert local.startswith("#!/usr/bin/env bash") and local.count("\nrun run-") == 6 and "exit_code" in local
    meta = yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())
    assert meta["batches"] == [{"seed": 7, "start": 0, "n": 6}] and "temperature" in meta["space"]["parameters"]

    with pytest.raises(DiagnosisError, match="--start 6"):
        write_sweep(None, 6, tmp_path / "sweep", seed=7)
    more = write_sweep(None, 2, tmp_path / "sweep", seed=7, start=6, template="sbatch run.sh {config} {run_id}")
    assert more.run_ids == ["run-0006", "run-0007"]
    assert len(more.cluster_commands.read_text().splitlines()) == 8
    assert more.local_script.read_text().count("\nrun run-") == 8
    assert len(yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())["batches"]) == 2


def test_template_errors(tmp_path):
    with pytest.raises(DiagnosisError, match="unknown fields"):
        write_sweep(None, 2, tmp_path, template="accelerate launch {script} --config {cfg}")
    with pytest.raises(DiagnosisError, match="never passes"):
        write_sweep(None, 2, tmp_path, template="accelerate launch {script}")


def test_local_runner_runs_and_resumes(tmp_path):
    plan = write_sweep(None, 2, tmp_path / "s", local_template="echo {run_id} > {output_dir}/hello.txt")
    subprocess.run(["bash", str(plan.local_script)], check=True, capture_output=True)
    for rid in plan.run_ids:
        run_dir = tmp_path / "s" / "runs" / rid
        assert (run_dir / "hello.txt").read_text().strip() == rid
        assert (run_dir / "exit_code").read_text().strip() == "0"
    again = subprocess.run(["bash", str(plan.local_script)], check=True, capture_output=True, text=True)
    assert again.stdout.count("[skip]") == 2


# ----------------------------------------------------------------------------------------------- collect


def test_collect_statuses(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "ok", {"lr": 1e-6}, 0.6, flos=2e18)
    write_run(root / "stopped", {"lr": 5e-6}, 0.3, step=40, max_steps=100)
    write_run(root / "fresh", {"lr": 5e-6}, None, step=10, max_steps=100)
    write_run(root / "failed", {"lr": 5e-7}, 0.2)
    (root / "failed" / "exit_code").write_text("137\n")
    (root / "empty").mkdir()
    (root / "empty" / "config.yaml").write_text("lr: 1.0e-6\n")
    ckpt = write_run(root / "ckpt" / "checkpoint-50", None, 0.4, step=50, max_steps=100)
    (ckpt.parent / "config.yaml").write_text("lr: 1.0e-6\n")
    done = write_run(root / "done" / "checkpoint-100", None, 0.45)  # the Trainer's final save, no save_state()
    (done.parent / "config.yaml").write_text("lr: 1.0e-6\n")
    write_run(root / "broken", None, 0.5)
    (root / "broken" / "config.yaml").write_text("lr: [1.0e-6,\n")

    runs = {r.run_id: r for r in collect(tmp_path, "success")}  # 'success' is found as 'eval_success'
    assert {k: r.status for k, r in runs.items()} == {
        "ok": "ok",
        "stopped": "unfinished",
        "fresh": "unfinished",
        "failed": "crashed",
        "empty": "unfinished",
        "ckpt": "unfinished",
        "done": "ok",
        "broken": "crashed",
    }
    ok = runs["ok"]
    assert ok.score == pytest.approx(0.6) and ok.compute == 2e18 and ok.params == {"lr": 1e-6}
    expected_curve = [(5e17, 0.15), (1e18, 0.3), (1.5e18, 0.45), (2e18, 0.6)]  # compute pro rata of steps
    assert np.allclose(ok.curve, expected_curve)
    assert "137" in runs["failed"].reason and "40/100" in runs["stopped"].reason
    assert "checkpoint" in runs["ckpt"].reason and runs["ckpt"].score == pytest.approx(0.4)
    assert "not valid YAML" in runs["broken"].reason


def test_reduce_picks_the_logged_evaluation(tmp_path):
    history = [{"eval_success": s, "step": 10 * (i + 1)} for i, s in enumerate([0.5, 0.7, 0.6])]
    state = {"global_step": 30, "max_steps": 30, "log_history": history}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    assert [read_run(tmp_path, "success", reduce=r).score for r in ("last", "max", "min")] == [0.6, 0.7, 0.5]
    assert math.isnan(read_run(tmp_path, "success").compute)  # no total_flos anywhere: unknown, not an error


def test_eval_results_file_and_offsets(tmp_path):
    run = write_run(tmp_path / "r", {"pipeline": "sft+rl", "sft_flos": 1e18}, 0.5, flos=1e18)
    (run / "eval_results.json").write_text(json.dumps({"eval_success": 0.7, "flos": 3e18}))
    result = read_run(run, "eval_success", "flos", compute_offset_key="sft_flos")
    assert result.ok and result.score == 0.7 and result.compute == 4e18


def test_missing_metric_is_named(tmp_path):
    write_run(tmp_path / "runs" / "run-0000", {"lr": 1e-6}, 0.5, metric="eval_reward")
    with pytest.raises(MissingMetricError) as err:
        collect(tmp_path, "eval_success")
    message = str(err.value)
    assert "'eval_success'" in message and "run-0000" in message  # the metric and the folder
    assert "eval_reward" in message and "total_flos" in message  # the keys that do exist
    lenient = collect(tmp_path, "eval_success", strict=False)
    assert lenient[0].status == "crashed" and "eval_success" in lenient[0].reason


def test_non_finite_scores_are_invalid_not_missing(tmp_path):
    root = tmp_path / "runs"
    for name, score in [("a", 0.5), ("b", 0.6), ("inf", 0.7), ("nan", 0.7), ("text", 0.7), ("early-nan", 0.4)]:
        write_run(root / name, {"lr": 1e-6 if name < "c" else 5e-6}, score)
    (root / "inf" / "eval_results.json").write_text(json.dumps({"eval_success": math.inf}))  # written as Infinity
    assert "Infinity" in (root / "inf" / "eval_results.json").read_text()
    (root / "text" / "all_results.json").write_text(json.dumps({"eval_success": "0.7"}))
    state = json.loads((root / "nan" / "trainer_state.json").read_text())
    state["log_history"][-2]["eval_success"] = math.nan  # the last evaluation, at step 100
    (root / "nan" / "trainer_state.json").write_text(json.dumps(state))
    state = json.loads((root / "early-nan" / "trainer_state.json").read_text())
    state["log_history"][1]["eval_success"] = math.nan  # an earlier evaluation: "last" does not use it
    (root / "early-nan" / "trainer_state.json").write_text(json.dumps(state))

    runs = {r.run_id: r for r in collect(root, "success")}  # strict: nothing raises MissingMetricError
    assert {k: r.status for k, r in runs.items()} == {
        "a": "ok", "b": "ok", "early-nan": "ok", "inf": "invalid", "nan": "invalid", "text": "invalid",
    }  # fmt: skip
    assert runs["inf"].reason.startswith("'eval_success' is Infinity in eval_results.json, not a finite number")
    assert "'eval_success' is NaN in trainer_state.json's log_history at step 100" in runs["nan"].reason
    assert "'eval_success' is the string '0.7' in all_results.json" in runs["text"].reason
    assert all(math.isnan(runs[k].score) for k in ("inf", "nan", "text"))
    assert runs["early-nan"].score == pytest.approx(0.4)
    # reduce="max" would have to rank the NaN: the run is invalid then, not scored on its other evaluations.
    assert read_run(root / "early-nan", "success", reduce="max").status == "invalid"

    (d,) = diagnose(list(runs.values()), "lr")
    assert d.n_runs == 3  # a, b, early-nan
    report = write_report(tmp_path / "out", list(runs.values()), {"lr": [d]}, metric="eval_success")
    text = report.read_text()
    assert text.startswith("# Sweep diagnosis\n\n6 runs: 3 finished, 0 unfinished, 0 crashed, 3 with an invalid score")
    best = text[text.index("## Best") :]
    assert "`inf`" not in best and "`b`" in best  # listed among the runs left out, not first among the best
    assert "| `inf` | invalid | 'eval_success' is Infinity" in text
    assert json.loads((tmp_path / "out" / "diagnosis.json").read_text())["runs"]["invalid"] == 3


def test_ok_run_with_a_non_finite_score_is_refused_by_name():
    runs = [RunResult("good", {"lr": 1}, score=0.5), RunResult("diverged", {"lr": 2}, score=math.inf)]
    with pytest.raises(DiagnosisError, match=r"runs \['diverged'\] have status 'ok' but no finite score"):
        diagnose(runs, "lr")


def test_table_with_non_finite_scores(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("run_id,success,lr\nr0,0.5,1\nr1,inf,2\nr2,nan,2\nr3,oops,1\nr4,,1\n")
    runs = {r.run_id: r for r in read_table(path, "success")}
    assert [runs[k].status for k in ("r0", "r1", "r2", "r3", "r4")] == [
        "ok",
        "invalid",
        "invalid",
        "invalid",
        "crashed",
    ]
    assert runs["r1"].reason == "'success' is Infinity, not a finite number: the run is not scored"
    assert "NaN" in runs["r2"].reason and "the string 'oops'" in runs["r3"].reason
    assert [r.status for r in read_table(write_table(list(runs.values()), tmp_path / "back.csv"))] == [
        "ok", "invalid", "invalid", "invalid", "crashed",
    ]  # fmt: skip


def test_exit_code_that_is_not_a_number_is_a_crash(tmp_path):
    write_run(tmp_path / "killed", {"lr": 1e-6}, 0.5)  # a complete trainer_state.json, then the OOM killer
    (tmp_path / "killed" / "exit_code").write_text("Killed\n")
    run = read_run(tmp_path / "killed", "success")
    assert run.status == "crashed" and "exit_code file reads 'Killed'" in run.reason


def test_table_round_trip(tmp_path):
    runs = synthetic_runs(12)
    runs.append(RunResult("bad", {"temperature": 0.5}, status="crashed", reason="exit code 1"))
    path = write_table(runs, tmp_path / "results.csv", ["temperature"])
    back = read_table(path)
    assert [r.run_id for r in back] == [r.run_id for r in runs]
    assert back[3].params == runs[3].params and back[3].score == pytest.approx(runs[3].score)
    assert back[-1].status == "crashed" and math.isnan(back[-1].score)


# --------------------------------------------------------------------------------------------- bootstrap


def test_diagnosis_finds_the_best_value():
    runs = synthetic_runs(400, seed=1)
    (d,) = diagnose(runs, "temperature", values=STUDY_VALUES["temperature"])
    assert d.winner == 0.25 and d.clear_winner
    win = {v.value: v for v in d.values}
    assert win[0.25].win_rate > 0.9 and win[0.25].win_low > 0.5
    assert sum(v.win_rate for v in d.values) == pytest.approx(1.0)
    assert all(v.best_low <= v.best <= v.best_high + 1e-12 for v in d.values)
    assert "0.25" in d.format() and "winner" in d.format()


def test_mu_target_only_over_runs_with_the_curriculum():
    runs = synthetic_runs(200, seed=2)
    (d,) = diagnose(runs, "mu_target", n_resamples=200)
    with_curriculum = sum(r.params["curriculum"] for r in runs)
    assert d.n_runs == with_curriculum and d.n_inactive == len(runs) - with_curriculum
    assert "inactive" in d.notes[0]


def test_skewed_sampling_does_not_bias_the_verdict_once_weighted():
    """Value 1 is truly better; value 0 is run four times as often. Unweighted, the extra runs give value 0 more
    tickets and it 'wins'; weighted by 1 / count, the verdict is the one a balanced sweep gives."""
    n = 50
    means = [0.50, 0.52, 0.45]
    balanced_labels = np.repeat([0, 1, 2], n)
    balanced = np.concatenate([m + 0.05 * normal_quantiles(n) for m in means])
    labels = np.repeat([0, 1, 2], [4 * n, n, n])
    scores = np.concatenate([means[0] + 0.05 * normal_quantiles(4 * n), balanced[n:]])

    def unweighted(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        idx = np.random.default_rng(0).integers(0, len(scores), size=(4000, len(scores)))
        winners = labels[idx[np.arange(4000), scores[idx].argmax(axis=1)]]
        return np.bincount(winners, minlength=3) / 4000

    assert np.argmax(exact_win_rates(balanced_labels, balanced, 3)) == 1
    assert np.argmax(unweighted(labels, scores)) == 0  # the bias the weights remove
    weighted = weighted_bootstrap(labels, scores, 3, n_resamples=2000, rng=np.random.default_rng(0))
    assert np.argmax(weighted["win_rate"]) == 1
    assert np.argmax(exact_win_rates(labels, scores, 3)) == 1


def test_bootstrap_matches_its_closed_form():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 300)
    scores = np.round(0.5 + 0.02 * labels + 0.1 * rng.normal(size=300), 2)  # rounded: many ties
    out = weighted_bootstrap(labels, scores, 4, n_resamples=4000, rng=rng)
    assert out["win_rate"] == pytest.approx(exact_win_rates(labels, scores, 4), abs=0.03)
    assert (out["win_low"] <= out["win_high"]).all()


def test_intervals_shrink_as_runs_are_added():
    """Three close values with bounded noise: with 8 runs each, which one holds the best run is uncertain."""

    def widths(n: int) -> tuple[float, float]:
        rng = np.random.default_rng([0, n])
        labels = np.arange(n) % 3
        scores = np.array([0.50, 0.51, 0.52])[labels] + rng.uniform(-0.05, 0.05, size=n)
        out = weighted_bootstrap(labels, scores, 3, rng=rng)
        return float(np.mean(out["win_high"] - out["win_low"])), float(np.mean(out["best_high"] - out["best_low"]))

    small, medium, large = widths(24), widths(240), widths(2400)
    assert small[0] > 0.3 > medium[0] >= large[0]  # win-rate intervals
    assert small[1] > medium[1] > large[1]  # best-score intervals


def test_lower_is_better_and_ties():
    labels = np.array([0, 0, 1, 1])
    loss = np.array([0.2, 0.8, 0.2, 0.8])  # values 0 and 1 tie for the best (lowest) loss, and for the second
    out = weighted_bootstrap(labels, loss, 2, higher_is_better=False, rng=np.random.default_rng(0))
    assert out["win_rate"] == pytest.approx([0.5, 0.5], abs=0.05)
    assert out["best"].tolist() == [0.2, 0.2]
    assert exact_win_rates(labels, loss, 2, higher_is_better=False) == pytest.approx([0.5, 0.5])


def test_budgets_restrict_runs():
    runs = synthetic_runs(300, seed=4)
    ds = diagnose(runs, "temperature", budgets=[1e18, 1e19], n_resamples=300)
    assert [d.budget for d in ds] == [1e18, 1e19]
    assert ds[0].n_runs == sum(r.compute <= 1e18 for r in runs) < ds[1].n_runs == len(runs)
    with pytest.raises(DiagnosisError, match="no run fits"):
        diagnose(runs, "temperature", budgets=[1.0])


def test_continuous_parameter_is_binned():
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-7, -5, 200)
    runs = [RunResult(f"r{i}", {"lr": float(lr)}, score=float(-abs(np.log10(lr) + 6))) for i, lr in enumerate(lrs)]
    (d,) = diagnose(runs, "lr", n_bins=4, n_resamples=300)
    assert d.binned and len(d.values) == 4 and sum(v.n_runs for v in d.values) == 200
    assert d.winner in (d.values[1].value, d.values[2].value)  # the two bins that meet near lr = 1e-6


def test_diagnose_errors():
    runs = synthetic_runs(20)
    with pytest.raises(DiagnosisError, match="temprature"):
        diagnose(runs, "temprature")
    no_compute = [RunResult(r.run_id, r.params, score=r.score) for r in runs]
    with pytest.raises(DiagnosisError, match="compute"):
        diagnose(no_compute, "temperature", budgets=[1e18])


# ---------------------------------------------------------------------------------------------- frontier


def test_frontier_and_compute_to_match_hand_example():
    a = [(1, 0.2), (2, 0.5), (3, 0.4), (4, 0.7), (6, 0.9), (6, 0.8)]
    b = [(2, 0.3), (5, 0.6), (10, 0.7), (12, 0.65), (11, 0.7)]
    c, s = pareto_frontier(*zip(*a))
    assert c.tolist() == [1, 2, 4, 6] and s.tolist() == [0.2, 0.5, 0.7, 0.9]
    match = compute_to_match(a, b, higher_is_better=True)  # B peaks at 0.7, first reached at 10; A reaches 0.7 at 4
    assert (match.target_score, match.compute_a, match.compute_b) == (0.7, 4, 10)
    assert match.ratio == pytest.approx(0.4)
    assert "40%" in match.describe()
    back = compute_to_match(b, a, higher_is_better=True)  # B never reaches A's 0.9
    assert math.isinf(back.compute_a) and "never" in back.describe()


def test_compute_to_match_reaches_a_peak_equal_up_to_rounding():
    # Success averaged over seeds: three runs at 84/120 each average to 0.6999999999999998, not 0.7.
    sft = [(1.0, 0.5), (2.0, 84 / 120)]
    rl = [(2.5, float(np.mean([84 / 120] * 3)))]
    match = compute_to_match(rl, sft, higher_is_better=True)
    assert (match.compute_a, match.ratio) == (2.5, 1.25) and "never" not in match.describe()
    assert math.isinf(compute_to_match([(2.5, 0.69)], sft, higher_is_better=True).compute_a)  # a real shortfall


def test_compute_to_match_for_a_loss_by_hand():
    # A loss: lower is better. A's frontier: (1, 2.0), (2, 1.2), (4, 0.8); B's: (3, 1.5), (8, 1.0).
    a = [(1, 2.0), (2, 1.2), (3, 1.3), (4, 0.8)]
    b = [(3, 1.5), (8, 1.0), (9, 1.1)]
    c, s = pareto_frontier(*zip(*a), higher_is_better=False)
    assert c.tolist() == [1, 2, 4] and s.tolist() == [2.0, 1.2, 0.8]
    match = compute_to_match(a, b, higher_is_better=False)  # B's best loss 1.0 at 8; A first gets <= 1.0 at 4
    assert (match.target_score, match.compute_a, match.compute_b, match.ratio) == (1.0, 4, 8, 0.5)
    # Read as higher-is-better, the same points give another answer (B's "peak" 1.5 at 3, A's 2.0 at 1).
    assert compute_to_match(a, b, higher_is_better=True).compute_a == 1


def test_compute_to_match_needs_a_direction_for_raw_points():
    with pytest.raises(DiagnosisError, match=r"needs the metric's direction: pass higher_is_better=True"):
        compute_to_match([(1, 0.5)], [(2, 0.6)])
    runs = [RunResult("r", {"pipeline": "sft"}, score=0.5, compute=1.0)]
    with pytest.raises(DiagnosisError, match=r"needs the metric's direction"):
        compute_to_match(runs, runs)
    loss = frontiers(runs, "pipeline", higher_is_better=False)["sft"]
    assert compute_to_match(loss, [(1, 0.4)]).compute_a == math.inf  # the Frontier's mode (a loss) is used
    with pytest.raises(DiagnosisError, match=r"higher_is_better=True contradicts the frontiers' own mode \(False\)"):
        compute_to_match(loss, loss, higher_is_better=True)


def test_frontiers_per_strategy_from_run_curves(tmp_path):
    # SFT improves slowly; SFT+RL starts from an SFT checkpoint (offset) and climbs faster.
    write_run(tmp_path / "sft-a", {"pipeline": "sft"}, 0.60, flos=4e18, evals=4)
    write_run(tmp_path / "sft-b", {"pipeline": "sft"}, 0.55, flos=2e18, evals=2)
    write_run(tmp_path / "rl-a", {"pipeline": "sft+rl", "sft_flos": 1e18}, 0.68, flos=1.2e18, evals=4)
    runs = collect(tmp_path, "eval_success", compute_offset_key="sft_flos")
    fronts = frontiers(runs, "pipeline")
    assert fronts["sft"].peak_score == pytest.approx(0.60) and fronts["sft"].peak_compute == pytest.approx(4e18)
    # rl-a's curve: 0.17, 0.34, 0.51, 0.68 at 1.3e18, 1.6e18, 1.9e18, 2.2e18; 0.68 >= 0.60 first at 2.2e18
    match = compute_to_match(fronts["sft+rl"], fronts["sft"])
    assert match.compute_a == pytest.approx(2.2e18) and match.ratio == pytest.approx(0.55)
    finals = frontiers(runs, "pipeline", use_curves=False)
    assert len(finals["sft"].compute) == 2


# --------------------------------------------------------------------------------------------------- CLI


def fill_sweep(sweep: Path, best_temperature: float = 0.25) -> None:
    """Pretend every run of a sweep finished, scoring best at ``best_temperature``."""
    rng = np.random.default_rng(0)
    for run_dir in sorted((sweep / "runs").iterdir()):
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        score = 0.5 + 0.1 * (config["temperature"] == best_temperature) + 0.03 * rng.normal()
        write_run(run_dir, None, float(score), flos=float(10 ** rng.uniform(17, 18)))


def test_cli_sweep_then_diagnose(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert sweep_main(["-n", "40", "-o", str(sweep), "--seed", "1", "--script", "train.py"]) == 0
    assert (sweep / "commands_local.sh").is_file() and (sweep / "commands_accelerate.txt").is_file()
    fill_sweep(sweep)
    write_run(sweep / "runs" / "run-0003", None, 0.9, step=20, max_steps=100)  # this one is unfinished
    capsys.readouterr()
    argv = [str(sweep), "--metric", "eval_success", "--params", "temperature,mu_target", "--resamples", "200"]
    assert diagnose_main([*argv, "--budgets", "auto"]) == 0
    out = capsys.readouterr().out
    assert "39 finished, 1 unfinished" in out and "run-0003" in out and "<- winner" in out
    report = (sweep / "diagnosis" / "report.md").read_text()
    assert "run-0003" in report and "| temperature |" in report and "![temperature](plots/temperature.png)" in report
    assert (sweep / "diagnosis" / "plots" / "temperature.png").stat().st_size > 1000
    assert (sweep / "diagnosis" / "results.csv").read_text().count("\n") == 41
    payload = json.loads((sweep / "diagnosis" / "diagnosis.json").read_text())
    assert payload["diagnoses"]["temperature"][0]["winner"] == 0.25
    # the CSV written above can be diagnosed again on its own
    assert diagnose_main([str(sweep / "diagnosis" / "results.csv"), "--params", "temperature", "--no-report"]) == 0


def test_cli_frontier_and_errors(tmp_path, capsys):
    write_run(tmp_path / "runs" / "a", {"pipeline": "sft", "lr": 1e-6}, 0.6, flos=4e18)
    write_run(tmp_path / "runs" / "b", {"pipeline": "sft+rl", "lr": 5e-6}, 0.7, flos=2e18)
    argv = [str(tmp_path / "runs"), "--metric", "eval_success", "--strategy-key", "pipeline", "--resamples", "50"]
    assert diagnose_main(argv) == 0
    assert "sft+rl matches sft's peak" in capsys.readouterr().out
    assert "## Compute frontier" in (tmp_path / "runs" / "diagnosis" / "report.md").read_text()
    assert diagnose_main(argv) == 0  # the diagnosis folder inside runs/ is not mistaken for a run

    assert diagnose_main([str(tmp_path / "runs"), "--metric", "eval_accuracy"]) == 1
    err = capsys.readouterr().err
    assert "eval_accuracy" in err and str(tmp_path / "runs" / "a") in err and "eval_success" in err
    assert diagnose_main([str(tmp_path / "nowhere")]) == 1
    assert sweep_main(["-n", "2", "-o", str(tmp_path / "s"), "--template", "run {cfg}"]) == 1


def test_cli_output_to_a_closed_pipe_ends_quietly(tmp_path):
    # `sec-rl diagnose ... | head`: the reader is gone before the command prints. The report is still written,
    # the exit status is 0 and stderr holds no BrokenPipeError traceback.
    for i in range(6):
        write_run(tmp_path / "runs" / f"r{i}", {"lr": [1e-6, 5e-6][i % 2]}, 0.5 + 0.01 * i)
    code = "import sys; from sec_rl.diagnosis.cli import diagnose_main; sys.exit(diagnose_main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, str(tmp_path / "runs"), "--metric", "eval_success", "--resamples", "20"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head` that has already exited
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr
    assert (tmp_path / "runs" / "diagnosis" / "report.md").is_file()


def test_cli_help_and_dry_run(capsys):
    for main in (sweep_main, diagnose_main):
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "--budgets" in help_text and "--template" in help_text and "{config}" in help_text
    assert sweep_main(["-n", "2", "--dry-run"]) == 0
    assert "temperature:" in capsys.readouterr().out
