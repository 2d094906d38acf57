"""Trace collection: a teacher runs one episode per (task, seed) goal; each finished episode is written at once.

Collection is resumable: every finished episode is fsync'd to a shard of the output folder before the next
turn (:class:`~sec_rl.pipeline.traces.TraceWriter`), and a new run over the same folder skips the goals that
already have a valid row. Killing it (Ctrl-C, a crash, a pre-empted job) loses at most the episodes in
flight; rows of episodes that failed because of the environment are collected again. ::

    sec-rl collect --teacher openai --teacher_model meta-llama/Llama-3.3-70B-Instruct \\
        --teacher_base_url http://localhost:8000/v1 --seeds 20 --web_num_workers 8 --output_dir outputs/traces

Every option can also come from a YAML file (``--config collect.yaml``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sec_rl.pipeline.traces import TraceWriter, read_traces, shard_paths, trace_id, traces_to_dataset
from sec_rl.web.config import HIDDEN, WebConfig, with_default
from sec_rl.web.policies import ChatPolicy
from sec_rl.web.pool import Goal
from sec_rl.web.rollout import Episode, RolloutEngine

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["TEACHER_KINDS", "CollectConfig", "CollectSummary", "collect_main", "collect_traces", "make_teacher"]

logger = logging.getLogger(__name__)

TEACHER_KINDS: tuple[str, ...] = ("scripted", "openai", "transformers")


# -- collection ------------------------------------------------------------------------------------
@dataclass
class CollectSummary:
    """What one :func:`collect_traces` call did. Token counts and successes cover this call's episodes only."""

    output_dir: str
    teacher: str
    goals: int  # distinct goals asked for
    done_before: int  # of those, already collected in output_dir (skipped)
    collected: int = 0  # episodes run and written now
    successes: int = 0
    env_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    shards: list[str] = field(default_factory=list)  # the shard files written now

    @property
    def success_rate(self) -> float:
        """Successes over this call's episodes that count (environment errors left out); nan if none."""
        counted = self.collected - self.env_errors
        return self.successes / counted if counted > 0 else float("nan")

    @property
    def remaining(self) -> int:
        """Goals still without a valid trace (environment errors, or an interrupted run)."""
        return self.goals - self.done_before - (self.collected - self.env_errors)

    def __str__(self) -> str:
        rate = f"{self.success_rate:.1%}" if self.collected > self.env_errors else "-"
        return (
            f"{self.goals} goals: {self.done_before} done before, {self.collected} collected now "
            f"in {self.seconds:.1f} s "
            f"({self.successes} successful, {rate}; {self.env_errors} environment errors), "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens; traces in {self.output_dir}"
        )


def _normalise_goals(goals: Sequence[Goal] | Dataset | Iterable[Goal]) -> list[Goal]:
    """(task, seed) pairs, duplicates dropped (one trace per goal), from a list or a goals dataset."""
    column_names = getattr(goals, "column_names", None)
    if column_names is not None:
        missing = [c for c in ("task", "seed") if c not in column_names]
        if missing:
            raise ValueError(
                f"a goals dataset needs the columns 'task' and 'seed' (missing {missing}): "
                "build it with sec_rl.web.tasks.train_goals()."
            )
        pairs: Iterable[Any] = zip(goals["task"], goals["seed"])  # type: ignore[index]
    else:
        pairs = goals
    result: list[Goal] = []
    seen: set[Goal] = set()
    total = 0
    for total, pair in enumerate(pairs, start=1):
        try:
            task, seed = pair
            goal = (str(task), int(seed))
        except (TypeError, ValueError):
            raise ValueError(
                f"goal {total - 1} is {pair!r}: a goal is a (task, seed) pair such as ('click-button', 3)."
            ) from None
        if goal not in seen:
            seen.add(goal)
            result.append(goal)
    if total > len(result):
        logger.warning("%d duplicate goal(s) dropped: each goal gets one trace.", total - len(result))
    return result


def _existing_traces(output_dir: Path) -> list[Any]:
    """Valid rows already in ``output_dir`` (malformed or truncated rows are reported and count as not done)."""
    if not shard_paths(output_dir):
        return []
    return read_traces(output_dir, on_error="skip")


def _goals_to_collect(
    goal_list: list[Goal], output_dir: Path, teacher: str, layout: str, resume: bool
) -> tuple[list[Goal], int]:
    """The goals still without a valid trace in ``output_dir``, and how many are done; refuses a folder that does
    not fit (traces there but no resume, another layout)."""
    existing = _existing_traces(output_dir)
    if existing and not resume:
        raise ValueError(
            f"{output_dir} already holds {len(existing)} trace(s): pass resume=True (--resume true) to collect only "
            "the goals missing there, or choose another (empty) output_dir."
        )
    other_layouts = sorted({t.layout for t in existing} - {layout})
    if other_layouts:
        raise ValueError(
            f"{output_dir} holds traces in layout {other_layouts}, and this run's layout is {layout!r}: one folder "
            f"mixing layouts would mix SFT sample formats. Use layout={other_layouts[0]!r} or another output_dir."
        )
    other_teachers = Counter(t.teacher for t in existing if t.teacher != teacher)
    if other_teachers:
        logger.warning("%s also holds traces of other teacher(s): %s", output_dir, dict(other_teachers))
    done = {t.id for t in existing if not t.env_error}
    todo = [goal for goal in goal_list if trace_id(*goal) not in done]
    return todo, len(goal_list) - len(todo)


class _TraceSink:
    """Receives each finished episode: writes it durably, counts it in the summary, moves the progress bar."""

    def __init__(self, summary: CollectSummary, writer: TraceWriter, progress: bool):
        from tqdm import tqdm

        self.summary, self.writer = summary, writer
        self.bar = tqdm(
            total=summary.goals,
            initial=summary.done_before,
            desc=f"collect ({summary.teacher})",
            unit="episode",
            disable=not progress,
            dynamic_ncols=True,
        )

    def __call__(self, episode: Episode) -> None:
        summary = self.summary
        self.writer.write(episode)  # durable before the next turn
        summary.collected += 1
        summary.successes += episode.success
        summary.env_errors += episode.env_error
        summary.prompt_tokens += episode.prompt_tokens
        summary.completion_tokens += episode.completion_tokens
        self.bar.update(1)
        counted = summary.collected - summary.env_errors
        self.bar.set_postfix(success=f"{summary.successes}/{counted}", env_errors=summary.env_errors, refresh=False)

    def close(self) -> None:
        self.writer.close()
        self.bar.close()
        self.summary.shards = [str(p) for p in self.writer.paths]


def collect_traces(
    teacher: Any,
    goals: Sequence[Goal] | Dataset,
    output_dir: str | os.PathLike[str],
    web: WebConfig | None = None,
    *,
    tokenizer: Any = None,
    resume: bool = True,
    shard_size: int = 1000,
    retries: int = 1,
    progress: bool = True,
) -> CollectSummary:
    """Run ``teacher`` on every goal not collected yet and write each finished episode to ``output_dir``.

    Args:
        teacher: a :class:`~sec_rl.pipeline.teachers.Teacher` (token counts are recorded) or any agent of
            :class:`~sec_rl.web.rollout.RolloutEngine`; its ``name`` goes into every trace.
        goals: (task, seed) pairs, or a goals dataset (``sec_rl.web.tasks.train_goals``).
        output_dir: the trace folder (sharded JSON lines, see :mod:`sec_rl.pipeline.traces`).
        web: environment, workers, timeouts, turns, layout and prompt: use the student's training settings.
            ``web_layout`` ``"episode"`` (the default here) makes one conversation per episode, one SFT sample;
            ``"per_step"`` a fresh prompt each turn (the trace keeps the last turn).
        tokenizer: the student's tokenizer, which measures ``web_max_page_tokens`` (needed only with it).
        resume: skip goals with a valid row in ``output_dir``; with False, ``output_dir`` must hold no traces.
        shard_size: rows per shard file at most.
        retries: attempts after an environment error before the episode is written as one (and redone by
            the next resume).
        progress: show a progress bar (successes so far in its postfix).
    """
    web = web or WebConfig(web_layout="episode")
    started = time.perf_counter()
    output_dir = Path(output_dir)
    goal_list = _normalise_goals(goals)
    name = str(getattr(teacher, "name", None) or type(teacher).__name__)
    todo, done_before = _goals_to_collect(goal_list, output_dir, name, web.web_layout, resume)
    summary = CollectSummary(str(output_dir), name, len(goal_list), done_before)
    if todo:
        policy = ChatPolicy(teacher, tokenizer) if tokenizer is not None else teacher
        sink = _TraceSink(summary, TraceWriter(output_dir, shard_size, teacher=name, layout=web.web_layout), progress)
        pool = web.make_pool(len(todo))
        try:
            engine = RolloutEngine.from_config(policy, pool, web, retries=retries, retry_crashed=True)
            engine.run(todo, on_episode=sink)
        finally:
            pool.close()
            sink.close()
            _record_teacher_compute(teacher, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _record_teacher_compute(teacher: Any, summary: CollectSummary) -> None:
    """Add this session's teacher inference (2 x N x tokens) to ``<output_dir>/compute.json``.

    SFT runs started with ``ComputeCallback(base=<traces folder>)`` carry it on, so the pipeline's total
    compute includes the teacher, as the web-agent study counts it. A teacher of unknown size is not counted.
    """
    from sec_rl.pipeline.compute import ComputeLedger, inference_flops

    num_parameters = getattr(teacher, "num_parameters", None)
    tokens = summary.prompt_tokens + summary.completion_tokens
    if num_parameters is None:
        logger.warning("teacher %s has no num_parameters: its inference FLOPs are not counted.", summary.teacher)
        return
    ledger = ComputeLedger()
    ledger.add("teacher", inference_flops(num_parameters, tokens), tokens, num_parameters)
    ledger.save(Path(summary.output_dir) / "compute.json")


# -- configuration and command line ----------------------------------------------------------------
@dataclass
class CollectConfig(WebConfig):
    """Options of ``sec-rl collect`` (flags, or a YAML file with ``--config``): the teacher, the goals, the trace
    folder, and the shared ``web_*`` settings, which should be the student's training settings."""

    web_layout: str = with_default("web_layout", "episode")  # a trace is one SFT sample per episode
    teacher: str = field(
        default="scripted",
        metadata={
            "help": "Which teacher: 'scripted' (the expert of MiniWoB++ or of the text world, no model), 'openai' (an "
            "OpenAI-compatible endpoint, e.g. vLLM serving Llama 3.3 70B) or 'transformers' (a local model).",
            "choices": list(TEACHER_KINDS),
        },
    )
    teacher_model: str | None = field(
        default=None,
        metadata={"help": "openai: the served model's name; transformers: a model path or Hub id."},
    )
    teacher_base_url: str = field(
        default="http://localhost:8000/v1", metadata={"help": "openai: the endpoint's base URL."}
    )
    teacher_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "openai: the environment variable holding the API key (a local vLLM needs none)."},
    )
    teacher_concurrency: int = field(
        default=16, metadata={"help": "openai: requests in flight at once (one per live episode at most)."}
    )
    teacher_temperature: float = field(
        default=0.0,
        metadata={
            "help": "Sampling temperature of the teacher: 0 (greedy, its most likely action at every step) unless "
            "you want several different traces per goal. (The study's 0.25 is the student's RL temperature.)"
        },
    )
    teacher_max_tokens: int = field(default=512, metadata={"help": "Length limit of one teacher turn, in tokens."})
    teacher_num_parameters: int | None = field(
        default=None,
        metadata={"help": "openai: the served model's parameter count, for FLOPs accounting (unset: not counted)."},
    )
    tasks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Tasks to collect on (default: the 99 training tasks; with --teacher scripted, the ones it "
            "can solve; with --web_env text, the text world's tasks)."
        },
    )
    seeds: list[str] = field(
        default_factory=lambda: ["20"],
        metadata={
            "help": "Seeds per task: one number N means N seeds from seed 3 (0-2 are held-out goals); several "
            "numbers are the seeds themselves; 'A-B' is a range (inclusive), e.g. '3-22'."
        },
    )
    output_dir: str = field(
        default="outputs/traces", metadata={"help": "Trace folder (sharded JSON lines traces-*.jsonl)."}
    )
    resume: bool = field(
        default=True,
        metadata={"help": "Skip goals already in output_dir (false: output_dir must hold no traces)."},
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Push the successful traces to the Hub as a dataset when done."}
    )
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "The Hub dataset to push to, e.g. your-name/web-agent-traces."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub dataset private."})
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "The student's tokenizer (model name or path): it measures --web_max_page_tokens, so that the "
            "traces show the pages the student will see. Needed only with --web_max_page_tokens."
        },
    )
    shard_size: int = field(default=1000, metadata={"help": "Rows per shard file at most."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    # The names these options had before they were shared with training (hidden from --help; they still work).
    env: str | None = field(default=None, metadata=HIDDEN)
    num_workers: int | None = field(default=None, metadata=HIDDEN)
    max_steps: int | None = field(default=None, metadata=HIDDEN)
    layout: str | None = field(default=None, metadata=HIDDEN)
    view: str | None = field(default=None, metadata=HIDDEN)
    max_page_chars: int | None = field(default=None, metadata=HIDDEN)
    history: int | None = field(default=None, metadata=HIDDEN)
    error_feedback: bool | None = field(default=None, metadata=HIDDEN)
    actions: list[str] | None = field(default=None, metadata=HIDDEN)
    step_timeout: float | None = field(default=None, metadata=HIDDEN)

    _renamed: ClassVar[dict[str, str]] = {
        **WebConfig._renamed,
        **{
            old: f"web_{old}"
            for old in ("env", "num_workers", "layout", "view", "max_page_chars", "history")
            + ("error_feedback", "actions", "step_timeout")
        },
        "max_steps": "web_max_turns",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher not in TEACHER_KINDS:
            raise ValueError(f"teacher must be one of {TEACHER_KINDS}, not {self.teacher!r}.")
        if self.teacher in ("openai", "transformers") and not self.teacher_model:
            what = "the served model's name" if self.teacher == "openai" else "a model path or Hub id"
            raise ValueError(f"--teacher {self.teacher} needs --teacher_model ({what}).")
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id (e.g. your-name/web-agent-traces).")
        if self.web_max_page_tokens is not None and not self.tokenizer:
            raise ValueError(
                "--web_max_page_tokens counts the page in the student's tokens: give --tokenizer (the student's "
                "model name or path), or use --web_max_page_chars."
            )
        self.seed_list()  # fail early on a bad --seeds

    def seed_list(self) -> list[int]:
        """The seeds to collect: a count from seed 3, the seeds listed, or ranges 'A-B'."""
        from sec_rl.web.tasks import TRAIN_SEEDS_START

        values = [self.seeds] if isinstance(self.seeds, int | str) else list(self.seeds)
        if not values:
            raise ValueError("--seeds is empty: give a count (e.g. 20), seeds (3 4 5) or a range (3-22).")
        if len(values) == 1 and re.fullmatch(r"\s*\d+\s*", str(values[0])):
            count = int(values[0])
            if count < 1:
                raise ValueError(f"--seeds {count}: a count of seeds must be at least 1.")
            return list(range(TRAIN_SEEDS_START, TRAIN_SEEDS_START + count))
        seeds: list[int] = []
        for value in values:
            text = str(value).strip()
            if match := re.fullmatch(r"(\d+)\s*-\s*(\d+)", text):
                low, high = int(match.group(1)), int(match.group(2))
                if high < low:
                    raise ValueError(f"--seeds range {text!r} is empty (write it low-high).")
                seeds.extend(range(low, high + 1))
            elif re.fullmatch(r"\d+", text):
                seeds.append(int(text))
            else:
                raise ValueError(f"--seeds {text!r}: expected a count (20), seeds (3 4 5) or a range (3-22).")
        return list(dict.fromkeys(seeds))


def make_teacher(config: CollectConfig) -> Any:
    """The teacher ``config`` describes; its module is imported only now (a scripted run needs no client)."""
    if config.teacher == "scripted":  # the expert of the environment collected on
        from sec_rl.pipeline.scripted import ScriptedTeacher, TextWorldTeacher

        expert = TextWorldTeacher if config.web_env == "text" else ScriptedTeacher
        return expert(config.tasks or None)  # tasks it has no solver for are refused, by name
    if config.teacher == "openai":
        from sec_rl.pipeline.teachers import OpenAITeacher

        return OpenAITeacher(
            config.teacher_base_url,
            config.teacher_model,
            api_key=os.environ.get(config.teacher_api_key_env),
            temperature=config.teacher_temperature,
            max_tokens=config.teacher_max_tokens,
            concurrency=config.teacher_concurrency,
            num_parameters=config.teacher_num_parameters,
        )
    from sec_rl.pipeline.teachers import TransformersTeacher

    return TransformersTeacher(
        config.teacher_model, temperature=config.teacher_temperature, max_new_tokens=config.teacher_max_tokens
    )


def default_tasks(config: CollectConfig, teacher: Any = None) -> list[str]:
    """The tasks to collect on when none are given (see ``CollectConfig.tasks``)."""
    if config.tasks:
        return list(config.tasks)
    if config.web_env == "text":
        from sec_rl.web.env import TextEnvironment

        return list(TextEnvironment.TASKS)
    from sec_rl.web.tasks import TRAIN_TASKS

    if config.teacher == "scripted":
        supported = set(getattr(teacher, "tasks", None) or ())  # ScriptedTeacher.tasks: the ones it can solve
        if supported:
            return [task for task in TRAIN_TASKS if task in supported]
    return list(TRAIN_TASKS)


def collect_main(argv: list[str] | None = None) -> int:
    """``sec-rl collect``: parse options (flags or ``--config`` YAML), collect, optionally push to the Hub."""
    from trl import TrlParser

    parser = TrlParser(
        CollectConfig,
        prog="sec-rl collect",
        description="Collect teacher traces: the teacher runs one episode per (task, seed) goal in parallel "
        "environments, and each finished episode is written at once to sharded JSON-lines files in output_dir. "
        "Rerunning the same command resumes: goals already there are skipped. Every option can also come from "
        "a YAML file (--config).",
    )
    try:
        (config,) = parser.parse_args_and_config(argv)
    except ValueError as error:
        print(f"sec-rl collect: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = _run_collection(config)
    except ValueError as error:  # bad options or an output_dir that does not fit: the message says what to do
        print(f"sec-rl collect: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the finished episodes are in {config.output_dir}; run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    print(summary)
    if config.push_to_hub:
        from sec_rl.pipeline.traces import push_traces_to_hub

        dataset = traces_to_dataset(read_traces(config.output_dir, on_error="skip"), only_successful=True)
        push_traces_to_hub(dataset, config.hub_dataset_id, private=config.hub_private)  # type: ignore[arg-type]
        print(f"pushed {len(dataset)} successful traces to https://huggingface.co/datasets/{config.hub_dataset_id}")
    return 0


def _run_collection(config: CollectConfig) -> CollectSummary:
    from sec_rl.web.tasks import train_goals

    with make_teacher(config) as teacher:
        tasks = default_tasks(config, teacher)
        goals = train_goals(config.seed_list(), tasks)
        print(f"collecting {len(goals)} goals ({len(tasks)} tasks) with teacher {getattr(teacher, 'name', '?')!r}")
        return collect_traces(
            teacher,
            goals,
            config.output_dir,
            config,
            tokenizer=_student_tokenizer(config.tokenizer),
            resume=config.resume,
            shard_size=config.shard_size,
            progress=config.progress,
        )


def _student_tokenizer(name: str | None) -> Any:
    """The tokenizer ``--tokenizer`` names (a packaged-model name, a path or a Hub id), or None."""
    if not name:
        return None
    from transformers import AutoTokenizer

    from sec_rl.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(name))
