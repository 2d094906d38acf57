"""Does web RL learn? SEC-GRPO from a weak SFT start, several seeds, both sample modes, paired intervals.

The scripted expert (``TextWorldTeacher``; ``ScriptedTeacher`` on MiniWoB++) collects traces on the training goals;
a tiny student built offline learns them by SFT, saved at each of ``--sft_budgets`` (optimizer steps, constant
learning rate after warm-up, so that each checkpoint is that budget's SFT). Each is evaluated greedily on the
held-out goals; the *start* is the first whose success lies in ``--start_range`` (a weak policy, which succeeds on
some goals and fails on others), else the closest. From that checkpoint, ``SECWebGRPOTrainer`` trains for
``--rl_steps`` steps in each sample mode (``episode``, ``per_step``) with each seed; a mode's start is the SFT
checkpoint of that budget trained in its layout (per_step: traces collected in that layout, one SFT row per turn).
Every ``--eval_every`` steps a checkpoint is evaluated greedily on the held-out goals (seeds never trained on), so
each run has a learning curve: sampled success per step (the rollouts') and greedy success per checkpoint.

The figure of merit is the final greedy success minus the start's, paired on the same goals. Its 95% interval is a
percentile bootstrap that resamples seeds and goals (the seed-to-seed spread of RL counts, not only the goals').

    python benchmarks/web_learning.py                                   # text world, 5 seeds, both modes
    python benchmarks/web_learning.py --jobs 8 --device cuda            # a GPU machine: 8 runs at once
    python benchmarks/web_learning.py --summary_only                    # the table from the saved runs
    python benchmarks/web_learning.py --env browsergym --tasks click-test click-test-2 click-dialog \\
        click-dialog-2 focus-text-2 enter-text --train_seed_start 50 --eval_seeds 20  # MiniWoB++ (Chromium)
    ... --modes episode --seeds 0 1 2 --rl_starts 50 200 300   # the compute frontier: RL from more SFT budgets

With ``--rl_starts``, RL also runs from those SFT budgets, and the summary adds the compute frontier: greedy success
against the FLOPs spent (the pipeline's ``ComputeLedger``: SFT, then rollouts and updates), SFT alone against SFT +
RL, and ``compute_to_match`` (how much compute SFT + RL needs to reach SFT's best), on the seed mean and per seed;
in ``per_step`` mode SFT alone is that layout's SFT, evaluated in that layout, so both strategies are prompted alike.

With ``--fresh_goals A B``, the start and every run's final checkpoint are also evaluated on goals A..B-1, used
nowhere else: settings chosen after seeing the held-out evaluations get a clean check. ``--start B`` fixes the SFT
budget RL starts from (without ``--rl_starts``, the only budget evaluated). ``--compare_with DIR`` adds this run's
final success minus DIR's (another curriculum's, from the same starts), with a 95% interval.

With ``--student`` (a registry name such as ``smollm2-135m``, a Hub id or a folder), a pretrained student with its
own tokenizer and chat template replaces the tiny one; ``--rl_batch_size`` then splits each RL step's episodes into
passes that fit in memory (gradient accumulation).

With ``--starts_from DIR``, the traces, student, SFT checkpoints and their evaluations are copied from an earlier
``--output_dir``, so that other RL settings (``--curriculum``, ``--rl_lr``, ...) run from the same starts.

Resumable: traces, the student, the SFT checkpoint, the start's evaluation and each (mode, seed) run are kept in
``--output_dir`` and skipped when done. The summary (``summary.json``, ``summary.md``) records the settings, the
machine and the package versions.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

MODES = ("episode", "per_step")


@dataclass
class WebLearningArguments:
    """Settings of the study; the defaults are the text-world run documented in docs/benchmark-web-learning.md."""

    output_dir: str = field(default="outputs/web-learning", metadata={"help": "Every stage's outputs."})
    env: str = field(default="text", metadata={"help": "'text' (the text world) or 'browsergym' (MiniWoB++)."})
    tasks: list[str] = field(
        default_factory=lambda: ["click-button", "enter-text", "click-checkboxes"],
        metadata={"help": "Training tasks (their held-out goals are the evaluation)."},
    )
    train_seed_start: int = field(
        default=1000, metadata={"help": "Training goals are seeds train_seed_start.. (traces and RL)."}
    )
    train_seeds: int = field(default=200, metadata={"help": "Training seeds per task."})
    eval_seeds: int = field(default=100, metadata={"help": "Held-out goals per task: seeds 0..eval_seeds-1."})
    max_turns: int = field(default=4, metadata={"help": "Actions per episode at most."})
    max_page_chars: int | None = field(
        default=8000, metadata={"help": "Character budget of the page in a prompt (the demo's MiniWoB++ runs: 1200)."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "A system prompt replacing the default one (`web_system_prompt`) in every stage."},
    )
    num_workers: int = field(default=4, metadata={"help": "Environments in parallel (per run)."})
    student: str | None = field(
        default=None,
        metadata={
            "help": "A pretrained student instead of the tiny one: a registry name (smollm2-135m), a Hub id or "
            "a folder; its own tokenizer and chat template (the tiny student's sizes are then unused)."
        },
    )
    hidden_size: int = field(default=128, metadata={"help": "Width of the tiny student."})
    num_layers: int = field(default=2, metadata={"help": "Layers of the tiny student."})
    vocab_size: int = field(default=1024, metadata={"help": "Tokenizer vocabulary (trained on the traces)."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads of the tiny student."})
    sft_budgets: list[int] = field(
        default_factory=lambda: [150, 300, 600, 1200], metadata={"help": "SFT checkpoints (optimizer steps)."}
    )
    rl_starts: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Other SFT budgets RL also starts from (with the chosen start): the points of the compute "
            "frontier, SFT alone against SFT + RL at the FLOPs each spent."
        },
    )
    start_range: list[float] = field(
        default_factory=lambda: [0.2, 0.5], metadata={"help": "Held-out success wanted of the start (low high)."}
    )
    start: int | None = field(
        default=None,
        metadata={"help": "The SFT budget RL starts from (default: the first whose success lies in --start_range)."},
    )
    sft_lr: float = field(default=1e-3, metadata={"help": "SFT learning rate (constant after warm-up)."})
    sft_batch_size: int = field(default=16, metadata={"help": "SFT batch size."})
    modes: list[str] = field(
        default_factory=lambda: list(MODES),
        metadata={
            "help": "Sample modes to run. Each starts from SFT in its own layout (per_step: one row per turn, "
            "``traces-per_step``, ``sft-per_step``), at the same budget, chosen on the episode layout's SFT."
        },
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "RL seeds."})
    rl_steps: int = field(default=40, metadata={"help": "RL optimizer steps."})
    rl_lr: float = field(default=1e-4, metadata={"help": "RL learning rate."})
    rl_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Linear learning-rate warm-up of RL (steps). A fresh Adam's first steps are sign steps of the "
            "full learning rate on every weight, noise included: the start's action format breaks after one update."
        },
    )
    invalid_action_penalty: float = field(
        default=0.0,
        metadata={"help": "Return subtracted per malformed turn in RL (`web_invalid_action_penalty`)."},
    )
    loss_type: str | None = field(
        default=None,
        metadata={"help": "TRL's loss aggregation (default: the trainer's: 'grpo' for episode, 'dapo' for per_step)."},
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": "KL coefficient to the start (TRL's `beta`): holds the action format a small student loses."
        },
    )
    prompts_per_step: int = field(default=8, metadata={"help": "Goals per RL step."})
    rl_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Episodes per RL forward/backward pass, the rest of the step accumulated (default: all of "
            "a step's episodes in one pass; a pretrained student needs fewer to fit in memory)."
        },
    )
    num_generations: int = field(default=4, metadata={"help": "Episodes per goal (the GRPO group)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    max_new_tokens: int = field(default=48, metadata={"help": "Tokens per turn (rollouts and evaluation)."})
    curriculum: str = field(
        default="sec",
        metadata={"help": "Curriculum over tasks in RL ('sec', 'random'; 'none': TRL's sampler over goals)."},
    )
    curriculum_temperature: float = field(
        default=0.2,
        metadata={"help": "Boltzmann temperature of the curricula that have one ('sec'; 'target_success': rho)."},
    )
    curriculum_kwargs: str | None = field(
        default=None, metadata={"help": "Other parameters of the curriculum, JSON, e.g. '{\"target\": 0.5}'."}
    )
    skip_steps_without_signal: bool = field(
        default=True, metadata={"help": "Leave the weights alone on steps whose batch has no non-zero advantage."}
    )
    dynamic_sampling: str = field(
        default="none",
        metadata={
            "help": "Goal groups without a non-zero advantage: 'none' (trained as they are: no gradient), 'filter' "
            "(refilled with newly drawn goals, DAPO) or 'replace' (POLARIS); see SECGRPOConfig.dynamic_sampling."
        },
    )
    dynamic_sampling_max_batches: int = field(
        default=3, metadata={"help": "'filter': generation batches per RL step at most, the first included."}
    )
    eval_every: int = field(default=10, metadata={"help": "Greedy evaluation every this many RL steps."})
    device: str = field(default="cpu", metadata={"help": "'cpu' or 'cuda': SFT and the start's evaluation."})
    rl_device: str | None = field(
        default=None,
        metadata={
            "help": "Device of the RL runs (default: --device). A tiny student's runs go well as CPU processes."
        },
    )
    jobs: int = field(
        default=1,
        metadata={
            "help": "RL runs at once (processes). Each needs its own memory: an episode run of SmolLM2-135M from a "
            "weak start peaks near 13 GiB on the CPU (two at once ran out of a 24 GB machine's memory)."
        },
    )
    threads: int | None = field(default=None, metadata={"help": "Torch threads per run (default: cores / jobs)."})
    resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples."})
    starts_from: str | None = field(
        default=None,
        metadata={
            "help": "An earlier run's output_dir whose traces, student, SFT checkpoints and their evaluations are "
            "copied here (the same starts): compare RL settings, e.g. curricula, without training SFT again."
        },
    )
    compare_with: str | None = field(
        default=None,
        metadata={
            "help": "An earlier run's output_dir from the same starts (e.g. another curriculum): the summary adds "
            "the difference of the final success, this run's minus that one's, per start and mode, with a 95%% "
            "interval that resamples the goals and each side's seeds."
        },
    )
    fresh_goals: list[int] | None = field(
        default=None,
        metadata={
            "help": "Seeds A B: also evaluate the start and every run's final checkpoint on goals A..B-1 of the "
            "training tasks, used nowhere else (between the held-out and the training goals): a check of settings "
            "that were chosen after seeing the held-out evaluations."
        },
    )
    summary_only: bool = field(default=False, metadata={"help": "Only the summary, from the saved runs."})


# -- the stages ------------------------------------------------------------------------------------------------------
def _web(args: WebLearningArguments, layout: str = "episode") -> Any:
    """The web settings of every stage (collection, training, evaluation): a layout's prompts are the same in all."""
    from sec_rl.web.config import WebConfig

    return WebConfig(
        web_env=args.env, web_num_workers=args.num_workers, web_max_turns=args.max_turns, web_layout=layout,
        web_actions=["click", "fill", "noop"], web_max_page_chars=args.max_page_chars,
        web_system_prompt=args.system_prompt,
    )  # fmt: skip


def _train_seeds(args: WebLearningArguments) -> range:
    if args.train_seed_start < args.eval_seeds:
        raise ValueError(
            f"training seeds from {args.train_seed_start} overlap the held-out goals (seeds 0..{args.eval_seeds - 1}):"
            " raise --train_seed_start or lower --eval_seeds."
        )
    return range(args.train_seed_start, args.train_seed_start + args.train_seeds)


def _in_layout(out: Path, stage: str, layout: str) -> Path:
    """A stage's folder for a layout's SFT: ``traces``/``sft`` (episode), ``traces-per_step``/``sft-per_step``."""
    return out / stage if layout == "episode" else out / f"{stage}-{layout}"


def collect(args: WebLearningArguments, out: Path, layout: str = "episode") -> None:
    """The expert's traces on the training goals, in ``layout`` (per_step: one SFT row per turn)."""
    from sec_rl.pipeline.collect import collect_traces
    from sec_rl.pipeline.scripted import ScriptedTeacher, TextWorldTeacher

    with (TextWorldTeacher if args.env == "text" else ScriptedTeacher)(args.tasks) as teacher:
        collect_traces(teacher, [(t, s) for t in args.tasks for s in _train_seeds(args)],
                       _in_layout(out, "traces", layout), _web(args, layout), progress=False)  # fmt: skip


def build_student(args: WebLearningArguments, out: Path) -> None:
    """The untrained student in ``student-init``: ``--student``'s checkpoint as it is, or a tiny Llama whose
    tokenizer is trained on the traces."""
    if args.student:  # loaded and saved, so that a Hub id works as well as a folder
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sec_rl.models import resolve_model

        name = resolve_model(args.student)
        AutoTokenizer.from_pretrained(name).save_pretrained(out / "student-init")
        AutoModelForCausalLM.from_pretrained(name).save_pretrained(out / "student-init")
        return
    from sec_rl.models.tiny import build_tiny_model_and_tokenizer
    from sec_rl.pipeline.traces import read_traces, traces_to_dataset

    dataset = traces_to_dataset(read_traces(out / "traces"), only_successful=True)
    texts = [message["content"] for row in dataset["messages"] for message in row]
    build_tiny_model_and_tokenizer(texts, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                   num_layers=args.num_layers, num_heads=args.num_heads,
                                   max_position_embeddings=4096, seed=0, output_dir=out / "student-init")  # fmt: skip


def _common(args: WebLearningArguments, output_dir: Path, seed: int) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir), "use_cpu": args.device == "cpu", "bf16": False, "report_to": "none",
        "seed": seed, "logging_steps": 1, "gradient_checkpointing": False, "disable_tqdm": True,
        "curriculum_column": ["task"], "curriculum_seed": seed,
    }  # fmt: skip


class _SaveAt(TrainerCallback):
    """Saves a checkpoint at each budget (the model only: these are starts, not resume points)."""

    def __init__(self, steps: list[int]):
        self.steps = set(steps)

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = control.should_save or state.global_step in self.steps


def sft(args: WebLearningArguments, out: Path, layout: str = "episode") -> None:
    """SFT on the traces of ``layout``, the same budgets and settings in either layout."""
    from trl import ModelConfig

    from sec_rl.pipeline.compute import COMPUTE_FILE, ComputeCallback
    from sec_rl.pipeline.stages import WebSFTArguments, _load_model, load_sft_dataset
    from sec_rl.trainers import SECSFTConfig, SECSFTTrainer
    from sec_rl.trainers.progress import use_concise_progress

    config = SECSFTConfig(
        max_steps=max(args.sft_budgets), learning_rate=args.sft_lr, per_device_train_batch_size=args.sft_batch_size,
        lr_scheduler_type="constant_with_warmup", warmup_steps=min(50, max(1, min(args.sft_budgets) // 5)),
        max_length=4096, save_strategy="no", save_only_model=True, curriculum="sec", curriculum_temperature=1.0,
        curriculum_kwargs={"unsampled": "keep"},
        **{**_common(args, _in_layout(out, "sft", layout), 0), "logging_steps": max(1, max(args.sft_budgets) // 10)},
    )  # fmt: skip
    traces = _in_layout(out, "traces", layout)
    model, tokenizer = _load_model(ModelConfig(str(out / "student-init")))
    dataset = load_sft_dataset(WebSFTArguments(traces=str(traces)))
    trainer = SECSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                            callbacks=[_SaveAt(args.sft_budgets),
                                       ComputeCallback("sft", base=traces / COMPUTE_FILE)])  # fmt: skip
    use_concise_progress(trainer).train()
    (_in_layout(out, "sft", layout) / "done").write_text(json.dumps(trainer.state.log_history))


def copy_starts(source: Path, out: Path) -> None:
    """Copies what an earlier run trained before RL (the stages ``main`` skips when present); never overwrites."""
    if not (source / "sft" / "done").exists():
        raise FileNotFoundError(
            f"--starts_from {source}: no finished SFT there ({source / 'sft' / 'done'} is missing); give the "
            "output_dir of a run whose SFT stage completed."
        )
    folders = ["traces", "student-init", "sft", *(p.name for p in source.glob("start*") if "per_step" not in p.name)]
    if (source / "sft-per_step" / "done").exists():  # per_step evaluations of an older SFT are left behind
        folders += ["traces-per_step", "sft-per_step", *(p.name for p in source.glob("start*per_step"))]
    for folder in folders:
        if not (out / folder).exists():
            shutil.copytree(source / folder, out / folder)


def _check_per_step_start(args: WebLearningArguments, out: Path) -> None:
    """Refuses an output_dir whose per_step runs or evaluations started from the episode layout's SFT (before
    ``sft-per_step``): resumed, they would be mixed with runs from the per_step SFT."""
    if "per_step" not in args.modes or (out / "sft-per_step" / "done").exists():
        return
    stale = sorted(p.name for p in [*out.glob("start*per_step"), *out.glob("runs/*-per_step-seed*.json")])
    if stale:
        raise ValueError(
            f"{out} holds per_step evaluations or runs from the episode layout's SFT ({', '.join(stale[:3])}"
            f"{', ...' if len(stale) > 3 else ''}), made before per_step RL started from an SFT in its own layout: "
            "give a new --output_dir (--starts_from this one reuses its episode-layout stages)."
        )


def choose_start(args: WebLearningArguments, out: Path) -> tuple[int, dict[int, dict[str, float]]]:
    """Greedy success per held-out goal of the budgets a run needs, and the budget RL starts from (see the module
    docstring): every budget, or only a fixed ``--start`` without ``--rl_starts`` (each evaluation takes minutes)."""
    budgets = [args.start] if args.start is not None and not args.rl_starts else sorted(args.sft_budgets)
    per_budget = _evaluate_budgets(args, out, budgets, out / "start")
    success = {b: _mean(goals) for b, goals in per_budget.items()}
    if args.start is not None:
        return args.start, per_budget
    low, high = args.start_range
    inside = [b for b in budgets if low <= success[b] <= high]
    start = inside[0] if inside else min(budgets, key=lambda b: abs(success[b] - (low + high) / 2))
    return start, per_budget


def evaluate(
    args: WebLearningArguments,
    stages: dict[str, str],
    output_dir: Path,
    device: str,
    layout: str = "episode",
    seeds: range | None = None,
) -> dict[str, dict[str, float]]:
    """Greedy success of each stage (a checkpoint folder) per held-out goal: ``{stage: {"task/seed": 0 or 1}}``.
    The goals are seeds ``0..--eval_seeds-1`` of the training tasks, or ``seeds``."""
    from sec_rl.pipeline.report import episode_outcomes, evaluate_stages

    evaluate_stages(stages, _web(args, layout), goal_tasks=args.tasks, task_tasks=[],
                    goal_seeds=seeds or range(args.eval_seeds), output_dir=output_dir,
                    max_new_tokens=args.max_new_tokens, batch_size=64, device=device)  # fmt: skip
    return {
        name: {
            f"{task}/{seed}": success for (task, seed), success in episode_outcomes(output_dir, name, "goals").items()
        }
        for name in stages
    }


def _sft_in_layout(
    args: WebLearningArguments, out: Path, start: int, budgets: list[int], mode: str
) -> dict[int, dict[str, float]]:
    """SFT checkpoints' success per goal prompted in ``mode``'s layout: the start's, and with ``--rl_starts`` every
    budget's (the frontier sets SFT alone beside SFT + RL, both in the layout RL trains in)."""
    if not args.rl_starts:
        checkpoint = {"start": str(_in_layout(out, "sft", mode) / f"checkpoint-{start}")}
        return {start: evaluate(args, checkpoint, out / f"start-{start}-{mode}", args.device, mode)["start"]}
    return _evaluate_budgets(args, out, budgets, out / f"start-{mode}", mode)


def _evaluate_budgets(
    args: WebLearningArguments, out: Path, budgets: list[int], folder: Path, layout: str = "episode"
) -> dict[int, dict[str, float]]:
    """Each SFT budget's checkpoint (trained in ``layout``) evaluated greedily in that layout:
    ``{budget: {"task/seed": 0 or 1}}``."""
    checkpoints = {f"sft-{b}": str(_in_layout(out, "sft", layout) / f"checkpoint-{b}") for b in budgets}
    outcomes = evaluate(args, checkpoints, folder, args.device, layout)
    return {b: outcomes[f"sft-{b}"] for b in budgets}


def _mean(goals: dict[str, float]) -> float:
    return float(np.mean(list(goals.values()))) if goals else float("nan")


def _run_name(start: int, mode: str, seed: int) -> str:
    return f"sft{start}-{mode}-seed{seed}"


def rl_run(args: WebLearningArguments, out: Path, start: int, mode: str, seed: int) -> dict[str, Any]:
    """One RL run from the SFT checkpoint ``start``: its curves (sampled success per step; greedy success and the
    pipeline's FLOPs so far per checkpoint), also in ``runs/``."""
    import torch
    from transformers.utils import logging as hf_logging

    from sec_rl.pipeline.compute import COMPUTE_FILE, ComputeCallback, ComputeLedger
    from sec_rl.trainers.curriculum_args import takes_temperature
    from sec_rl.trainers.progress import use_concise_progress
    from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
    from sec_rl.web.tasks import goals_dataset

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.jobs))
    run_dir = out / "runs" / _run_name(start, mode, seed)
    device = args.rl_device or args.device
    episodes = args.prompts_per_step * args.num_generations
    tick = time.perf_counter()
    config = SECWebGRPOConfig(
        max_steps=args.rl_steps, learning_rate=args.rl_lr, warmup_steps=args.rl_warmup_steps,
        per_device_train_batch_size=args.rl_batch_size or episodes,
        gradient_accumulation_steps=episodes // (args.rl_batch_size or episodes), num_generations=args.num_generations,
        temperature=args.temperature, max_completion_length=args.max_new_tokens,
        beta=args.beta, loss_type=args.loss_type, save_strategy="steps", save_steps=args.eval_every,
        save_only_model=True,
        curriculum=args.curriculum,
        **({"curriculum_temperature": args.curriculum_temperature} if takes_temperature(args.curriculum) else {}),
        curriculum_kwargs=args.curriculum_kwargs,
        skip_steps_without_signal=args.skip_steps_without_signal, dynamic_sampling=args.dynamic_sampling,
        dynamic_sampling_max_batches=args.dynamic_sampling_max_batches,
        web_invalid_action_penalty=args.invalid_action_penalty, **asdict(_web(args, mode)),
        **{**_common(args, run_dir / "train", seed), "use_cpu": device == "cpu"},
    )  # fmt: skip
    start_dir = _in_layout(out, "sft", mode) / f"checkpoint-{start}"
    trainer = SECWebGRPOTrainer(
        model=str(start_dir),
        args=config,
        train_dataset=goals_dataset(args.tasks, _train_seeds(args)),
        callbacks=[ComputeCallback("rl")],  # on the start's ledger (its compute.json): SFT + rollouts + updates
    )
    use_concise_progress(trainer, prefix=f"[{mode} seed {seed}] ").train()
    log = trainer.state.log_history
    del trainer
    train_seconds = time.perf_counter() - tick
    checkpoints = sorted((run_dir / "train").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    greedy = evaluate(args, {p.name.split("-")[1]: str(p) for p in checkpoints}, run_dir / "eval", device, mode)
    result = {
        "mode": mode, "seed": seed, "start": start,
        "sampled_success": [e["web/success_rate"] for e in log if "web/success_rate" in e],
        "sampled_success_per_task": {  # None at a step that drew no goal of the task
            task: [e.get(f"web/success_rate/{task}") for e in log if "web/success_rate" in e] for task in args.tasks
        },
        "steps_skipped": int(max((e.get("steps_skipped_without_signal", 0) for e in log), default=0)),
        "generation_batches": sum(e.get("dynamic_sampling/generation_batches", 1) for e in log if "loss" in e),
        "greedy": greedy,  # {"step": {"task/seed": success}}
        "flops": {p.name.split("-")[1]: ComputeLedger.load(p / COMPUTE_FILE).total for p in checkpoints},
        "train_seconds": train_seconds, "seconds": time.perf_counter() - tick,
    }  # fmt: skip
    (out / "runs" / f"{_run_name(start, mode, seed)}.json").write_text(json.dumps(result, indent=1))
    return result


def fresh_goals(args: WebLearningArguments, out: Path, start: int) -> dict[str, Any]:
    """The start and each run's final checkpoint on goals never used before (``--fresh_goals``): settings chosen
    after seeing the held-out evaluations are checked on other goals. ``{mode: row}`` as in the summary."""
    seeds = range(*args.fresh_goals)
    if seeds.start < args.eval_seeds or seeds.stop > args.train_seed_start:
        raise ValueError(
            f"--fresh_goals {args.fresh_goals} must lie between the held-out goals (seeds 0..{args.eval_seeds - 1}) "
            f"and the training goals (from {args.train_seed_start}): e.g. --fresh_goals {args.eval_seeds} "
            f"{min(args.train_seed_start, 2 * args.eval_seeds)}."
        )
    folder = out / f"fresh-{seeds.start}-{seeds.stop}"
    rng, rows = np.random.default_rng(0), {}
    for mode in args.modes:
        runs = _runs(out, start, mode)
        finals = {f"seed{r['seed']}": str(out / "runs" / _run_name(start, mode, r["seed"]) / "train" /
                                          f"checkpoint-{_final_step(r)}") for r in runs}  # fmt: skip
        if not finals:
            continue
        stages = {"start": str(_in_layout(out, "sft", mode) / f"checkpoint-{start}"), **finals}
        outcomes = evaluate(args, stages, folder / mode, args.device, mode, seeds)
        goals = sorted(outcomes["start"])
        diffs = np.array([[outcomes[name][g] - outcomes["start"][g] for g in goals] for name in finals])
        low, high = paired_bootstrap(diffs, args.resamples, rng)
        rows[mode] = {
            "goals": len(goals), "start": _mean(outcomes["start"]), "final": [_mean(outcomes[n]) for n in finals],
            "difference": float(diffs.mean()), "low": low, "high": high, "excludes_zero": low > 0 or high < 0,
        }  # fmt: skip
        finals_text = ", ".join(f"{f:.1%}" for f in rows[mode]["final"])
        print(f"[fresh goals, seeds {seeds.start}-{seeds.stop - 1}] {mode}: start {rows[mode]['start']:.1%}, finals "
              f"{finals_text}, RL - start {rows[mode]['difference']:+.1%} [{low:+.1%}, {high:+.1%}]",
              flush=True)  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(rows, indent=1))
    return rows


# -- the summary -----------------------------------------------------------------------------------------------------
def paired_bootstrap(differences: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of the mean of a (seeds x goals) matrix, resampling seeds and goals."""
    seeds, goals = differences.shape
    means = np.empty(resamples)
    for i in range(resamples):
        rows = differences[rng.integers(0, seeds, seeds)]
        means[i] = rows[:, rng.integers(0, goals, goals)].mean()
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(
    args: WebLearningArguments,
    out: Path,
    start: int,
    layouts: dict[str, dict[int, dict[str, float]]],
    comparison: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The table, the curves and each mode's frontier; ``layouts[mode][budget]`` is an SFT checkpoint's success per
    goal, prompted in that mode's layout (as RL trains and evaluates it)."""
    from sec_rl.provenance import environment_info

    rng = np.random.default_rng(0)
    budgets = layouts["episode"]
    goals = sorted(budgets[start])
    rows, curves = {}, {}
    for mode in args.modes:
        before = layouts[mode][start]
        runs = _runs(out, start, mode)
        if not runs:
            continue
        final = [run["greedy"][_final_step(run)] for run in runs]
        diffs = np.array([[f[g] - before[g] for g in goals] for f in final])
        low, high = paired_bootstrap(diffs, args.resamples, rng)
        rows[mode] = {
            "seeds": [run["seed"] for run in runs], "start": _mean(before), "final": [_mean(f) for f in final],
            "difference": float(diffs.mean()), "low": low, "high": high, "excludes_zero": low > 0 or high < 0,
            "steps_skipped": [int(run["steps_skipped"]) for run in runs],
            "minutes_per_run": float(np.mean([run["seconds"] for run in runs]) / 60),
            # each goal's outcome, so that the intervals can be recomputed (with more seeds) without the output_dir
            "per_goal": {"start": before, "final": final},
        }  # fmt: skip
        curves[mode] = {
            "greedy": {"0": [_mean(before)] * len(runs)}
            | {step: [_mean(run["greedy"][step]) for run in runs] for step in runs[0]["greedy"]},
            "sampled": [run["sampled_success"] for run in runs],
        }
    fronts = {mode: front for mode in args.modes if (front := frontier(args, out, layouts[mode], mode)) is not None}
    summary = {
        "settings": asdict(args), "environment": environment_info(), "goals": len(goals), "start": start,
        "sft_success": {b: _mean(g) for b, g in budgets.items()}, "modes": rows, "curves": curves, "frontier": fronts,
    } | ({"comparison": comparison} if comparison else {})  # fmt: skip
    lines = [
        f"Held-out goals: {len(goals)} ({', '.join(args.tasks)}; seeds 0-{args.eval_seeds - 1}), greedy.",
        "SFT budgets (steps: success): "
        + ", ".join(f"{b}: {_mean(g):.1%}" for b, g in budgets.items())
        + f"; RL starts from {start} steps.",
        "",
        "| mode | seeds | start | final success per seed | RL - start [95% interval] | excludes 0 | steps skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, row in rows.items():
        finals = ", ".join(f"{f:.1%}" for f in row["final"])
        lines.append(
            f"| {mode} | {len(row['seeds'])} | {row['start']:.1%} | {finals} | {row['difference']:+.1%} "
            f"[{row['low']:+.1%}, {row['high']:+.1%}] | {'yes' if row['excludes_zero'] else 'no'} | "
            f"{row['steps_skipped']} |"
        )
    for mode, front in fronts.items():
        lines += [
            "",
            f"Compute frontier ({mode} mode; FLOPs of SFT + rollouts + updates, greedy success, mean of seeds):",
        ]
        lines += [f"- SFT {b} steps: {f:.3g} FLOPs, {p:.1%}" for b, (f, p) in front["sft"].items()]
        for b, points in front["sft+rl"].items():
            lines.append(
                f"- SFT {b} + RL: " + ", ".join(f"step {k}: {f:.3g} FLOPs, {p:.1%}" for k, (f, p) in points.items())
            )
        lines.append(f"- {front['match']} Per RL seed: {', '.join(front['per_seed'])}.")
    if comparison:
        lines += ["", f"Final success minus {args.compare_with}'s (paired goals, 95% interval):"]
        lines += [f"- {_comparison_line(name, row)}" for name, row in comparison.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def compare(args: WebLearningArguments, out: Path, other: Path) -> dict[str, dict[str, Any]]:
    """This run's final greedy success minus ``other``'s, from each start both ran RL from, per mode: the same goals
    on both sides (paired), independent seeds (each side's resampled on its own), a percentile bootstrap 95%."""
    rng, rows = np.random.default_rng(0), {}
    for mode in args.modes:
        starts = [{r["start"] for r in _runs(d, "*", mode)} for d in (out, other)]
        for start in sorted(set.intersection(*starts)):
            finals = [[r["greedy"][_final_step(r)] for r in _runs(d, start, mode)] for d in (out, other)]
            goals = sorted(finals[0][0])
            a, b = (np.array([[final[g] for g in goals] for final in side]) for side in finals)
            means = np.empty(args.resamples)
            for i in range(args.resamples):
                g = rng.integers(0, len(goals), len(goals))
                means[i] = (
                    a[rng.integers(0, len(a), len(a))][:, g].mean() - b[rng.integers(0, len(b), len(b))][:, g].mean()
                )
            low, high = np.percentile(means, [2.5, 97.5])
            row = {
                "seeds": [len(a), len(b)], "this": float(a.mean()), "other": float(b.mean()),
                "difference": float(a.mean() - b.mean()), "low": float(low), "high": float(high),
                "excludes_zero": bool(low > 0 or high < 0),
            }  # fmt: skip
            rows[f"sft{start}-{mode}"] = row
            print(f"[compare with {other}] {_comparison_line(f'sft{start}-{mode}', row)}")
    (out / "comparison.json").write_text(json.dumps({"other": str(other), "rows": rows}, indent=1))
    return rows


def _comparison_line(name: str, row: dict[str, Any]) -> str:
    this, other = row["seeds"]
    return (f"{name}: {row['this']:.1%} ({this} seeds) minus {row['other']:.1%} ({other}) = "
            f"{row['difference']:+.1%} [{row['low']:+.1%}, {row['high']:+.1%}]")  # fmt: skip


def _final_step(run: dict[str, Any]) -> str:
    """The step of a run's last evaluated checkpoint (its ``greedy`` keys are steps)."""
    return max(run["greedy"], key=int)


def _runs(out: Path, start: int | str, mode: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob(f"{_run_name(start, mode, '*')}.json"))]


def frontier(
    args: WebLearningArguments, out: Path, budgets: dict[int, dict[str, float]], mode: str
) -> dict[str, Any] | None:
    """SFT alone against SFT + RL at the FLOPs each spent (the pipeline's ledger): the points, each strategy's Pareto
    frontier, and how much compute SFT + RL needs to reach SFT's peak (``compute_to_match``), on the seed mean and per
    RL seed. None without runs from two starts or without the SFT checkpoints' ledgers."""
    from sec_rl.diagnosis import Frontier, compute_to_match, pareto_frontier
    from sec_rl.pipeline.compute import COMPUTE_FILE, ComputeLedger

    files = {b: _in_layout(out, "sft", mode) / f"checkpoint-{b}" / COMPUTE_FILE for b in sorted(budgets)}
    runs = {b: [run for run in _runs(out, b, mode) if "flops" in run] for b in budgets}
    runs = {b: group for b, group in runs.items() if group}
    if len(runs) < 2 or not all(file.exists() for file in files.values()):
        return None
    sft = {b: (ComputeLedger.load(file).total, _mean(budgets[b])) for b, file in files.items()}
    rl = {
        b: {step: (float(np.mean([r["flops"][step] for r in group])), float(np.mean([_mean(r["greedy"][step])
            for r in group]))) for step in group[0]["flops"]}
        for b, group in runs.items()
    }  # fmt: skip

    def front(name: str, points: list[tuple[float, float]]) -> Frontier:
        return Frontier(name, *pareto_frontier(*np.array(points).T))

    pure = front("SFT", list(sft.values()))
    match = compute_to_match(front("SFT + RL", [p for points in rl.values() for p in points.values()]), pure)
    per_seed = []
    for seed in sorted({r["seed"] for group in runs.values() for r in group}):  # each seed's runs, from any start
        points = [(r["flops"][k], _mean(r["greedy"][k])) for g in runs.values() for r in g if r["seed"] == seed
                  for k in r["flops"]]  # fmt: skip
        ratio = compute_to_match(front("SFT + RL", points), pure).ratio
        per_seed.append(f"seed {seed}: " + ("never" if np.isinf(ratio) else f"{ratio:.0%}"))
    _plot_frontier(sft, rl, out / f"frontier-{mode}.png", mode)
    return {"sft": sft, "sft+rl": rl, "match": match.describe(), "ratio": match.ratio, "per_seed": per_seed}


def _plot_frontier(sft: dict[int, tuple[float, float]], rl: dict[int, dict[str, tuple[float, float]]], file: Path,
                   mode: str) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(*zip(*sft.values(), strict=True), "o-", color="black", label="SFT")
    for b, points in rl.items():
        xs, ys = zip(*[sft[b], *points.values()], strict=True)
        ax.plot(xs, ys, "s--", label=f"SFT {b} steps + RL")
    ax.set_xlabel("FLOPs (SFT + rollouts + updates)")
    ax.set_ylabel("held-out goals, greedy success")
    ax.set_title(f"Compute frontier, {mode} mode (mean of RL seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def main(args: WebLearningArguments) -> dict[str, Any]:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown sample mode {unknown}: choose among {list(MODES)}.")
    if args.rl_batch_size and (args.prompts_per_step * args.num_generations) % args.rl_batch_size:
        raise ValueError(
            f"--rl_batch_size {args.rl_batch_size} does not divide a step's {args.prompts_per_step} x "
            f"{args.num_generations} episodes: choose a divisor of {args.prompts_per_step * args.num_generations}."
        )
    if args.start is not None and args.start not in args.sft_budgets:
        raise ValueError(f"--start {args.start} is not an SFT budget: choose among --sft_budgets {args.sft_budgets}.")
    if args.starts_from:
        copy_starts(Path(args.starts_from), out)
    _check_per_step_start(args, out)
    if not args.summary_only:
        (out / "settings.json").write_text(json.dumps(asdict(args), indent=1))  # what the stages and runs used
        stages = [
            (out / "traces" / "compute.json", collect, ()),
            (out / "student-init" / "config.json", build_student, ()),
            (out / "sft" / "done", sft, ()),
        ]
        if "per_step" in args.modes:  # per_step RL starts from an SFT on per_step rows, one per turn
            stages += [
                (_in_layout(out, "traces", "per_step") / "compute.json", collect, ("per_step",)),
                (_in_layout(out, "sft", "per_step") / "done", sft, ("per_step",)),
            ]
        for done, stage, layout in stages:
            if not done.exists():
                tick = time.perf_counter()
                print(f"[{done.parent.name}] running", flush=True)
                stage(args, out, *layout)
                print(f"[{done.parent.name}] {time.perf_counter() - tick:.0f} s", flush=True)
    start, budgets = choose_start(args, out)
    print("[start] " + ", ".join(f"SFT {b}: {_mean(g):.1%}" for b, g in budgets.items()) + f" -> {start}", flush=True)
    layouts = {"episode": budgets} | {mode: _sft_in_layout(args, out, start, sorted(budgets), mode)
                                      for mode in args.modes if mode != "episode"}  # fmt: skip
    if not args.summary_only:
        (out / "runs").mkdir(exist_ok=True)
        starts = [start, *sorted(set(args.rl_starts) - {start})]
        unknown = sorted(set(starts) - set(budgets))
        if unknown:
            raise ValueError(
                f"--rl_starts {unknown} are not SFT budgets: choose among --sft_budgets {sorted(budgets)}."
            )
        jobs = [(args, out, b, m, s) for b in starts for m in args.modes for s in args.seeds
                if not (out / "runs" / f"{_run_name(b, m, s)}.json").exists()]  # fmt: skip
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(rl_run, *job): job[2:] for job in jobs}
            for future in as_completed(futures):
                try:
                    print(_describe(future.result()), flush=True)
                except BrokenProcessPool:  # the kernel killed a run's process, most often for memory
                    print(f"[{_run_name(*futures[future])}] failed: a run's process was killed (out of memory?): "
                          "rerun the same command with fewer --jobs; finished runs are kept.")  # fmt: skip
                except Exception as error:  # one failed run must not lose the others; its file is missing
                    print(f"[{_run_name(*futures[future])}] failed: {type(error).__name__}: {error}")
    comparison = compare(args, out, Path(args.compare_with)) if args.compare_with else {}
    summary = summarize(args, out, start, layouts, comparison)
    if args.fresh_goals:
        summary["fresh_goals"] = fresh_goals(args, out, start)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _describe(result: dict[str, Any]) -> str:
    curve = " ".join(f"{step}:{_mean(goals):.0%}" for step, goals in result["greedy"].items())
    name = _run_name(result["start"], result["mode"], result["seed"])
    return f"[{name}] greedy {curve} ({result['seconds'] / 60:.1f} min)"


if __name__ == "__main__":
    from trl import TrlParser

    (parsed,) = TrlParser(WebLearningArguments, description=__doc__).parse_args_and_config()
    try:
        main(parsed)
    except (ValueError, FileNotFoundError) as error:  # bad settings or an output_dir that does not fit
        raise SystemExit(f"web_learning.py: error: {error}") from None
