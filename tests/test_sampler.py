"""CurriculumSampler: curriculum-driven draws without replacement per category, determinism and resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from sec_rl.curriculum import (
    CurriculumSampler,
    DifficultyPoolCurriculum,
    DifficultyPools,
    OrderedCurriculum,
    RandomCurriculum,
    SelfEvolvingCurriculum,
)

ARMS = ["a", "b", "c"]
# 12 rows, categories interleaved: a has 5 rows, b 3, c 4
ROWS = ["a", "b", "c", "a", "a", "c", "b", "a", "c", "a", "b", "c"]
ROWS_OF = {c: [i for i, r in enumerate(ROWS) if r == c] for c in ARMS}


def test_one_hot_curriculum_draws_only_its_category():
    one_hot = OrderedCurriculum(ARMS, total_updates=10, reverse=True)  # stage 0 of the reversed list: "c"
    sampler = CurriculumSampler(ROWS, one_hot)
    assert {ROWS[i] for i in sampler.draw(16)} == {"c"}


def test_without_replacement_within_a_pass():
    # only "a" (5 rows) is drawn, 12 draws: two full passes (each a permutation of a's rows), then 2 more
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(ARMS, total_updates=10), seed=7)
    draws = [i for _ in range(6) for i in sampler.draw(2)]
    assert sorted(draws[0:5]) == ROWS_OF["a"] and sorted(draws[5:10]) == ROWS_OF["a"]
    assert len(set(draws[10:12])) == 2
    assert draws[0:5] != draws[5:10]  # each pass is reshuffled (true for seed 7)


def test_without_replacement_per_category_with_mixed_draws():
    sampler = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=11)
    draws = [i for _ in range(20) for i in sampler.draw(3)]
    for category, rows in ROWS_OF.items():
        mine = [i for i in draws if ROWS[i] == category]
        full = len(mine) - len(mine) % len(rows)
        for start in range(0, full, len(rows)):  # every complete pass holds each row exactly once
            assert sorted(mine[start : start + len(rows)]) == rows
        assert len(set(mine[full:])) == len(mine[full:])


def test_unshuffled_takes_rows_in_dataset_order():
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(ARMS, total_updates=10), shuffle=False)
    assert sampler.draw(7) == ROWS_OF["a"] + ROWS_OF["a"][:2]


def test_category_smaller_than_batch_refills():
    # "b" has 3 rows but the batch needs 8 problems: the queue refills within the batch
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(["b", "a", "c"], total_updates=10), seed=0)
    batch = sampler.draw(8)
    assert {ROWS[i] for i in batch} == {"b"}
    assert sorted(batch[0:3]) == ROWS_OF["b"] and sorted(batch[3:6]) == ROWS_OF["b"]


def run_with_updates(seed: int, batches: int = 6) -> list[int]:
    """Draw batch by batch, updating a SEC curriculum from each batch as a trainer would."""
    sec = SelfEvolvingCurriculum(ARMS, temperature=0.3)
    sampler = CurriculumSampler(ROWS, sec, seed=seed)
    stream: list[int] = []
    for _ in range(batches):
        batch = sampler.draw(4)
        stream += batch
        sec.update([ROWS[i] for i in batch], [0.9 if ROWS[i] == "b" else 0.1 for i in batch])
    return stream


def test_deterministic_given_seed_and_updates():
    assert run_with_updates(seed=5) == run_with_updates(seed=5)
    assert run_with_updates(seed=5) != run_with_updates(seed=6)


def test_global_rngs_untouched():
    np_state, py_state = np.random.get_state(), random.getstate()
    sampler = CurriculumSampler(ROWS, SelfEvolvingCurriculum(ARMS), seed=1)
    for _ in range(3):
        sampler.draw(6)
    after = np.random.get_state()
    assert random.getstate() == py_state
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


class CountingCurriculum(RandomCurriculum):
    """Counts how often the sampler asks for the distribution."""

    calls = 0

    def probabilities(self):
        self.calls += 1
        return super().probabilities()


def test_probabilities_consulted_once_per_draw():
    spy = CountingCurriculum(ARMS)
    sampler = CurriculumSampler(ROWS, spy)
    assert spy.calls == 0  # nothing drawn before a batch is asked for
    sampler.draw(5)
    assert spy.calls == 1 and sampler.num_draws == 1
    sampler.draw(1)
    assert spy.calls == 2 and sampler.num_draws == 2


def test_curriculum_updates_between_draws_change_the_distribution():
    # K = 3, total_updates = 3: stage = update count, so each update moves to the next category
    ordered = OrderedCurriculum(ARMS, total_updates=3)
    sampler = CurriculumSampler(ROWS, ordered)
    for expected in ARMS:
        batch = sampler.draw(4)
        assert {ROWS[i] for i in batch} == {expected}
        ordered.update([ROWS[i] for i in batch], [0.0] * len(batch))


def test_state_dict_is_json_and_restored_sampler_continues():
    original = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=4)
    first = [original.draw(3) for _ in range(3)]
    state = json.loads(json.dumps(original.state_dict()))
    restored = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=999)  # the saved generator state wins
    restored.load_state_dict(state)
    assert restored.num_draws == 3
    assert [restored.draw(3) for _ in range(5)] == [original.draw(3) for _ in range(5)]
    assert first != [original.draw(3) for _ in range(3)]


def test_state_of_sec_rl_0_1_loads():
    """sec-rl 0.1 saved chunk history for data loaders that prefetch; it is read and ignored."""
    original = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=4)
    original.draw(3)
    state = original.state_dict()
    old = {**{k: v for k, v in state.items() if k != "num_draws"}, "chunks_drawn": 1, "epoch": 0}
    old["recent_chunks"] = {"0": original.last_draw}
    restored = CurriculumSampler(ROWS, RandomCurriculum(ARMS))
    restored.load_state_dict(json.loads(json.dumps(old)))
    assert restored.num_draws == 1 and restored.draw(4) == original.draw(4)


def test_load_rejects_other_categories():
    other = CurriculumSampler(["x", "y"], RandomCurriculum(["x", "y"]))
    with pytest.raises(ValueError, match="categories"):
        CurriculumSampler(ROWS, RandomCurriculum(ARMS)).load_state_dict(other.state_dict())


def test_empty_category_is_named():
    with pytest.raises(ValueError, match=r"\['c'\] have no rows"):
        CurriculumSampler(["a", "b", "a"], RandomCurriculum(ARMS))


def test_unknown_row_category():
    with pytest.raises(ValueError, match="row 2 has category 'z'"):
        CurriculumSampler(["a", "b", "z", "c"], RandomCurriculum(ARMS))


def test_empty_draw_is_refused():
    with pytest.raises(ValueError, match=r"draw\(n=0\)"):
        CurriculumSampler(ROWS, RandomCurriculum(ARMS)).draw(0)


# -- difficulty: observe, pools inside categories, pools as the strategy --------------------------------
def test_observe_tracks_every_problem_and_round_trips():
    sampler = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=3)
    batch = sampler.draw(4)
    assert len(set(batch)) == 4  # at seed 3
    sampler.observe(batch, [1.0, 0.5, 0.0, float("nan")])  # NaN: the fourth group had no scored rollout
    assert sampler.difficulty.success[batch[:3]].tolist() == [1.0, 0.5, 0.0]
    assert sampler.difficulty.seen() == 3
    state = json.loads(json.dumps(sampler.state_dict()))
    restored = CurriculumSampler(ROWS, RandomCurriculum(ARMS))
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.difficulty.success, sampler.difficulty.success)
    assert restored.draw(6) == sampler.draw(6)


def test_pools_inside_a_category_draw_by_pool_weight():
    # one-hot on "a" (rows 0, 3, 4, 7, 9); rows 0 and 3 solved (easy), 4 hopeless (hard), 7 and 9 unseen (normal)
    pools = DifficultyPools(easy_weight=0.0, normal_weight=1.0, hard_weight=0.0)
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(ARMS, total_updates=10), seed=1, pools=pools)
    sampler.observe([0, 3, 4], [1.0, 0.875, 0.0])
    draws = [i for _ in range(5) for i in sampler.draw(2)]
    assert set(draws) == {7, 9}  # only normal problems carry weight while there are any
    assert sorted(draws[0:2]) == [7, 9] and sorted(draws[2:4]) == [7, 9]  # without replacement, pass by pass
    assert sampler.last_arms == ["a", "a"]
    sampler.observe([7, 9], [1.0, 1.0])  # solved: no normal problem is left, so easy (3 rows) or hard (1 row)
    drawn = sampler.draw(8)
    assert set(drawn) <= {0, 3, 4, 7, 9} and len(set(drawn)) >= 2


def test_pools_keep_passes_without_duplicates_as_problems_move():
    sampler = CurriculumSampler(ROWS, RandomCurriculum(ARMS), seed=2, pools=DifficultyPools())
    rng = np.random.default_rng(0)
    for _ in range(30):
        batch = sampler.draw(5)
        sampler.observe(batch, rng.integers(0, 9, size=5) / 8)
        for queue in sampler.queues.values():
            assert len(queue) == len(set(queue))  # a queue never holds a row twice
    assert {ROWS[i] for i in sampler.last_draw} <= set(ARMS)


def test_pool_strategy_draws_across_categories():
    curriculum = DifficultyPoolCurriculum(easy_weight=0.0, hard_weight=1.0, normal_weight=0.0)
    sampler = CurriculumSampler(ROWS, curriculum, seed=0)
    assert curriculum.difficulty is sampler.difficulty  # bound: the strategy reads the sampler's rates
    assert set(sampler.draw(12)) == set(range(12)) and set(sampler.last_arms) == {"normal"}  # all unseen
    sampler.observe([1, 5, 8], [0.0, 0.125, 0.25])  # three hard problems, from categories b and c
    assert curriculum.probabilities() == {"easy": 0.0, "normal": 0.0, "hard": 1.0}
    assert sorted(sampler.draw(3)) == [1, 5, 8] and sampler.last_arms == ["hard"] * 3
    state = json.loads(json.dumps(sampler.state_dict()))
    other = DifficultyPoolCurriculum(easy_weight=0.0, hard_weight=1.0, normal_weight=0.0)
    restored = CurriculumSampler(ROWS, other, seed=9)
    restored.load_state_dict(state)
    assert other.probabilities() == curriculum.probabilities()  # restored in place: the strategy sees it too
    assert restored.draw(5) == sampler.draw(5)


def test_pool_strategy_and_pools_inside_categories_do_not_compose():
    with pytest.raises(ValueError, match=r"'difficulty_pools' already draws by difficulty pools.*pass pools=None"):
        CurriculumSampler(ROWS, DifficultyPoolCurriculum(), pools=DifficultyPools())


def test_observe_rejects_bad_rates_naming_the_fix():
    sampler = CurriculumSampler(ROWS, RandomCurriculum(ARMS))
    with pytest.raises(ValueError, match=r"success rate 3\.0 is outside \[0, 1\].*share of the group"):
        sampler.observe([0], [3.0])
    with pytest.raises(ValueError, match=r"problem index 12 is not a row"):
        sampler.observe([12], [0.5])
