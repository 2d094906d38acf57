"""Curriculum strategies: every number below is computed by hand from the strategy's formula."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sec_rl.curriculum import (
    CURRICULA,
    POOL_STRATEGIES,
    POOLS,
    DifficultyPoolCurriculum,
    DifficultyPools,
    DUMPCurriculum,
    LearningProgressCurriculum,
    OrderedCurriculum,
    ProblemDifficulty,
    RandomCurriculum,
    SelfEvolvingCurriculum,
    TargetSuccessCurriculum,
    arm_key,
    make_curriculum,
    split_arm_key,
    strategy_parameters,
    upgrade_curriculum_state,
)

ARMS = ["a", "b", "c"]


def boltzmann(scores: list[float], tau: float) -> list[float]:
    """exp(s / tau) / sum exp(s / tau), written out plainly (no shift) to check the library's stable version."""
    e = [math.exp(s / tau) for s in scores]
    return [x / sum(e) for x in e]


def probs(curriculum) -> list[float]:
    return curriculum.probability_vector().tolist()


# -- SEC ---------------------------------------------------------------------------------------------
def sec_abs_adv_steps(curriculum: SelfEvolvingCurriculum) -> None:
    # step 1: r_a = mean(|0.8|, |-0.4|) = 0.6, r_b = |0.2| = 0.2, c absent
    curriculum.update(["a", "a", "b"], [0.8, -0.4, 0.2])
    # step 2: a only has a NaN advantage, so a is absent; r_c = |1.0| = 1.0, b absent
    curriculum.update(["a", "c"], [float("nan"), 1.0])


def test_sec_decay_boltzmann_by_hand():
    sec = SelfEvolvingCurriculum(ARMS, alpha=0.5, temperature=1.0, unsampled="decay", value_scale="none")
    assert probs(sec) == pytest.approx([1 / 3] * 3)  # Q = 0 everywhere
    sec.update(["a", "a", "b"], [0.8, -0.4, 0.2])
    # Q = 0.5 * r + 0.5 * 0 = [0.5*0.6, 0.5*0.2, 0.5*0] = [0.3, 0.1, 0.0]
    assert sec.q_values.tolist() == pytest.approx([0.3, 0.1, 0.0])
    assert probs(sec) == pytest.approx(boltzmann([0.3, 0.1, 0.0], 1.0))
    sec.update(["a", "c"], [float("nan"), 1.0])
    # decay: the absent arm b gets r = 0; a was drawn but its only rollout is NaN (an environment error, say):
    # it keeps its value. Q = [0.3, 0.5*0 + 0.5*0.1, 0.5*1.0 + 0.5*0] = [0.3, 0.05, 0.5]
    assert sec.uninformative == {"a"}
    assert sec.q_values.tolist() == pytest.approx([0.3, 0.05, 0.5])
    # p(a) = exp(0.3) / (exp(0.3) + exp(0.05) + exp(0.5))
    expected_a = math.exp(0.3) / (math.exp(0.3) + math.exp(0.05) + math.exp(0.5))
    assert probs(sec)[0] == pytest.approx(expected_a)
    assert probs(sec) == pytest.approx(boltzmann([0.3, 0.05, 0.5], 1.0))
    assert sec.counts.tolist() == [2, 1, 1]  # the NaN advantage is not counted
    sec.update(["b"], [0.4])  # a is absent now: it decays as usual
    assert sec.q_values.tolist() == pytest.approx([0.15, 0.225, 0.25])


def test_sec_keep_boltzmann_by_hand():
    sec = SelfEvolvingCurriculum(ARMS, alpha=0.5, temperature=0.4, unsampled="keep", value_scale="none")
    sec_abs_adv_steps(sec)
    # step 1 as above: Q = [0.3, 0.1, 0.0]; step 2 keeps a and b, Q_c = 0.5*1.0 + 0.5*0 = 0.5
    assert sec.q_values.tolist() == pytest.approx([0.3, 0.1, 0.5])
    # tau = 0.4: p = exp([0.75, 0.25, 1.25]) / sum
    assert probs(sec) == pytest.approx(boltzmann([0.75, 0.25, 1.25], 1.0))


def test_sec_alpha_one_tracks_last_reward():
    sec = SelfEvolvingCurriculum(["a", "b"], alpha=1.0, unsampled="keep")
    sec.update(["a", "b"], [0.5, -0.25])
    sec.update(["a"], [0.1])
    # Q = 1.0 * r: a = 0.1 (latest), b = 0.25 (kept)
    assert sec.q_values.tolist() == pytest.approx([0.1, 0.25])


def test_sec_epsilon_greedy_by_hand():
    sec = SelfEvolvingCurriculum(ARMS, selection="epsilon_greedy", epsilon=0.3)
    # all Q = 0: a three-way tie, p = 0.3/3 + 0.7/3 = 1/3 each
    assert probs(sec) == pytest.approx([1 / 3] * 3)
    sec_abs_adv_steps(sec)  # decay: Q = [0.15, 0.05, 0.5] as in the Boltzmann test
    # greedy arm c: p(c) = 0.3/3 + 0.7 = 0.8, others 0.3/3 = 0.1
    assert probs(sec) == pytest.approx([0.1, 0.1, 0.8])


def test_sec_epsilon_greedy_splits_ties():
    sec = SelfEvolvingCurriculum(ARMS, selection="epsilon_greedy", epsilon=0.3, unsampled="keep")
    sec.update(["a", "b"], [0.4, -0.4])  # Q = [0.2, 0.2, 0.0]
    # p(a) = p(b) = 0.1 + 0.7/2 = 0.45, p(c) = 0.1
    assert probs(sec) == pytest.approx([0.45, 0.45, 0.1])


def progress_steps(curriculum) -> None:
    # step 1: mean reward a = (1+0)/2 = 0.5, b = 0.0; first visits score their mean reward against the
    # official code's reference of 0: r_a = 0.5 - 0 = 0.5, r_b = 0.0 - 0 = 0.0
    curriculum.update(["a", "a", "b"], [0.5, -0.5, 0.0], rewards=[1.0, 0.0, 0.0])
    # step 2: a = 1.0 -> r_a = 1.0 - 0.5 = 0.5; b = (1+1)/2 = 1.0 -> r_b = 1.0 - 0.0 = 1.0; c absent
    curriculum.update(["a", "b", "b"], [0.0, 0.0, 0.0], rewards=[1.0, 1.0, 1.0])
    # step 3: a = 0.0 -> r_a = 0.0 - 1.0 = -1.0 (the NaN reward is dropped); b, c absent
    curriculum.update(["a", "a"], [0.0, 0.0], rewards=[0.0, float("nan")])


def test_sec_progress_keep_by_hand():
    sec = SelfEvolvingCurriculum(ARMS, objective="progress", unsampled="keep", temperature=1.0, value_scale="none")
    assert sec.needs_rewards
    progress_steps(sec)
    # step 1: Q_a = 0.5*0.5 + 0.5*0 = 0.25, Q_b = 0.5*0.0 = 0
    # step 2: Q_a = 0.5*0.5 + 0.5*0.25 = 0.375, Q_b = 0.5*1.0 + 0.5*0 = 0.5
    # step 3: Q_a = 0.5*(-1.0) + 0.5*0.375 = -0.3125, Q_b kept 0.5, Q_c kept 0
    assert sec.q_values.tolist() == pytest.approx([-0.3125, 0.5, 0.0])
    assert probs(sec) == pytest.approx(boltzmann([-0.3125, 0.5, 0.0], 1.0))
    assert sec.last_mean_rewards.tolist()[:2] == [0.0, 1.0] and math.isnan(sec.last_mean_rewards[2])


def test_sec_progress_decay_by_hand():
    sec = SelfEvolvingCurriculum(ARMS, objective="progress", unsampled="decay", temperature=0.2, value_scale="none")
    progress_steps(sec)
    # step 2 as above: Q = [0.375, 0.5, 0]; step 3: Q_a = -0.3125, Q_b = 0.5*0 + 0.5*0.5 = 0.25, Q_c = 0
    assert sec.q_values.tolist() == pytest.approx([-0.3125, 0.25, 0.0])
    # tau = 0.2: scores / tau = [-1.5625, 1.25, 0]
    assert probs(sec) == pytest.approx(boltzmann([-1.5625, 1.25, 0.0], 1.0))


def test_sec_progress_first_visit_scores_mean_reward():
    # The official code's reference starts at 0: a first visit's reward is the arm's mean reward, so with
    # alpha = 1 the value equals it (0.75 = mean of 1, 1, 1, 0), and the second visit scores the change.
    sec = SelfEvolvingCurriculum(["a", "b"], alpha=1.0, objective="progress", unsampled="keep")
    sec.update(["a"] * 4, [0.0] * 4, rewards=[1.0, 1.0, 1.0, 0.0])
    assert sec.last_rewards[0] == pytest.approx(0.75) and sec.q_values.tolist() == pytest.approx([0.75, 0.0])
    sec.update(["a", "a"], [0.0, 0.0], rewards=[1.0, 0.0])
    assert sec.q_values[0] == pytest.approx(0.5 - 0.75)


def test_sec_progress_reads_a_state_with_unvisited_arms():
    # A state saved before first visits scored their mean reward stores the missing reference as None (NaN):
    # it loads, and b's first visit after the resume scores its mean reward, 0.5 - 0.
    sec = SelfEvolvingCurriculum(["a", "b"], alpha=0.5, objective="progress")
    state = {
        "name": "sec", "categories": ["a", "b"], "num_updates": 1, "counts": [2, 0],
        "q_values": [0.0, 0.0], "last_rewards": [0.0, None], "last_mean_rewards": [0.5, None],
    }  # fmt: skip
    sec.load_state_dict(json.loads(json.dumps(state)))
    sec.update(["a", "b", "b"], [0.0, 0.0, 0.0], rewards=[1.0, 1.0, 0.0])
    # r_a = 1.0 - 0.5 = 0.5, r_b = 0.5 - 0 = 0.5: Q = 0.5 * 0.5 = 0.25 each
    assert sec.q_values.tolist() == pytest.approx([0.25, 0.25])


def test_sec_metrics():
    sec = SelfEvolvingCurriculum(ARMS)
    sec_abs_adv_steps(sec)
    metrics = sec.metrics()
    assert metrics["curriculum/value/c"] == pytest.approx(0.5)
    assert metrics["curriculum/reward/c"] == pytest.approx(1.0)
    assert "curriculum/reward/a" not in metrics  # absent from the last step
    assert metrics["curriculum/count/a"] == 2.0
    assert sum(metrics[f"curriculum/prob/{c}"] for c in ARMS) == pytest.approx(1.0)


def test_sec_normalized_q_by_hand():
    # the official code's selection: p = max(Q, 0.01) / sum max(Q, 0.01), no temperature
    sec = SelfEvolvingCurriculum(ARMS, selection="normalized_q", value_scale="none")
    assert probs(sec) == pytest.approx([1 / 3] * 3)  # Q = 0: every arm at the floor 0.01
    sec_abs_adv_steps(sec)  # decay, a's NaN step leaves it alone: Q = [0.3, 0.05, 0.5]
    assert probs(sec) == pytest.approx([0.3 / 0.85, 0.05 / 0.85, 0.5 / 0.85])
    for _ in range(3):  # c: 0.35, 0.275, 0.2375; a and b halve: 0.0375 and 0.00625 (below the floor 0.01)
        sec.update(["c"], [0.2])
    assert probs(sec) == pytest.approx(np.array([0.0375, 0.01, 0.2375]) / 0.285)


def test_sec_unnormalized_adv_asks_for_raw_advantages():
    official = SelfEvolvingCurriculum(ARMS, objective="unnormalized_adv", selection="normalized_q")
    assert official.signal == "raw_advantages" and not official.needs_rewards
    assert SelfEvolvingCurriculum(ARMS).signal == "advantages"
    sec_abs_adv_steps(official)  # the values are mean |A| of whatever the trainer passes: as for abs_advantage
    assert official.q_values.tolist() == pytest.approx([0.3, 0.05, 0.5])


def test_sec_reward_std_scale_by_hand():
    sec = SelfEvolvingCurriculum(ARMS)  # the default: value_scale="reward_std", temperature 1.0
    sec.update(["a", "a", "b"], [0.8, -0.4, 0.2])
    # arm rewards seen: 0.6, 0.2 -> std (population) = 0.2; Q = [0.3, 0.1, 0] -> Q / 0.2 = [1.5, 0.5, 0]
    assert sec.reward_moments == pytest.approx([2, 0.4, 0.08])
    assert probs(sec) == pytest.approx(boltzmann([1.5, 0.5, 0.0], 1.0))
    sec.update(["a", "c"], [float("nan"), 1.0])
    # rewards seen: 0.6, 0.2, 1.0: mean 0.6, variance (0 + 0.16 + 0.16) / 3; Q = [0.3, 0.05, 0.5]
    std = math.sqrt(0.32 / 3)
    assert probs(sec) == pytest.approx(boltzmann([0.3 / std, 0.05 / std, 0.5 / std], 1.0))


def test_sec_reward_std_scale_makes_tau_independent_of_the_advantage_scale():
    steps = [(["a", "a", "b"], [0.8, -0.4, 0.2]), (["c", "b"], [1.0, 0.1]), (["a"], [0.3])]
    plain, doubled = (
        SelfEvolvingCurriculum(ARMS),
        SelfEvolvingCurriculum(ARMS),
    )  # the default: value_scale="reward_std"
    paper, paper_doubled = (SelfEvolvingCurriculum(ARMS, value_scale="none") for _ in range(2))
    for categories, advantages in steps:
        plain.update(categories, advantages)
        doubled.update(categories, [2 * a for a in advantages])  # e.g. std-normalised vs raw advantages
        paper.update(categories, advantages)
        paper_doubled.update(categories, [2 * a for a in advantages])
    assert probs(doubled) == pytest.approx(probs(plain))
    assert probs(paper_doubled) != pytest.approx(probs(paper))  # the paper's variant needs another tau


def test_sec_state_without_reward_moments_loads():
    old = SelfEvolvingCurriculum(ARMS, value_scale="none")
    sec_abs_adv_steps(old)
    state = old.state_dict()
    del state["reward_moments"]  # saved before value_scale existed
    new = SelfEvolvingCurriculum(ARMS, value_scale="reward_std")
    new.load_state_dict(json.loads(json.dumps(state)))
    assert new.q_values.tolist() == pytest.approx([0.3, 0.05, 0.5]) and new.reward_moments == [0, 0.0, 0.0]
    assert probs(new) == pytest.approx(boltzmann([0.3, 0.05, 0.5], 1.0))  # no spread seen yet: Q unscaled


# -- difficulty pools ----------------------------------------------------------------------------------
def test_pools_put_rates_in_pools_by_hand():
    pools = DifficultyPools()  # hard <= 0.25 < normal <= 0.75 < easy; unseen (NaN) is normal
    rates = np.array([0.0, 0.25, 0.26, 0.75, 0.76, 1.0, np.nan])
    assert [POOLS[i] for i in pools.pool_of(rates)] == ["hard", "hard", "normal", "normal", "easy", "easy", "normal"]
    # all three pools present: weights 0.2, 1.0, 0.2 over 1.4
    assert pools.probabilities(np.array([0, 1, 2, 1])).tolist() == pytest.approx([0.2 / 1.4, 1 / 1.4, 0.2 / 1.4])
    # no normal problem: easy and hard split evenly; only hard ones: hard is certain
    assert pools.probabilities(np.array([0, 2])).tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert pools.probabilities(np.array([2, 2])).tolist() == pytest.approx([0.0, 0.0, 1.0])
    # a zero-weight pool is drawn only when it is the only one with problems
    only_normal = DifficultyPools(easy_weight=0.0, hard_weight=0.0)
    assert only_normal.probabilities(np.array([0, 2])).tolist() == pytest.approx([0.5, 0.0, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hard": -0.1}, r"pool threshold hard=-0\.1 is outside \[0, 1\].*defaults"),
        ({"normal": 1.5}, r"pool threshold normal=1\.5 is outside \[0, 1\]"),
        ({"hard": float("nan")}, r"hard=nan is outside"),
        ({"hard": 0.8, "normal": 0.5}, r"out of order: hard=0\.8 > normal=0\.5.*pass hard <= normal"),
        ({"easy_weight": -1.0}, r"pool weights .*\[-1\.0, 1\.0, 0\.2\] must be finite, >= 0"),
        ({"easy_weight": 0, "normal_weight": 0, "hard_weight": 0}, "not all 0"),
    ],
)
def test_bad_pools_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DifficultyPools(**kwargs)


def test_problem_difficulty_keeps_the_latest_rate():
    difficulty = ProblemDifficulty(4)
    difficulty.observe([2, 0, 2], [0.5, 1.0, 0.125])  # problem 2 twice: the later rate wins
    difficulty.observe([1, 3], [float("nan"), 0.0])  # NaN: no scored rollout, nothing learnt about problem 1
    assert difficulty.success.tolist()[0::2] == [1.0, 0.125] and difficulty.success[3] == 0.0
    assert math.isnan(difficulty.success[1]) and difficulty.seen() == 3 and difficulty.num_observed == 4
    restored = ProblemDifficulty(4)
    restored.load_state_dict(json.loads(json.dumps(difficulty.state_dict())))
    assert json.dumps(restored.state_dict()) == json.dumps(difficulty.state_dict())


@pytest.mark.parametrize(
    ("problems", "rates", "match"),
    [
        ([0, 1], [0.5], r"2 problems but 1 success rates.*one rate per problem"),
        ([7], [0.5], r"problem index 7 is not a row of this dataset \(0 \.\. 3\)"),
        ([0], [2.0], r"success rate 2\.0 is outside \[0, 1\].*not a raw reward"),
        ([0], [float("inf")], r"success rate inf is outside"),
    ],
)
def test_problem_difficulty_rejects_bad_input(problems, rates, match):
    difficulty = ProblemDifficulty(4)
    with pytest.raises(ValueError, match=match):
        difficulty.observe(problems, rates)
    assert difficulty.seen() == 0  # nothing recorded from a rejected call


def test_pool_strategy_by_hand():
    curriculum = make_curriculum("difficulty_pools", POOLS)
    assert isinstance(curriculum, DifficultyPoolCurriculum) and "difficulty_pools" in POOL_STRATEGIES
    assert probs(curriculum) == [0.0, 1.0, 0.0]  # unbound: every problem unseen, hence normal
    difficulty = ProblemDifficulty(5)
    curriculum.bind(difficulty)
    difficulty.observe([0, 1, 2], [1.0, 0.1, 0.5])  # easy, hard, normal; 3 and 4 unseen: normal
    assert curriculum.pool_sizes().tolist() == [1, 3, 1]
    assert probs(curriculum) == pytest.approx([0.2 / 1.4, 1 / 1.4, 0.2 / 1.4])
    assert curriculum.metrics()["curriculum/pool_size/normal"] == 3.0
    with pytest.raises(ValueError, match=r"arms are the pools \['easy', 'normal', 'hard'\], not categories \['a'"):
        make_curriculum("difficulty_pools", ARMS)


# -- random ------------------------------------------------------------------------------------------
def test_random_uniform_and_proportional():
    assert probs(RandomCurriculum(ARMS)) == pytest.approx([1 / 3] * 3)
    # sizes 1, 3, 4 rows -> p = 1/8, 3/8, 4/8: category-then-problem is uniform over the 8 problems
    rnd = RandomCurriculum(ARMS, sizes=[1, 3, 4])
    assert probs(rnd) == pytest.approx([0.125, 0.375, 0.5])
    assert not rnd.adaptive
    rnd.update(["a", "b", "b"], [1.0, 2.0, float("inf")])
    assert probs(rnd) == pytest.approx([0.125, 0.375, 0.5])  # update only counts
    assert rnd.counts.tolist() == [1, 1, 0] and rnd.num_updates == 1


# -- ordered / reverse --------------------------------------------------------------------------------
def test_ordered_stages_by_hand():
    # K = 3, total_updates = 4: stage = min(2, floor(n * 3 / 4)) -> n=0: 0, 1: 0 (0.75), 2: 1 (1.5), 3: 2 (2.25)
    ordered = OrderedCurriculum(ARMS, total_updates=4)
    seen = []
    for _ in range(6):
        seen.append(max(ordered.probabilities(), key=ordered.probabilities().get))
        assert sorted(probs(ordered)) == [0.0, 0.0, 1.0]
        ordered.update(["a"], [0.0])
    # n = 4: floor(3) = 3 -> min(2, 3) = 2, n = 5 stays on the last stage
    assert seen == ["a", "a", "b", "c", "c", "c"]
    assert ordered.metrics()["curriculum/stage"] == 2.0


def test_reverse_stages_by_hand():
    reverse = make_curriculum("reverse", ARMS, total_updates=6)
    assert isinstance(reverse, OrderedCurriculum) and reverse.reverse and reverse.name == "ordered"
    # K = 3, total 6: stage = floor(n / 2) on [c, b, a]
    seen = []
    for _ in range(6):
        seen.append(max(reverse.probabilities(), key=reverse.probabilities().get))
        reverse.update([], [])
    assert seen == ["c", "c", "b", "b", "a", "a"]


def test_ordered_rejects_reverse_state():
    ordered = make_curriculum("ordered", ARMS, total_updates=6)
    reverse = make_curriculum("reverse", ARMS, total_updates=6)
    with pytest.raises(ValueError, match="reverse"):
        ordered.load_state_dict(reverse.state_dict())
    with pytest.raises(ValueError, match="ordered"):
        reverse.load_state_dict(ordered.state_dict())


# -- DUMP ----------------------------------------------------------------------------------------------
def test_dump_by_hand():
    dump = DUMPCurriculum(["a", "b"], window=2, temperature=0.5)
    # no rollouts: bonus = sqrt(2 ln(0 + 1) / (0 + 1)) = 0, mean 0 -> uniform
    assert probs(dump) == pytest.approx([0.5, 0.5])
    dump.update(["a", "a", "a"], [0.2, -0.4, 0.6])
    # window a keeps the last 2 of |A| = [0.2, 0.4, 0.6] -> [0.4, 0.6], mean 0.5; b empty -> 0
    # n_a = 3, n_b = 0, N = 3: score_a = 0.5 + sqrt(2 ln 4 / 4), score_b = 0 + sqrt(2 ln 4 / 1)
    score_a = 0.5 + math.sqrt(2 * math.log(4) / 4)
    score_b = 0.0 + math.sqrt(2 * math.log(4) / 1)
    assert dump.windows == [[0.4, 0.6], []]
    assert dump.scores().tolist() == pytest.approx([score_a, score_b])
    assert probs(dump) == pytest.approx(boltzmann([score_a, score_b], 0.5))
    dump.update(["b", "a", "a"], [-1.0, 0.0, float("nan")])
    # window a = [0.6, 0.0] (mean 0.3), b = [1.0]; n_a = 4 (NaN not counted), n_b = 1, N = 5
    score_a = 0.3 + math.sqrt(2 * math.log(6) / 5)
    score_b = 1.0 + math.sqrt(2 * math.log(6) / 2)
    assert dump.windows == [[0.6, 0.0], [1.0]]
    assert probs(dump) == pytest.approx(boltzmann([score_a, score_b], 0.5))
    metrics = dump.metrics()
    assert metrics["curriculum/value/a"] == pytest.approx(0.3)
    assert metrics["curriculum/score/b"] == pytest.approx(score_b)


# -- target success ----------------------------------------------------------------------------------
def test_target_success_by_hand():
    ts = TargetSuccessCurriculum(ARMS, target=0.5, temperature=0.1, alpha=0.5)
    assert probs(ts) == pytest.approx([1 / 3] * 3)  # all unseen: score 0
    ts.update(["a"] * 4 + ["b"], [0.0] * 5, rewards=[1.0, 1.0, 0.0, 1.0, 0.0])
    # first observations: R_a = 3/4 = 0.75, R_b = 0.0; c unseen
    # score = -|R - 0.5| = [-0.25, -0.5, 0 (unseen)]; p = softmax(score / 0.1) = softmax([-2.5, -5, 0])
    assert ts.success[:2].tolist() == pytest.approx([0.75, 0.0]) and math.isnan(ts.success[2])
    assert probs(ts) == pytest.approx(boltzmann([-2.5, -5.0, 0.0], 1.0))
    ts.update(["a", "a", "c"], [0.0, 0.0, 0.0], rewards=[0.0, float("nan"), 0.5])
    # R_a = 0.5*0.0 + 0.5*0.75 = 0.375; R_b kept 0.0; R_c = 0.5 (first observation)
    # score = [-0.125, -0.5, -0.0] -> / 0.1 = [-1.25, -5, 0]
    assert ts.success.tolist() == pytest.approx([0.375, 0.0, 0.5])
    assert probs(ts) == pytest.approx(boltzmann([-1.25, -5.0, 0.0], 1.0))
    metrics = ts.metrics()
    assert metrics["curriculum/success/a"] == pytest.approx(0.375)
    assert metrics["curriculum/score/b"] == pytest.approx(-0.5)


# -- learning progress -------------------------------------------------------------------------------
def test_learning_progress_by_hand():
    lp = LearningProgressCurriculum(["a", "b"], alpha=0.5, temperature=0.1, epsilon=0.2)
    lp.update(["a", "a", "b"], [0.0] * 3, rewards=[0.0, 1.0, 0.0])
    # first visits: r = 0, Q = [0, 0]; p = 0.8 * 0.5 + 0.2 / 2 = 0.5
    assert probs(lp) == pytest.approx([0.5, 0.5])
    lp.update(["a"], [0.0], rewards=[1.0])
    # r_a = 1.0 - 0.5 = 0.5 -> Q_a = 0.5*0.5 + 0.5*0 = 0.25; b not sampled, Q_b stays 0
    assert lp.q_values.tolist() == pytest.approx([0.25, 0.0])
    lp.update(["a", "b", "b"], [0.0] * 3, rewards=[0.0, 1.0, 1.0])
    # r_a = 0.0 - 1.0 = -1.0 -> Q_a = 0.5*(-1.0) + 0.5*0.25 = -0.375
    # r_b = 1.0 - 0.0 = 1.0 -> Q_b = 0.5*1.0 + 0.5*0 = 0.5
    assert lp.q_values.tolist() == pytest.approx([-0.375, 0.5])
    # p = 0.8 * softmax(|Q| / 0.1) + 0.1 = 0.8 * softmax([3.75, 5.0]) + 0.1
    soft = boltzmann([3.75, 5.0], 1.0)
    assert probs(lp) == pytest.approx([0.8 * soft[0] + 0.1, 0.8 * soft[1] + 0.1])
    assert lp.metrics()["curriculum/value/a"] == pytest.approx(-0.375)


# -- behaviour common to every strategy --------------------------------------------------------------
FACTORIES = {
    "sec": lambda: SelfEvolvingCurriculum(ARMS, temperature=0.5),
    "sec_keep_progress_egreedy": lambda: SelfEvolvingCurriculum(
        ARMS, unsampled="keep", objective="progress", selection="epsilon_greedy", epsilon=0.2
    ),
    "sec_official": lambda: SelfEvolvingCurriculum(ARMS, selection="normalized_q", objective="unnormalized_adv"),
    "sec_reward_std": lambda: SelfEvolvingCurriculum(ARMS, value_scale="reward_std", temperature=0.5),
    "random": lambda: RandomCurriculum(ARMS, sizes=[2, 3, 5]),
    "ordered": lambda: OrderedCurriculum(ARMS, total_updates=5),
    "reverse": lambda: OrderedCurriculum(ARMS, total_updates=5, reverse=True),
    "dump": lambda: DUMPCurriculum(ARMS, window=3, temperature=0.3),
    "target_success": lambda: TargetSuccessCurriculum(ARMS, target=0.4, temperature=0.2),
    "learning_progress": lambda: LearningProgressCurriculum(ARMS, temperature=0.3, epsilon=0.1),
}


def random_step(rng: np.random.Generator, n: int = 12):
    categories = rng.choice(ARMS, size=n).tolist()
    advantages = rng.normal(size=n).tolist()
    rewards = rng.integers(0, 2, size=n).astype(float).tolist()
    return categories, advantages, rewards


@pytest.fixture(params=sorted(FACTORIES))
def factory(request):
    return FACTORIES[request.param]


def test_probabilities_sum_to_one(factory):
    curriculum = factory()
    rng = np.random.default_rng(0)
    for _ in range(4):
        p = curriculum.probability_vector()
        assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
        assert set(curriculum.probabilities()) == set(ARMS)
        curriculum.update(*random_step(rng))


def test_non_finite_entries_never_reach_state(factory):
    clean, dirty = factory(), factory()
    clean.update(["a", "b"], [0.5, -0.2], rewards=[1.0, 0.0])
    dirty.update(
        ["a", "c", "b", "a", "b"],
        [0.5, float("nan"), -0.2, float("inf"), 0.3],
        rewards=[1.0, float("-inf"), 0.0, float("nan"), float("nan")],
    )
    # only the (a, 0.5, 1.0) and (b, -0.2, 0.0) rollouts are fully finite; the extra b advantage 0.3
    # has a NaN reward and the extra a reward is NaN: make the clean twin see exactly the finite values
    clean_twin = factory()
    clean_twin.update(["a", "b", "b"], [0.5, -0.2, 0.3], rewards=[1.0, 0.0, float("nan")])
    assert json.dumps(dirty.state_dict()) == json.dumps(clean_twin.state_dict())
    assert "Infinity" not in json.dumps(dirty.state_dict())


def test_state_round_trip_is_exact(factory):
    rng = np.random.default_rng(1)
    original = factory()
    for _ in range(3):
        original.update(*random_step(rng))
    state = json.loads(json.dumps(original.state_dict()))  # JSON-serialisable
    restored = factory()
    restored.load_state_dict(state)
    assert restored.probabilities() == original.probabilities()
    assert json.dumps(restored.state_dict()) == json.dumps(original.state_dict())
    for _ in range(3):  # same future behaviour
        step = random_step(rng)
        original.update(*step)
        restored.update(*step)
        assert restored.probabilities() == original.probabilities()
        assert restored.metrics() == pytest.approx(original.metrics())


def test_state_dict_does_not_alias_live_state(factory):
    curriculum = factory()
    rng = np.random.default_rng(2)
    curriculum.update(*random_step(rng))
    saved = json.dumps(curriculum.state_dict())
    state = curriculum.state_dict()
    curriculum.update(*random_step(rng))
    assert json.dumps(state) == saved


def test_wrong_strategy_or_categories_rejected(factory):
    curriculum = factory()
    other = DUMPCurriculum(ARMS) if curriculum.name != "dump" else RandomCurriculum(ARMS)
    with pytest.raises(ValueError, match="saved by curriculum"):
        curriculum.load_state_dict(other.state_dict())
    fewer = factory()
    state = fewer.state_dict()
    state["categories"] = ["a", "b"]
    with pytest.raises(ValueError, match="categories"):
        curriculum.load_state_dict(state)


def test_unknown_category_raises(factory):
    curriculum = factory()
    before = json.dumps(curriculum.state_dict())
    with pytest.raises(ValueError, match="unknown category 'z'"):
        curriculum.update(["a", "z"], [0.1, 0.2], rewards=[1.0, 0.0])
    assert json.dumps(curriculum.state_dict()) == before  # nothing learnt from a rejected step


def test_length_mismatch_raises(factory):
    with pytest.raises(ValueError, match="one entry per rollout"):
        factory().update(["a", "b"], [0.1], rewards=[1.0, 0.0])


@pytest.mark.parametrize(
    "build",
    [
        lambda: TargetSuccessCurriculum(ARMS),
        lambda: LearningProgressCurriculum(ARMS),
        lambda: SelfEvolvingCurriculum(ARMS, objective="progress"),
    ],
)
def test_reward_strategies_need_rewards(build):
    curriculum = build()
    assert curriculum.needs_rewards
    with pytest.raises(ValueError, match="rewards"):
        curriculum.update(["a"], [0.1])


def test_advantage_strategies_do_not_need_rewards():
    for name in ("sec", "random", "dump"):
        curriculum = make_curriculum(name, ARMS)
        assert not curriculum.needs_rewards
        curriculum.update(["a"], [0.1])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SelfEvolvingCurriculum(ARMS, alpha=0.0), r"alpha=0\.0 .*\(0\.0, 1\.0\]"),
        (lambda: SelfEvolvingCurriculum(ARMS, alpha=1.5), "alpha"),
        (lambda: SelfEvolvingCurriculum(ARMS, temperature=0), "temperature"),
        (lambda: SelfEvolvingCurriculum(ARMS, epsilon=-0.1), "epsilon"),
        (lambda: SelfEvolvingCurriculum(ARMS, unsampled="drop"), "unsampled.*decay"),
        (lambda: SelfEvolvingCurriculum(ARMS, objective="adv"), "objective.*abs_advantage"),
        (lambda: SelfEvolvingCurriculum(ARMS, selection="ucb"), "selection.*boltzmann"),
        (lambda: SelfEvolvingCurriculum(ARMS, value_scale="z"), r"value_scale='z'.*\['none', 'reward_std'\]"),
        (
            lambda: SelfEvolvingCurriculum(ARMS, selection="normalized_q", objective="progress"),
            r"normalized_q' cannot compose with objective='progress'.*negative",
        ),
        (lambda: RandomCurriculum(ARMS, sizes=[1, 2]), "sizes has 2 entries"),
        (lambda: RandomCurriculum(ARMS, sizes=[1, 0, 2]), r"sizes\['b'\]"),
        (lambda: OrderedCurriculum(ARMS, total_updates=0), r"total_updates=0 .*\[1, inf\]"),
        (lambda: OrderedCurriculum(ARMS, total_updates=2.5), "total_updates"),
        (lambda: DUMPCurriculum(ARMS, window=0), "window"),
        (lambda: DUMPCurriculum(ARMS, temperature=-1.0), "temperature"),
        (lambda: TargetSuccessCurriculum(ARMS, target=1.5), r"target=1\.5 .*\[0\.0, 1\.0\]"),
        (lambda: TargetSuccessCurriculum(ARMS, temperature=float("nan")), "temperature"),
        (lambda: TargetSuccessCurriculum(ARMS, alpha=0.0), "alpha"),
        (lambda: LearningProgressCurriculum(ARMS, alpha=2.0), "alpha"),
        (lambda: LearningProgressCurriculum(ARMS, temperature=0.0), "temperature"),
        (lambda: LearningProgressCurriculum(ARMS, epsilon=1.5), "epsilon"),
        (lambda: RandomCurriculum([]), "at least one category"),
        (lambda: RandomCurriculum(["a", "a"]), "duplicates"),
    ],
)
def test_bad_parameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# -- registry and joint arms ---------------------------------------------------------------------------
def test_registry_builds_every_strategy():
    context = {"sizes": [1, 1, 1], "total_updates": 3}  # offered to all, taken by those that name it
    for name in CURRICULA:
        curriculum = make_curriculum(name, ARMS, **context)
        assert curriculum.categories == ARMS
        assert curriculum.probability_vector().sum() == pytest.approx(1.0)


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown curriculum 'bandit'.*'dump'.*'sec'"):
        make_curriculum("bandit", ARMS)


def test_registry_unknown_parameter_lists_accepted_ones():
    with pytest.raises(ValueError, match=r"does not take \['tau'\].*'alpha'.*'temperature'"):
        make_curriculum("sec", ARMS, tau=0.4)


def test_strategy_parameters_say_which_strategies_take_a_temperature():
    from sec_rl.trainers.curriculum_args import takes_temperature

    assert {"alpha", "temperature"} <= strategy_parameters("sec")
    assert "sizes" not in strategy_parameters("sec") and "categories" not in strategy_parameters("random")
    tempered = {name for name in CURRICULA if takes_temperature(name)}
    assert tempered == {"sec", "target_success", "dump", "learning_progress"}
    assert not takes_temperature("none")
    with pytest.raises(ValueError, match="unknown curriculum 'bandit'"):
        strategy_parameters("bandit")


def test_joint_arms_with_arm_key():
    assert arm_key(("3", "zebra")) == "3-zebra"
    assert arm_key([5, "countdown"]) == "5-countdown"
    arms = [arm_key((level, domain)) for level in (1, 2) for domain in ("zebra", "arc")]
    sec = SelfEvolvingCurriculum(arms, unsampled="keep")
    rows = [(1, "zebra"), (2, "arc"), (2, "arc")]
    sec.update([arm_key(r) for r in rows], [0.4, 0.2, -0.6])
    # Q = 0.5 * mean|A|: 1-zebra = 0.5*0.4 = 0.2, 2-arc = 0.5*0.4 = 0.2, the others 0
    assert dict(zip(arms, sec.q_values.tolist())) == pytest.approx(
        {"1-zebra": 0.2, "1-arc": 0.0, "2-zebra": 0.0, "2-arc": 0.2}
    )


def test_arm_key_single_column_is_the_plain_value():
    assert arm_key(["a-b"]) == "a-b"
    assert arm_key([-1]) == "-1"
    assert arm_key(iter(["x"])) == "x"  # generators too (the trainers pass one)
    with pytest.raises(ValueError, match=r"got no values"):
        arm_key([])


@pytest.mark.parametrize(
    "first, second",
    [(("a-b", "c"), ("a", "b-c")), ((-1, 2), ("", "1-2")), (("a\\", "b"), ("a", "\\b")), ((1, -2), ("1-", 2))],
)
def test_arm_key_does_not_collide(first, second):
    assert arm_key(first) != arm_key(second)
    assert split_arm_key(arm_key(first)) == [str(v) for v in first]
    assert split_arm_key(arm_key(second)) == [str(v) for v in second]


def test_arm_key_escapes_separators_inside_values():
    assert arm_key(("a-b", "c")) == "a\\-b-c"
    assert arm_key((-1, 2)) == "\\-1-2"
    assert arm_key(("a\\", "b")) == "a\\\\-b"


def old_format_state() -> dict:
    """curriculum_state.json as sec-rl 0.1.0 wrote it for arms ("a-b", "c") and ("x", "y"): values joined by "-"."""
    return {
        "curriculum": {
            "name": "sec", "categories": ["a-b-c", "x-y"], "num_updates": 1, "counts": [2, 1],
            "q_values": [0.3, 0.1], "last_rewards": [0.6, 0.2], "last_mean_rewards": [None, None],
        },
        "params": {"alpha": 0.5, "temperature": 1.0},
        "probabilities": {"a-b-c": 0.549834, "x-y": 0.450166},
        "sampler": {"queues": {"a-b-c": [1, 0], "x-y": [2]}, "chunks_drawn": 1},
        "signal": {"loss_reference": {"a-b-c": 2.5}},
    }  # fmt: skip


def test_old_format_state_loads_under_the_new_names():
    arms = [arm_key(("a-b", "c")), arm_key(("x", "y"))]
    assert arms == ["a\\-b-c", "x-y"]
    saved = old_format_state()
    state = upgrade_curriculum_state(saved, arms)
    assert state["curriculum"]["categories"] == arms
    assert list(state["probabilities"]) == arms
    assert state["sampler"]["queues"] == {"a\\-b-c": [1, 0], "x-y": [2]}
    assert state["signal"]["loss_reference"] == {"a\\-b-c": 2.5}
    assert saved["curriculum"]["categories"] == ["a-b-c", "x-y"]  # the input is not modified
    sec = SelfEvolvingCurriculum(arms)
    sec.load_state_dict(state["curriculum"])
    assert sec.q_values.tolist() == [0.3, 0.1] and sec.counts.tolist() == [2, 1]
    # The strategy alone reads the old names as well (same arms, same order).
    direct = SelfEvolvingCurriculum(arms)
    direct.load_state_dict(old_format_state()["curriculum"])
    assert direct.q_values.tolist() == [0.3, 0.1]


def test_new_format_state_is_unchanged_by_the_upgrade():
    arms = [arm_key(("a-b", "c")), "x-y"]
    sec = SelfEvolvingCurriculum(arms)
    state = {"curriculum": sec.state_dict(), "probabilities": sec.probabilities()}
    assert upgrade_curriculum_state(state, arms) == state


def test_state_of_other_arms_is_refused_naming_both_lists():
    with pytest.raises(ValueError, match=r"saved for categories \['a-b-c', 'x-y'\].*has \['a-b-c', 'z'\]"):
        upgrade_curriculum_state(old_format_state(), ["a-b-c", "z"])
    with pytest.raises(ValueError, match=r"saved for categories"):
        SelfEvolvingCurriculum(["p", "q"]).load_state_dict(old_format_state()["curriculum"])
