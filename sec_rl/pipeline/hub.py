"""The student on the Hub: a model card that records the whole pipeline, and the push.

A web agent's numbers mean little without how it was made: which teacher wrote how many traces, how long SFT
and RL ran, which curriculum chose the tasks and where it ended, what compute each stage took, and the
held-out table. :class:`PipelineRecord` gathers these; :func:`pipeline_record` reads them from the pipeline's
output folders (the collect folder, the SFT and RL runs, the evaluation folder); :func:`model_card` turns a
record into a ``huggingface_hub.ModelCard``; :func:`push_student_to_hub` uploads the model folder with that card
as its ``README.md`` (the folder itself is not modified).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from sec_rl.pipeline.report import StageReport

__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "CurriculumState",
    "PipelineRecord",
    "load_curriculum_state",
    "model_card",
    "pipeline_record",
    "push_student_to_hub",
    "training_steps",
]

logger = logging.getLogger(__name__)

TAGS = ("sec-rl", "trl", "web-agent", "miniwob", "browsergym", "curriculum-learning", "grpo", "sft")
#: Left out of the upload: intermediate checkpoints (optimizer states), TensorBoard logs, lock files, and the
#: pickled training arguments (the Hub flags pickles; the card records what matters).
DEFAULT_IGNORE_PATTERNS = ("checkpoint-*", "runs", "*.lock", "*.tmp", "training_args.bin", "README.md")
_WEIGHTS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "adapter_model.*")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# -- the curriculum's final state ------------------------------------------------------------------
@dataclass
class CurriculumState:
    """A saved curriculum: its strategy, final probabilities per category, and what they were computed from.

    ``params`` are the strategy's parameters used to compute the probabilities (the state file holds the learned
    values, e.g. SEC's Q-values, but not configuration such as the temperature).
    """

    strategy: str
    probabilities: dict[str, float]
    num_updates: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _checkpoints(run_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, newest (highest N) first."""
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _find_in_run(path: str | os.PathLike[str], name: str) -> Path | None:
    """``name`` in a run folder, else in its newest checkpoint that has it; a path to the file itself works too."""
    path = Path(path)
    if path.is_file():
        return path if path.name == name else None
    if not path.is_dir():
        return None
    if (path / name).is_file():
        return path / name
    return next((c / name for c in _checkpoints(path) if (c / name).is_file()), None)


def load_curriculum_state(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    sizes: Sequence[int] | None = None,
) -> CurriculumState:
    """Read ``curriculum_state.json`` from a training output folder (or its newest checkpoint) or the file itself.

    By default the probabilities are those the trainer saved with the state (the next draw's). With ``params``
    (e.g. ``{"temperature": 0.2}``) the strategy is rebuilt from its saved values with those settings instead.
    ``sizes`` (rows per category) matter only to the ``random`` strategy when it is rebuilt.
    """
    from sec_rl.curriculum import CURRICULA, make_curriculum
    from sec_rl.trainers.mixin import CURRICULUM_STATE_NAME

    file = _find_in_run(path, CURRICULUM_STATE_NAME)
    if file is None:
        raise FileNotFoundError(
            f"no {CURRICULUM_STATE_NAME} in {path} or its checkpoint-* folders: it is written on every save of a "
            "trainer with a curriculum (curriculum != 'none'); pass that trainer's output_dir."
        )
    try:
        saved = json.loads(file.read_text())
        state = saved["curriculum"]
        name, categories = str(state["name"]), list(state["categories"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{file} is not a curriculum state ({error!r}): expected {{'curriculum': {{'name': ..., ...}}}}."
        ) from None
    strategy = "reverse" if name == "ordered" and state.get("reverse") else name
    if strategy not in CURRICULA:
        raise ValueError(f"{file}: unknown curriculum {name!r}; known: {sorted(CURRICULA)}.")
    saved_params = saved.get("params")
    total_updates = int(state.get("total_updates") or max(1, int(state.get("num_updates", 1))))
    if params is None and isinstance(saved.get("probabilities"), dict):
        # What the trainer itself computed when saving: exact, whatever the strategy's settings were.
        probabilities = {str(c): float(p) for c, p in saved["probabilities"].items()}
        params = dict(saved_params or {})
        counts = dict(zip(categories, map(int, state.get("counts", [0] * len(categories)))))
        return CurriculumState(strategy, probabilities, int(state.get("num_updates", 0)), counts, params, str(file))
    if params is None:
        params = saved_params
        if params is None:
            params = {}
            logger.warning(
                "%s holds no strategy parameters (written by an older sec-rl); the probabilities use %r's "
                "defaults. Pass params (e.g. {'temperature': 0.2}) for the run's own.",
                file,
                strategy,
            )
    curriculum = make_curriculum(strategy, categories, sizes=sizes, total_updates=total_updates, **dict(params))
    curriculum.load_state_dict(state)
    probabilities = {c: float(p) for c, p in curriculum.probabilities().items()}
    counts = {c: int(n) for c, n in zip(curriculum.categories, curriculum.counts)}
    return CurriculumState(strategy, probabilities, curriculum.num_updates, counts, dict(params), str(file))


# -- other records of the runs ---------------------------------------------------------------------
def training_steps(run_dir: str | os.PathLike[str]) -> int | None:
    """Optimizer steps of a run: ``global_step`` of its ``trainer_state.json`` (or newest checkpoint's)."""
    file = _find_in_run(run_dir, "trainer_state.json")
    if file is None:
        return None
    return int(json.loads(file.read_text()).get("global_step", 0))


def _compute_flops(folders: Iterable[str | os.PathLike[str] | None]) -> dict[str, float]:
    """FLOPs per stage from the ``compute.json`` files of the runs, the first folder's value winning per stage."""
    flops: dict[str, float] = {}
    for folder in folders:
        if folder is None:
            continue
        file = _find_in_run(folder, "compute.json")
        if file is None:
            continue
        data = json.loads(file.read_text())
        for stage, entry in data.get("stages", {}).items():
            flops.setdefault(stage, float(entry["flops"]))
    return flops


# -- the record ------------------------------------------------------------------------------------
@dataclass
class PipelineRecord:
    """How the student was made, for its model card.

    Attributes:
        teacher: the teacher's name (as recorded in its traces).
        episodes: teacher episodes collected; ``successful_traces``: those kept for SFT (successful, no env error).
        sft_steps, rl_steps: optimizer steps of each run.
        curriculum_strategy, curriculum_probabilities: the curriculum and its final probabilities per category;
            ``curriculum_stage`` says which run they are from (``"rl"`` or ``"sft"``).
        evaluation: the held-out table (:class:`~sec_rl.pipeline.report.StageReport`).
        compute: stage -> FLOPs (e.g. ``teacher``, ``sft``, ``rollouts``, ``updates``).
        base_model: the student's starting point (a Hub name); datasets: Hub datasets used (e.g. the traces).
    """

    teacher: str | None = None
    episodes: int | None = None
    successful_traces: int | None = None
    sft_steps: int | None = None
    rl_steps: int | None = None
    curriculum_strategy: str | None = None
    curriculum_probabilities: dict[str, float] = field(default_factory=dict)
    curriculum_stage: str | None = None
    evaluation: StageReport | None = None
    compute: dict[str, float] = field(default_factory=dict)
    base_model: str | None = None
    datasets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the evaluation as :meth:`StageReport.to_dict`."""
        data = json.loads(json.dumps({k: v for k, v in vars(self).items() if k != "evaluation"}))
        data["evaluation"] = None if self.evaluation is None else self.evaluation.to_dict()
        return data


def pipeline_record(
    *,
    traces: str | os.PathLike[str] | None = None,
    sft_dir: str | os.PathLike[str] | None = None,
    rl_dir: str | os.PathLike[str] | None = None,
    eval_dir: str | os.PathLike[str] | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    teacher: str | None = None,
    curriculum_params: Mapping[str, Any] | None = None,
) -> PipelineRecord:
    """A record read from the pipeline's folders; each is optional (a missing one is left out, with a warning).

    Args:
        traces: the collect folder (``traces-*.jsonl``): teacher name and trace counts.
        sft_dir, rl_dir: the training output folders: steps (``trainer_state.json``), the curriculum
            (``curriculum_state.json``, the RL run's if it has one, else the SFT run's) and ``compute.json``.
        eval_dir: the evaluation folder of :func:`~sec_rl.pipeline.report.evaluate_stages`.
        base_model, datasets, teacher: for the card (``teacher`` overrides the name found in the traces).
        curriculum_params: the strategy's parameters (see :func:`load_curriculum_state`).
    """
    from sec_rl.trainers.mixin import CURRICULUM_STATE_NAME

    record = PipelineRecord(base_model=base_model, datasets=list(datasets), teacher=teacher)
    folders = {"traces": traces, "sft_dir": sft_dir, "rl_dir": rl_dir, "eval_dir": eval_dir}
    for name, folder in folders.items():
        if folder is not None and not Path(folder).exists():
            # The CLI's defaults name every step's folder; a pipeline that skipped a step still gets its card.
            logger.warning("%s=%r does not exist: the card leaves that part out.", name, str(folder))
            folders[name] = None
    traces, sft_dir, rl_dir, eval_dir = folders.values()
    if traces is not None:
        from sec_rl.pipeline.traces import read_traces

        rows = read_traces(traces, on_error="skip")
        record.episodes = len(rows)
        record.successful_traces = sum(t.success and not t.env_error for t in rows)
        if record.teacher is None and rows:
            names = Counter(t.teacher for t in rows).most_common()
            record.teacher = " + ".join(n for n, _ in names)
    if sft_dir is not None:
        record.sft_steps = training_steps(sft_dir)
    if rl_dir is not None:
        record.rl_steps = training_steps(rl_dir)
    for stage, folder in (("rl", rl_dir), ("sft", sft_dir)):
        if folder is not None and _find_in_run(folder, CURRICULUM_STATE_NAME) is not None:
            state = load_curriculum_state(folder, params=curriculum_params)
            record.curriculum_strategy, record.curriculum_stage = state.strategy, stage
            record.curriculum_probabilities = state.probabilities
            break
    record.compute = _compute_flops([rl_dir, sft_dir, traces])
    if eval_dir is not None:
        from sec_rl.pipeline.report import StageReport

        record.evaluation = StageReport.load(eval_dir)
    return record


# -- the card --------------------------------------------------------------------------------------
def _flops(value: float) -> str:
    return f"{value:.3e}" if math.isfinite(value) else "-"


def _card_body(record: PipelineRecord, repo_id: str, base_model: str | None) -> str:
    name = repo_id.split("/")[-1]
    lines = [
        f"# {name}",
        "",
        "A web agent (MiniWoB++ through BrowserGym) trained with `sec-rl` (a TRL plugin) in the three "
        "stages of *How to Train Your LLM Web Agent* (arXiv 2507.04103): a teacher's successful episodes, SFT of "
        "the student on them, then multi-turn GRPO on live episodes, with a curriculum over tasks choosing what "
        "to practise.",
        "",
        "## Pipeline",
        "",
        "| step | record |",
        "|---|---|",
        f"| base model | {base_model or '-'} |",
        f"| teacher | {record.teacher or '-'} |",
    ]
    if record.episodes is not None:
        kept = "-" if record.successful_traces is None else f"{record.successful_traces:,}"
        lines.append(f"| teacher traces | {record.episodes:,} episodes collected, {kept} successful kept for SFT |")
    lines.append(f"| SFT | {'-' if record.sft_steps is None else f'{record.sft_steps:,} steps'} |")
    lines.append(f"| RL (multi-turn GRPO) | {'-' if record.rl_steps is None else f'{record.rl_steps:,} steps'} |")
    lines.append(f"| curriculum | {record.curriculum_strategy or 'none'} |")
    if record.datasets:
        lines.append(f"| datasets | {', '.join(record.datasets)} |")

    if record.evaluation is not None and record.evaluation.stages:
        lines += [
            "",
            "## Evaluation",
            "",
            "Held-out goals are seeds of the training tasks never trained on; held-out tasks are tasks never "
            "trained on.",
            "",
            record.evaluation.table(),
            "",
            record.evaluation.caption(),
        ]
    if record.curriculum_probabilities:
        where = f" at the end of the {record.curriculum_stage.upper()} run" if record.curriculum_stage else ""
        lines += [
            "",
            "## Curriculum",
            "",
            f"Strategy `{record.curriculum_strategy}`; its probability of drawing each task{where}:",
            "",
            "| task | probability |",
            "|---|---:|",
        ]
        ranked = sorted(record.curriculum_probabilities.items(), key=lambda item: (-item[1], item[0]))
        lines += [f"| {task} | {p:.4f} |" for task, p in ranked]
    if record.compute:
        total = sum(record.compute.values())
        lines += ["", "## Compute", "", "| stage | FLOPs | share |", "|---|---:|---:|"]
        for stage, flops in record.compute.items():
            share = f"{flops / total:.1%}" if total > 0 else "-"
            lines.append(f"| {stage} | {_flops(flops)} | {share} |")
        lines += [
            f"| **total** | {_flops(total)} | |",
            "",
            "Inference 2 x N x tokens, training 6 x N x tokens (N without input embeddings).",
        ]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        "from sec_rl.web import ModelAgent, WebConfig, evaluate",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        "agent = ModelAgent(model, tokenizer)  # greedy; one thought + action per turn",
        "web = WebConfig(web_num_workers=1)  # the web_* settings the student was trained with",
        'print(evaluate(agent, ["click-button"], range(3), web).table())',
        "```",
        "",
    ]
    return "\n".join(lines)


def model_card(record: PipelineRecord, repo_id: str, base_model: str | None = None) -> ModelCard:
    """The student's card: YAML metadata (library, tags, base model, datasets) and the pipeline's record."""
    from huggingface_hub import ModelCard, ModelCardData

    base_model = base_model or record.base_model
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=list(TAGS),
        base_model=base_model,
        datasets=list(record.datasets) or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_card_body(record, repo_id, base_model)}")


# -- the push --------------------------------------------------------------------------------------
def _check_model_folder(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"model_dir {str(model_dir)!r} does not exist: pass the folder the trainer saved the student to "
            "(trainer.save_model(output_dir))."
        )
    has_config = (model_dir / "config.json").is_file() or (model_dir / "adapter_config.json").is_file()
    has_weights = any(any(model_dir.glob(pattern)) for pattern in _WEIGHTS)
    if not (has_config and has_weights):
        present = sorted(p.name for p in model_dir.iterdir())[:15]
        missing = [what for what, ok in (("config.json", has_config), ("weights", has_weights)) if not ok]
        raise ValueError(
            f"{model_dir} holds no saved model (missing {' and '.join(missing)}; found {present}): save it with "
            "model.save_pretrained(dir) and tokenizer.save_pretrained(dir), or trainer.save_model(dir)."
        )


def _stage_upload(model_dir: Path, staging: Path, ignore: Sequence[str]) -> list[str]:
    """Links to the folder's files (not copies: weights can be gigabytes) in ``staging``, minus ``ignore``."""
    from fnmatch import fnmatch

    linked = []
    for file in sorted(model_dir.rglob("*")):
        relative = file.relative_to(model_dir)
        if not file.is_file() or any(fnmatch(part, pattern) for part in relative.parts for pattern in ignore):
            continue
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(file.resolve())
        linked.append(relative.as_posix())
    return linked


def push_student_to_hub(
    model_dir: str | os.PathLike[str],
    repo_id: str,
    record: PipelineRecord,
    *,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str = "Upload the student of the sec-rl web-agent pipeline",
    base_model: str | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
) -> str:
    """Create ``repo_id`` (if needed), upload the model folder with the card as ``README.md``; return the commit URL.

    The folder is uploaded as it is, minus ``ignore_patterns`` (checkpoints, logs, pickles, an old README); the
    card is written to the upload, not into ``model_dir``. ``endpoint`` defaults to huggingface.co (or
    ``HF_ENDPOINT``); ``token`` to the logged-in user's.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    model_dir = Path(model_dir)
    _check_model_folder(model_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"repo_id {repo_id!r} is not a Hub repository id ({error}): write e.g. your-name/model."
        ) from None
    card = model_card(record, repo_id, base_model=base_model)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="sec-rl-push-") as tmp:
        staging = Path(tmp)
        files = _stage_upload(model_dir, staging, ignore_patterns)
        (staging / "README.md").write_text(str(card), encoding="utf-8")
        logger.info("uploading %d files + README.md to %s", len(files), repo_id)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=staging, repo_type="model", commit_message=commit_message
        )
    return str(commit.commit_url)
