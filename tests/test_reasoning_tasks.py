"""Reasoning domains (reasoning-gym) and the MATH-style loader: columns, levels, determinism, rewards, errors."""

from __future__ import annotations

import json
import sys

import pytest

from sec_rl.curriculum import arm_key
from sec_rl.tasks.math_levels import (
    answers_match,
    boxed_answer_reward,
    last_boxed,
    load_leveled_dataset,
    normalize_answer,
    normalize_level,
)

COLUMNS = {"prompt", "answer", "difficulty", "level", "domain", "entry"}


@pytest.fixture(scope="module")
def reasoning():
    pytest.importorskip("reasoning_gym", reason='needs reasoning-gym: pip install "sec-rl[reasoning]"')
    from sec_rl.tasks import reasoning

    return reasoning


@pytest.fixture(scope="module")
def countdown_test(reasoning):
    return reasoning.make_countdown_dataset("test", n_per_level=3, seed=0)


@pytest.fixture(scope="module")
def multidomain(reasoning):
    return reasoning.make_multidomain_dataset("train", n_per_level=2, seed=0)


def wrap(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# -- reasoning-gym domains -------------------------------------------------------------------------------------------
def test_countdown_levels_columns_and_determinism(reasoning, countdown_test):
    assert set(countdown_test.column_names) >= COLUMNS
    assert countdown_test["difficulty"] == [str(n) for n in (3, 4, 5, 6) for _ in range(3)]
    assert sorted(set(countdown_test["level"])) == ["1", "2", "3", "4"]  # 4 = the out-of-distribution level
    for row in countdown_test:
        entry = json.loads(row["entry"])
        assert len(entry["metadata"]["numbers"]) == int(row["difficulty"])
        assert row["answer"] == entry["answer"] and row["domain"] == "countdown"
        assert row["prompt"][-1]["role"] == "user" and "<answer>" in row["prompt"][-1]["content"]

    train = reasoning.make_countdown_dataset("train", n_per_level=3, seed=0)
    assert sorted(set(train["difficulty"])) == ["3", "4", "5"]
    assert train.to_list() == reasoning.make_countdown_dataset("train", n_per_level=3, seed=0).to_list()
    assert train["entry"] != reasoning.make_countdown_dataset("train", n_per_level=3, seed=1)["entry"]
    # train and test problems of the same level are different items
    assert not set(train["entry"]) & set(countdown_test["entry"])


def test_arc1d_and_zebra_knobs(reasoning):
    arc = reasoning.make_arc1d_dataset("test", n_per_level=2, seed=0)
    assert arc["difficulty"] == ["10", "10", "20", "20", "30", "30", "40", "40"]
    assert all(json.loads(e)["metadata"]["size"] == int(d) for e, d in zip(arc["entry"], arc["difficulty"]))
    # generation split over processes gives the same rows (item i depends only on its seed)
    parallel = reasoning.make_arc1d_dataset("train", n_per_level=4, seed=0, num_proc=2)
    assert parallel["entry"] == reasoning.make_arc1d_dataset("train", n_per_level=4, seed=0)["entry"]
    assert reasoning.DOMAINS["zebra"].levels == (3, 4, 5, 6)
    zebra = reasoning.make_zebra_dataset("train", n_per_level=1, seed=0, levels=(3,))
    assert "3 houses" in zebra[0]["prompt"][-1]["content"] and zebra["level"] == ["1"]


def test_multidomain_joint_arms(multidomain):
    assert sorted(set(multidomain["domain"])) == ["arc_1d", "countdown", "zebra"]
    arms = {arm_key(parts) for parts in zip(multidomain["difficulty"], multidomain["domain"])}
    assert len(arms) == 9 and "1-countdown" in arms and "3-arc_1d" in arms


def test_rewards_score_with_reasoning_gym(reasoning, countdown_test, multidomain):
    rows = list(countdown_test) + list(multidomain)
    entries = [r["entry"] for r in rows]
    right = [wrap(f"Let me think.\n<answer>{r['answer']}</answer>") for r in rows]
    assert reasoning.correctness_reward(right, entry=entries) == [1.0] * len(rows)
    assert reasoning.answer_format_reward(right) == [1.0] * len(rows)

    wrong = [wrap("<answer>12345</answer>")] * len(rows)
    assert reasoning.correctness_reward(wrong, entry=entries) == [0.0] * len(rows)
    assert reasoning.answer_format_reward(wrong) == [1.0] * len(rows)

    untagged = [r["answer"] for r in rows]  # the right answer, as a plain string, but without the tags
    assert reasoning.correctness_reward(untagged, entry=entries) == [0.0] * len(rows)
    assert reasoning.answer_format_reward(
        untagged + ["<answer></answer>", "<answer>1</answer><answer>2</answer>"]
    ) == [0.0] * (len(rows) + 2)
    # reasoning-gym's own partial credit survives in score_reward: Countdown gives 0.05 for a wrong expression
    assert reasoning.score_reward([wrap("<answer>1 + 1</answer>")], entry=[entries[0]]) == [0.05]


def test_missing_reasoning_gym_says_how_to_install(reasoning, monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(ImportError, match=r'pip install "sec-rl\[reasoning\]"'):
        reasoning.make_arc1d_dataset("train", n_per_level=1)
    with pytest.raises(ValueError, match="unknown domain 'sudoku'"):
        reasoning.make_reasoning_dataset("sudoku")


# -- MATH-style data -------------------------------------------------------------------------------------------------
MATH_ROWS = [
    {"problem": "What is 1+1?", "solution": "Add: $1+1=\\boxed{2}$.", "level": "Level 1", "type": "Algebra"},
    {"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 3", "type": "Algebra"},
    {"problem": "Angle?", "solution": "So $\\boxed{90^\\circ}$.", "level": "Level 5", "type": "Geometry"},
    {"problem": "Unknown.", "solution": "$\\boxed{7}$", "level": "Level ?", "type": "Algebra"},
]


@pytest.fixture()
def math_file(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in MATH_ROWS) + "\n")
    return str(path)


def test_math_loader_normalises_levels_and_builds_prompts(math_file):
    ds = load_leveled_dataset(math_file)
    assert ds["difficulty"] == ["1", "3", "5"]  # "Level ?" is dropped
    assert ds["answer"] == ["2", "\\frac{1}{2}", "90^\\circ"]  # from the solutions' last \boxed{}
    assert ds[0]["prompt"] == [{"role": "user", "content": "What is 1+1?\n\n" + _instruction()}]
    assert {"problem", "solution", "type"} <= set(ds.column_names)  # the original columns are kept
    assert load_leveled_dataset(math_file, levels=["1", "3"])["difficulty"] == ["1", "3"]
    with pytest.raises(ValueError, match="no usable level"):
        load_leveled_dataset(math_file, drop_unleveled=False)


def test_math_loader_answer_column_and_saved_folder(tmp_path):
    from datasets import Dataset

    rows = [
        {"question": "2*3?", "final": 6, "difficulty_level": 2},
        {"question": "5-1?", "final": 4, "difficulty_level": 4},
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    ds = load_leveled_dataset(
        str(tmp_path / "saved"), level_column="difficulty_level", problem_column="question", answer_column="final"
    )
    assert ds["difficulty"] == ["2", "4"] and ds["answer"] == ["6", "4"]


def test_math_loader_missing_columns_list_the_columns(math_file):
    with pytest.raises(ValueError, match=r"level column 'lvl' not found .*\['problem', 'solution', 'level', 'type'\]"):
        load_leveled_dataset(math_file, level_column="lvl")
    with pytest.raises(ValueError, match=r"problem column 'question' not found"):
        load_leveled_dataset(math_file, problem_column="question")
    with pytest.raises(ValueError, match=r"answer column 'final' not found .*no solution column"):
        load_leveled_dataset(math_file, answer_column="final", solution_column=None)


def test_level_and_answer_normalisation():
    assert [normalize_level(v) for v in ("Level 3", 3, 3.0, " level-2 ", "Hard", "Level ?", None, "")] == [
        "3", "3", "3", "2", "hard", None, None, None,
    ]  # fmt: skip
    assert last_boxed("a \\boxed{\\frac{1}{2}} then \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{unclosed") is None and last_boxed("no box") is None
    assert normalize_answer("\\dfrac{1}{2}") == normalize_answer("\\frac12") == "\\frac{1}{2}"
    assert normalize_answer("x = 1,000.") == "1000" and normalize_answer("\\text{5 }") == "5"
    for prediction, reference in [("0.5", "\\frac{1}{2}"), ("90", "90^\\circ"), ("50\\%", "50"), (".5", "1/2")]:
        assert answers_match(prediction, reference, use_math_verify=False), (prediction, reference)
    assert not answers_match("3", "\\frac{1}{2}", use_math_verify=False)


def test_boxed_answer_reward():
    completions = [
        wrap("so \\boxed{0.5}"),
        "thus $\\boxed{\\dfrac{1}{2}}$",
        wrap("1/2 without a box"),
        wrap("\\boxed{2}"),
    ]
    assert boxed_answer_reward(completions, answer=["\\frac{1}{2}"] * 4) == [1.0, 1.0, 0.0, 0.0]


def _instruction() -> str:
    from sec_rl.tasks.math_levels import BOXED_INSTRUCTION

    return BOXED_INSTRUCTION
