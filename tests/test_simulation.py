"""Behaviour of the simulated learner (sec_rl.simulation) and a small run of benchmarks/simulated_learner.py."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from sec_rl.curriculum.pools import DifficultyPoolCurriculum, DifficultyPools
from sec_rl.curriculum.random import RandomCurriculum
from sec_rl.curriculum.sec import SelfEvolvingCurriculum
from sec_rl.simulation import LearnerConfig, SimulatedLearner, filter_and_refill, group_advantages, simulate

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module():
    name = "simulated_learner_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "simulated_learner.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]


def _one_level(skill: float, problems: int = 64) -> SimulatedLearner:
    learner = SimulatedLearner(LearnerConfig(num_categories=1, problems_per_category=problems, spread=0.0))
    learner.skills[:] = skill
    return learner


def _mean_gain(skill: float, steps: int = 200, batch: int = 32, group: int = 8, scale="group") -> float:
    """Average one-step change of the skill of a one-level learner, always restarted from ``skill``."""
    rng = np.random.default_rng(0)
    learner = _one_level(skill)
    gains = []
    for _ in range(steps):
        learner.skills[:] = skill
        problems = rng.integers(0, 64, size=batch)
        rewards = learner.rollout(problems, group, rng)
        learner.train_step(problems, rewards, group_advantages(rewards, scale))
        gains.append(learner.skills[0] - skill)
    return float(np.mean(gains))


# -- advantages ------------------------------------------------------------------------------------
def test_group_advantages_match_grpo():
    rewards = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    adv = group_advantages(rewards, "group")
    np.testing.assert_allclose(adv[0], [0.7071, -0.7071], atol=1e-3)  # std with Bessel's correction, as torch
    np.testing.assert_array_equal(adv[1:3], 0.0)  # uniform groups carry no signal
    np.testing.assert_allclose(group_advantages(rewards, "none")[0], [0.5, -0.5])
    with pytest.raises(ValueError):
        group_advantages(rewards, "batch")


def test_learning_step_is_half_the_mean_abs_advantage():
    """sum_j A_j (y_j - p) = (1/2) sum_j |A_j| for binary rewards: SEC's reward is the realised step."""
    rng = np.random.default_rng(1)
    learner = _one_level(0.3, problems=8)
    problems = np.arange(8)
    rewards = learner.rollout(problems, 8, rng)
    for scale in ("group", "none"):
        adv = group_advantages(rewards, scale)
        learner.skills[:] = 0.3
        learner.train_step(problems, rewards, adv)
        expected = learner.config.learning_rate * 0.5 * np.abs(adv).mean()
        assert learner.skills[0] - 0.3 == pytest.approx(expected)


# -- the learner -----------------------------------------------------------------------------------
def test_deterministic_under_seed():
    def run(seed):
        learner = SimulatedLearner(seed=3)
        return simulate(SelfEvolvingCurriculum(learner.categories), learner, 40, seed=seed)

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert not np.array_equal(a.success, c.success)
    np.testing.assert_array_equal(SimulatedLearner(seed=5).difficulty, SimulatedLearner(seed=5).difficulty)
    seq = np.random.SeedSequence([7, 1])  # a SeedSequence may be reused: simulate() does not consume it
    first = simulate(RandomCurriculum(["1", "2", "3", "4", "5"]), SimulatedLearner(seed=3), 10, seed=seq)
    second = simulate(RandomCurriculum(["1", "2", "3", "4", "5"]), SimulatedLearner(seed=3), 10, seed=seq)
    np.testing.assert_array_equal(first.success, second.success)
    assert not np.array_equal(SimulatedLearner(seed=5).difficulty, SimulatedLearner(seed=6).difficulty)


@pytest.mark.parametrize("skill", [-40.0, 40.0])  # p = 0 and p = 1
@pytest.mark.parametrize("scale", ["group", "none"])
def test_no_learning_when_always_wrong_or_always_right(skill, scale):
    learner = SimulatedLearner(LearnerConfig(num_categories=3))
    learner.skills[:] = [0.0, 0.0, 0.0]
    learner.skills[1] = skill
    before = learner.skills.copy()
    rng = np.random.default_rng(0)
    level_2 = np.flatnonzero(learner.problem_category == 1)
    for _ in range(20):
        rewards = learner.rollout(level_2[:32], 8, rng)
        assert np.all(rewards == rewards[0, 0])
        learner.train_step(level_2[:32], rewards, group_advantages(rewards, scale))
    np.testing.assert_array_equal(learner.skills, before)  # nor do its neighbours move


@pytest.mark.parametrize("scale", ["group", "none"])
def test_learning_is_fastest_near_half_success(scale):
    skills = {p: math.log(p / (1 - p)) for p in (0.05, 0.2, 0.5, 0.8, 0.95)}
    gains = {p: _mean_gain(s, scale=scale) for p, s in skills.items()}
    assert all(g > 0 for g in gains.values())
    assert gains[0.5] > gains[0.2] > gains[0.05]
    assert gains[0.5] > gains[0.8] > gains[0.95]
    assert gains[0.5] > 3 * gains[0.05]


def test_transfer_to_neighbouring_levels():
    rng = np.random.default_rng(0)
    for transfer in (0.0, 0.5):
        learner = SimulatedLearner(LearnerConfig(num_categories=4, transfer=transfer))
        level_1 = np.flatnonzero(learner.problem_category == 0)[:32]
        rewards = learner.rollout(level_1, 8, rng)
        learner.train_step(level_1, rewards, group_advantages(rewards))
        gain = learner.skills.copy()
        assert gain[0] > 0
        np.testing.assert_allclose(gain, gain[0] * transfer ** np.arange(4))
    learner = SimulatedLearner(LearnerConfig(num_categories=4, transfer=0.5))
    assert learner.category_success()[3] < 0.01  # the hardest level starts out of reach ...
    trajectory = simulate(RandomCurriculum(learner.categories), learner, 150, seed=0)
    assert trajectory.success[-1, 3] > 0.2  # ... and is lifted by training the easier ones


def test_simulate_records_a_trajectory():
    learner = SimulatedLearner(seed=0)
    curriculum = SelfEvolvingCurriculum(learner.categories)
    trajectory = simulate(curriculum, learner, 30, batch_size=16, group_size=4, seed=0)
    assert trajectory.success.shape == (31, 5) and trajectory.probabilities.shape == (30, 5)
    np.testing.assert_array_equal(trajectory.sampled.sum(axis=1), 16)
    np.testing.assert_allclose(trajectory.probabilities[0], 0.2)  # Q = 0: uniform at first
    assert curriculum.num_updates == 30 and curriculum.counts.sum() == 30 * 16 * 4
    assert trajectory.success[-1, 0] > trajectory.success[0, 0]
    with pytest.raises(ValueError):
        simulate(RandomCurriculum(["a", "b"]), learner, 1)


def test_stop_at_target():
    config = LearnerConfig(num_categories=2, gap=0.5)
    learner = SimulatedLearner(config)
    trajectory = simulate(RandomCurriculum(learner.categories), learner, 500, target=0.7, stop_at_target=True)
    assert trajectory.steps_to_target is not None and trajectory.steps == trajectory.steps_to_target
    assert trajectory.success[-1, -1] >= 0.7 > trajectory.success[-2, -1]


# -- dynamic sampling and difficulty ----------------------------------------------------------------
def test_filter_and_refill_by_hand():
    # groups of 2 rollouts; a group is informative when its rewards differ
    batches = iter(
        [
            (np.array([0, 1, 2]), np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])),  # keeps problem 0
            (np.array([3, 4, 5]), np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])),  # keeps 4 and 5: 3 kept, done
            (np.array([6, 7, 8]), np.array([[1.0, 0.0]] * 3)),  # never generated
        ]
    )
    problems, rewards, generated = filter_and_refill(lambda: next(batches), batch_size=3, max_refills=4)
    assert problems.tolist() == [0, 4, 5] and generated == 2
    np.testing.assert_array_equal(rewards, [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])


def test_filter_and_refill_is_bounded_and_pads_with_uniform_groups():
    uniform = (np.array([0, 1]), np.array([[1.0, 1.0], [0.0, 0.0]]))
    calls = []
    problems, rewards, generated = filter_and_refill(lambda: calls.append(1) or uniform, 2, max_refills=2)
    assert generated == 3 and len(calls) == 3  # the first batch and 2 refills, then it gives up
    assert problems.tolist() == [0, 1]  # the trained batch keeps its shape: uniform groups, no gradient
    with pytest.raises(ValueError, match=r"max_refills=0: .*use dynamic_sampling='none'"):
        filter_and_refill(lambda: uniform, 2, max_refills=0)


def test_simulate_counts_every_generated_rollout():
    runs = {}
    for mode in ("none", "filter"):
        learner = SimulatedLearner(seed=0)
        curriculum = RandomCurriculum(learner.categories)
        runs[mode] = (simulate(curriculum, learner, 20, batch_size=8, group_size=4, seed=1, dynamic_sampling=mode),
                      curriculum)  # fmt: skip
    plain, (filtered, curriculum) = runs["none"][0], runs["filter"]
    np.testing.assert_array_equal(plain.rollouts, 8 * 4)
    # every generation batch is counted in rollouts, drawn for the prompts of `sampled`, and updates the strategy
    np.testing.assert_array_equal(filtered.rollouts, filtered.sampled.sum(axis=1) * 4)
    assert curriculum.num_updates == filtered.rollouts.sum() // (8 * 4) > 20
    assert (filtered.rollouts <= 5 * 8 * 4).all() and filtered.rollouts.sum() > plain.rollouts.sum()
    assert filtered.success[-1, 0] > plain.success[-1, 0]  # more informative groups per step: faster per step
    assert filtered.rollouts_until(10) == filtered.rollouts[:10].sum() and filtered.rollouts_until(None) is None
    with pytest.raises(ValueError, match="dynamic_sampling='replace'"):
        simulate(RandomCurriculum(learner.categories), learner, 1, dynamic_sampling="replace")


class RecordingSEC(SelfEvolvingCurriculum):
    """Keeps the advantages each update got."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[float] = []

    def update(self, categories, advantages, rewards=None):
        self.seen += list(advantages)
        super().update(categories, advantages, rewards)


def test_unnormalized_adv_gets_reward_minus_group_mean():
    learner = SimulatedLearner(seed=0)
    official = RecordingSEC(learner.categories, objective="unnormalized_adv", selection="normalized_q")
    simulate(official, learner, 5, batch_size=8, group_size=4, seed=0)
    # raw advantages of binary rewards in groups of 4 are multiples of 1/4 in [-0.75, 0.75], never std-scaled
    assert set(np.round(np.abs(official.seen), 6)) <= {0.0, 0.25, 0.5, 0.75}


def test_simulate_with_pools_and_the_pool_strategy():
    learner = SimulatedLearner(seed=0)
    strategy = DifficultyPoolCurriculum()
    trajectory = simulate(strategy, learner, 40, batch_size=16, group_size=4, seed=0)
    assert trajectory.probabilities.shape == (40, 3)  # arms: easy, normal, hard
    np.testing.assert_allclose(trajectory.probabilities[0], [0.0, 1.0, 0.0])  # nothing seen: all normal
    assert strategy.pool_sizes().sum() == 5 * 64 and strategy.pool_sizes()[2] > 0  # hard problems found
    inside = simulate(RandomCurriculum(learner.categories), SimulatedLearner(seed=0), 40, pools=DifficultyPools())
    assert inside.success[-1, 0] > inside.success[0, 0]


# -- the benchmark ---------------------------------------------------------------------------------
def test_censored_medians_and_ratios():
    bench = _benchmark_module()
    inf = math.inf
    assert bench._median(np.array([3.0, 1.0, inf])) == 3.0
    assert bench._median(np.array([1.0, inf, inf])) == inf
    median, lo, hi = bench.bootstrap_median(np.array([10.0, 11.0, 12.0, 13.0, inf]), n_boot=500)
    assert median == 12.0 and lo <= median <= hi
    ratio, lo, hi = bench.bootstrap_ratio(np.array([5.0, 5.0, 5.0]), np.array([10.0, 10.0, 10.0]), n_boot=200)
    assert (ratio, lo, hi) == (0.5, 0.5, 0.5)
    assert math.isnan(bench.bootstrap_ratio(np.array([inf, inf]), np.array([inf, inf]), n_boot=50)[0])
    # censored runs count as the run length, and the ratio is then a bound
    x, y = np.array([50.0, 60.0, 70.0]), np.array([inf, inf, 90.0])
    assert bench.bootstrap_ratio(x, y, n_boot=50, cap=100)[0] == pytest.approx(0.6)
    assert bench.ratio_bound(x, y) == "<" and bench.ratio_bound(y, x) == ">" and bench.ratio_bound(x, x) == ""
    assert bench.ratio_bound(y, y) == "n/a"
    assert bench.parse_strategy("sec:temperature=0.2,unsampled=keep") == (
        "sec",
        {"temperature": 0.2, "unsampled": "keep"},
    )


def test_benchmark_runs_every_strategy(tmp_path):
    bench = _benchmark_module()
    setting = bench.Setting(LearnerConfig(num_categories=3, problems_per_category=16, gap=0.5), max_steps=80)
    strategies = [*bench.STRATEGIES, "sec:temperature=0.2", "difficulty_pools", "sec+pools+filter=1"]
    result = bench.run_benchmark(strategies, seeds=3, setting=setting)
    rows = bench.summarize(result, n_boot=200)
    assert [r["strategy"] for r in rows] == strategies
    for row in rows:
        assert row["reached"] == 3, row
        for key in ("median", "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high"):
            assert math.isfinite(row[key]), (row["strategy"], key, row[key])
        assert row["ci_low"] <= row["median"] <= row["ci_high"]
    for spec in strategies:
        assert result.hardest[spec].shape == (3, 81) and np.isfinite(result.hardest[spec]).all()
        assert result.level_steps[spec].shape == (3, 3)
    rows = {r["strategy"]: r for r in rows}
    assert rows["random"]["cost"] == 1.0 and rows["random"]["paired_ratio"] == 1.0
    assert 1.0 < rows["sec+pools+filter=1"]["cost"] <= 2.0  # one refill at most: at most twice the rollouts
    with pytest.raises(ValueError):
        bench.run_benchmark(["no_such_strategy"], seeds=1, setting=setting)


def test_benchmark_spec_options_and_paired_rollouts():
    bench = _benchmark_module()
    assert bench.parse_spec("sec:temperature=0.2+pools+filter=3") == (
        "sec:temperature=0.2",
        {"pools": True, "dynamic_sampling": "filter", "max_refills": 3},
    )
    assert bench.parse_spec("random+filter")[1]["max_refills"] == 4
    with pytest.raises(ValueError, match=r"unknown option 'replace'.*'\+pools' and '\+filter\[=N\]'"):
        bench.parse_spec("random+replace")
    # per seed: 50/100, 90/100, 200/400 -> ratios 0.5, 0.9, 0.5 (median 0.5); differences -50, -10, -200 (median -50)
    paired = bench.paired_rollouts(np.array([50.0, 90.0, 200.0]), np.array([100.0, 100.0, 400.0]), 200, 0)
    assert paired["paired_ratio"] == 0.5 and paired["paired_diff"] == -50.0
    assert paired["paired_ratio_low"] <= 0.5 <= paired["paired_ratio_high"] <= 0.9


def test_benchmark_command_line(tmp_path):
    bench = _benchmark_module()
    argv = ["--seeds", "2", "--max-steps", "30", "--levels", "3", "--gap", "0.5", "--workers", "1"]
    argv += ["--bootstrap", "100", "--out", str(tmp_path), "--strategies", "sec", "random"]
    assert bench.main(argv) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"results.md", "results.json", "simulated_learner.png"}
    assert "| sec |" in (tmp_path / "results.md").read_text()
