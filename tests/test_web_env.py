"""The environment layer without a browser: TextEnvironment, rendering, goal datasets, the pool, evaluation."""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import time

import psutil
import pytest
from helpers.text_world import ELEMENT, text_policy

from sec_rl.web import (
    EnvironmentPool,
    Observation,
    PromptConfig,
    StepResult,
    TextEnvironment,
    UnknownTaskError,
    render_messages,
    render_observation,
)
from sec_rl.web.config import WebConfig
from sec_rl.web.evaluate import bootstrap_interval, evaluate, score
from sec_rl.web.observation import truncate
from sec_rl.web.policies import ModelAgent
from sec_rl.web.rollout import Episode, RolloutEngine, Step


def children() -> list[psutil.Process]:
    """This process's descendants, except multiprocessing's resource tracker (it lives as long as we do)."""
    result = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                result.append(child)
        except psutil.Error:
            continue
    return result


# -- TextEnvironment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TextEnvironment.TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_text_environment_scripted_policy_succeeds(task, seed):
    env = TextEnvironment()
    observation = env.reset(task, seed)
    history: list[str] = []
    for _ in range(6):
        result = env.step(text_policy(render_messages(observation, history)))
        history.append(result.info["action"])
        observation = result.observation
        if result.done:
            break
    assert result.done and result.reward == 1.0, (task, seed, history)
    assert observation.step == len(history) and observation.last_action == history[-1]


def test_text_environment_is_deterministic_per_seed():
    env = TextEnvironment()
    first = env.reset("click-button", 7)
    assert env.reset("click-button", 7) == first
    assert {env.reset("click-button", s).axtree for s in range(10)}.__len__() > 5


def test_wrong_button_ends_with_zero_reward():
    env = TextEnvironment()
    observation = env.reset("click-button", 0)
    target = re.search(r'"(.+)"', observation.goal).group(1)
    wrong = next(b for b, r, n, _ in ELEMENT.findall(observation.axtree) if r == "button" and n != target)
    result = env.step(f"Action: click('{wrong}')")
    assert result.done and result.reward == 0.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Action: noop()")


def test_missing_element_and_invalid_action_become_observation_errors():
    env = TextEnvironment()
    observation = env.reset("enter-text", 1)
    result = env.step("Action: click('999')")
    assert (
        not result.done and result.observation.last_action_error == 'ValueError: Could not find element with bid "999"'
    )
    result = env.step("Thought: hmm\nAction: click(__import__('os'))")
    assert not result.done and result.info == {"action": None, "invalid_action": True}
    assert result.observation.last_action_error.startswith("InvalidActionError: arguments must be literals")
    assert result.observation.axtree == observation.axtree and result.observation.step == 2
    result = env.step("")
    assert "output was empty" in result.observation.last_action_error
    result = env.step("Action: scroll(0, 100)")  # meaningless here: no effect, no error
    assert result.observation.last_action_error == "" and result.observation.last_action == "scroll(0, 100)"


def test_unknown_task_lists_close_matches():
    with pytest.raises(UnknownTaskError, match="Did you mean 'click-button'") as caught:
        TextEnvironment().reset("click-buton", 0)
    assert caught.value.close_matches[0] == "click-button"


# -- rendering ---------------------------------------------------------------------------------------
def test_render_messages_documents_format_and_shows_state():
    observation = Observation(goal="Click the button.", axtree="[13] button 'Click Me!'", last_action_error="boom")
    messages = render_messages(
        observation, ["noop()", "click('1')", "click('2')", "click('3')"], PromptConfig(history=2)
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert "Action:" in system and "click(bid, button='left', modifiers=[])" in system
    assert "# Previous actions (last 2 of 4)\n3. click('2')\n4. click('3')" in user
    assert "# Error from your last action\nboom" in user
    assert user.index("# Goal") < user.index("# Previous") < user.index("# Error") < user.index("# Current page")
    quiet = render_observation(observation, [], PromptConfig(error_feedback=False, history=0))
    assert "boom" not in quiet and "Previous" not in quiet
    assert render_messages(observation, config=PromptConfig(system="Be brief."))[0]["content"] == "Be brief."


def test_page_budget_truncates_with_a_marker():
    observation = Observation(goal="g", axtree="x" * 500, html="<p>" + "y" * 50)
    text = render_observation(observation, config=PromptConfig(max_page_chars=100))
    assert "x" * 100 in text and "x" * 101 not in text
    assert "[... page truncated: 400 more characters not shown ...]" in text
    assert "<p>" in render_observation(observation, config=PromptConfig(view="html"))

    class WordTokenizer:  # one token per character is enough to test the budget logic
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(text)}

        def decode(self, ids, skip_special_tokens=True):
            return "".join(ids)

    cut = truncate("abcdefghij", max_tokens=4, tokenizer=WordTokenizer())
    assert cut.startswith("abcd\n") and "6 more tokens" in cut
    with pytest.raises(ValueError, match="needs a tokenizer"):
        truncate("abc", max_tokens=2)


# -- goal datasets -----------------------------------------------------------------------------------
def test_goal_datasets_follow_the_split():
    from sec_rl.web import tasks

    assert len(tasks.TRAIN_TASKS) == 99 and len(tasks.HELDOUT_TASKS) == 23
    assert not set(tasks.TRAIN_TASKS) & set(tasks.HELDOUT_TASKS)
    train = tasks.train_goals(seeds=2)
    assert train.column_names == ["prompt", "task", "seed"] and len(train) == 198
    assert set(train["seed"]) == {3, 4}
    assert len(tasks.heldout_goals()) == 99 * 3 and set(tasks.heldout_goals()["seed"]) == {0, 1, 2}
    assert len(tasks.heldout_task_goals()) == 23 * 10
    with pytest.raises(ValueError, match="held-out goals"):
        tasks.train_goals(seeds=[2, 3])
    assert len(tasks.train_goals([5, 9], tasks=["click-test"])) == 2


# -- the pool ----------------------------------------------------------------------------------------
SlowText = functools.partial(TextEnvironment, time_scale=1.0)  # noop(wait_ms) really waits


def test_pool_resets_and_steps_in_parallel():
    with EnvironmentPool(TextEnvironment, num_workers=3, step_timeout=10) as pool:
        goals = [("click-button", 3), ("enter-text", 4), ("click-checkboxes", 5)]
        results = pool.reset_many(goals)
        assert [r.observation.task for r in results] == ["click-button", "enter-text", "click-checkboxes"]
        assert pool.reset_many([None, ("click-button", 9)])[0] is None  # a shorter list and None skip slots
        histories: list[list[str]] = [[], [], []]
        observations = [r.observation for r in pool.reset_many(goals)]
        done = [False] * 3
        for _ in range(5):
            actions = [
                None if done[i] else text_policy(render_messages(observations[i], histories[i])) for i in range(3)
            ]
            for i, result in enumerate(pool.step_many(actions)):
                if result is not None:
                    assert isinstance(result, StepResult) and not result.env_error
                    observations[i], done[i] = result.observation, result.done
                    histories[i].append(result.info["action"])
                    if result.done:
                        assert result.reward == 1.0
        assert all(done)
        with pytest.raises(ValueError, match="finished its episode"):
            pool.step_many(["Action: noop()"])
        metrics = pool.metrics()
        assert metrics["episodes_done"] == 3 and metrics["env_errors"] == 0
    # Slow steps overlap: three 1 s waits take about 1 s, not 3 s.
    with EnvironmentPool(SlowText, num_workers=3, step_timeout=10) as pool:
        pool.reset_many(goals)
        pool.step_many(["noop(10)"] * 3)  # warm
        start = time.monotonic()
        pool.step_many(["noop(1000)"] * 3)
        assert time.monotonic() - start < 2.5


def test_step_timeout_replaces_the_worker_and_marks_the_episode():
    with EnvironmentPool(SlowText, num_workers=2, step_timeout=1.5) as pool:
        pool.reset_many([("click-button", 0), ("click-button", 1)])
        pids = pool.worker_pids()
        start = time.monotonic()
        hung, fine = pool.step_many(["Action: noop(10000)", "Action: noop(0)"])
        assert time.monotonic() - start < 6  # the hung worker is not waited for
        assert hung.env_error and hung.done and hung.info["error_kind"] == "timeout"
        assert hung.observation.task == "click-button"  # the last observation is kept
        assert not fine.env_error and not fine.done
        assert pool.worker_pids()[0] != pids[0] and pool.worker_pids()[1] == pids[1]
        assert pool.metrics()["step_timeouts"] == 1 and pool.metrics()["worker_restarts"] == 1
        again = pool.reset_many([("enter-text", 2), None])[0]
        assert not again.env_error and again.observation.task == "enter-text"  # the fresh worker serves


def test_episode_timeout_ends_the_episode_without_restarting():
    with EnvironmentPool(TextEnvironment, num_workers=1, episode_timeout=1.5) as pool:
        pool.reset(0, "click-button", 0)  # the first command waits for the worker to start
        pool.reset(0, "click-button", 0)
        pid = pool.worker_pids()[0]
        assert not pool.step(0, "Action: noop()").env_error
        time.sleep(1.6)
        result = pool.step(0, "Action: noop()")
        assert result.env_error and result.done and result.info["error_kind"] == "episode_timeout"
        assert pool.worker_pids()[0] == pid and pool.metrics()["episode_timeouts"] == 1


def test_killed_worker_is_replaced_and_its_episode_excluded():
    with EnvironmentPool(TextEnvironment, num_workers=2) as pool:
        pool.reset_many([("enter-text", 0), ("enter-text", 1)])
        victim = pool.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)  # the pool notices at its next command (broken pipe or end of file)
        dead, alive = pool.step_many(["Action: noop()", "Action: noop()"])
        assert dead.env_error and dead.done and dead.info["error_kind"] == "died"
        assert not alive.env_error
        metrics = pool.metrics()
        assert metrics["worker_deaths"] == 1 and metrics["worker_restarts"] == 1 and metrics["env_errors"] == 1
        assert pool.worker_pids()[0] not in (None, victim)
        assert all(not r.env_error for r in pool.reset_many([("click-button", 2), ("click-button", 3)]))


def test_caller_errors_raise_and_keep_the_worker():
    with EnvironmentPool(TextEnvironment, num_workers=1) as pool:
        pid = pool.worker_pids()[0]
        with pytest.raises(UnknownTaskError, match="click-button"):
            pool.reset(0, "click-buton", 0)
        with pytest.raises(ValueError, match="has no episode"):
            pool.step(0, "Action: noop()")
        with pytest.raises(ValueError, match="2 entries for a pool of 1"):
            pool.step_many([None, None])
        assert pool.worker_pids()[0] == pid and pool.metrics()["worker_restarts"] == 0


def test_a_factory_that_fails_gives_env_errors_not_a_hang():
    broken = functools.partial(TextEnvironment, actions=["teleport"])  # raises in the worker
    with EnvironmentPool(broken, num_workers=1, start_timeout=30) as pool:
        result = pool.reset(0, "click-button", 0)
        assert result.env_error and "creating the environment failed" in result.info["error"]


def test_close_leaves_no_child_processes():
    before = {p.pid for p in children()}
    pool = EnvironmentPool(TextEnvironment, num_workers=2)
    pool.reset_many([("click-button", 0), ("click-button", 1)])
    assert len({p.pid for p in children()} - before) >= 2
    pool.close()
    pool.close()  # idempotent
    assert {p.pid for p in children()} <= before
    with pytest.raises(RuntimeError, match="closed"):
        pool.reset(0, "click-button", 0)
    # Without close(): the garbage collector's finalizer stops the workers.
    pool = EnvironmentPool(TextEnvironment, num_workers=1)
    pool.reset(0, "click-button", 0)
    del pool
    gc.collect()
    deadline = time.monotonic() + 10
    while {p.pid for p in children()} - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {p.pid for p in children()} <= before


# -- evaluation --------------------------------------------------------------------------------------
def test_evaluate_scripted_policy_on_text_tasks():
    report = evaluate(
        text_policy, TextEnvironment.TASKS, range(4), WebConfig(web_env="text", web_num_workers=2, web_max_turns=6)
    )
    assert report.overall.success_rate == 1.0 and report.overall.episodes == 12
    assert set(report.per_task) == set(TextEnvironment.TASKS)
    assert all(score.low == score.high == 1.0 for score in report.per_task.values())
    table = report.table()
    assert "| click-button | 4 | 100.0% | [100.0%, 100.0%] | 0 |" in table and "overall" in table
    assert report.to_dict()["overall"]["success_rate"] == 1.0


def test_episodes_count_max_turns_as_failure_and_retry_env_errors():
    with EnvironmentPool(SlowText, num_workers=2, step_timeout=1.5) as pool:
        calls = []

        def agent(messages):
            calls.append(messages)
            return "Action: noop(10000)" if len(calls) == 1 else "Action: noop(0)"

        engine = RolloutEngine(agent, pool, max_turns=2, retries=1, retry_crashed=True)
        results = engine.run([("click-button", 0), ("enter-text", 0)]).episodes
    assert [r.task for r in results] == ["click-button", "enter-text"]
    assert all(not r.env_error and r.reward == 0.0 and r.num_turns == 2 for r in results)  # the timed-out one: retried
    assert results[0].actions == ["noop(wait_ms=0)", "noop(wait_ms=0)"]


def finished(task: str, seed: int, reward: float, turns: int, env_error: bool = False) -> Episode:
    """An episode of ``turns`` turns whose last one returned ``reward``."""
    last = turns - 1
    steps = [Step([], [], [], None, "", "noop()", reward if t == last else 0.0, t == last) for t in range(turns)]
    return Episode(task, seed, steps=steps, env_error=env_error)


def test_bootstrap_interval_and_scores():
    estimate, low, high = bootstrap_interval([[1, 0, 1, 0] * 10])
    assert estimate == 0.5 and 0.3 < low < 0.5 < high < 0.7
    assert bootstrap_interval([[1, 1], [0, 0]]) == (0.5, 0.5, 0.5)  # stratified: each task keeps its outcomes
    report = score([finished("a", 0, 1.0, 1), finished("a", 1, 0.0, 3), finished("b", 0, 0.0, 1, env_error=True)])
    assert report.per_task["a"].success_rate == 0.5 and report.per_task["b"].episodes == 0
    assert report.overall.env_errors == 1 and report.overall.episodes == 2


def test_model_agent_generates_in_batches(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    agent = ModelAgent(model, tokenizer, max_new_tokens=8, batch_size=2)
    observation = TextEnvironment().reset("click-button", 0)
    outputs = agent.act_batch([render_messages(observation)] * 3)
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
    assert outputs[0] == outputs[1] == outputs[2]  # greedy, left padding: the same prompt, the same answer
    report = evaluate(agent, ["click-button"], [0, 1], WebConfig(web_env="text", web_num_workers=1, web_max_turns=2))
    assert report.overall.episodes == 2  # an untrained model: invalid actions are observations, not crashes


def test_workarena_check_names_what_is_missing(monkeypatch):
    from sec_rl.web.workarena import WorkArenaUnavailableError, check_workarena, missing_workarena_config

    monkeypatch.delenv("SNOW_INSTANCE_PWD", raising=False)
    monkeypatch.setenv("SNOW_INSTANCE_URL", "https://dev1.service-now.com")
    monkeypatch.setenv("SNOW_INSTANCE_UNAME", "admin")
    assert missing_workarena_config() == ["SNOW_INSTANCE_PWD"]
    with pytest.raises(WorkArenaUnavailableError, match="set SNOW_INSTANCE_PWD"):
        check_workarena()


def test_browsergym_warns_of_every_override_but_slow_mo(caplog):
    """sec-rl sets slow_mo=0 on purpose; BrowserGym's warning about it is dropped, any other override still shows."""
    import logging

    import sec_rl.web.env  # noqa: F401  (installs the filter)

    browsergym_log = logging.getLogger("browsergym.core.env")
    with caplog.at_level(logging.WARNING):
        browsergym_log.warning("Overriding the task's slow_mo parameter (100 => 0). This might change the task's ...")
        browsergym_log.warning("Overriding the task's viewport parameter ({...} => {...}). This might change ...")
    assert [record.getMessage()[:40] for record in caplog.records] == ["Overriding the task's viewport parameter"]
