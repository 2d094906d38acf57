"""The offline demo: a tiny model learns multi-digit addition, first by SFT, then by SEC-GRPO.

Everything is built on the spot (tokenizer, model, data), so it runs on a CPU with no network:

1. a short supervised warm-up on levels 1-3 (digits per operand), so that rewards are not all zero;
2. per-level greedy accuracy, levels 1-3 plus the never-trained level 4;
3. SEC-GRPO on levels 1-3: each batch's level is drawn by the SEC bandit;
4. per-level accuracy again, a markdown report and the curriculum's probability plot.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging
from trl import SFTConfig, SFTTrainer

from sec_rl.models.tiny import build_tiny_model_and_tokenizer
from sec_rl.provenance import describe_environment, environment_info
from sec_rl.tasks.arithmetic import (
    arithmetic_reward,
    evaluate_accuracy,
    make_arithmetic_dataset,
    sft_examples,
    tokenizer_corpus,
)
from sec_rl.trainers import SECGRPOConfig, SECGRPOTrainer

console = Console()


@dataclass
class ArithmeticDemoConfig:
    """Settings of the arithmetic demo; the defaults finish in a few minutes on a 2-core CPU."""

    output_dir: str = field(
        default="outputs/demo-arithmetic", metadata={"help": "Where models, plots and the report go."}
    )
    domain: str = field(default="arithmetic", metadata={"help": "Task family of the demo.", "choices": ["arithmetic"]})
    train_levels: list[int] = field(
        default_factory=lambda: [1, 2, 3], metadata={"help": "Digits per operand to train on."}
    )
    heldout_level: int = field(default=4, metadata={"help": "A harder level never trained on."})
    hidden_size: int = field(default=128, metadata={"help": "Width of the tiny Llama."})
    sft_steps: int = field(default=300, metadata={"help": "Supervised warm-up steps."})
    sft_lr: float = field(default=3e-3, metadata={"help": "Warm-up learning rate."})
    grpo_steps: int = field(default=40, metadata={"help": "SEC-GRPO optimizer steps."})
    grpo_lr: float = field(default=5e-5, metadata={"help": "SEC-GRPO learning rate."})
    prompts_per_step: int = field(default=16, metadata={"help": "Distinct prompts per GRPO step."})
    num_generations: int = field(default=8, metadata={"help": "Rollouts per prompt."})
    curriculum: str = field(default="sec", metadata={"help": "Curriculum strategy."})
    temperature: float = field(default=0.2, metadata={"help": "Boltzmann temperature of the curriculum."})
    eval_per_level: int = field(default=100, metadata={"help": "Held-out problems per level."})
    seed: int = field(default=0, metadata={"help": "Seed of data, model and training."})


def accuracy_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    levels = list(next(iter(rows.values())))
    table = Table(title=title)
    table.add_column("model")
    for level in levels:
        table.add_column(f"level {level}" if level != "all" else "all", justify="right")
    for name, accuracy in rows.items():
        table.add_row(name, *(f"{accuracy[level]:.3f}" for level in levels))
    return table


def run_arithmetic_demo(config: ArithmeticDemoConfig) -> dict[str, dict[str, float]]:
    """Run the demo end to end; returns per-level accuracy before and after SEC-GRPO."""
    hf_logging.set_verbosity_error()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    model, tokenizer = build_tiny_model_and_tokenizer(
        tokenizer_corpus(), hidden_size=config.hidden_size, seed=config.seed
    )
    levels = tuple(config.train_levels)
    train = make_arithmetic_dataset(levels, n_per_level=4000, seed=config.seed)
    test = make_arithmetic_dataset((*levels, config.heldout_level), n_per_level=config.eval_per_level, seed=10_000)
    console.rule(f"1/3 supervised warm-up ({config.sft_steps} steps)")
    sft_args = SFTConfig(
        output_dir=str(out / "sft"),
        max_steps=config.sft_steps,
        per_device_train_batch_size=64,
        learning_rate=config.sft_lr,
        lr_scheduler_type="cosine",
        warmup_steps=config.sft_steps // 20,
        assistant_only_loss=True,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, config.sft_steps // 5),
        seed=config.seed,
    )
    SFTTrainer(model=model, args=sft_args, train_dataset=sft_examples(train), processing_class=tokenizer).train()
    before = evaluate_accuracy(model, tokenizer, test)
    console.print(accuracy_table("after the warm-up", {"SFT": before}))

    console.rule(f"2/3 {config.curriculum.upper()}-GRPO ({config.grpo_steps} steps)")
    grpo_args = SECGRPOConfig(
        output_dir=str(out / "grpo"),
        curriculum=config.curriculum,
        curriculum_column="difficulty",
        curriculum_temperature=config.temperature if config.curriculum == "sec" else None,
        max_steps=config.grpo_steps,
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=8,
        temperature=1.0,
        learning_rate=config.grpo_lr,
        beta=0.0,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, config.grpo_steps // 20),
        seed=config.seed,
    )
    trainer = SECGRPOTrainer(
        model=model, reward_funcs=arithmetic_reward, args=grpo_args, train_dataset=train, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    after = evaluate_accuracy(model, tokenizer, test)

    console.rule("3/3 results")
    results = {"after SFT": before, f"after SFT + {config.curriculum.upper()}-GRPO": after}
    console.print(
        accuracy_table(f"greedy accuracy per level (level {config.heldout_level} never trained on)", results)
    )
    elapsed = time.perf_counter() - started
    write_report(out, config, results, trainer.curriculum.probabilities(), elapsed)
    console.print(f"report: {out / 'report.md'}   plot: {out / 'grpo' / 'curriculum_probabilities.png'}")
    console.print(f"total time: {elapsed:.0f} s")
    return results


def write_report(out: Path, config: ArithmeticDemoConfig, results, final_probs, elapsed: float) -> None:
    levels = list(next(iter(results.values())))
    lines = [
        "# sec-rl arithmetic demo",
        "",
        f"Tiny Llama (hidden size {config.hidden_size}) built offline; {config.sft_steps} SFT steps, then "
        f"{config.grpo_steps} GRPO steps with the `{config.curriculum}` curriculum. Level {config.heldout_level} is "
        f"never trained on. Wall time {elapsed:.0f} s.",
        "",
        "| model | " + " | ".join(lvl if lvl == "all" else f"level {lvl}" for lvl in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    lines += [f"| {name} | " + " | ".join(f"{acc[lvl]:.3f}" for lvl in levels) + " |" for name, acc in results.items()]
    lines += ["", "Final curriculum probabilities: " + ", ".join(f"{k}: {v:.2f}" for k, v in final_probs.items())]
    environment = environment_info()
    lines += [
        "",
        "![curriculum](grpo/curriculum_probabilities.png)",
        "",
        f"Environment: {describe_environment(environment)}",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    payload = {"config": asdict(config), "accuracy": results, "environment": environment}
    (out / "results.json").write_text(json.dumps(payload, indent=2))
