"""Every stage of the pipeline on the held-out split: the web-agent study's table, with bootstrap intervals.

The study (arXiv 2507.04103) reports each stage (the untrained student, the SFT student, the SFT+RL student,
the teacher) on two held-out sets of MiniWoB++ (see :mod:`sec_rl.web.tasks`):

- held-out *goals*: seeds 0-2 of the training tasks (the tasks were trained on, these goals were not);
- held-out *tasks*: the 23 tasks never trained on, seeds 0-9.

:func:`evaluate_stages` runs :func:`sec_rl.web.evaluate.evaluate` for every stage and both sets. A stage is an
agent (anything ``evaluate`` accepts: a callable, an ``act_batch`` object, a Teacher) or a saved model (a folder
or Hub name), loaded into a greedy :class:`~sec_rl.web.policies.ModelAgent` and prompted as in training (the
same :class:`~sec_rl.web.config.WebConfig` and chat template kwargs). Evaluating a 70B teacher or a
student on 400+ episodes takes long, so each stage's results are written as soon as each set is done
(``<output_dir>/<stage>.json``, holding ``EvalReport.to_dict()``) and a rerun skips what is saved; ``force``
evaluates again. :class:`StageReport` holds the overall success rates with their intervals and renders the
markdown table and a grouped bar plot.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sec_rl.web.config import WebConfig
from sec_rl.web.evaluate import EvalReport, TaskScore, evaluate
from sec_rl.web.tasks import HELDOUT_GOAL_SEEDS, HELDOUT_TASK_SEEDS, HELDOUT_TASKS, TRAIN_TASKS

if TYPE_CHECKING:
    from sec_rl.web.pool import EnvironmentPool

__all__ = [
    "REPORT_FILE",
    "SPLITS",
    "StageReport",
    "StageResult",
    "episode_outcomes",
    "evaluate_stages",
    "format_score",
    "paired_difference",
    "stage_file",
    "success_per_task",
    "training_curve",
]

logger = logging.getLogger(__name__)

#: The two held-out sets: key -> column title of the table.
SPLITS: dict[str, str] = {"goals": "held-out goals", "tasks": "held-out tasks"}
#: The whole report (every stage, in order), written by :func:`evaluate_stages` beside the per-stage files.
REPORT_FILE = "report.json"
TABLE_FILE = "table.md"
_STAGE_FORMAT = "sec_rl.stage_eval/1"
_REPORT_FORMAT = "sec_rl.stage_report/1"


# -- results ---------------------------------------------------------------------------------------
def _score(data: Mapping[str, Any]) -> TaskScore:
    return TaskScore(
        float(data["success_rate"]),
        float(data["low"]),
        float(data["high"]),
        int(data["episodes"]),
        int(data.get("env_errors", 0)),
    )


def format_score(score: TaskScore | None) -> str:
    """``"55.2% [50.1, 60.3]"`` (success and interval in percent); ``"-"`` for a set not evaluated or empty."""
    if score is None or score.episodes == 0 or math.isnan(score.success_rate):
        return "-"
    return f"{score.success_rate:.1%} [{100 * score.low:.1f}, {100 * score.high:.1f}]"


@dataclass
class StageResult:
    """One stage on the held-out sets.

    Attributes:
        stage: the stage's name (a row of the table).
        source: what was evaluated (a model path, or the agent's name).
        scores: set key (``"goals"``, ``"tasks"``) -> overall success rate (mean over tasks) and interval.
        per_task: set key -> task -> score.
        tasks, seeds: set key -> the tasks and seeds evaluated.
        seconds: set key -> wall-clock seconds of the evaluation.
    """

    stage: str
    source: str = ""
    scores: dict[str, TaskScore] = field(default_factory=dict)
    per_task: dict[str, dict[str, TaskScore]] = field(default_factory=dict)
    tasks: dict[str, list[str]] = field(default_factory=dict)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def goals(self) -> TaskScore | None:
        """Success on the held-out goals (None when not evaluated)."""
        return self.scores.get("goals")

    @property
    def heldout_tasks(self) -> TaskScore | None:
        """Success on the held-out tasks (None when not evaluated)."""
        return self.scores.get("tasks")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "source": self.source,
            "splits": {
                split: {
                    "overall": vars(score).copy(),
                    "per_task": {task: vars(s).copy() for task, s in self.per_task.get(split, {}).items()},
                    "tasks": list(self.tasks.get(split, [])),
                    "seeds": list(self.seeds.get(split, [])),
                    "seconds": self.seconds.get(split),
                }
                for split, score in self.scores.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageResult:
        result = cls(str(data["stage"]), str(data.get("source", "")))
        for split, entry in data.get("splits", {}).items():
            result._add(split, entry)
        return result

    def _add(self, split: str, entry: Mapping[str, Any]) -> None:
        """One set's results, from a per-stage file's entry (``report``: EvalReport.to_dict()) or a summary."""
        scores = entry.get("report", entry)
        self.scores[split] = _score(scores["overall"])
        self.per_task[split] = {task: _score(s) for task, s in scores.get("per_task", {}).items()}
        self.tasks[split] = [str(t) for t in entry.get("tasks", [])]
        self.seeds[split] = [int(s) for s in entry.get("seeds", [])]
        if entry.get("seconds") is not None:
            self.seconds[split] = float(entry["seconds"])


@dataclass
class StageReport:
    """Every stage's success on the held-out goals and tasks, with bootstrap intervals (``EvalReport.overall``)."""

    stages: dict[str, StageResult]
    confidence: float = 0.95

    def __getitem__(self, stage: str) -> StageResult:
        return self.stages[stage]

    def table(self) -> str:
        """Markdown: one row per stage, ``"success% [low, high]"`` for each held-out set."""
        lines = ["| stage | " + " | ".join(SPLITS.values()) + " |", "|---|" + "---:|" * len(SPLITS)]
        for name, result in self.stages.items():
            cells = [format_score(result.scores.get(split)) for split in SPLITS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def caption(self) -> str:
        """What the table's numbers are, for a report or model card."""
        counts = []
        for split, title in SPLITS.items():
            evaluated = [r for r in self.stages.values() if split in r.scores]
            if not evaluated:
                continue
            tasks = "/".join(str(n) for n in sorted({len(r.tasks.get(split, [])) for r in evaluated}))
            seeds = "/".join(sorted({_seed_range(r.seeds.get(split, [])) for r in evaluated}))
            episodes = "/".join(str(n) for n in sorted({r.scores[split].episodes for r in evaluated}))
            counts.append(f"{title}: {tasks} tasks x seeds {seeds}, {episodes} episodes")
        return (
            f"Success rate (mean over tasks) with its {self.confidence:.0%} bootstrap interval (tasks stratified, "
            f"episodes lost to environment errors left out); {'; '.join(counts) or 'nothing evaluated'}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _REPORT_FORMAT,
            "confidence": self.confidence,
            "stages": [result.to_dict() for result in self.stages.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageReport:
        if data.get("format") != _REPORT_FORMAT:
            raise ValueError(f"not a stage report (format {data.get('format')!r}, expected {_REPORT_FORMAT!r}).")
        results = [StageResult.from_dict(entry) for entry in data["stages"]]
        return cls({r.stage: r for r in results}, float(data.get("confidence", 0.95)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON (a folder gets ``report.json``), with the environment it was made in."""
        from sec_rl.provenance import environment_info

        path = Path(path)
        file = path / REPORT_FILE if path.is_dir() or not path.suffix else path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps({**self.to_dict(), "environment": environment_info()}, indent=2) + "\n")
        return file

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StageReport:
        """A saved report: ``report.json`` (or the evaluation folder holding it, or only per-stage files)."""
        path = Path(path)
        if path.is_file():
            return cls.from_dict(json.loads(path.read_text()))
        if (path / REPORT_FILE).is_file():
            return cls.from_dict(json.loads((path / REPORT_FILE).read_text()))
        saved = []
        for file in sorted(path.glob("*.json")) if path.is_dir() else []:
            try:
                data = json.loads(file.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("format") == _STAGE_FORMAT:
                saved.append(data)
        if not saved:
            raise FileNotFoundError(
                f"no stage evaluation at {path}: pass the output_dir of evaluate_stages (`sec-rl web-eval`) "
                f"or its {REPORT_FILE}."
            )
        saved.sort(key=lambda d: d.get("finished_at", 0.0))
        results = [_result_from_file(d) for d in saved]
        return cls({r.stage: r for r in results})

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> Path:
        """Grouped bars (one group per stage, one bar per held-out set) with the intervals as error bars."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        names = list(self.stages)
        if not names:
            raise ValueError("the report has no stage to plot.")
        splits = [s for s in SPLITS if any(s in r.scores for r in self.stages.values())]
        x = np.arange(len(names))
        width = 0.8 / max(1, len(splits))
        fig, ax = plt.subplots(figsize=(max(5.0, 1.5 * len(names) + 2), 4))
        for i, split in enumerate(splits):
            heights, below, above = [], [], []
            for name in names:
                score = self.stages[name].scores.get(split)
                valid = score is not None and score.episodes > 0 and not math.isnan(score.success_rate)
                rate = score.success_rate if valid else 0.0
                heights.append(100 * rate)
                below.append(100 * (rate - score.low) if valid else 0.0)
                above.append(100 * (score.high - rate) if valid else 0.0)
            offset = (i - (len(splits) - 1) / 2) * width
            bars = ax.bar(x + offset, heights, width, yerr=[below, above], capsize=4, label=SPLITS[split])
            ax.bar_label(bars, labels=[f"{h:.0f}" for h in heights], padding=2, fontsize=8)
        ax.set_xticks(x, names)
        ax.set_ylabel(f"success % ({self.confidence:.0%} interval)")
        ax.set_ylim(0, 112)
        ax.set_title(title or "Pipeline stages on the held-out split")
        ax.legend(loc="upper left")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _seed_range(seeds: Iterable[int]) -> str:
    """``[0, 1, 2]`` -> ``"0-2"``; seeds that are not consecutive are listed."""
    seeds = sorted(set(seeds))
    if not seeds:
        return "?"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _result_from_file(data: Mapping[str, Any], splits: Iterable[str] = tuple(SPLITS)) -> StageResult:
    """A stage's results from its file, only the sets in ``splits`` (a file may hold a set not asked for now)."""
    result = StageResult(str(data["stage"]), str(data.get("source", "")))
    for split in splits:
        if split in data.get("splits", {}):
            result._add(split, data["splits"][split])
    return result


# -- files -----------------------------------------------------------------------------------------
def stage_file(output_dir: str | os.PathLike[str], stage: str) -> Path:
    """Where a stage's results go: ``<output_dir>/<stage>.json``, the name made safe for any file system."""
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", stage).strip("._") or "stage"
    return Path(output_dir) / f"{slug}.json"


def episode_outcomes(output_dir: str | os.PathLike[str], stage: str, split: str) -> dict[tuple[str, int], float]:
    """Success (0 or 1) of each episode a stage ran on ``split``, by (task, seed): what paired comparisons pair.

    Episodes lost to environment errors are left out; a split the stage was not evaluated on gives ``{}``.
    """
    data = json.loads(stage_file(output_dir, stage).read_text())["splits"].get(split)
    episodes = data["report"]["episodes"] if data else []
    return {(e["task"], int(e["seed"])): float(e["success"]) for e in episodes if not e.get("env_error")}


def success_per_task(output_dir: str | os.PathLike[str], stage: str, split: str = "goals") -> dict[str, float]:
    """A stage's success rate per task on ``split`` (its episodes by task): where a change between stages lies."""
    by_task: dict[str, list[float]] = {}
    for (task, _), success in sorted(episode_outcomes(output_dir, stage, split).items()):
        by_task.setdefault(task, []).append(success)
    return {task: sum(values) / len(values) for task, values in by_task.items()}


def paired_difference(
    output_dir: str | os.PathLike[str], stage: str, baseline: str, split: str = "goals", resamples: int = 2000
) -> dict[str, Any]:
    """Mean success difference ``stage - baseline`` on the episodes both ran (same task and seed), with a bootstrap
    95% interval over those episodes: pairing removes the goals' spread, so a few points' change can show."""
    a, b = episode_outcomes(output_dir, stage, split), episode_outcomes(output_dir, baseline, split)
    keys = sorted(a.keys() & b.keys())
    if not keys:
        return {"episodes": 0}
    diffs = [a[k] - b[k] for k in keys]
    rng = random.Random(0)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(resamples))
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return {"episodes": len(keys), "mean": sum(diffs) / len(diffs), "low": low, "high": high,
            "excludes_zero": low > 0 or high < 0}  # fmt: skip


def training_curve(model_dir: str | os.PathLike[str], metric: str = "web/success_rate") -> dict[int, float]:
    """``{step: value}`` of a logged metric, from the ``trainer_state.json`` a training stage leaves beside its model.

    For RL, ``web/success_rate`` is the rollouts' sampled success per step: the training curve. ``{}`` when the
    folder has no such file (a model trained elsewhere) or the metric was never logged.
    """
    file = Path(model_dir) / "trainer_state.json"
    history = json.loads(file.read_text())["log_history"] if file.is_file() else []
    return {int(entry["step"]): float(entry[metric]) for entry in history if entry.get(metric) is not None}


def _read_stage_file(file: Path, stage: str) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not valid JSON ({error}): delete it or pass force=True.") from error
    if data.get("format") != _STAGE_FORMAT or data.get("stage") != stage:
        raise ValueError(
            f"{file} holds {data.get('stage')!r}'s results, not stage {stage!r}'s: rename one of the stages, "
            "or use another output_dir."
        )
    return data


def _nothing_measured(saved_set: Mapping[str, Any]) -> bool:
    """A saved set whose every episode was an environment error (browser down): a rerun should try again."""
    overall = saved_set["report"]["overall"]
    return int(overall["episodes"]) == 0 and int(overall.get("env_errors", 0)) > 0


def _write_json(file: Path, data: dict[str, Any]) -> None:
    """Atomic write: a crash never leaves half a file that a rerun would trust."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, file)


# -- agents ----------------------------------------------------------------------------------------
def _source(agent: Any) -> str:
    if isinstance(agent, str | os.PathLike):
        return str(agent)
    return str(getattr(agent, "name", None) or type(agent).__name__)


def _load_model_agent(
    path: str,
    *,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    device: str | None,
    chat_template_kwargs: dict[str, Any] | None,
) -> Any:
    """A saved model (folder or Hub name) as a :class:`~sec_rl.web.policies.ModelAgent`: greedy unless
    ``temperature`` > 0, prompted with the training's chat template kwargs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sec_rl.models import resolve_model
    from sec_rl.web.policies import ModelAgent

    path = resolve_model(path)  # a packaged-model name (smollm2-135m) -> its folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    except OSError as error:
        raise OSError(
            f"cannot load the model {path!r} ({error}): pass a folder written by save_model / save_pretrained "
            "(config.json, weights, tokenizer) or a Hub model name."
        ) from error
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return ModelAgent(
        model,
        tokenizer,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chat_template_kwargs=chat_template_kwargs,
    )


def _check_agent(name: str, agent: Any) -> None:
    if isinstance(agent, str | os.PathLike):
        if not str(agent):
            raise ValueError(f"stage {name!r}: the model path is empty.")
        return
    if not (callable(agent) or callable(getattr(agent, "act_batch", None)) or callable(getattr(agent, "act", None))):
        raise TypeError(
            f"stage {name!r} is a {type(agent).__name__}: give a model path, a callable messages -> text, or an "
            "object with act_batch() (a ModelAgent or a Teacher)."
        )


# -- the evaluation --------------------------------------------------------------------------------
def _stage_files(stages: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Each stage's results file, once every stage is checked to be something that can be evaluated."""
    if not stages:
        raise ValueError("no stage to evaluate: pass {name: model path or agent}, e.g. {'sft': 'outputs/sft'}.")
    for name, agent in stages.items():
        _check_agent(name, agent)
    files = {name: stage_file(output_dir, name) for name in stages}
    clashes = sorted({f.name for f in files.values() if list(files.values()).count(f) > 1})
    if clashes:
        raise ValueError(f"stage names map to the same file(s) {clashes}: give the stages more distinct names.")
    return files


def _held_out_sets(
    goal_tasks: Iterable[str] | None,
    goal_seeds: Iterable[int],
    task_tasks: Iterable[str] | None,
    task_seeds: Iterable[int],
) -> dict[str, tuple[list[str], list[int]]]:
    """The held-out sets to evaluate (key of :data:`SPLITS` -> tasks, seeds); an empty task list skips a set."""
    sets = {
        "goals": (list(TRAIN_TASKS if goal_tasks is None else goal_tasks), [int(s) for s in goal_seeds]),
        "tasks": (list(HELDOUT_TASKS if task_tasks is None else task_tasks), [int(s) for s in task_seeds]),
    }
    sets = {split: (tasks, seeds) for split, (tasks, seeds) in sets.items() if tasks}
    if not sets:
        raise ValueError("both held-out sets are empty: give goal_tasks or task_tasks (None means the full split).")
    for split, (_, seeds) in sets.items():
        if not seeds:
            raise ValueError(f"the {SPLITS[split]} have tasks but no seeds: give {split[:-1]}_seeds.")
    if "goals" in sets and "tasks" in sets:
        shared = sorted(set(sets["goals"][0]) & set(sets["tasks"][0]))
        if shared:
            raise ValueError(
                f"tasks {shared} are both trained-on (held-out goals) and held out (held-out tasks): a held-out "
                "task must not be among goal_tasks."
            )
    return sets


def _saved_set_stands(
    saved: Mapping[str, Any] | None, stage: str, split: str, tasks: list[str], seeds: list[int], file: Path
) -> bool:
    """Whether a set's saved results are kept: yes if they cover these tasks and seeds; no if there are none or
    every saved episode was an environment error (the browser was down); an error if they cover others."""
    if saved is None:
        return False
    if _nothing_measured(saved):
        logger.warning(
            "stage %r, %s: every saved episode was an environment error; evaluating again", stage, SPLITS[split]
        )
        return False
    if sorted(saved["tasks"]) == sorted(tasks) and sorted(saved["seeds"]) == sorted(seeds):
        logger.info("stage %r, %s: saved in %s, not evaluated again", stage, SPLITS[split], file)
        return True
    raise ValueError(
        f"{file} holds stage {stage!r}'s {SPLITS[split]} on other tasks or seeds "
        f"({len(saved['tasks'])} tasks, seeds {saved['seeds']}; now {len(tasks)} tasks, seeds {seeds}): "
        "pass force=True (--force) to evaluate again, or use another output_dir."
    )


class _SharedPool:
    """The environments of every stage and set (one browser start-up, not eight), started on first use: a
    resumed evaluation whose results are all saved starts none. A pool given by the caller is used and left open."""

    def __init__(self, web: WebConfig, episodes: int, given: EnvironmentPool | None = None):
        self.web, self.episodes = web, episodes
        self.given, self.own = given, None

    def get(self) -> EnvironmentPool:
        if self.given is not None:
            return self.given
        if self.own is None:
            self.own = self.web.make_pool(self.episodes)
        return self.own

    def close(self) -> None:
        if self.own is not None:
            self.own.close()


def _evaluate_stage(
    name: str,
    stage: Any,
    file: Path,
    sets: Mapping[str, tuple[list[str], list[int]]],
    *,
    force: bool,
    load_agent: Callable[[str], Any],
    evaluate_set: Callable[[Any, list[str], list[int]], EvalReport],
    environment: dict[str, Any],
) -> StageResult:
    """One stage on every set not saved yet, its file rewritten after each set (a crash keeps the sets done)."""
    saved = None if force else _read_stage_file(file, name)
    data = saved or {"format": _STAGE_FORMAT, "stage": name, "source": _source(stage), "splits": {}}
    agent = None
    for split, (tasks, seeds) in sets.items():
        if _saved_set_stands(data["splits"].get(split), name, split, tasks, seeds, file):
            continue
        if agent is None:  # a model is loaded only when one of its sets is to be evaluated
            agent = load_agent(str(stage)) if isinstance(stage, str | os.PathLike) else stage
        logger.info("stage %r: %s, %d tasks x %d seeds", name, SPLITS[split], len(tasks), len(seeds))
        started = time.perf_counter()
        report = evaluate_set(agent, tasks, seeds)
        data["splits"][split] = {
            "tasks": tasks,
            "seeds": seeds,
            "seconds": time.perf_counter() - started,
            "report": report.to_dict(),
        }
        data["finished_at"] = time.time()
        data["environment"] = environment
        _write_json(file, data)
        if report.overall.env_errors:
            logger.warning(
                "stage %r, %s: %d episode(s) lost to environment errors (left out of the success rate)",
                name,
                SPLITS[split],
                report.overall.env_errors,
            )
    if isinstance(stage, str | os.PathLike) and agent is not None:
        agent = None  # free the model before the next stage loads its own
        gc.collect()
    return _result_from_file(data, sets)


def evaluate_stages(
    stages: Mapping[str, Any],
    web: WebConfig | None = None,
    *,
    goal_tasks: Iterable[str] | None = None,
    task_tasks: Iterable[str] | None = None,
    goal_seeds: Iterable[int] = HELDOUT_GOAL_SEEDS,
    task_seeds: Iterable[int] = HELDOUT_TASK_SEEDS,
    output_dir: str | os.PathLike[str] = "outputs/eval",
    force: bool = False,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    device: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
    pool: EnvironmentPool | None = None,
    retries: int = 1,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> StageReport:
    """Evaluate every stage on the held-out goals and tasks; resumable, one JSON file per stage.

    Args:
        stages: stage name -> a model path (folder or Hub name: loaded into a
            :class:`~sec_rl.web.policies.ModelAgent`, freed after its stage) or an agent used as is. Rows of the
            table, in this order.
        web: the web settings (environment, workers, timeouts, ``web_max_turns``, ``web_layout``, prompt): the
            students' training settings, so that they are prompted as they were trained. Default: WebConfig().
        goal_tasks: tasks of the held-out goals (default: the 99 training tasks). ``[]`` skips the held-out goals.
        task_tasks: the held-out tasks (default: the 23 of the split). ``[]`` skips them.
        goal_seeds: seeds of the held-out goals (default: 0-2).
        task_seeds: seeds of the held-out tasks (default: 0-9).
        output_dir: ``<stage>.json`` per stage (written after each set), ``report.json`` and ``table.md``.
        force: evaluate again stages whose results are saved (else they are read back, not re-run).
        temperature: decoding temperature of the stages given as model paths (0: greedy).
        max_new_tokens: their tokens per turn.
        batch_size: their contexts per ``generate`` call.
        device: where their models run (default: CUDA when available).
        chat_template_kwargs: the chat template's extra arguments, as in training (``chat_template_kwargs``).
        pool: environments to use (left open); by default one pool is built from ``web`` and shared by every stage.
        retries: attempts after an environment error before an episode is reported as one.
        n_resamples: bootstrap resamples.
        confidence: level of the bootstrap intervals.
        seed: the bootstrap's random seed.
    """
    web = web or WebConfig()
    files = _stage_files(stages, output_dir)
    sets = _held_out_sets(goal_tasks, goal_seeds, task_tasks, task_seeds)
    shared = _SharedPool(web, max(len(tasks) * len(seeds) for tasks, seeds in sets.values()), pool)
    load_agent = functools.partial(
        _load_model_agent,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        chat_template_kwargs=chat_template_kwargs,
    )

    def evaluate_set(agent: Any, tasks: list[str], seeds: list[int]) -> EvalReport:
        bootstrap = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
        return evaluate(agent, tasks, seeds, web, pool=shared.get(), retries=retries, **bootstrap)

    from sec_rl.provenance import environment_info

    environment = environment_info()  # recorded in every stage file: its numbers depend on it
    results: dict[str, StageResult] = {}
    try:
        for name, stage in stages.items():
            results[name] = _evaluate_stage(
                name,
                stage,
                files[name],
                sets,
                force=force,
                load_agent=load_agent,
                evaluate_set=evaluate_set,
                environment=environment,
            )
    finally:
        shared.close()

    stage_report = StageReport(results, confidence)
    stage_report.save(Path(output_dir) / REPORT_FILE)
    (Path(output_dir) / TABLE_FILE).write_text(stage_report.table() + "\n\n" + stage_report.caption() + "\n")
    return stage_report
