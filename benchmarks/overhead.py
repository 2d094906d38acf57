"""Step-time overhead of SECGRPOTrainer over TRL's GRPOTrainer, measured side by side in one process.

Both trainers get the same tiny model, data, reward and config; runs alternate (GRPO, SEC, GRPO, SEC, ...)
so that machine noise hits both alike. The figure is the ratio of median seconds per optimizer step.

    python benchmarks/overhead.py --steps 30 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from sec_rl import SECGRPOConfig, SECGRPOTrainer
from sec_rl.models.tiny import build_tiny_model_and_tokenizer
from sec_rl.provenance import environment_info
from sec_rl.tasks.arithmetic import arithmetic_reward, make_arithmetic_dataset, tokenizer_corpus


class StepTimer(TrainerCallback):
    """Time between consecutive step ends: the whole loop, data loading and sampler draws included."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    @property
    def times(self) -> list[float]:
        return [b - a for a, b in zip(self.ends, self.ends[1:])]


def run(trainer_cls, config_cls, model_dir: str, dataset, steps: int, extra: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        args = config_cls(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=16,
            num_generations=4,
            max_completion_length=8,
            # Every completion gets the full length, so both trainers do identical model work whatever they sample.
            generation_kwargs={"min_new_tokens": 8},
            use_cpu=True,
            bf16=False,
            report_to="none",
            gradient_checkpointing=False,
            save_strategy="no",
            logging_steps=10,
            disable_tqdm=True,
            seed=0,
            **extra,
        )
        timer = StepTimer()
        trainer = trainer_cls(
            model=model_dir, reward_funcs=arithmetic_reward, args=args, train_dataset=dataset, callbacks=[timer]
        )
        trainer.train()
    return statistics.median(timer.times[2:])  # the first steps warm up allocators and caches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each trainer, alternating")
    parser.add_argument("--hidden-size", type=int, default=64, help="width of the tiny model")
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    cli = parser.parse_args()

    model_dir = tempfile.mkdtemp()
    build_tiny_model_and_tokenizer(tokenizer_corpus(), hidden_size=cli.hidden_size, output_dir=model_dir)
    dataset = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=200)
    sec_extra = {"curriculum": "sec", "curriculum_column": "difficulty"}
    grpo, sec = [], []
    for _ in range(cli.repeats):
        grpo.append(run(GRPOTrainer, GRPOConfig, model_dir, dataset, cli.steps, {}))
        sec.append(run(SECGRPOTrainer, SECGRPOConfig, model_dir, dataset, cli.steps, sec_extra))
    ratios = [s / g for s, g in zip(sec, grpo)]
    result = {
        "grpo_step_s": statistics.median(grpo),
        "sec_step_s": statistics.median(sec),
        "ratio_of_medians": statistics.median(sec) / statistics.median(grpo),
        "paired_ratios": ratios,
        "grpo_runs_s": grpo,
        "sec_runs_s": sec,
        "steps": cli.steps,
        "repeats": cli.repeats,
        "hidden_size": cli.hidden_size,
    }
    table = Table(title="SECGRPOTrainer vs GRPOTrainer, median seconds per optimizer step")
    for column in ("GRPOTrainer", "SECGRPOTrainer", "ratio (target <= 1.03)"):
        table.add_column(column)
    table.add_row(f"{result['grpo_step_s']:.4f}", f"{result['sec_step_s']:.4f}", f"{result['ratio_of_medians']:.3f}")
    Console().print(table)
    result["environment"] = environment_info()
    Path(cli.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cli.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
