"""The stage evaluation table, on the text world (no browser) with scripted agents whose outcomes are known.

Agents are plain callables ``messages -> text`` that read the page; the environments are real
:class:`TextEnvironment` workers in an :class:`EnvironmentPool`. Success rates and intervals are checked
against outcomes worked out independently (by resetting the text world) and :func:`bootstrap_interval`.
"""

from __future__ import annotations

import json
import re

import pytest

from sec_rl.pipeline.report import (
    REPORT_FILE,
    StageReport,
    episode_outcomes,
    evaluate_stages,
    format_score,
    paired_difference,
    stage_file,
    success_per_task,
    training_curve,
)
from sec_rl.pipeline.scripted import TextWorldTeacher
from sec_rl.web import EnvironmentPool, TextEnvironment, WebConfig
from sec_rl.web.evaluate import TaskScore, bootstrap_interval


# -- scripted agents -------------------------------------------------------------------------------
def _page(messages: list[dict[str, str]]) -> tuple[str, str]:
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    goal = user.split("# Goal\n", 1)[1].split("\n", 1)[0]
    return goal, user.split("accessibility tree)\n", 1)[1]


def right(messages: list[dict[str, str]]) -> str:
    """Solves every text-world task: the text world's scripted expert."""
    return TextWorldTeacher().act_batch([messages])[0]


def wrong(messages: list[dict[str, str]]) -> str:
    """Never acts: every episode runs out of steps."""
    return "Thought: wait.\nAction: noop()"


def first_button(messages: list[dict[str, str]]) -> str:
    """Clicks the first button listed: right on click-button exactly when the target comes first."""
    _, page = _page(messages)
    bid = re.search(r"\[(\w+)\] button", page).group(1)
    return f"Thought: the first one.\nAction: click('{bid}')"


class Counting:
    """Wraps an agent and records the goal of every call."""

    def __init__(self, agent):
        self.agent, self.goals = agent, []

    def __call__(self, messages):
        self.goals.append(_page(messages)[0])
        return self.agent(messages)


@pytest.fixture(scope="module")
def pool():
    with EnvironmentPool(TextEnvironment, 2) as pool:
        yield pool


SMALL = {"goal_tasks": ["click-button"], "task_tasks": ["enter-text"], "goal_seeds": [0, 1, 2]}


# -- tests -----------------------------------------------------------------------------------------
def test_always_right_and_always_wrong(tmp_path):
    # No pool given: evaluate_stages builds one from the web settings and shares it between the stages.
    report = evaluate_stages(
        {"right": right, "wrong": wrong},
        WebConfig(web_env="text", web_num_workers=2, web_max_turns=3),
        **SMALL,
        task_seeds=range(4),
        output_dir=tmp_path,
    )
    assert list(report.stages) == ["right", "wrong"]
    for split, episodes in (("goals", 3), ("tasks", 4)):
        assert report["right"].scores[split] == TaskScore(1.0, 1.0, 1.0, episodes, 0)
        assert report["wrong"].scores[split] == TaskScore(0.0, 0.0, 0.0, episodes, 0)
    assert report["right"].tasks == {"goals": ["click-button"], "tasks": ["enter-text"]}
    assert report["right"].seeds == {"goals": [0, 1, 2], "tasks": [0, 1, 2, 3]}
    assert report["wrong"].goals.success_rate == 0.0 and report["wrong"].heldout_tasks.episodes == 4
    saved = json.loads(stage_file(tmp_path, "right").read_text())
    episodes = saved["splits"]["tasks"]["report"]["episodes"]
    assert [(e["task"], e["seed"], e["success"], e["steps"]) for e in episodes] == [
        ("enter-text", s, True, 2) for s in range(4)
    ]
    wrong_episodes = json.loads(stage_file(tmp_path, "wrong").read_text())["splits"]["goals"]["report"]["episodes"]
    assert {e["steps"] for e in wrong_episodes} == {3}  # ran out of steps
    assert (tmp_path / REPORT_FILE).is_file() and (tmp_path / "table.md").is_file()
    # Per-episode outcomes by (task, seed), what paired comparisons of two stages pair.
    assert episode_outcomes(tmp_path, "right", "tasks") == {("enter-text", s): 1.0 for s in range(4)}
    assert episode_outcomes(tmp_path, "wrong", "goals") == {("click-button", s): 0.0 for s in range(3)}
    assert episode_outcomes(tmp_path, "right", "unevaluated") == {}
    assert success_per_task(tmp_path, "right", "tasks") == {"enter-text": 1.0}
    assert success_per_task(tmp_path, "wrong") == {"click-button": 0.0}
    assert success_per_task(tmp_path, "right", "unevaluated") == {}
    # Paired differences: every episode of one stage against the same (task, seed) of another.
    assert paired_difference(tmp_path, "right", "wrong") == {
        "episodes": 3, "mean": 1.0, "low": 1.0, "high": 1.0, "excludes_zero": True
    }  # fmt: skip
    assert paired_difference(tmp_path, "wrong", "right", "tasks")["mean"] == -1.0
    assert paired_difference(tmp_path, "right", "wrong", "unevaluated") == {"episodes": 0}
    # Half the held-out tasks' episodes right: mean 0.5; with 4 pairs, all-0 and all-1 resamples are each 1/16 of
    # the bootstrap (more than 2.5%), so the 95% interval is [0, 1] and does not exclude 0.
    half = json.loads(stage_file(tmp_path, "right").read_text())
    half["stage"] = "half"
    for e in half["splits"]["tasks"]["report"]["episodes"][:2]:
        e["success"] = False
    stage_file(tmp_path, "half").write_text(json.dumps(half))
    assert paired_difference(tmp_path, "half", "wrong", "tasks") == {
        "episodes": 4, "mean": 0.5, "low": 0.0, "high": 1.0, "excludes_zero": False
    }  # fmt: skip


def test_training_curve_reads_a_metric_per_step_from_the_trainer_state(tmp_path):
    history = [
        {"step": 1, "loss": 0.5, "web/success_rate": 0.25},
        {"step": 2, "loss": 0.4, "web/success_rate": None},  # a step with nothing scored
        {"step": 3, "loss": 0.3, "web/success_rate": 0.5},
        {"step": 3, "train_runtime": 12.0},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert training_curve(tmp_path) == {1: 0.25, 3: 0.5}
    assert training_curve(tmp_path, "loss") == {1: 0.5, 2: 0.4, 3: 0.3}
    assert training_curve(tmp_path / "elsewhere") == {}


def test_intervals_match_bootstrap_on_the_same_outcomes(tmp_path, pool):
    seeds = list(range(12))
    env = TextEnvironment()
    expected_click = []  # worked out from the world itself: is the target the first button?
    for seed in seeds:
        observation = env.reset("click-button", seed)
        target = re.search(r'"(.+?)"', observation.goal).group(1)
        expected_click.append(float(env._elements[0].name == target))
    assert 0 < sum(expected_click) < len(seeds)  # a non-trivial mix of outcomes

    def agent(messages):
        goal, _ = _page(messages)
        return first_button(messages) if goal.startswith("Click") else wrong(messages)

    report = evaluate_stages(
        {"first-button": agent},
        goal_tasks=["click-button", "enter-text"],
        task_tasks=[],
        goal_seeds=seeds,
        output_dir=tmp_path,
        web=WebConfig(web_max_turns=2),
        pool=pool,
        n_resamples=500,
        seed=3,
    )
    result = report["first-button"]
    assert set(result.scores) == {"goals"}  # held-out tasks skipped
    rate, low, high = bootstrap_interval([expected_click, [0.0] * len(seeds)], n_resamples=500, seed=3)
    goals = result.goals
    assert (goals.success_rate, goals.low, goals.high) == pytest.approx((rate, low, high))
    assert goals.success_rate == pytest.approx(sum(expected_click) / len(seeds) / 2)
    assert low < rate < high
    click = result.per_task["goals"]["click-button"]
    assert (click.success_rate, click.low, click.high) == pytest.approx(
        bootstrap_interval([expected_click], n_resamples=500, seed=3)
    )
    assert report.table().splitlines()[2].endswith(f"| {format_score(goals)} | - |")


def test_resume_skips_saved_stages_and_sets(tmp_path, pool):
    kwargs = {**SMALL, "task_seeds": [0, 1], "output_dir": tmp_path, "web": WebConfig(web_max_turns=3), "pool": pool}
    first = Counting(right)
    report = evaluate_stages({"sft": first}, **kwargs)
    calls = len(first.goals)
    assert calls == 3 + 2 * 2  # one click per click-button goal, fill + submit per enter-text goal

    again = evaluate_stages({"sft": first}, **kwargs)
    assert len(first.goals) == calls  # read back, not run again
    assert again.to_dict() == report.to_dict()

    evaluate_stages({"sft": first}, **kwargs, force=True)
    assert len(first.goals) == 2 * calls

    # A crash during the held-out tasks: the held-out goals are saved already, and a rerun runs only the rest.
    def crashes_on_enter_text(messages):
        if _page(messages)[0].startswith("Enter"):
            raise RuntimeError("out of memory")
        return right(messages)

    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate_stages({"rl": crashes_on_enter_text}, **kwargs)
    saved = json.loads(stage_file(tmp_path, "rl").read_text())
    assert set(saved["splits"]) == {"goals"}
    resumed = Counting(right)
    report = evaluate_stages({"rl": resumed}, **kwargs)
    assert resumed.goals and all(goal.startswith("Enter") for goal in resumed.goals)
    assert report["rl"].goals.success_rate == report["rl"].heldout_tasks.success_rate == 1.0

    # A set saved while the browser was down (every episode an environment error) is evaluated again.
    saved = json.loads(stage_file(tmp_path, "sft").read_text())
    saved["splits"]["goals"]["report"]["overall"].update(episodes=0, env_errors=3)
    stage_file(tmp_path, "sft").write_text(json.dumps(saved))
    retried = Counting(right)
    assert evaluate_stages({"sft": retried}, **kwargs)["sft"].goals.episodes == 3
    assert len(retried.goals) == 3 and all(goal.startswith("Click") for goal in retried.goals)

    with pytest.raises(ValueError, match="other tasks or seeds.*force=True"):
        evaluate_stages({"sft": first}, **{**kwargs, "task_seeds": [0, 1, 2]})


def test_table_plot_and_round_trip(tmp_path, pool):
    report = evaluate_stages(
        {"untrained": wrong, "sft+rl": right},
        **SMALL,
        task_seeds=[0, 1],
        output_dir=tmp_path,
        web=WebConfig(web_max_turns=2),
        pool=pool,
    )
    lines = report.table().splitlines()
    assert lines[0] == "| stage | held-out goals | held-out tasks |"
    assert lines[2] == "| untrained | 0.0% [0.0, 0.0] | 0.0% [0.0, 0.0] |"
    assert lines[3] == "| sft+rl | 100.0% [100.0, 100.0] | 100.0% [100.0, 100.0] |"
    assert "95% bootstrap interval" in report.caption()
    assert "held-out goals: 1 tasks x seeds 0-2, 3 episodes; held-out tasks: 1 tasks x seeds 0,1, 2 episodes" in (
        report.caption()
    )
    assert format_score(TaskScore(0.552, 0.501, 0.603, 100, 0)) == "55.2% [50.1, 60.3]"
    assert format_score(TaskScore(float("nan"), float("nan"), float("nan"), 0, 2)) == "-"

    png = report.plot(tmp_path / "plots" / "success.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    assert StageReport.load(tmp_path).to_dict() == report.to_dict()
    assert StageReport.from_dict(json.loads(json.dumps(report.to_dict()))).table() == report.table()
    (tmp_path / REPORT_FILE).unlink()  # the per-stage files alone still make the report
    assert StageReport.load(tmp_path).table() == report.table()


def test_model_path_stage_is_loaded_as_a_greedy_model_agent(tmp_path, pool, tiny_model_dir):
    report = evaluate_stages(
        {"untrained": tiny_model_dir},
        goal_tasks=["click-button"],
        task_tasks=[],
        goal_seeds=[0, 1],
        output_dir=tmp_path,
        web=WebConfig(web_max_turns=2),
        max_new_tokens=8,
        pool=pool,
    )
    result = report["untrained"]
    assert result.source == tiny_model_dir
    assert result.goals.episodes == 2 and 0.0 <= result.goals.success_rate <= 1.0
    episodes = json.loads(stage_file(tmp_path, "untrained").read_text())["splits"]["goals"]["report"]["episodes"]
    assert [(e["task"], e["seed"]) for e in episodes] == [("click-button", 0), ("click-button", 1)]


def test_bad_input_is_refused_with_the_fix(tmp_path, pool):
    with pytest.raises(ValueError, match="no stage"):
        evaluate_stages({}, output_dir=tmp_path, pool=pool)
    with pytest.raises(TypeError, match="stage 'x' is a int"):
        evaluate_stages({"x": 3}, output_dir=tmp_path, pool=pool)
    with pytest.raises(ValueError, match="both held-out sets are empty"):
        evaluate_stages({"x": right}, goal_tasks=[], task_tasks=[], output_dir=tmp_path, pool=pool)
    with pytest.raises(ValueError, match=r"\['click-button'\] are both trained-on"):
        evaluate_stages(
            {"x": right}, goal_tasks=["click-button"], task_tasks=["click-button"], output_dir=tmp_path, pool=pool
        )
    with pytest.raises(ValueError, match="same file"):
        evaluate_stages({"a b": right, "a/b": right}, **SMALL, output_dir=tmp_path, pool=pool)
    with pytest.raises(FileNotFoundError, match="no stage evaluation"):
        StageReport.load(tmp_path / "nothing")
