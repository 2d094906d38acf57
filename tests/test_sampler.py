"""CurriculumSampler: TRL RepeatSampler's structure, curriculum-driven draws, determinism and resume."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from sec_rl.curriculum import (
    CurriculumSampler,
    OrderedCurriculum,
    RandomCurriculum,
    SelfEvolvingCurriculum,
)

ARMS = ["a", "b", "c"]
# 12 rows, categories interleaved: a has 5 rows, b 3, c 4
ROWS = ["a", "b", "c", "a", "a", "c", "b", "a", "c", "a", "b", "c"]
ROWS_OF = {c: [i for i, r in enumerate(ROWS) if r == c] for c in ARMS}


def take(iterator, n: int) -> list[int]:
    return list(itertools.islice(iterator, n))


def distinct_chunks(stream: list[int], batch_size: int, mini: int, repeat: int) -> list[list[int]]:
    """The distinct prompts of each chunk: the first batch_size * mini entries, one per mini-repeat."""
    size = batch_size * mini * repeat
    return [stream[k : k + batch_size * mini : mini] for k in range(0, len(stream), size)]


@pytest.mark.parametrize(("batch_size", "mini", "repeat"), [(3, 2, 4), (4, 1, 1), (5, 3, 2), (1, 2, 1)])
def test_structure_matches_trl_repeat_sampler(batch_size, mini, repeat):
    trl_utils = pytest.importorskip("trl.trainer.utils")
    sampler = CurriculumSampler(
        ROWS, RandomCurriculum(ARMS), mini_repeat_count=mini, batch_size=batch_size, repeat_count=repeat, seed=3
    )
    reference = trl_utils.RepeatSampler(ROWS, mini_repeat_count=mini, batch_size=batch_size, repeat_count=repeat)
    stream = list(sampler)
    assert len(sampler) == len(reference) == len(stream)
    # Lay our chunks end to end and index them with RepeatSampler's unshuffled positions: the same
    # pattern (each prompt `mini` times in a row, each chunk `repeat` times) must come out.
    flat = [i for chunk in distinct_chunks(stream, batch_size, mini, repeat) for i in chunk]
    positions = trl_utils.RepeatSampler(
        range(len(flat)), mini_repeat_count=mini, batch_size=batch_size, repeat_count=repeat, shuffle=False
    )
    assert stream == [flat[p] for p in positions]


def test_single_category_unshuffled_equals_repeat_sampler():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    rows = ["only"] * 10
    ours = CurriculumSampler(rows, RandomCurriculum(["only"]), 2, batch_size=3, repeat_count=2, shuffle=False)
    theirs = trl_utils.RepeatSampler(rows, 2, batch_size=3, repeat_count=2, shuffle=False)
    assert list(ours) == list(theirs)


def test_one_hot_curriculum_draws_only_its_category():
    one_hot = OrderedCurriculum(ARMS, total_updates=10, reverse=True)  # stage 0 of the reversed list: "c"
    sampler = CurriculumSampler(ROWS, one_hot, mini_repeat_count=2, batch_size=4, repeat_count=2)
    stream = list(sampler)
    assert stream and {ROWS[i] for i in stream} == {"c"}


def test_without_replacement_within_a_pass():
    # only "a" (5 rows) is drawn, 12 draws: two full passes (each a permutation of a's rows), then 2 more
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(ARMS, total_updates=10), 1, batch_size=2, seed=7)
    draws = list(sampler)
    assert len(draws) == 12
    assert sorted(draws[0:5]) == ROWS_OF["a"] and sorted(draws[5:10]) == ROWS_OF["a"]
    assert len(set(draws[10:12])) == 2
    assert draws[0:5] != draws[5:10]  # each pass is reshuffled (true for seed 7)


def test_without_replacement_per_category_with_mixed_draws():
    sampler = CurriculumSampler(ROWS, RandomCurriculum(ARMS), 1, batch_size=3, seed=11)
    draws = [i for _ in range(5) for i in sampler]  # several epochs
    for category, rows in ROWS_OF.items():
        mine = [i for i in draws if ROWS[i] == category]
        full = len(mine) - len(mine) % len(rows)
        for start in range(0, full, len(rows)):  # every complete pass holds each row exactly once
            assert sorted(mine[start : start + len(rows)]) == rows
        assert len(set(mine[full:])) == len(mine[full:])


def test_unshuffled_takes_rows_in_dataset_order():
    sampler = CurriculumSampler(ROWS, OrderedCurriculum(ARMS, total_updates=10), 1, batch_size=2, shuffle=False)
    assert list(sampler)[:7] == ROWS_OF["a"] + ROWS_OF["a"][:2]


def test_category_smaller_than_batch_refills():
    # "b" has 3 rows but each chunk needs 8 prompts: the queue refills within the chunk
    only_b = OrderedCurriculum(["b", "a", "c"], total_updates=10)
    sampler = CurriculumSampler(ROWS, only_b, 1, batch_size=8, seed=0)
    chunk = list(sampler)[:8]
    assert {ROWS[i] for i in chunk} == {"b"}
    assert sorted(chunk[0:3]) == ROWS_OF["b"] and sorted(chunk[3:6]) == ROWS_OF["b"]


def run_with_updates(seed: int, chunks: int = 6) -> list[int]:
    """Iterate chunk by chunk, updating a SEC curriculum from each chunk as a trainer would."""
    sec = SelfEvolvingCurriculum(ARMS, temperature=0.3)
    sampler = CurriculumSampler(ROWS, sec, 1, batch_size=4, seed=seed)
    stream: list[int] = []
    it = iter(sampler)
    for k in range(chunks):
        if k and k % sampler.chunks_per_epoch == 0:
            it = iter(sampler)
        chunk = take(it, 4)
        stream += chunk
        sec.update([ROWS[i] for i in chunk], [0.9 if ROWS[i] == "b" else 0.1 for i in chunk])
    return stream


def test_deterministic_given_seed_and_updates():
    assert run_with_updates(seed=5) == run_with_updates(seed=5)
    assert run_with_updates(seed=5) != run_with_updates(seed=6)


def test_global_rngs_untouched():
    np_state, py_state = np.random.get_state(), random.getstate()
    sampler = CurriculumSampler(ROWS, SelfEvolvingCurriculum(ARMS), 2, batch_size=3, repeat_count=2, seed=1)
    for _ in range(3):
        list(sampler)
    after = np.random.get_state()
    assert random.getstate() == py_state
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


class CountingCurriculum(RandomCurriculum):
    """Counts how often the sampler asks for the distribution."""

    calls = 0

    def probabilities(self):
        self.calls += 1
        return super().probabilities()


def test_probabilities_consulted_lazily_once_per_chunk():
    spy = CountingCurriculum(ARMS)
    batch, mini, repeat = 3, 2, 2
    it = iter(CurriculumSampler(ROWS, spy, mini, batch_size=batch, repeat_count=repeat))
    assert spy.calls == 0  # nothing drawn before the data loader asks
    take(it, 1)
    assert spy.calls == 1
    take(it, batch * mini * repeat - 1)  # the rest of chunk 0, repeats included
    assert spy.calls == 1
    take(it, 1)  # first index of chunk 1
    assert spy.calls == 2


def test_curriculum_updates_between_chunks_change_the_distribution():
    # K = 3, total_updates = 3: stage = update count, so each update moves to the next category
    ordered = OrderedCurriculum(ARMS, total_updates=3)
    batch, mini, repeat = 4, 2, 3
    it = iter(CurriculumSampler(ROWS, ordered, mini, batch_size=batch, repeat_count=repeat))
    for expected in ARMS:
        chunk = take(it, batch * mini * repeat)
        assert {ROWS[i] for i in chunk} == {expected}
        ordered.update([ROWS[i] for i in chunk], [0.0] * len(chunk))


def make_sampler(seed: int = 4, history: int = 8) -> CurriculumSampler:
    return CurriculumSampler(
        ROWS, RandomCurriculum(ARMS), mini_repeat_count=2, batch_size=2, repeat_count=2, seed=seed, history=history
    )


def test_state_dict_is_json_and_restored_sampler_continues():
    original = make_sampler()
    first_epoch = list(original)
    state = json.loads(json.dumps(original.state_dict()))
    restored = make_sampler(seed=999)  # the seed is overridden by the saved generator state
    restored.load_state_dict(state)
    for epoch in (1, 2):
        original.set_epoch(epoch)
        restored.set_epoch(epoch)
        assert list(restored) == list(original)
    assert first_epoch != list(original)


@pytest.mark.parametrize("history", [8, 2])
def test_resume_replays_recent_chunks_then_continues(history):
    chunk_len = 2 * 2 * 2  # batch_size * mini_repeat_count * repeat_count
    uninterrupted = make_sampler(history=history)
    it = iter(uninterrupted)
    before = take(it, 3 * chunk_len)  # three chunks drawn, as if a checkpoint came now
    state = json.loads(json.dumps(uninterrupted.state_dict()))
    after = list(it)  # the rest of the epoch, uninterrupted

    resumed = make_sampler()
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    stream = list(resumed)
    assert len(stream) == len(before) + len(after)
    for k in range(3):
        replayed = stream[k * chunk_len : (k + 1) * chunk_len]
        if k >= 3 - history:  # still within `history`: replayed identically
            assert replayed == before[k * chunk_len : (k + 1) * chunk_len]
        else:  # too old to be trained on again: any valid indices
            assert all(0 <= i < len(ROWS) for i in replayed)
    assert stream[3 * chunk_len :] == after  # new chunks continue the uninterrupted stream


def test_load_rejects_other_categories():
    other = CurriculumSampler(["x", "y"], RandomCurriculum(["x", "y"]), 1)
    with pytest.raises(ValueError, match="categories"):
        make_sampler().load_state_dict(other.state_dict())


def test_empty_category_is_named():
    with pytest.raises(ValueError, match=r"\['c'\] have no rows"):
        CurriculumSampler(["a", "b", "a"], RandomCurriculum(ARMS), 1)


def test_unknown_row_category():
    with pytest.raises(ValueError, match="row 2 has category 'z'"):
        CurriculumSampler(["a", "b", "z", "c"], RandomCurriculum(ARMS), 1)


def test_dataset_smaller_than_batch():
    with pytest.raises(ValueError, match="has 3 rows but a generation batch needs 4"):
        CurriculumSampler(["a", "b", "c"], RandomCurriculum(ARMS), 1, batch_size=4)


def test_bad_repeat_counts():
    with pytest.raises(ValueError, match="batch_size"):
        CurriculumSampler(ROWS, RandomCurriculum(ARMS), 0)
