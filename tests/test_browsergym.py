"""BrowserGym MiniWoB++ in a real Chromium: scripted episodes, errors, browser reuse, crash recovery.

Tests marked ``browser`` need Chromium, ``browsergym-miniwob`` and ``miniwob``; they are skipped with
the reason when something is missing. The discovery tests at the top need none of it.
"""

from __future__ import annotations

import functools
import os
import re
import stat

import psutil
import pytest
from helpers.runs import browser_missing

from sec_rl.web import EnvironmentPool, UnknownTaskError, render_messages
from sec_rl.web import browser as browser_module
from sec_rl.web.browser import ChromiumNotFoundError, find_chromium, miniwob_url, playwright_chromium
from sec_rl.web.config import WebConfig
from sec_rl.web.env import BrowserGymEnvironment
from sec_rl.web.evaluate import evaluate

MISSING = browser_missing()
needs_browser = pytest.mark.skipif(MISSING is not None, reason=f"needs Chromium and BrowserGym: {MISSING}")


# -- finding Chromium (no browser needed) -----------------------------------------------------------
def _fake_binary(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_env_var_names_the_chromium(monkeypatch, tmp_path):
    binary = _fake_binary(tmp_path / "my-chrome")
    monkeypatch.setenv("SEC_RL_CHROMIUM", binary)
    assert find_chromium().executable == binary and find_chromium().source == "env"
    monkeypatch.setenv("SEC_RL_CHROMIUM", str(tmp_path / "nope"))
    with pytest.raises(ChromiumNotFoundError, match="SEC_RL_CHROMIUM.*apt-get install -y chromium"):
        find_chromium()


def test_playwright_own_chromium_is_preferred(monkeypatch, tmp_path):
    pytest.importorskip("playwright")
    monkeypatch.delenv("SEC_RL_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    assert playwright_chromium() is None
    import json
    from pathlib import Path

    import playwright

    browsers = json.loads((Path(playwright.__file__).parent / "driver/package/browsers.json").read_text())
    revision = next(b["revision"] for b in browsers["browsers"] if b["name"] == "chromium")
    _fake_binary(tmp_path / f"chromium-{revision}" / "chrome-linux" / "chrome")
    assert playwright_chromium() is not None
    found = find_chromium()
    assert found.executable is None and found.source == "playwright"  # Playwright launches its own


def test_no_chromium_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("SEC_RL_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    monkeypatch.setattr(browser_module, "SYSTEM_CANDIDATES", ("/nonexistent/chromium", "no-such-chromium-cmd"))
    with pytest.raises(ChromiumNotFoundError, match="apt-get install -y chromium.*playwright install chromium"):
        find_chromium()


def test_miniwob_url_points_at_the_packaged_pages(monkeypatch):
    pytest.importorskip("miniwob")
    monkeypatch.delenv("MINIWOB_URL", raising=False)
    url = miniwob_url()
    assert url.startswith("file://") and url.endswith("/miniwob/html/miniwob/")
    monkeypatch.setenv("MINIWOB_URL", "http://localhost:8000/miniwob/")
    assert miniwob_url() == "http://localhost:8000/miniwob/"


def test_bad_task_id_lists_close_matches():
    pytest.importorskip("browsergym.miniwob")
    env = BrowserGymEnvironment()
    with pytest.raises(UnknownTaskError, match="Did you mean 'click-test'"):
        env.reset("click-tset", 0)
    with pytest.raises(UnknownTaskError, match="'miniwob.click-button'"):
        env.reset("miniwob.click-buton", 0)
    env.close()


# -- a scripted MiniWoB policy that reads the rendered accessibility tree ------------------------------
def miniwob_policy(messages: list[dict]) -> str:
    """Solves click-test, click-button and enter-text from the prompt, as a model would have to."""
    user = messages[-1]["content"]
    goal = re.search(r"# Goal\n(.*)", user).group(1)
    page = user[user.index("# Current page") :]
    quoted = re.search(r'"(.+?)"', goal)
    if goal.startswith("Enter") and quoted:
        textbox = re.search(r"\[(\w+)\] textbox '[^']*'(.*)", page)
        if f"value='{quoted.group(1)}'" not in textbox.group(2):
            return f"Thought: type the word.\nAction: fill('{textbox.group(1)}', {quoted.group(1)!r})"
        name = "Submit"
    else:
        name = quoted.group(1) if quoted else r"[^']*"
    bid = re.search(rf"\[(\w+)\] button '{name}'", page).group(1)
    return f"Thought: click it.\nAction: click('{bid}')"


def play(env, task: str, seed: int, max_steps: int = 4):
    observation, history = env.reset(task, seed), []
    for _ in range(max_steps):
        result = env.step(miniwob_policy(render_messages(observation, history)))
        observation = result.observation
        history.append(result.info["action"])
        if result.done:
            return result
    return result


@pytest.fixture(scope="module")
def env():
    environment = BrowserGymEnvironment()
    yield environment
    environment.close()


@pytest.mark.browser
@needs_browser
def test_scripted_episodes_reach_reward_one(env):
    for task, seed in [("click-test", 0), ("click-button", 1), ("enter-text", 2), ("click-button", 3)]:
        result = play(env, task, seed)
        assert result.done and result.reward == 1.0, (task, seed, result.observation.last_action_error)


@pytest.mark.browser
@needs_browser
def test_observations_do_not_depend_on_where_sec_rl_is_installed(env):
    observation = env.reset("click-test", 0)
    installed = os.environ["MINIWOB_URL"]  # set when the browser was prepared: file://<site-packages>/...
    assert installed.startswith("file://") and installed not in observation.axtree
    assert "url='file:///miniwob/click-test.html'" in observation.axtree
    assert observation.url == "file:///miniwob/click-test.html"


@pytest.mark.browser
@needs_browser
def test_action_on_missing_element_is_an_observation_error(env):
    env.reset("click-test", 0)
    result = env.step("Action: click('999')")
    assert not result.done and result.reward == 0.0
    assert 'Could not find element with bid "999"' in result.observation.last_action_error
    result = env.step("Action: click(__import__('os').getcwd())")  # never reaches the browser
    assert result.info["invalid_action"] and "literals" in result.observation.last_action_error


@pytest.mark.browser
@needs_browser
def test_reset_reuses_the_browser_and_matches_browsergyms_own_reset(env):
    env.reset("click-test", 0)
    pids, soft = env.browser_pids(), env.soft_resets
    assert len(pids) == 1  # BrowserGym's chat window is replaced by a browserless chat
    observations = {goal: env.reset(*goal) for goal in [("click-button", 5), ("enter-text", 6), ("click-test", 7)]}
    assert env.browser_pids() == pids and env.soft_resets == soft + 3
    fresh = BrowserGymEnvironment(reuse="none")  # BrowserGym's reset: new browsers every episode
    try:
        for goal, observation in observations.items():
            reference = fresh.reset(*goal)
            assert (observation.goal, observation.axtree) == (reference.goal, reference.axtree), goal
    finally:
        fresh.close()


def _chromium_under(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "chrom" in p.name().lower()]
    except psutil.Error:
        return []


@pytest.mark.browser
@needs_browser
def test_pool_survives_a_killed_browser_and_leaves_nothing_behind():
    pool = EnvironmentPool(functools.partial(BrowserGymEnvironment), num_workers=2, step_timeout=30)
    try:
        assert not any(r.env_error for r in pool.reset_many([("click-test", 0), ("click-test", 1)]))
        (browser_pid,) = pool.call(0, "browser_pids")
        browser = psutil.Process(browser_pid)
        browser.kill()
        psutil.wait_procs([browser], timeout=5)  # its parent, Playwright's driver, reaps it
        crashed, fine = pool.step_many(["Action: click('13')", "Action: click('13')"])
        assert crashed.env_error and crashed.done and "closed" in crashed.info["error"]
        assert not fine.env_error and fine.reward == 1.0
        metrics = pool.metrics()
        assert metrics["env_errors"] == 1 and metrics["worker_restarts"] == 1
        # Training goes on: the replacement worker serves the next episodes, through evaluate() too.
        tasks = ["click-test", "click-button", "enter-text"]
        report = evaluate(miniwob_policy, tasks, [0, 1], WebConfig(web_max_turns=4), pool=pool)
        assert report.overall.success_rate == 1.0 and report.overall.env_errors == 0, report.table()
        # A pooled reset does not relaunch Chromium: the browser processes stay the same.
        browser_pids = [pool.call(slot, "browser_pids") for slot in range(2)]
        pool.reset_many([("click-button", 8), ("enter-text", 9)])
        assert [pool.call(slot, "browser_pids") for slot in range(2)] == browser_pids
        browsers = [p for w in pool.worker_pids() if w for p in _chromium_under(w)]
        assert len(browsers) >= 2
    finally:
        pool.close()
    assert not [p for p in browsers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.browser
def test_workarena_episode():
    from sec_rl.web.workarena import WorkArenaUnavailableError, check_workarena, workarena_environment, workarena_tasks

    try:
        check_workarena()
    except WorkArenaUnavailableError as error:
        pytest.skip(str(error))
    env = workarena_environment()
    try:
        observation = env.reset(workarena_tasks()[0], 0)
        assert observation.goal and observation.axtree
        assert not env.step("Action: noop()").info["invalid_action"]
    finally:
        env.close()
