"""Does the curriculum help a real network learn? Every strategy trains the same tiny transformer with GRPO.

The task family is *chain sums*: ``"3+5+2+7="`` -> ``"17"``, level ``k`` = ``k`` single-digit operands. A tiny Llama
(built offline, ~0.5M parameters) is warmed up by supervised learning on short sums (levels 2-5 by default), which
it then solves almost always, while longer ones stay rare successes. GRPO then trains on levels 2-7; level 8 is
never trained on (neither by SFT nor by GRPO): the harder, held-out level.

Per seed, the warm-up runs once and every strategy starts from its checkpoint, with the same GRPO budget, data and
seed; only the curriculum differs. Greedy accuracy per level is measured every ``--eval-every`` steps. Differences
against ``random`` are paired by seed and get percentile-bootstrap 95% intervals (resampling seeds).

    python benchmarks/learning.py                                   # the study: 7 strategies x 5 seeds
    python benchmarks/learning.py --strategies random sec sec:temperature=0.3 --seeds 0 1 2 3 4
    python benchmarks/learning.py --summary-only                    # table and plots from the saved runs

Runs whose result file exists are skipped, so an interrupted study resumes where it stopped. A strategy is a
registry name with optional parameters, ``name:key=value,...``; ``signal=raw_advantages`` (the config's
``curriculum_signal``), ``spg=N`` (``steps_per_generation``: one generation batch of N times the rollouts feeds N
optimizer steps), ``pools=1`` (``curriculum_pools``) and ``dynamic=filter|replace,batches=N`` (``dynamic_sampling``)
are understood besides the strategy's own parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from simulated_learner import parse_strategy  # same "name:key=value,..." syntax as that benchmark

from sec_rl.provenance import describe_environment, environment_info

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "learning"
DEFAULT_WORK = ROOT / "outputs" / "learning"
DOCS_IMAGES = ROOT / "docs" / "images"
STRATEGIES = ("random", "ordered", "reverse", "sec", "dump", "target_success", "learning_progress")
REFERENCE = "random"


# -- the task --------------------------------------------------------------------------------------------------------
def make_chain_sum_dataset(levels, n_per_level: int, seed: int):
    """``n_per_level`` sums of ``k`` single digits per level ``k``; columns ``prompt``, ``answer``, ``difficulty``.

    The prompt is the bare expression (``"3+5+2="``), as in :mod:`sec_rl.tasks.arithmetic`, whose reward and
    evaluation apply unchanged (the answer is the first integer of the completion).
    """
    from datasets import Dataset

    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"prompt": [], "answer": [], "difficulty": []}
    for level in levels:
        for _ in range(n_per_level):
            terms = [rng.randint(0, 9) for _ in range(level)]
            rows["prompt"].append([{"role": "user", "content": "+".join(map(str, terms)) + "="}])
            rows["answer"].append(str(sum(terms)))
            rows["difficulty"].append(str(level))
    return Dataset.from_dict(rows)


@dataclass
class Settings:
    """Everything a run depends on; saved with every result, and a run is reused only if they match."""

    warmup_levels: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    train_levels: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7])
    heldout_level: int = 8
    hidden_size: int = 128
    num_layers: int = 2
    sft_steps: int = 800
    sft_lr: float = 3e-3
    sft_batch_size: int = 64
    steps: int = 200
    lr: float = 1e-4
    prompts_per_step: int = 8
    num_generations: int = 8
    eval_every: int = 25
    eval_per_level: int = 150
    train_per_level: int = 2000


def slug(spec: str) -> str:
    return spec.replace(":", "__").replace("=", "-").replace(",", "_")


# -- warm-up ---------------------------------------------------------------------------------------------------------
def _encode(tokenizer, dataset) -> list[tuple[list[int], list[int]]]:
    rows = []
    for prompt, answer in zip(dataset["prompt"], dataset["answer"]):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids, answer_ids))
    return rows


def _collate(rows, pad_id: int):
    import torch

    length = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), length), pad_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)  # loss on the answer and its end-of-turn token only
        mask[i, : len(p) + len(a)] = 1
    return ids, labels, mask


def warm_up(seed: int, settings: Settings, work_dir: Path) -> dict[str, Any]:
    """Build the tiny model and tokenizer, train them by SFT on the warm-up levels, save them to ``work_dir``.

    A plain PyTorch loop (answer-only loss, AdamW, linear warm-up then cosine decay): about 10x faster per step
    than TRL's SFTTrainer on this tiny model, and the warm-up is not what is being measured.
    """
    import torch
    from transformers.utils import logging as hf_logging

    from sec_rl.models import build_tiny_model_and_tokenizer
    from sec_rl.tasks import evaluate_accuracy, tokenizer_corpus

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    model, tokenizer = build_tiny_model_and_tokenizer(
        tokenizer_corpus(), hidden_size=settings.hidden_size, num_layers=settings.num_layers, seed=seed
    )
    rows = _encode(tokenizer, make_chain_sum_dataset(settings.warmup_levels, 4000, seed=seed))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.sft_lr, weight_decay=0.0)
    warm = max(1, settings.sft_steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, settings.sft_steps - warm)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    for _ in range(settings.sft_steps):
        ids, labels, mask = _collate(rng.sample(rows, settings.sft_batch_size), tokenizer.pad_token_id)
        loss = model(input_ids=ids, labels=labels, attention_mask=mask).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    work_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(work_dir)
    tokenizer.save_pretrained(work_dir)
    accuracy = evaluate_accuracy(model, tokenizer, _eval_set(settings))
    info = {
        "seed": seed,
        "accuracy": accuracy,
        "final_loss": loss.item(),
        "seconds": time.perf_counter() - started,
        "parameters": sum(p.numel() for p in model.parameters()),
        "settings": asdict(settings),
        "environment": environment_info(),
    }
    (work_dir / "warmup.json").write_text(json.dumps(info, indent=2))
    return info


def _eval_set(settings: Settings):
    levels = sorted({*settings.train_levels, settings.heldout_level})
    return make_chain_sum_dataset(levels, settings.eval_per_level, seed=10_000)  # the same problems for every run


# -- one GRPO run ----------------------------------------------------------------------------------------------------
def train_one(seed: int, spec: str, settings: Settings, warm_dir: Path, result_path: Path, work_dir: Path) -> dict:
    """GRPO from the seed's warm-up checkpoint with one strategy; writes ``result_path`` (JSON) and returns it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging

    from sec_rl import SECGRPOConfig, SECGRPOTrainer
    from sec_rl.tasks import arithmetic_reward, evaluate_accuracy

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    name, params = parse_strategy(spec)
    signal = params.pop("signal", "advantages")
    steps_per_generation = params.pop("spg", None)
    pools = True if params.pop("pools", None) else None  # "sec:pools=1": difficulty pools inside each level
    dynamic = params.pop("dynamic", "none")  # "random:dynamic=filter,batches=2": DAPO filter-and-refill
    max_batches = int(params.pop("batches", 3))
    model = AutoModelForCausalLM.from_pretrained(warm_dir)
    tokenizer = AutoTokenizer.from_pretrained(warm_dir)
    train = make_chain_sum_dataset(settings.train_levels, settings.train_per_level, seed=1_000 + seed)
    test = _eval_set(settings)
    history: dict[str, Any] = {"eval_steps": [], "accuracy": [], "prob_steps": [], "probabilities": []}

    class Recorder(TrainerCallback):
        trainer = None

        def on_step_end(self, args, state, control, **kwargs):
            curriculum = self.trainer.curriculum
            history["prob_steps"].append(state.global_step)
            history["probabilities"].append({k: float(v) for k, v in curriculum.probabilities().items()})
            if state.global_step % settings.eval_every == 0 or state.global_step == settings.steps:
                history["eval_steps"].append(state.global_step)
                history["accuracy"].append(evaluate_accuracy(model, tokenizer, test))

    history["eval_steps"].append(0)
    history["accuracy"].append(evaluate_accuracy(model, tokenizer, test))
    batch = settings.prompts_per_step * settings.num_generations
    args = SECGRPOConfig(
        output_dir=str(work_dir),
        curriculum=name,
        curriculum_column="difficulty",
        curriculum_kwargs=params or None,
        curriculum_signal=signal,
        max_steps=settings.steps,
        curriculum_pools=pools,
        dynamic_sampling=dynamic,
        dynamic_sampling_max_batches=max_batches,
        # spg=k: one generation batch of k x (prompts_per_step x G) rollouts feeds k optimizer steps of the usual
        # size (same rollouts per step and in total, k times fewer curriculum updates). Each generation batch is
        # drawn when it is generated, after every update before it, in any layout.
        per_device_train_batch_size=batch,
        steps_per_generation=steps_per_generation,
        num_generations=settings.num_generations,
        max_completion_length=4,
        temperature=1.0,
        learning_rate=settings.lr,
        beta=0.0,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
        seed=seed,
    )
    recorder = Recorder()
    trainer = SECGRPOTrainer(
        model=model,
        reward_funcs=arithmetic_reward,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    trainer.remove_callback(PrinterCallback)  # the run's own summary line would interleave with the progress bars
    trainer.train()
    result = {
        "seed": seed,
        "strategy": spec,
        "settings": asdict(settings),
        "seconds": time.perf_counter() - started,
        "curriculum_state": trainer.curriculum.state_dict(),
        "generation_batches": trainer.generation_batches,  # > steps with dynamic sampling (refills)
        "environment": environment_info(),
        **history,
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_path)  # atomic: a crash never leaves a half-written result that resume would trust
    shutil.rmtree(work_dir, ignore_errors=True)
    return result


#: The settings a warm-up checkpoint depends on.
WARMUP_FIELDS = ("warmup_levels", "hidden_size", "num_layers", "sft_steps", "sft_lr", "sft_batch_size")


def _done(path: Path, settings: Settings, fields: tuple[str, ...]) -> bool:
    """A result file exists and was made with the same values of ``fields`` (else the run is redone)."""
    if not path.exists():
        return False
    saved = json.loads(path.read_text()).get("settings", {})
    current = asdict(settings)
    return all(saved.get(key) == current[key] for key in fields)


# -- the study -------------------------------------------------------------------------------------------------------
def _task(kind: str, *args):
    """Worker entry point (module level, so that it pickles); silences library chatter."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")
    if kind == "warmup":
        return warm_up(*args)
    return train_one(*args)


def run_study(args: argparse.Namespace, settings: Settings) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    out, work = Path(args.out), Path(args.work_dir)
    warm_dirs = {seed: work / "warmup" / f"seed{seed}" for seed in args.seeds}
    todo_warm = [s for s in args.seeds if not _done(warm_dirs[s] / "warmup.json", settings, WARMUP_FIELDS)]
    runs = [(s, spec) for s in args.seeds for spec in args.strategies]
    todo = [
        (s, spec)
        for s, spec in runs
        if s in todo_warm or not _done(out / f"seed{s}" / f"{slug(spec)}.json", settings, tuple(asdict(settings)))
    ]
    console.print(
        f"{len(runs)} runs ({len(runs) - len(todo)} already done), {len(todo_warm)} warm-ups to do, "
        f"{args.workers} worker processes"
    )
    started = time.perf_counter()
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
        ProcessPoolExecutor(args.workers) as pool,
    ):
        bar_warm = progress.add_task("warm-ups", total=len(todo_warm))
        bar_runs = progress.add_task("GRPO runs", total=len(todo))
        pending = {pool.submit(_task, "warmup", s, settings, warm_dirs[s]): ("warmup", s, None) for s in todo_warm}
        waiting = list(todo)
        ready = {s for s in args.seeds if s not in todo_warm}

        def submit_ready():
            for item in [x for x in waiting if x[0] in ready]:
                seed, spec = item
                waiting.remove(item)
                path = out / f"seed{seed}" / f"{slug(spec)}.json"
                scratch = work / "grpo" / f"seed{seed}" / slug(spec)
                future = pool.submit(_task, "run", seed, spec, settings, warm_dirs[seed], path, scratch)
                pending[future] = ("run", seed, spec)

        submit_ready()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                kind, seed, spec = pending.pop(future)
                result = future.result()  # re-raises a worker's error: fix it and rerun, finished runs are kept
                if kind == "warmup":
                    acc = "  ".join(f"L{k}={v:.2f}" for k, v in result["accuracy"].items() if k != "all")
                    progress.console.print(f"warm-up seed {seed}: {acc}  ({result['seconds']:.0f} s)")
                    progress.advance(bar_warm)
                    ready.add(seed)
                    submit_ready()
                else:
                    held = result["accuracy"][-1][str(settings.heldout_level)]
                    progress.console.print(
                        f"seed {seed} {spec:<32} held-out L{settings.heldout_level} {held:.3f}  "
                        f"({result['seconds']:.0f} s)"
                    )
                    progress.advance(bar_runs)
    console.print(f"study wall time: {time.perf_counter() - started:.0f} s")


# -- summary ---------------------------------------------------------------------------------------------------------
def load_results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("seed*/*.json"))]


def paired_bootstrap(diffs: np.ndarray, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-seed differences and its percentile-bootstrap 95% interval (seeds resampled)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[idx].mean(axis=1)
    return float(diffs.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(results: list[dict[str, Any]], settings: Settings, last_k: int = 1) -> dict[str, Any]:
    """Per strategy: mean final accuracy per level, and the paired difference to random with its 95% interval.

    ``last_k > 1`` averages each run's last ``last_k`` evaluations first (less evaluation noise).
    """
    levels = [str(level) for level in (*settings.train_levels, settings.heldout_level)]
    by: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        accs = r["accuracy"][-last_k:]
        final = {lvl: float(np.mean([a[lvl] for a in accs])) for lvl in levels}
        final["train"] = float(np.mean([final[str(level)] for level in settings.train_levels]))
        by.setdefault(r["strategy"], {})[r["seed"]] = final
    summary: dict[str, Any] = {}
    reference = by.get(REFERENCE, {})
    for spec, per_seed in by.items():
        row: dict[str, Any] = {"seeds": sorted(per_seed)}
        for key in [*levels, "train"]:
            values = np.array([per_seed[s][key] for s in sorted(per_seed)])
            row[key] = {"mean": float(values.mean())}
            common = sorted(set(per_seed) & set(reference))
            if spec != REFERENCE and len(common) >= 2:
                diffs = np.array([per_seed[s][key] - reference[s][key] for s in common])
                mean, lo, hi = paired_bootstrap(diffs)
                row[key].update(diff=mean, lo=lo, hi=hi)
        summary[spec] = row
    return summary


def _cell(entry: dict[str, float], show_diff: bool) -> str:
    text = f"{entry['mean']:.3f}"
    if show_diff and "diff" in entry:
        mark = "**" if entry["lo"] > 0 or entry["hi"] < 0 else ""
        text += f" ({mark}{entry['diff']:+.3f} [{entry['lo']:+.3f}, {entry['hi']:+.3f}]{mark})"
    return text


def markdown_table(summary: dict[str, Any], settings: Settings) -> str:
    held, hardest = str(settings.heldout_level), str(max(settings.train_levels))
    head = [f"L{level}" for level in settings.train_levels]
    lines = [
        f"| strategy | seeds | held-out L{held} (vs random [95% CI]) | hardest training level L{hardest} (vs random) "
        "| training levels, mean (vs random) | " + " | ".join(head) + " |",
        "|:---|---:|---:|---:|---:|" + "---:|" * len(head),
    ]
    for spec, row in summary.items():
        cells = [_cell(row[str(level)], False) for level in settings.train_levels]
        lines.append(
            f"| {spec} | {len(row['seeds'])} | {_cell(row[held], True)} | {_cell(row[hardest], True)} | "
            f"{_cell(row['train'], True)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], settings: Settings, out: Path, tag: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(dict.fromkeys(r["strategy"] for r in results))
    held, hardest = str(settings.heldout_level), str(max(settings.train_levels))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for spec in specs:
        runs = [r for r in results if r["strategy"] == spec]
        steps = runs[0]["eval_steps"]
        for ax, key in zip(axes, (held, hardest, "train")):
            if key == "train":
                values = [
                    [np.mean([a[str(level)] for level in settings.train_levels]) for a in r["accuracy"]] for r in runs
                ]
            else:
                values = [[a[key] for a in r["accuracy"]] for r in runs]
            values = np.array(values)
            style = {"lw": 2.5, "color": "black"} if spec == REFERENCE else {"lw": 1.5}
            ax.plot(steps, values.mean(axis=0), label=spec, **style)
    titles = (
        f"held-out level {held} (never trained)",
        f"hardest training level {hardest}",
        "training levels, mean",
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("greedy accuracy (mean over seeds)")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    paths = [out / f"learning{tag}_accuracy.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    sec_specs = [s for s in specs if parse_strategy(s)[0] == "sec"]
    if sec_specs:
        fig, axes = plt.subplots(1, len(sec_specs), figsize=(5.5 * len(sec_specs), 4), squeeze=False)
        for ax, spec in zip(axes[0], sec_specs):
            runs = [r for r in results if r["strategy"] == spec]
            steps = runs[0]["prob_steps"]
            for level in settings.train_levels:
                values = np.array([[p[str(level)] for p in r["probabilities"]] for r in runs])
                ax.plot(steps, values.mean(axis=0), label=f"level {level}")
            ax.set_title(f"{spec}: P(level), mean over {len(runs)} seeds")
            ax.set_xlabel("GRPO step")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("probability")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / f"learning{tag}_sec_probabilities.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def share_table(results: list[dict[str, Any]], settings: Settings) -> str:
    """Where each strategy spent its rollouts: share per training level over the whole run, mean over seeds."""
    head = [f"L{level}" for level in settings.train_levels]
    lines = ["| strategy | " + " | ".join(head) + " |", "|:---|" + "---:|" * len(head)]
    by: dict[str, list[np.ndarray]] = {}
    for r in results:
        counts = r["curriculum_state"].get("counts")
        if counts:
            counts = np.asarray(counts, dtype=float)
            by.setdefault(r["strategy"], []).append(counts / counts.sum())
    for spec, shares in by.items():
        lines.append(f"| {spec} | " + " | ".join(f"{v:.1%}" for v in np.mean(shares, axis=0)) + " |")
    return "\n".join(lines)


def equal_rollouts_table(results: list[dict[str, Any]], settings: Settings) -> str:
    """Strategies that generated extra batches (dynamic sampling) against random at the same number of rollouts.

    A run with ``B`` generation batches over ``S`` steps is read at the evaluation step ``S * S / B`` (rounded to an
    evaluation step), where it had generated as many rollouts as random at step ``S``; hardest training level.
    """
    level = str(settings.train_levels[-1])
    final = {r["seed"]: r["accuracy"][-1][level] for r in results if r["strategy"] == "random"}
    lines = [f"| strategy | rollouts / random | step compared | L{level} (vs random at step {settings.steps}) |",
             "|:---|---:|---:|---:|"]  # fmt: skip
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("generation_batches", settings.steps) > settings.steps and r["seed"] in final:
            by.setdefault(r["strategy"], []).append(r)
    for spec, runs in by.items():
        ratio = float(np.mean([r["generation_batches"] for r in runs])) / settings.steps
        step = int(round(settings.steps / ratio / settings.eval_every)) * settings.eval_every
        accuracy = np.array([r["accuracy"][r["eval_steps"].index(step)][level] for r in runs])
        mean, lo, hi = paired_bootstrap(accuracy - np.array([final[r["seed"]] for r in runs]))
        lines.append(f"| {spec} | {ratio:.2f} | {step} | {accuracy.mean():.3f} ({mean:+.3f} [{lo:+.3f}, {hi:+.3f}]) |")
    return "\n".join(lines) if by else ""


def write_summary(args: argparse.Namespace, settings: Settings) -> None:
    out = Path(args.out)
    results = [r for r in load_results(out) if r["strategy"] in args.strategies and r["seed"] in args.seeds]
    environment = environment_info()  # the summary's; each run's own is in its result file
    if not results:
        print(f"no results under {out}")
        return
    results.sort(key=lambda r: (args.strategies.index(r["strategy"]), r["seed"]))
    summary = summarize(results, settings)
    smooth = summarize(results, settings, last_k=3)
    warm_files = [Path(args.work_dir) / "warmup" / f"seed{s}" / "warmup.json" for s in args.seeds]
    warm = [json.loads(p.read_text()) for p in warm_files if p.exists()] or [{"accuracy": {}, "seconds": float("nan")}]
    lines = [
        "# Learning benchmark: results",
        "",
        f"Strategies x seeds: {len({r['strategy'] for r in results})} x {len({r['seed'] for r in results})}; "
        f"{settings.steps} GRPO steps each. Cell: mean greedy accuracy at step {settings.steps} over seeds "
        "(difference to random, paired by seed, with a bootstrap 95% interval; bold when it excludes 0).",
        "",
        markdown_table(summary, settings),
        "",
        f"Same, each run's accuracy averaged over its last 3 evaluations (steps "
        f"{', '.join(str(s) for s in results[0]['eval_steps'][-3:])}):",
        "",
        markdown_table(smooth, settings),
        "",
        "Share of the rollouts spent on each training level (whole run, mean over seeds):",
        "",
        share_table(results, settings),
        "",
        *(
            [
                "At equal rollouts (runs that generated extra batches, read where their rollouts equal random's):",
                "",
                table,
                "",
            ]
            if (table := equal_rollouts_table(results, settings))
            else []
        ),
        "After the warm-up (mean over seeds): "
        + ", ".join(
            f"L{k} {np.mean([w['accuracy'][k] for w in warm]):.3f}" for k in warm[0]["accuracy"] if k != "all"
        ),
        "",
        f"Run time: warm-up {np.mean([w['seconds'] for w in warm]):.0f} s per seed, GRPO run "
        f"{np.median([r['seconds'] for r in results]):.0f} s median (with evaluations).",
        "",
        f"Environment of this summary: {describe_environment(environment)}.",
        "",
    ]
    tag = f"_{args.tag}" if args.tag else ""
    (out / f"results{tag}.md").write_text("\n".join(lines))
    summary_json = {"settings": asdict(settings), "final": summary, "final_last3": smooth, "environment": environment}
    (out / f"summary{tag}.json").write_text(json.dumps(summary_json, indent=2))
    paths = plot(results, settings, out, tag)
    if args.docs:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy(path, DOCS_IMAGES / path.name.replace("_", "-"))
    print("\n".join(lines))


def parse_args(argv=None) -> tuple[argparse.Namespace, Settings]:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--steps", type=int, default=defaults.steps, help="GRPO steps per run")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="GRPO learning rate")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--eval-per-level", type=int, default=defaults.eval_per_level)
    parser.add_argument("--sft-steps", type=int, default=defaults.sft_steps)
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size)
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel (one CPU thread each)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="result JSON per run, results.md, plots")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK), help="warm-up checkpoints and scratch space")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the table and plots")
    parser.add_argument("--docs", action="store_true", help="copy the plots to docs/images/")
    parser.add_argument("--tag", default="", help="suffix of the summary's file names (results_TAG.md, plots)")
    args = parser.parse_args(argv)
    settings = Settings(
        steps=args.steps,
        lr=args.lr,
        eval_every=args.eval_every,
        eval_per_level=args.eval_per_level,
        sft_steps=args.sft_steps,
        hidden_size=args.hidden_size,
    )
    if REFERENCE not in args.strategies:
        print(f"note: '{REFERENCE}' is not among the strategies, so no differences can be computed.", file=sys.stderr)
    return args, settings


def main(argv=None) -> None:
    args, settings = parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    if not args.summary_only:
        run_study(args, settings)
    write_summary(args, settings)


if __name__ == "__main__":
    main()
