"""Trace rows, sharded trace files and trace datasets (sec_rl.pipeline.traces)."""

from __future__ import annotations

import json
import logging
import os

import pytest

from sec_rl.pipeline import traces as traces_module
from sec_rl.pipeline.stages import WebSFTArguments, load_sft_dataset
from sec_rl.pipeline.traces import (
    DATASET_COLUMNS,
    SCHEMA_VERSION,
    Trace,
    TraceFormatError,
    TraceWriter,
    push_traces_to_hub,
    read_traces,
    shard_paths,
    traces_to_dataset,
)
from sec_rl.web.rollout import Episode, Step


def make_trace(task: str = "click-button", seed: int = 3, success: bool = True, **overrides) -> Trace:
    messages = [
        {"role": "system", "content": "You are a web agent."},
        {"role": "user", "content": f"# Goal\n{task} {seed}"},
        {"role": "assistant", "content": "Thought: go.\nAction: click('12')"},
    ]
    fields = {
        "id": f"{task}/{seed}",
        "task": task,
        "seed": seed,
        "messages": messages,
        "reward": 1.0 if success else 0.0,
        "success": success,
        "num_steps": 1,
        "teacher": "expert",
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "layout": "episode",
    }
    fields.update(overrides)
    return Trace(**fields)


def write_lines(path, lines: list[str], end: str = "\n") -> None:
    path.write_text("\n".join(lines) + end, encoding="utf-8")


# -- the row schema ----------------------------------------------------------------------------------
def test_trace_round_trip_and_row_format():
    trace = make_trace(error="", env_error=False)
    line = trace.to_json()
    assert "\n" not in line
    row = json.loads(line)
    assert set(row) == {
        "id",
        "task",
        "seed",
        "messages",
        "reward",
        "success",
        "num_steps",
        "teacher",
        "prompt_tokens",
        "completion_tokens",
        "env_error",
        "error",
        "layout",
        "turns",
        "schema_version",
    }
    assert row["schema_version"] == SCHEMA_VERSION and row["id"] == "click-button/3"
    assert Trace.from_json(line) == trace
    assert Trace.from_dict(row | {"added_by_a_newer_writer": 1}) == trace  # extra fields are tolerated
    unicode = make_trace(messages=[{"role": "user", "content": 'é ✓ \n "quoted"'}])
    assert Trace.from_json(unicode.to_json()) == unicode


def test_trace_from_episode():
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    steps = [
        Step(prompt, [], [], None, "fill('3', 'a')", "fill('3', 'a')", 0.0, False, prompt_tokens=14),
        Step(prompt, [], [], None, "click('4')", "click('4')", 1.0, True, prompt_tokens=16, completion_tokens=9),
    ]
    episode = Episode("enter-text", 7, steps=steps)
    trace = Trace.from_episode(episode, teacher="t", layout="per_step")
    assert (trace.id, trace.success, trace.num_steps, trace.layout) == ("enter-text/7", True, 2, "per_step")
    assert (trace.prompt_tokens, trace.completion_tokens, trace.teacher) == (30, 9, "t")
    # per_step: every turn's prompt and reply, each an SFT row; `messages` is the last turn.
    reply = [{"role": "assistant", "content": "fill('3', 'a')"}], [{"role": "assistant", "content": "click('4')"}]
    assert trace.turns == [prompt + reply[0], prompt + reply[1]] and trace.messages == trace.turns[-1]
    assert trace.conversations() == trace.turns and Trace.from_json(trace.to_json()) == trace
    whole = Trace.from_episode(episode, teacher="t", layout="episode")
    assert whole.turns == [] and whole.conversations() == [whole.messages]
    failed = Trace.from_episode(
        Episode("enter-text", 8, env_error=True, error="worker died"), teacher="t", layout="episode"
    )
    assert not failed.success and failed.env_error and failed.error == "worker died"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "messages"}, "missing field(s) 'messages'"),
        ({"drop": "teacher"}, "missing field(s) 'teacher'"),
        ({"seed": "3"}, "field 'seed' must be an integer"),
        ({"success": 1}, "field 'success' must be true or false"),
        ({"reward": "high"}, "field 'reward' must be a finite number"),
        ({"num_steps": -1}, "field 'num_steps' must be a non-negative integer"),
        ({"layout": "tree"}, "field 'layout' must be one of"),
        ({"id": "click-button/4"}, "task and seed make 'click-button/3'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "'messages'[0] has role 'robot'"),
        ({"messages": [{"role": "user"}]}, "'messages'[0] must be an object with a string 'content'"),
        ({"schema_version": SCHEMA_VERSION + 1}, "upgrade sec-rl"),
        ({"drop": "turns"}, "missing field(s) 'turns'"),  # optional in schema 1 rows only
        ({"turns": [[{"role": "tool", "content": "x"}]]}, "'turns'[0][0] has role 'tool'"),
        ({"layout": "per_step"}, "'turns' holds 0 turn(s) but 'num_steps' is 1"),
    ],
)
def test_trace_validation_names_the_bad_field(change, message):
    row = make_trace().to_dict()
    if "drop" in change:
        del row[change["drop"]]
    else:
        row.update(change)
    with pytest.raises(TraceFormatError) as error:
        Trace.from_dict(row)
    assert message in str(error.value)
    with pytest.raises(TraceFormatError, match="not valid JSON"):
        Trace.from_json('{"id": ')


# -- writing -------------------------------------------------------------------------------------------
def test_writer_shards_fsyncs_every_row_and_never_reopens_a_shard(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(traces_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    directory = tmp_path / "traces"
    writer = TraceWriter(directory, shard_size=2, teacher="expert", layout="episode")
    for seed in range(5):
        writer.write(make_trace(seed=seed))
        # Durable and visible to another reader while the writer is still open.
        assert [t.seed for t in read_traces(directory)] == list(range(seed + 1))
    writer.close()
    assert len(synced) == 5 + 3  # one per row, one per new shard's directory entry
    names = [p.name for p in shard_paths(directory)]
    assert names == ["traces-00000.jsonl", "traces-00001.jsonl", "traces-00002.jsonl"]
    assert [len(p.read_text().splitlines()) for p in shard_paths(directory)] == [2, 2, 1]
    before = {p.name: p.read_bytes() for p in shard_paths(directory)}

    # A second session starts a new shard; the old ones stay byte for byte.
    step = Step([{"role": "user", "content": "u"}], [], [], None, "", None, 0.0, False)
    episode = Episode("enter-text", 9, steps=[step])
    with TraceWriter(directory, shard_size=2, teacher="expert", layout="per_step") as second:
        written = second.write(episode)
    assert written.layout == "per_step" and written.teacher == "expert" and written.id == "enter-text/9"
    assert [p.name for p in second.paths] == ["traces-00003.jsonl"]
    assert {p.name: p.read_bytes() for p in shard_paths(directory) if p.name in before} == before
    assert [t.id for t in read_traces(directory)][-1] == "enter-text/9"
    with pytest.raises(RuntimeError, match="closed"):
        second.write(make_trace())


def test_writer_refuses_bad_arguments_and_bad_traces(tmp_path):
    with pytest.raises(ValueError, match="shard_size"):
        TraceWriter(tmp_path, shard_size=0)
    with pytest.raises(ValueError, match="layout"):
        TraceWriter(tmp_path, layout="tree")
    with TraceWriter(tmp_path) as writer, pytest.raises(TraceFormatError, match="'id'"):
        writer.write(make_trace(id="wrong/1"))
    assert all(p.read_text() == "" for p in shard_paths(tmp_path))  # nothing half-written


# -- reading -------------------------------------------------------------------------------------------
def test_read_traces_malformed_rows_raise_or_skip_with_file_and_line(tmp_path, caplog):
    shard = tmp_path / "traces-00000.jsonl"
    missing = make_trace(seed=5).to_dict()
    del missing["reward"]
    write_lines(shard, [make_trace(seed=3).to_json(), "{not json", json.dumps(missing), make_trace(seed=6).to_json()])

    with pytest.raises(TraceFormatError) as error:
        read_traces(tmp_path)
    assert f"{shard}:2" in str(error.value) and "not valid JSON" in str(error.value)
    assert "on_error='skip'" in str(error.value)

    # The missing field is reported by its own line once the bad JSON is gone.
    lines = shard.read_text().splitlines()
    write_lines(tmp_path / "traces-00001.jsonl", [lines[2]])
    with pytest.raises(TraceFormatError, match=r"traces-00001\.jsonl:1: missing field\(s\) 'reward'"):
        read_traces(tmp_path / "traces-00001.jsonl")
    (tmp_path / "traces-00001.jsonl").unlink()

    with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.traces"):
        kept = read_traces(tmp_path, on_error="skip")
    assert [t.seed for t in kept] == [3, 6]
    text = caplog.text
    assert "skipped 2 malformed trace row(s)" in text
    assert f"{shard}:2" in text and f"{shard}:3" in text and "'reward'" in text

    with pytest.raises(ValueError, match="on_error"):
        read_traces(tmp_path, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="no trace file or folder"):
        read_traces(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no trace shards"):
        read_traces(tmp_path / "empty")


def test_truncated_last_line_is_reported_and_not_done(tmp_path, caplog):
    shard = tmp_path / "traces-00000.jsonl"
    partial = make_trace(seed=4).to_json()[:57]
    write_lines(shard, [make_trace(seed=3).to_json(), partial], end="")  # a crash mid-write: no final newline
    for mode in ("raise", "skip"):  # not an error in either mode: the episode simply is not done
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.traces"):
            kept = read_traces(tmp_path, on_error=mode)
        assert [t.seed for t in kept] == [3]
        assert "1 truncated last line(s)" in caplog.text and f"{shard}:2 (57 characters" in caplog.text
    # A complete row that only lacks its newline is a row.
    write_lines(shard, [make_trace(seed=3).to_json(), make_trace(seed=4).to_json()], end="")
    assert [t.seed for t in read_traces(shard)] == [3, 4]
    # A bad line followed by others is no crash artefact: it is malformed.
    write_lines(shard, [partial, make_trace(seed=3).to_json()])
    with pytest.raises(TraceFormatError, match=":1: not valid JSON"):
        read_traces(shard)


# -- datasets ------------------------------------------------------------------------------------------
def test_traces_to_dataset_columns_and_filters():
    traces = [
        make_trace("click-button", 3, True),
        make_trace("click-button", 4, False),
        make_trace("enter-text", 3, True, num_steps=2, reward=1.0),
        make_trace("enter-text", 4, False, env_error=True, error="worker died"),
    ]
    dataset = traces_to_dataset(traces)
    assert tuple(dataset.column_names) == DATASET_COLUMNS
    assert dataset["task"] == ["click-button", "enter-text"] and dataset["seed"] == [3, 3]
    assert dataset["num_steps"] == [1, 2] and dataset["reward"] == [1.0, 1.0] and dataset["teacher"] == ["expert"] * 2
    assert dataset[0]["messages"] == traces[0].messages
    everything = traces_to_dataset(traces, only_successful=False)
    assert everything["seed"] == [3, 4, 3]  # failures kept, the environment error never


def test_per_step_traces_give_one_row_per_turn_and_schema_1_rows_still_read(caplog):
    def turn(k: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"page {k}"}, {"role": "assistant", "content": f"click('{k}')"}]

    per_step = make_trace("enter-text", 5, layout="per_step", num_steps=2, turns=[turn(0), turn(1)], messages=turn(1))
    dataset = traces_to_dataset([per_step, make_trace("click-button", 3)])
    assert dataset["messages"] == [make_trace().messages, turn(0), turn(1)]
    assert dataset["task"] == ["click-button", "enter-text", "enter-text"] and dataset["num_steps"] == [1, 2, 2]
    # A per_step row written before `turns` (schema 1) is read; its earlier turns are gone, and SFT says so.
    old = per_step.to_dict() | {"schema_version": 1}
    del old["turns"]
    read = Trace.from_dict(old)
    assert read.turns == [] and read.conversations() == [turn(1)]
    with caplog.at_level(logging.WARNING, logger="sec_rl.pipeline.traces"):
        assert traces_to_dataset([read])["messages"] == [turn(1)]
    assert "1 per_step trace(s) of several turns (enter-text/5) keep only their last turn" in caplog.text


def test_traces_to_dataset_does_not_depend_on_the_collection_order():
    traces = [make_trace(task, seed, True) for task in ("enter-text", "click-button") for seed in (7, 2, 5)]
    dataset = traces_to_dataset(traces)
    assert list(zip(dataset["task"], dataset["seed"], strict=True)) == [
        ("click-button", 2), ("click-button", 5), ("click-button", 7),
        ("enter-text", 2), ("enter-text", 5), ("enter-text", 7),
    ]  # fmt: skip
    assert traces_to_dataset(traces[::-1]).to_dict() == dataset.to_dict()


def test_max_traces_takes_every_task_in_turn(tmp_path):
    with TraceWriter(tmp_path / "traces", teacher="expert", layout="episode") as writer:
        for task, seeds in (("click-button", range(5)), ("enter-text", range(2)), ("focus-text", range(3))):
            for seed in seeds:
                writer.write(make_trace(task, seed))
    capped = load_sft_dataset(WebSFTArguments(traces=str(tmp_path / "traces"), max_traces=6))
    # two rows of each task, not the first six (click-button's five and enter-text's first)
    assert list(zip(capped["task"], capped["seed"], strict=True)) == [
        ("click-button", 0), ("click-button", 1), ("enter-text", 0), ("enter-text", 1),
        ("focus-text", 0), ("focus-text", 1),
    ]  # fmt: skip
    seven = load_sft_dataset(WebSFTArguments(traces=str(tmp_path / "traces"), max_traces=7))
    assert seven["task"].count("click-button") == 3 and seven["task"].count("focus-text") == 2
    assert len(load_sft_dataset(WebSFTArguments(traces=str(tmp_path / "traces"), max_traces=50))) == 10
    with pytest.raises(ValueError, match="--max_traces 0: give a positive number"):
        load_sft_dataset(WebSFTArguments(traces=str(tmp_path / "traces"), max_traces=0))


def test_no_successful_trace_is_a_clear_error():
    traces = [
        make_trace(seed=3, success=False, teacher="llama-70b"),
        make_trace(seed=4, success=False, teacher="llama-70b"),
        make_trace(seed=5, success=False, teacher="llama-70b", env_error=True, error="TimeoutError: no answer\nx"),
    ]
    with pytest.raises(ValueError) as error:
        traces_to_dataset(traces)
    message = str(error.value)
    assert "no successful trace among 3 episode(s) (1 environment error(s))" in message
    assert "'llama-70b' (3)" in message and "max_steps" in message and "TimeoutError: no answer" in message
    with pytest.raises(ValueError, match="among 0 episode"):
        traces_to_dataset([])


def test_push_traces_to_hub_passes_the_dataset(monkeypatch):
    # The Hub cannot be reached here: Dataset.push_to_hub is replaced by a recorder.
    from datasets import Dataset

    calls = []
    monkeypatch.setattr(Dataset, "push_to_hub", lambda self, repo, **kw: calls.append((self, repo, kw)) or "url")
    dataset = traces_to_dataset([make_trace(seed=3), make_trace(seed=4, success=False)])
    assert push_traces_to_hub(dataset, "me/traces", private=True, token="hf_x") == "url"
    pushed, repo, kwargs = calls[-1]
    assert repo == "me/traces" and kwargs == {"private": True, "token": "hf_x"} and pushed["seed"] == [3]
    push_traces_to_hub([make_trace(seed=3), make_trace(seed=4, success=False)], "me/traces")
    assert calls[-1][0]["seed"] == [3]  # traces are converted (successful only)
    with pytest.raises(ValueError, match="owner/name"):
        push_traces_to_hub(dataset, "traces")
