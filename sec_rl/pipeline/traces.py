"""Teacher traces: one JSON object per finished episode, in sharded JSON-lines files, and datasets for SFT.

A trace row holds the episode's conversation (system prompt, observations as user turns, the teacher's
thought + action as assistant turns), its outcome and what it cost::

    {"id": "click-button/3", "task": "click-button", "seed": 3, "messages": [...], "reward": 1.0,
     "success": true, "num_steps": 1, "teacher": "...", "prompt_tokens": 812, "completion_tokens": 41,
     "env_error": false, "error": "", "layout": "episode", "turns": [], "schema_version": 2}

``messages`` is the episode's last prompt and reply: the whole conversation in the ``episode`` layout. In the
``per_step`` layout every turn is prompted afresh (the page and the earlier actions), so ``messages`` holds the last
turn only and ``turns`` holds every turn's prompt and reply; :meth:`Trace.conversations` gives the SFT rows of
either layout (one per episode, or one per turn). Schema 1 rows (written before ``turns``) are still read.

Files are written so that a crash costs at most the episodes in flight: :class:`TraceWriter` appends to
``traces-00000.jsonl``, ``traces-00001.jsonl``, ... (a new shard per writer session and every ``shard_size``
rows; an existing shard is never reopened), flushing and fsync-ing after every row. A crash in the middle
of a write leaves an unterminated last line in its shard; :func:`read_traces` reports it and treats that
episode as not done, so resuming collects it again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sec_rl.web.config import LAYOUTS, Layout, check_layout

if TYPE_CHECKING:
    from datasets import Dataset

    from sec_rl.web.rollout import Episode

__all__ = [
    "SCHEMA_VERSION",
    "SHARD_PATTERN",
    "Trace",
    "TraceFormatError",
    "TraceWriter",
    "push_traces_to_hub",
    "read_traces",
    "shard_paths",
    "trace_id",
    "traces_to_dataset",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: `turns`, every turn of a per_step episode
SHARD_PATTERN = "traces-{index:05d}.jsonl"
_SHARD_RE = re.compile(r"^traces-(\d{5,})\.jsonl$")
_ROLES = ("system", "user", "assistant")
DATASET_COLUMNS = ("messages", "task", "seed", "reward", "teacher", "num_steps")


class TraceFormatError(ValueError):
    """A trace row that does not follow the schema; the message names the field (and FILE:LINE when read)."""


def trace_id(task: str, seed: int) -> str:
    """The id of a goal's trace: ``"task/seed"``."""
    return f"{task}/{int(seed)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(row: dict[str, Any], name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise TraceFormatError(f"field {name!r} must be {expected}, got {row[name]!r} ({type(row[name]).__name__}).")


@dataclass
class Trace:
    """One episode of a teacher, as stored (see the module docstring for the row format)."""

    id: str
    task: str
    seed: int
    messages: list[dict[str, str]]
    reward: float
    success: bool
    num_steps: int
    teacher: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    env_error: bool = False
    error: str = ""
    layout: Layout = "episode"
    turns: list[list[dict[str, str]]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_episode(cls, episode: Episode, *, teacher: str, layout: str) -> Trace:
        """The trace of a finished :class:`~sec_rl.web.rollout.Episode` (``turns``: every step, per_step only)."""
        turns = [_plain(step.conversation) for step in episode.steps] if layout == "per_step" else []
        return cls(
            id=trace_id(episode.task, episode.seed),
            task=str(episode.task),
            seed=int(episode.seed),
            messages=_plain(episode.messages),
            reward=float(episode.reward),
            success=bool(episode.success),
            num_steps=int(episode.num_turns),
            teacher=str(teacher),
            prompt_tokens=int(episode.prompt_tokens),
            completion_tokens=int(episode.completion_tokens),
            env_error=bool(episode.env_error),
            error=str(episode.error),
            layout=layout,  # type: ignore[arg-type]
            turns=turns,
        )

    def conversations(self) -> list[list[dict[str, str]]]:
        """The SFT rows of this episode: its conversation (``episode`` layout) or every turn's (``per_step``).

        A per_step trace of schema 1 has no ``turns``: only its last turn is there to train on."""
        return self.turns or [self.messages]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """One line of a shard (no newline); the row is validated first, so a bad trace is never written."""
        row = self.to_dict()
        Trace.validate(row)
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_dict(cls, row: Any) -> Trace:
        """A trace from a parsed row; raises :class:`TraceFormatError` naming the missing or bad field."""
        cls.validate(row)
        known = {name: row[name] for name in cls.__dataclass_fields__ if name in row}  # schema 1: no turns
        known["messages"] = _plain(row["messages"])
        known["turns"] = [_plain(turn) for turn in row.get("turns", [])]
        known["reward"] = float(row["reward"])
        return cls(**known)

    @classmethod
    def from_json(cls, line: str) -> Trace:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise TraceFormatError(f"not valid JSON ({error})") from None
        return cls.from_dict(row)

    @staticmethod
    def validate(row: Any) -> None:
        """Check a row against the schema; extra fields are allowed (newer writers may add some)."""
        if not isinstance(row, dict):
            raise TraceFormatError(f"a trace row is a JSON object, got {type(row).__name__}.")
        version = row.get("schema_version")
        if "schema_version" in row:
            _check(row, "schema_version", _is_int(version), "an integer")
        if _is_int(version) and version > SCHEMA_VERSION:
            raise TraceFormatError(
                f"field 'schema_version' is {version}, newer than this sec-rl reads ({SCHEMA_VERSION}): "
                "upgrade sec-rl."
            )
        optional = {"turns"} if version == 1 else set()  # schema 1 rows predate them
        missing = [name for name in Trace.__dataclass_fields__ if name not in row and name not in optional]
        if missing:
            raise TraceFormatError(f"missing field(s) {', '.join(map(repr, missing))}.")
        for name in ("id", "task", "teacher", "error"):
            _check(row, name, isinstance(row[name], str), "a string")
        _check(row, "seed", _is_int(row["seed"]), "an integer")
        for name in ("num_steps", "prompt_tokens", "completion_tokens"):
            _check(row, name, _is_int(row[name]) and row[name] >= 0, "a non-negative integer")
        for name in ("success", "env_error"):
            _check(row, name, isinstance(row[name], bool), "true or false")
        reward = row["reward"]
        _check(
            row,
            "reward",
            isinstance(reward, int | float) and not isinstance(reward, bool) and math.isfinite(reward),
            "a finite number",
        )
        _check(row, "layout", row["layout"] in LAYOUTS, f"one of {LAYOUTS}")
        if row["id"] != trace_id(row["task"], row["seed"]):
            raise TraceFormatError(
                f"field 'id' is {row['id']!r} but task and seed make {trace_id(row['task'], row['seed'])!r}."
            )
        _check_messages("'messages'", row["messages"])
        turns = row.get("turns", [])
        _check(row, "turns", isinstance(turns, list), "a list of message lists")
        for i, turn in enumerate(turns):
            _check_messages(f"'turns'[{i}]", turn)
        if version != 1 and row["layout"] == "per_step" and len(turns) != row["num_steps"]:
            raise TraceFormatError(
                f"field 'turns' holds {len(turns)} turn(s) but 'num_steps' is {row['num_steps']}: a per_step trace "
                "keeps every turn's prompt and reply."
            )


def _plain(messages: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages reduced to role and content (what a trace keeps)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _check_messages(where: str, messages: Any) -> None:
    """``where``: the field as an error names it, e.g. ``'turns'[2]``."""
    if not isinstance(messages, list):
        raise TraceFormatError(f"field {where} must be a list of {{role, content}} objects, got {messages!r}.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise TraceFormatError(f"field {where}[{i}] must be an object with a string 'content': {message!r}.")
        if message.get("role") not in _ROLES:
            raise TraceFormatError(f"field {where}[{i}] has role {message.get('role')!r}, not one of {_ROLES}.")


# -- writing ---------------------------------------------------------------------------------------
def shard_paths(directory: str | os.PathLike[str]) -> list[Path]:
    """The shards of a trace folder, in order (``traces-00000.jsonl``, ...)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    shards = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _SHARD_RE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(shards)]


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable too (a file fsync'd in a directory that was not can vanish)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TraceWriter:
    """Appends traces to new shards of ``directory``, durably: flush + fsync after every row.

    Each writer starts a shard after the last existing one (created exclusively: it never opens a shard
    another writer or an earlier crash left behind), and another every ``shard_size`` rows.

    Args:
        directory: the trace folder (created if missing).
        shard_size: rows per shard at most.
        teacher, layout: recorded in the trace of each :class:`~sec_rl.web.rollout.Episode` given to
            :meth:`write` (a :class:`Trace` is written as it is).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        shard_size: int = 1000,
        *,
        teacher: str = "teacher",
        layout: Layout = "episode",
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}.")
        check_layout(layout)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.teacher, self.layout = teacher, layout
        self.rows_written = 0
        self.paths: list[Path] = []  # the shards this writer created
        self._file: Any = None
        self._rows_in_shard = 0
        self._closed = False

    def write(self, item: Trace | Episode) -> Trace:
        """Append one trace (or a finished episode, converted) and make it durable before returning."""
        if self._closed:
            raise RuntimeError("the TraceWriter is closed.")
        trace = item if isinstance(item, Trace) else Trace.from_episode(item, teacher=self.teacher, layout=self.layout)
        line = trace.to_json() + "\n"
        if self._file is None or self._rows_in_shard >= self.shard_size:
            self._open_next_shard()
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._rows_in_shard += 1
        self.rows_written += 1
        return trace

    __call__ = write

    def _open_next_shard(self) -> None:
        if self._file is not None:
            self._file.close()
        existing = shard_paths(self.directory)
        index = int(_SHARD_RE.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        while True:
            path = self.directory / SHARD_PATTERN.format(index=index)
            try:
                self._file = open(path, "x", encoding="utf-8")  # noqa: SIM115 - held open across writes
                break
            except FileExistsError:  # another writer took it: go on after it
                index += 1
        _fsync_directory(self.directory)
        self.paths.append(path)
        self._rows_in_shard = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ---------------------------------------------------------------------------------------
def _files(path: str | os.PathLike[str]) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"no trace file or folder at {str(path)!r}.")
    shards = shard_paths(path)
    if not shards:
        raise FileNotFoundError(
            f"{str(path)!r} holds no trace shards (traces-*.jsonl): is it the output_dir of `sec-rl collect`?"
        )
    return shards


def read_traces(path: str | os.PathLike[str], on_error: Literal["raise", "skip"] = "raise") -> list[Trace]:
    """Every trace of a shard file or a trace folder (all its shards, in order).

    A malformed row (bad JSON, a missing or bad field) raises :class:`TraceFormatError` naming FILE:LINE and the
    problem with ``on_error="raise"``; with ``"skip"`` it is left out and a warning names every FILE:LINE skipped
    and how many. An unterminated, unparseable last line of a shard is what a crash mid-write leaves: it is
    reported (a warning) and left out in both modes, so its episode counts as not done.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
    traces: list[Trace] = []
    skipped: list[str] = []
    truncated: list[str] = []
    for file in _files(path):
        with open(file, encoding="utf-8", errors="replace", newline="") as handle:
            lines = handle.read().split("\n")
        # After the last "\n" comes "" (a complete file) or a line a crash cut short.
        tail = lines.pop()
        numbered = [(number, line, False) for number, line in enumerate(lines, start=1)]
        if tail.strip():
            numbered.append((len(lines) + 1, tail, True))
        for number, line, unterminated in numbered:
            if not line.strip():
                continue
            try:
                traces.append(Trace.from_json(line))
            except TraceFormatError as error:
                where = f"{file}:{number}"
                if unterminated:
                    truncated.append(f"{where} ({len(line)} characters, {error})")
                elif on_error == "raise":
                    raise TraceFormatError(
                        f"{where}: {error} Fix or delete that line, or read with on_error='skip'."
                    ) from None
                else:
                    skipped.append(f"{where}: {error}")
    if truncated:
        logger.warning(
            "%d truncated last line(s), left by a crash while writing, treated as not done: %s",
            len(truncated),
            "; ".join(truncated),
        )
    if skipped:
        logger.warning("skipped %d malformed trace row(s):\n  %s", len(skipped), "\n  ".join(skipped))
    return traces


# -- datasets --------------------------------------------------------------------------------------
def traces_to_dataset(traces: Iterable[Trace], only_successful: bool = True) -> Dataset:
    """The traces as an SFT dataset: columns ``messages``, ``task``, ``seed``, ``reward``, ``teacher``, ``num_steps``.

    One row per episode in the ``episode`` layout, one per turn in ``per_step`` (each turn is prompted afresh, so
    each is a sample of its own; the row keeps its episode's other columns).

    Episodes that failed because of the environment are always left out (they say nothing about the teacher);
    with ``only_successful`` the failed ones too. ``task`` serves as the curriculum's category. Rows are sorted by
    task, seed, teacher and id: parallel collection writes traces in the order episodes finish, and the SFT run on
    the dataset (its batches, a tokenizer trained on it) must not depend on that order.
    """
    from datasets import Dataset

    traces = list(traces)
    kept = [t for t in traces if not t.env_error and (t.success or not only_successful) and t.messages]
    if not kept:
        teachers = Counter(t.teacher for t in traces)
        env_errors = sum(t.env_error for t in traces)
        names = ", ".join(f"{name!r} ({n})" for name, n in teachers.most_common()) or "none"
        errors = Counter(t.error.strip().splitlines()[0] for t in traces if t.error.strip())
        common = f" Most common error: {errors.most_common(1)[0][0]!r}." if errors else ""
        what = "successful trace" if only_successful else "usable trace"
        raise ValueError(
            f"no {what} among {len(traces)} episode(s) ({env_errors} environment error(s)) of teacher(s) {names}: "
            "nothing to train on. Check the teacher's success rate on these tasks (run a few episodes and read "
            "their messages), that web_max_turns (collect's former --max_steps) is enough for them, that the teacher "
            "answers in the action format (Thought/Action), and its endpoint or model (the traces' 'error' field)."
            + common
        )
    kept.sort(key=lambda t: (t.task, t.seed, t.teacher, t.id))
    last_turn_only = [t.id for t in kept if t.layout == "per_step" and t.num_steps > 1 and not t.turns]
    if last_turn_only:
        logger.warning(
            "%d per_step trace(s) of several turns (%s) keep only their last turn (written before sec-rl kept "
            "every turn, schema 1): the student learns no other turn of them. Collect them again to train on "
            "every turn.",
            len(last_turn_only),
            ", ".join(last_turn_only[:5]) + (", ..." if len(last_turn_only) > 5 else ""),
        )
    rows: dict[str, list[Any]] = {name: [] for name in DATASET_COLUMNS}
    for trace in kept:
        for messages in trace.conversations():
            for name in DATASET_COLUMNS:
                rows[name].append(messages if name == "messages" else getattr(trace, name))
    return Dataset.from_dict(rows)


def push_traces_to_hub(
    dataset: Dataset | Sequence[Trace],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    only_successful: bool = True,
) -> Any:
    """Push a trace dataset (or traces, converted by :func:`traces_to_dataset`) to the Hub as ``repo_id``.

    The SFT stage loads it back with ``--traces <repo_id>``.
    """
    from datasets import Dataset

    if not repo_id or "/" not in repo_id:
        raise ValueError(f"repo_id must be 'owner/name' (e.g. your-name/web-agent-traces), got {repo_id!r}.")
    if not isinstance(dataset, Dataset):
        dataset = traces_to_dataset(dataset, only_successful=only_successful)
    missing = [c for c in ("messages", "task") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the dataset lacks the column(s) {missing} that SFT needs: build it with traces_to_dataset.")
    return dataset.push_to_hub(repo_id, private=private, token=token)
