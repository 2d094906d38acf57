"""The pipeline's stages as functions of their parsed arguments: what `sec-rl sft|grpo|evaluate|push` run.

Each stage reads what the previous one wrote (traces, checkpoints, evaluation files) from disk, so the
stages run one by one (each under ``accelerate launch`` when it trains), or chained by
:func:`sec_rl.demo.web.run_web_demo` / ``examples/web_agent/pipeline.py``. Argument dataclasses carry
help text and parse from flags or YAML with ``trl.TrlParser``, next to TRL's own ``ModelConfig``.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sec_rl.web.config import HIDDEN, WebConfig, json_option, with_default
from sec_rl.web.tasks import TRAIN_SEEDS_START

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import ModelConfig

    from sec_rl.trainers.sft_config import SECSFTConfig
    from sec_rl.trainers.web_grpo import SECWebGRPOConfig

__all__ = [
    "PushArguments",
    "WebEvalArguments",
    "WebGRPOArguments",
    "WebSFTArguments",
    "load_sft_dataset",
    "parse_stages",
    "run_evaluate",
    "run_grpo",
    "run_push",
    "run_sft",
]


# -- SFT -------------------------------------------------------------------------------------------
@dataclass
class WebSFTArguments:
    """Where the SFT stage finds its traces."""

    traces: str = field(
        default="outputs/traces",
        metadata={
            "help": "Trace folder or .jsonl file written by `sec-rl collect`, or a Hub dataset id with the "
            "columns 'messages' and 'task'."
        },
    )
    traces_on_error: str = field(
        default="raise",
        metadata={"help": "A malformed trace row: 'raise' (stop, naming file:line) or 'skip' (warn, go on)."},
    )
    only_successful: bool = field(default=True, metadata={"help": "Train on successful episodes only."})
    max_traces: int | None = field(
        default=None,
        metadata={
            "help": "At most this many SFT rows, taken in turn from each task so that every task keeps its share "
            "(per_step: one row per turn; None: all)."
        },
    )


def load_sft_dataset(args: WebSFTArguments) -> Dataset:
    """The traces as a ``messages`` + ``task`` dataset: from a collect folder/file, else from the Hub."""
    from sec_rl.pipeline.traces import read_traces, traces_to_dataset

    if args.max_traces is not None and args.max_traces < 1:
        raise ValueError(f"--max_traces {args.max_traces}: give a positive number of rows, or leave it unset for all.")
    if os.path.exists(args.traces):
        dataset = traces_to_dataset(
            read_traces(args.traces, on_error=args.traces_on_error), only_successful=args.only_successful
        )
    else:
        from datasets import load_dataset

        dataset = load_dataset(args.traces, split="train")
        if args.only_successful and "success" in dataset.column_names:
            dataset = dataset.filter(lambda row: bool(row["success"]))
        if len(dataset) == 0:
            raise ValueError(f"the dataset {args.traces!r} holds no successful trace: nothing to learn from.")
    if args.max_traces is not None:
        tasks = dataset["task"] if "task" in dataset.column_names else [""] * len(dataset)
        dataset = dataset.select(_each_task_in_turn(tasks, args.max_traces))
    return dataset


def _each_task_in_turn(tasks: list[str], limit: int) -> list[int]:
    """The indices of ``limit`` rows taken one task at a time, each task's rows in their order, in the dataset's
    order: a cap on rows sorted by task must not keep the first tasks only."""
    seen: collections.Counter[str] = collections.Counter()
    places = []  # (the row's place within its task, its index)
    for index, task in enumerate(tasks):
        places.append((seen[task], index))
        seen[task] += 1
    return sorted(index for _, index in sorted(places)[:limit])


def _load_model(model_args: ModelConfig) -> tuple[Any, Any]:
    """The model and tokenizer ``ModelConfig`` names (a path, Hub id or packaged-model name), ready to train."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_quantization_config

    from sec_rl.models import check_trainable_checkpoint, resolve_model

    name = resolve_model(model_args.model_name_or_path)  # a registry name (smollm2-135m) -> its folder
    check_trainable_checkpoint(name)
    kwargs: dict[str, Any] = {"revision": model_args.model_revision}
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = model_args.dtype
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision)
    return model, tokenizer


def run_sft(args: WebSFTArguments, training_args: SECSFTConfig, model_args: ModelConfig) -> Any:
    """Fine-tune the student on the teacher's successful traces (loss on assistant turns); returns the trainer."""
    from trl import get_peft_config

    from sec_rl.pipeline.compute import ComputeCallback
    from sec_rl.trainers import SECSFTTrainer
    from sec_rl.trainers.progress import use_concise_progress

    dataset = load_sft_dataset(args)
    model, tokenizer = _load_model(model_args)
    trainer = SECSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[ComputeCallback(stage="sft", base=_traces_compute_file(args.traces))],
    )
    use_concise_progress(trainer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(training_args))
    _save(trainer)
    return trainer


def _save(trainer: Any) -> None:
    """The model, and ``trainer_state.json`` (its log history: the training curve) beside it, as a checkpoint has."""
    trainer.save_model(trainer.args.output_dir)
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(os.path.join(trainer.args.output_dir, "trainer_state.json"))


def _traces_compute_file(traces: str | os.PathLike[str]) -> str:
    """The teacher's ``compute.json`` next to the traces (written by collection), so SFT's ledger carries it."""
    file = Path(traces) / "compute.json"
    return str(file) if file.is_file() else "auto"


def _last_checkpoint(training_args: Any) -> str | None:
    """Resume from the newest checkpoint of ``output_dir`` when there is one (long work can resume)."""
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = training_args.output_dir
    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


# -- GRPO ------------------------------------------------------------------------------------------
@dataclass
class WebGRPOArguments:
    """Which goals the RL stage trains on."""

    tasks: list[str] | None = field(
        default=None, metadata={"help": "Training tasks (default: the 99 training tasks of the study's split)."}
    )
    num_seeds: int = field(default=100, metadata={"help": "Seeds per task, from `first_seed` on."})
    first_seed: int = field(
        default=TRAIN_SEEDS_START,
        metadata={
            "help": "First training seed: 3 in the study's split (seeds 0-2 are the held-out goals); later when more "
            "seeds are held out, as the demo does."
        },
    )


def run_grpo(args: WebGRPOArguments, training_args: SECWebGRPOConfig, model_args: ModelConfig) -> Any:
    """SEC-GRPO over web episodes from ``model_name_or_path`` (an SFT checkpoint or any model); returns the trainer."""
    from trl import get_peft_config

    from sec_rl.pipeline.compute import ComputeCallback
    from sec_rl.trainers.progress import use_concise_progress
    from sec_rl.trainers.web_grpo import SECWebGRPOTrainer
    from sec_rl.web.tasks import train_goals

    model, tokenizer = _load_model(model_args)
    trainer = SECWebGRPOTrainer(
        model=model,
        args=training_args,
        train_dataset=train_goals(range(args.first_seed, args.first_seed + args.num_seeds), args.tasks),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[ComputeCallback(stage="rl")],
    )
    use_concise_progress(trainer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(training_args))
    _save(trainer)
    return trainer


# -- evaluation ------------------------------------------------------------------------------------
@dataclass
class WebEvalArguments(WebConfig):
    """Stages to evaluate on the held-out goals and tasks. The ``web_*`` fields and ``chat_template_kwargs`` are the
    training's, so that a student is prompted exactly as it was trained."""

    web_layout: str = with_default("web_layout", "episode")  # as the pipeline's students are trained
    stages: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Stages as name=model_path (a checkpoint folder or Hub name), e.g. sft=outputs/sft "
            "rl=outputs/grpo/checkpoint-400. 'name=scripted' evaluates the scripted teacher."
        },
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Evaluation JSON per stage, table, plot."})
    goal_tasks: list[str] | None = field(
        default=None, metadata={"help": "Tasks of the held-out goals (default: all 99 training tasks)."}
    )
    heldout_tasks: list[str] | None = field(
        default=None, metadata={"help": "Held-out tasks (default: the 23 of the split; [] to skip)."}
    )
    temperature: float = field(default=0.0, metadata={"help": "Decoding temperature of the students (0: greedy)."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens per turn (thought + action)."})
    chat_template_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Extra arguments of the chat template, as a dict or JSON (e.g. '{\"enable_thinking\": false}'): "
            "the training run's chat_template_kwargs."
        },
    )
    force: bool = field(default=False, metadata={"help": "Evaluate again stages whose results are saved."})
    layout: str | None = field(default=None, metadata=HIDDEN)  # renamed web_layout

    _renamed: ClassVar[dict[str, str]] = {**WebConfig._renamed, "layout": "web_layout"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chat_template_kwargs = json_option(
            "chat_template_kwargs", self.chat_template_kwargs, '{"enable_thinking": false}'
        )


def parse_stages(specs: list[str]) -> dict[str, str]:
    """``["sft=outputs/sft", ...]`` -> ``{"sft": "outputs/sft"}``, with an error naming a malformed entry."""
    stages: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"stage {spec!r} is not name=path: write e.g. sft=outputs/sft.")
        stages[name] = path
    if not stages:
        raise ValueError("no stage to evaluate: pass --stages name=path [name=path ...].")
    return stages


def run_evaluate(args: WebEvalArguments) -> Any:
    """Every stage on the held-out goals and tasks; writes the table (markdown) and plot; returns the report."""
    from sec_rl.pipeline.report import evaluate_stages

    stages: dict[str, Any] = {}
    for name, path in parse_stages(args.stages).items():
        if path == "scripted":
            from sec_rl.pipeline.scripted import ScriptedTeacher

            stages[name] = ScriptedTeacher()
        else:
            stages[name] = path
    report = evaluate_stages(
        stages,
        args,
        goal_tasks=args.goal_tasks,
        task_tasks=args.heldout_tasks,
        output_dir=args.output_dir,
        force=args.force,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        chat_template_kwargs=args.chat_template_kwargs,  # type: ignore[arg-type]
    )
    print(report.table())
    return report


# -- Hub -------------------------------------------------------------------------------------------
@dataclass
class PushArguments:
    """What to push, and where the pipeline's records are."""

    model_dir: str = field(default="outputs/grpo", metadata={"help": "The student to push (a saved model folder)."})
    repo_id: str = field(default="", metadata={"help": "Hub repository, e.g. your-name/web-agent-sft-rl."})
    traces: str | None = field(default="outputs/traces", metadata={"help": "The collect folder (trace counts)."})
    sft_dir: str | None = field(default="outputs/sft", metadata={"help": "The SFT output folder (its steps)."})
    rl_dir: str | None = field(
        default="outputs/grpo", metadata={"help": "The RL output folder (steps, curriculum_state.json)."}
    )
    eval_dir: str | None = field(default="outputs/eval", metadata={"help": "The evaluation folder (its table)."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "The student's base model, for the card (a packaged name such as smollm2-135m is named "
            "by its Hub id)."
        },
    )
    private: bool = field(default=False, metadata={"help": "Create the repository private."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub endpoint (default: huggingface.co)."})


def run_push(args: PushArguments) -> str:
    """Push the student with a model card that records the pipeline; returns the commit URL."""
    from sec_rl.models import hub_model_id
    from sec_rl.pipeline.hub import pipeline_record, push_student_to_hub

    if not args.repo_id:
        raise ValueError("set --repo_id (e.g. your-name/web-agent): the Hub repository to push to.")
    record = pipeline_record(
        traces=args.traces,
        sft_dir=args.sft_dir,
        rl_dir=args.rl_dir,
        eval_dir=args.eval_dir,
        base_model=hub_model_id(args.base_model),  # smollm2-135m -> its Hub id, not a cache path
    )
    return push_student_to_hub(args.model_dir, args.repo_id, record, private=args.private, endpoint=args.endpoint)
