"""Episodes with their conversation (both layouts of the episode loop) and resumable collection (sec-rl collect)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers.runs import pythonpath_with_tests
from helpers.text_world import TextTeacher, solve, words

from sec_rl.pipeline.collect import CollectConfig, collect_traces, default_tasks, make_teacher
from sec_rl.pipeline.traces import Trace, TraceWriter, read_traces, shard_paths, traces_to_dataset
from sec_rl.web.config import WebConfig
from sec_rl.web.env import TextEnvironment
from sec_rl.web.evaluate import evaluate
from sec_rl.web.observation import PromptConfig, render_messages, render_observation
from sec_rl.web.pool import EnvironmentPool
from sec_rl.web.rollout import RolloutEngine
from sec_rl.web.tasks import train_goals

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "collect_run.py"

TEXT_GOALS = [(task, seed) for task in TextEnvironment.TASKS for seed in (3, 4)]


def text_world(**settings) -> WebConfig:
    """Web settings on the text world, collecting in the episode layout (collect_traces' default)."""
    return WebConfig(web_env="text", **{"web_layout": "episode", **settings})


def run_episodes(agent, goals, pool, on_episode=None, **options):
    """Episodes as evaluation and collection run them: an environment error restarts the episode."""
    return RolloutEngine(agent, pool, retry_crashed=True, **options).run(goals, on_episode).episodes


def replay(task: str, seed: int, replies: list[str]) -> list:
    """The observations an episode went through, replayed in a local environment (it is deterministic)."""
    env = TextEnvironment()
    observations = [env.reset(task, seed)]
    for reply in replies[:-1]:
        observations.append(env.step(reply).observation)
    return observations


# -- the episode loop for chat agents: layouts, messages, tokens, streaming ---------------------------------
def test_episode_layout_messages_alternate_exactly_as_the_rollout_engine_builds_them():
    prompt = PromptConfig(max_page_chars=500)
    teacher = TextTeacher()
    streamed = []
    with EnvironmentPool(TextEnvironment, num_workers=2) as pool:
        results = run_episodes(
            teacher, TEXT_GOALS, pool, max_turns=6, prompt=prompt, layout="episode", on_episode=streamed.append
        )
    assert [(r.task, r.seed) for r in results] == TEXT_GOALS and all(r.success for r in results)
    assert sorted(id(r) for r in streamed) == sorted(id(r) for r in results)  # each result streamed once
    assert any(r.num_turns > 1 for r in results)
    for result in results:
        messages = result.messages
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        observations = replay(result.task, result.seed, replies)
        expected = render_messages(observations[0], (), prompt)
        for k, reply in enumerate(replies):
            expected.append({"role": "assistant", "content": reply})
            if k + 1 < len(replies):
                expected.append({"role": "user", "content": render_observation(observations[k + 1], (), prompt)})
        assert messages == expected
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * result.num_turns
        assert len(replies) == result.num_turns == len(result.actions)
        # Tokens: the sum over turns of what the teacher reported (words of the context, words of the reply).
        contexts = [messages[: 2 * k + 2] for k in range(result.num_turns)]
        assert result.prompt_tokens == sum(words(c) for c in contexts)
        assert result.completion_tokens == sum(len(r.split()) for r in replies)


def test_per_step_layout_keeps_the_last_prompt_and_plain_agents_report_no_tokens():
    prompt = PromptConfig()
    with EnvironmentPool(TextEnvironment, num_workers=1) as pool:
        results = run_episodes(TextTeacher(), [("enter-text", 3)], pool, max_turns=6, prompt=prompt)
        plain = run_episodes(lambda m: solve(m[-1]["content"]), [("enter-text", 3)], pool, max_turns=6)
    (result,) = results
    assert result.success and result.num_turns == 2
    first = replay("enter-text", 3, [""])[0]
    first_prompt = render_messages(first, (), prompt)
    replies = [solve(first_prompt[1]["content"]), result.messages[-1]["content"]]
    last = replay("enter-text", 3, replies)[-1]
    assert result.messages == [
        *render_messages(last, result.actions[:-1], prompt),
        {"role": "assistant", "content": replies[1]},
    ]
    assert "# Previous actions" in result.messages[1]["content"]  # per_step prompts list the earlier actions
    assert result.prompt_tokens == words(first_prompt) + words(result.messages[:2])
    assert result.completion_tokens == sum(len(r.split()) for r in replies)
    assert plain[0].success and plain[0].prompt_tokens == plain[0].completion_tokens == 0
    assert plain[0].messages[:-1] == result.messages[:-1]


def test_per_step_traces_train_on_every_turn_as_it_was_prompted(tmp_path):
    prompt = PromptConfig()
    out = tmp_path / "traces"
    collect_traces(TextTeacher(), [("enter-text", 3)], out, text_world(web_layout="per_step"), progress=False)
    (trace,) = read_traces(out)
    rows = traces_to_dataset([trace])["messages"]
    assert trace.num_steps == len(rows) == 2
    replies = [row[-1]["content"] for row in rows]
    observations = replay("enter-text", 3, replies)
    histories = [(), (replies[0].split("Action: ")[1],)]  # the teacher writes actions in canonical form
    assert rows == [
        [*render_messages(observation, history, prompt), {"role": "assistant", "content": reply}]
        for observation, history, reply in zip(observations, histories, replies, strict=True)
    ]
    assert "# Previous actions" not in rows[0][1]["content"] and "# Previous actions" in rows[1][1]["content"]


def test_evaluate_passes_layout_and_on_episode():
    seen = []
    report = evaluate(
        TextTeacher(),
        ["click-checkboxes"],
        [3, 4],
        text_world(web_num_workers=1, web_max_turns=6),
        on_episode=seen.append,
    )
    assert report.overall.success_rate == 1.0 and len(seen) == 2
    assert all(e.messages[-1]["role"] == "assistant" and e.messages[0]["role"] == "system" for e in seen)
    assert "messages" not in report.to_dict()["episodes"][0]  # reports stay small
    with pytest.raises(ValueError, match="layout"), EnvironmentPool(TextEnvironment, num_workers=1) as pool:
        run_episodes(TextTeacher(), [("click-button", 3)], pool, layout="tree")


# -- collection ----------------------------------------------------------------------------------------
def test_collect_writes_one_trace_per_goal_and_resumes_without_repeating(tmp_path):
    goals = train_goals(2, TextEnvironment.TASKS)  # a goals dataset: seeds 3 and 4
    out = tmp_path / "traces"
    teacher = TextTeacher()
    summary = collect_traces(teacher, goals, out, text_world(web_num_workers=2, web_max_turns=6), progress=False)
    traces = read_traces(out)
    assert sorted(t.id for t in traces) == sorted(f"{t}/{s}" for t, s in zip(goals["task"], goals["seed"]))
    assert all(t.success and t.teacher == "text-expert" and t.layout == "episode" for t in traces)
    assert (summary.goals, summary.done_before, summary.collected, summary.successes) == (6, 0, 6, 6)
    assert summary.env_errors == 0 and summary.remaining == 0 and summary.success_rate == 1.0
    assert summary.prompt_tokens == sum(t.prompt_tokens for t in traces) > 0
    assert summary.completion_tokens == sum(t.completion_tokens for t in traces) > 0
    assert summary.shards == [str(p) for p in shard_paths(out)] and "6 collected now" in str(summary)

    calls = teacher.calls
    again = collect_traces(teacher, goals, out, text_world(), progress=False)
    assert (again.done_before, again.collected) == (6, 0) and teacher.calls == calls and again.shards == []
    # More seeds: only the new goals run.
    more = collect_traces(teacher, train_goals(3, TextEnvironment.TASKS), out, text_world(), progress=False)
    assert (more.done_before, more.collected) == (6, 3)
    assert sorted(t.seed for t in read_traces(out)) == [3, 3, 3, 4, 4, 4, 5, 5, 5]


def test_env_error_rows_and_malformed_rows_are_redone(tmp_path, caplog):
    out = tmp_path / "traces"
    with TraceWriter(out, teacher="text-expert") as writer:
        writer.write(Trace("click-button/3", "click-button", 3, [], 0.0, False, 0, "text-expert", env_error=True))
        writer.write(
            Trace("click-button/4", "click-button", 4, [{"role": "user", "content": "x"}], 1.0, True, 1, "text-expert")
        )
    with open(shard_paths(out)[0], "a") as shard:
        shard.write("{broken\n")
    with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.traces"):
        summary = collect_traces(
            TextTeacher(), [("click-button", 3), ("click-button", 4)], out, text_world(), progress=False
        )
    assert "skipped 1 malformed trace row(s)" in caplog.text
    assert (summary.done_before, summary.collected, summary.successes) == (1, 1, 1)
    valid = [t for t in read_traces(out, on_error="skip") if not t.env_error]
    assert sorted(t.id for t in valid) == ["click-button/3", "click-button/4"]


def test_collect_refuses_mixed_folders_and_bad_goals(tmp_path):
    out = tmp_path / "traces"
    collect_traces(TextTeacher(), [("click-button", 3)], out, text_world(), progress=False)
    with pytest.raises(ValueError, match="already holds 1 trace"):
        collect_traces(TextTeacher(), [("click-button", 4)], out, text_world(), resume=False)
    with pytest.raises(ValueError, match=r"layout \['episode'\].*'per_step'"):
        collect_traces(TextTeacher(), [("click-button", 4)], out, text_world(web_layout="per_step"))
    with pytest.raises(ValueError, match="a goal is a \\(task, seed\\) pair"):
        collect_traces(TextTeacher(), ["click-button"], tmp_path / "other", text_world())
    from datasets import Dataset

    with pytest.raises(ValueError, match="columns 'task' and 'seed'"):
        collect_traces(TextTeacher(), Dataset.from_dict({"task": ["a"]}), tmp_path / "other")


@pytest.mark.slow
def test_collection_killed_then_resumed_loses_and_repeats_nothing(tmp_path, caplog):
    out = tmp_path / "traces"
    seeds = 10
    goals = [(task, seed) for task in TextEnvironment.TASKS for seed in range(3, 3 + seeds)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), pythonpath_with_tests()]))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), "--seeds", str(seeds), "--delay", "0.4", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    rows = 0
    try:
        while time.monotonic() < deadline and process.poll() is None:
            rows = sum(len(p.read_text().splitlines()) for p in shard_paths(out))
            if rows >= 4:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the collection ended before it could be killed:\n{process.stdout.read()}"
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    # The pool's workers die with the process that started them.
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive

    before = read_traces(out)
    assert 4 <= len(before) < len(goals), "kill it mid-way: some episodes written, some not"
    assert len({t.id for t in before}) == len(before)
    # A crash in the middle of a write leaves a partial row at the end of its shard: simulate one.
    missing = next(g for g in goals if f"{g[0]}/{g[1]}" not in {t.id for t in before})
    partial = Trace(f"{missing[0]}/{missing[1]}", missing[0], missing[1], [], 0.0, False, 0, "text-expert").to_json()
    with open(shard_paths(out)[-1], "a") as shard:
        shard.write(partial[:40])

    with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.traces"):
        summary = collect_traces(TextTeacher(), goals, out, text_world(web_num_workers=2), progress=False)
    assert "1 truncated last line(s)" in caplog.text
    assert summary.done_before == len(before) and summary.collected == len(goals) - len(before)
    after = read_traces(out)  # the truncated line is reported again, and still not counted
    ids = [t.id for t in after]
    assert sorted(ids) == sorted(f"{task}/{seed}" for task, seed in goals)  # every goal exactly once
    assert all(t.success for t in after)
    assert len(shard_paths(out)) == 2  # the killed run's shard, untouched, and the resumed run's


# -- the command line ----------------------------------------------------------------------------------
def test_sec_rl_collect_help(capsys):
    from sec_rl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["collect", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: sec-rl collect" in text and "Rerunning the same command resumes" in text
    for option in ("--teacher", "--teacher_model", "--seeds", "--web_layout", "--resume", "--push_to_hub", "--tasks"):
        assert option in text
    assert "N seeds from seed 3" in text
    main([])
    assert "collect" in capsys.readouterr().out


def test_collect_config_from_flags_and_yaml(tmp_path):
    from trl import TrlParser

    parser = TrlParser(CollectConfig)
    (config,) = parser.parse_args_and_config(["--seeds", "5", "--env", "text", "--layout", "per_step"])
    assert config.seed_list() == [3, 4, 5, 6, 7] and config.web_layout == "per_step"
    assert default_tasks(config) == list(TextEnvironment.TASKS)
    (config,) = parser.parse_args_and_config(["--seeds", "3", "9", "12-14"])
    assert config.seed_list() == [3, 9, 12, 13, 14]
    yaml_file = tmp_path / "collect.yaml"
    yaml_file.write_text(
        "teacher: openai\nteacher_model: served\nseeds: 20\ntasks: [click-test, enter-text]\nweb_num_workers: 8\n"
    )
    (config,) = parser.parse_args_and_config(["--config", str(yaml_file), "--web_num_workers", "2"])
    assert config.seed_list() == list(range(3, 23)) and config.tasks == ["click-test", "enter-text"]
    assert (config.teacher, config.teacher_model, config.web_num_workers) == ("openai", "served", 2)
    assert default_tasks(config) == ["click-test", "enter-text"]
    assert config.prompt_config().max_page_chars == 8000

    with pytest.raises(ValueError, match="needs --teacher_model"):
        CollectConfig(teacher="openai")
    with pytest.raises(ValueError, match="teacher must be one of"):
        CollectConfig(teacher="human")
    with pytest.raises(ValueError, match="--seeds 'x'"):
        CollectConfig(seeds=["3", "x"])
    with pytest.raises(ValueError, match="hub_dataset_id"):
        CollectConfig(push_to_hub=True)
    with pytest.raises(ValueError, match="--web_max_page_tokens counts the page in the student's tokens"):
        CollectConfig(web_max_page_tokens=500)


def test_collect_config_keeps_the_old_option_names_working(caplog, tmp_path):
    from trl import TrlParser

    yaml_file = tmp_path / "collect.yaml"
    yaml_file.write_text("max_steps: 4\nlayout: per_step\n")
    argv = ["--config", str(yaml_file), "--num_workers", "2", "--env", "text", "--history", "0"]
    with caplog.at_level(logging.WARNING, logger="sec_rl.web.config"):
        (config,) = TrlParser(CollectConfig).parse_args_and_config(argv)
    assert (config.web_max_turns, config.web_layout, config.web_num_workers) == (4, "per_step", 2)
    assert (config.web_env, config.web_history, config.max_steps, config.layout) == ("text", 0, None, None)
    assert "--max_steps is deprecated: use --web_max_turns (same meaning)." in caplog.text
    assert CollectConfig().web_layout == "episode"  # a trace is one SFT sample per episode


def test_collect_main_reports_bad_options(capsys, tmp_path):
    from sec_rl.pipeline.collect import collect_main

    assert collect_main(["--teacher", "transformers"]) == 2
    assert "needs --teacher_model" in capsys.readouterr().err
    assert collect_main(["--env", "text", "--seeds", "0", "1", "--output_dir", str(tmp_path)]) == 2
    assert "held-out goals" in capsys.readouterr().err
    assert collect_main(["--seeds", "two"]) == 2
    assert "--seeds 'two'" in capsys.readouterr().err
    with TraceWriter(tmp_path, teacher="scripted-expert", layout="per_step") as writer:
        writer.write(
            Trace("click-button/3", "click-button", 3, [], 0.0, False, 0, "scripted-expert", layout="per_step")
        )
    assert collect_main(["--env", "text", "--seeds", "1", "--output_dir", str(tmp_path), "--no_progress"]) == 2
    assert "holds traces in layout ['per_step']" in capsys.readouterr().err


def test_make_teacher_builds_the_configured_openai_teacher(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    config = CollectConfig(
        teacher="openai",
        teacher_model="served",
        teacher_base_url="http://127.0.0.1:9/v1",
        teacher_api_key_env="MY_KEY",
        teacher_concurrency=3,
        teacher_temperature=0.5,
        teacher_max_tokens=64,
    )
    with make_teacher(config) as teacher:  # nothing is contacted before the first request
        assert type(teacher).__name__ == "OpenAITeacher" and teacher.name == "served"
        assert (teacher.base_url, teacher.api_key, teacher.concurrency) == ("http://127.0.0.1:9/v1", "sk-test", 3)
        assert (teacher.temperature, teacher.max_tokens) == (0.5, 64)


def test_collect_main_end_to_end_with_a_local_model_teacher(tiny_model_dir, tmp_path, capsys):
    from sec_rl.pipeline.collect import collect_main

    out = tmp_path / "traces"
    argv = ["--teacher", "transformers", "--teacher_model", tiny_model_dir, "--teacher_max_tokens", "8"]
    argv += ["--env", "text", "--tasks", "click-button", "--seeds", "2", "--num_workers", "1", "--max_steps", "2"]
    argv += ["--output_dir", str(out), "--no_progress"]
    assert collect_main(argv) == 0
    assert "2 goals: 0 done before, 2 collected now" in capsys.readouterr().out
    traces = read_traces(out)
    assert sorted(t.id for t in traces) == ["click-button/3", "click-button/4"]
    assert all(t.teacher == tiny_model_dir and t.prompt_tokens > 0 and t.completion_tokens > 0 for t in traces)
    assert all(t.completion_tokens <= 8 * t.num_steps for t in traces)
    assert collect_main(argv) == 0  # resumed: nothing left to do
    assert "2 done before, 0 collected now" in capsys.readouterr().out


@pytest.mark.browser
def test_sec_rl_collect_with_the_scripted_expert_in_chromium(tmp_path, capsys):
    from helpers.runs import browser_missing

    if reason := browser_missing():
        pytest.skip(reason)
    from sec_rl.cli import main

    out = tmp_path / "traces"
    argv = ["collect", "--teacher", "scripted", "--tasks", "click-test", "enter-text", "--seeds", "1"]
    assert main([*argv, "--num_workers", "1", "--output_dir", str(out), "--no_progress"]) == 0
    traces = read_traces(out)
    assert sorted(t.id for t in traces) == ["click-test/3", "enter-text/3"]
    assert all(t.success and t.teacher == "scripted-expert" and t.layout == "episode" for t in traces)
    assert all(t.messages[-1]["role"] == "assistant" and "Action:" in t.messages[-1]["content"] for t in traces)
    assert "2 collected now" in capsys.readouterr().out


def test_collect_row_files_are_json_lines(tmp_path):
    out = tmp_path / "traces"
    collect_traces(TextTeacher(), [("click-button", 3)], out, text_world(), progress=False)
    (line,) = shard_paths(out)[0].read_text().splitlines()
    row = json.loads(line)
    assert row["id"] == "click-button/3" and row["messages"][-1]["role"] == "assistant" and row["success"] is True


BABBLE = "I think I should click something, maybe the first thing?"


class BabblingTeacher(TextTeacher):
    """Answers its first turn of every episode with text that holds no action, then solves the task."""

    name = "babbler"

    def generate(self, conversations):
        replies = super().generate(conversations)
        for messages, reply in zip(conversations, replies):
            if sum(m["role"] == "assistant" for m in messages) == 0:
                reply.text = BABBLE
        return replies


def test_an_unparseable_teacher_action_is_a_failed_step_in_the_trace_not_a_crash(tmp_path):
    goals = [("click-button", 3), ("enter-text", 3)]
    summary = collect_traces(
        BabblingTeacher(), goals, tmp_path, text_world(web_num_workers=1, web_max_turns=4), progress=False
    )
    assert summary.collected == 2 and summary.env_errors == 0
    for trace in read_traces(tmp_path):
        first_reply, second_user = trace.messages[2], trace.messages[3]
        assert first_reply == {"role": "assistant", "content": BABBLE}
        assert "# Error from your last action" in second_user["content"]  # the agent is told what went wrong
        assert trace.num_steps >= 2 and trace.success  # the episode went on after the invalid step


def test_scripted_collection_on_the_text_world_uses_its_own_expert(tmp_path):
    from sec_rl.pipeline.collect import collect_main
    from sec_rl.pipeline.traces import read_traces

    argv = ["--env", "text", "--seeds", "2", "--web_num_workers", "2", "--output_dir", str(tmp_path)]
    assert collect_main(argv) == 0
    traces = read_traces(tmp_path)
    assert sorted((t.task, t.seed) for t in traces) == [
        (task, s) for task in sorted(TextEnvironment.TASKS) for s in (3, 4)
    ]
    assert all(t.success for t in traces) and {t.teacher for t in traces} == {"scripted-text-world"}
