"""A tiny SEC-GRPO run used by the trainer tests, in-process or under `accelerate launch`.

The reward depends only on the prompt's level and the rollout's position in its group, never on the
sampled text, so the curriculum's updates (and hence the categories it draws) are deterministic:
any difference between two runs is the curriculum's fault, not the model's sampling.
"""

from __future__ import annotations

import argparse
import json
import os

from sec_rl import SECGRPOConfig, SECGRPOTrainer
from sec_rl.tasks.arithmetic import make_arithmetic_dataset

# Fraction of each group that succeeds, per level: level 2 sits at the frontier (|A| largest).
SUCCESS_PATTERN = {"1": [1, 1, 1, 1], "2": [1, 0, 1, 0], "3": [1, 0, 0, 0]}


def make_reward(log_path: str | None):
    def level_reward(completions, difficulty, **kwargs):
        if log_path is not None:
            with open(log_path, "a") as f:
                f.write(json.dumps(list(difficulty)) + "\n")
        return [float(SUCCESS_PATTERN[level][i % 4]) for i, level in enumerate(difficulty)]

    return level_reward


def build_trainer(model: str, output_dir: str, max_steps: int, log_path: str | None = None, dataset=None, **overrides):
    settings = dict(
        output_dir=output_dir,
        curriculum="sec",
        curriculum_column="difficulty",
        curriculum_temperature=0.3,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=4,
        max_steps=max_steps,
        logging_steps=1,
        save_steps=4,
        learning_rate=1e-4,
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        scale_rewards="none",
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    args = SECGRPOConfig(**settings)
    if dataset is None:
        dataset = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=6, seed=0)
    return SECGRPOTrainer(model=model, reward_funcs=make_reward(log_path), args=args, train_dataset=dataset)


if __name__ == "__main__":
    from distributed import end_process_group

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=4)
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    log_path = os.path.join(args.output_dir, f"rewards_rank{rank}.jsonl")
    trainer = build_trainer(args.model, args.output_dir, args.max_steps, log_path, per_device_train_batch_size=4)
    advantages, draws = [], []
    generate, draw = trainer._generate_and_score_completions, trainer.curriculum_sampler.draw

    def record_advantages(inputs):
        output = generate(inputs)
        advantages.append(output["advantages"].tolist())
        return output

    def record_draw(n):
        draws.append(trainer.curriculum.num_updates)
        return draw(n)

    trainer._generate_and_score_completions, trainer.curriculum_sampler.draw = record_advantages, record_draw
    trainer.train()
    report = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "curriculum": trainer.curriculum.state_dict(),
        "sampler": trainer.curriculum_sampler.state_dict(),
        "advantages": advantages,
        "draws": draws,
    }
    with open(os.path.join(args.output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    end_process_group()
