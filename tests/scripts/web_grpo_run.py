"""A text-world SEC web-GRPO run interrupted at a checkpoint and resumed, in-process or under `accelerate launch`.

One leg trains 4 steps, evaluating and checkpointing every 2; a fresh trainer then resumes from the step-2
checkpoint. Half of each goal's episodes are answered by the oracle, so advantages are not zero and weights move.
Each rank reports both legs' losses, evaluation, curriculum, page-token total and a digest of the final weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

from helpers.web_model import SYSTEM, OracleActor

from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
from sec_rl.web.tasks import goals_dataset

TASKS = ("click-button", "enter-text")
TASK_RATE = "web/success_rate/"


def build(model: str, output_dir: str, mode: str, per_device: int) -> SECWebGRPOTrainer:
    args = SECWebGRPOConfig(
        output_dir=output_dir, web_env="text", web_num_workers=2, web_max_turns=2, web_layout=mode,
        web_system_prompt=SYSTEM, web_history=2, web_episodes_per_goal=2 if mode == "per_step" else None,
        curriculum_temperature=0.5, per_device_train_batch_size=per_device, per_device_eval_batch_size=per_device,
        num_generations=2, max_completion_length=10, max_steps=4, logging_steps=1, learning_rate=1e-2,
        eval_strategy="steps", eval_steps=2, save_steps=2, use_cpu=True, bf16=False, report_to="none",
        gradient_checkpointing=False, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = SECWebGRPOTrainer(
        model=model, args=args, train_dataset=goals_dataset(TASKS, range(3, 9)),
        eval_dataset=goals_dataset(TASKS, range(0, 2)),
    )  # fmt: skip
    trainer.web_actor = OracleActor(trainer.processing_class, inner=trainer.web_actor, every=2)
    return trainer


def summary(trainer: SECWebGRPOTrainer) -> dict:
    weights = hashlib.sha256()
    for _, p in sorted(trainer.model.named_parameters()):
        weights.update(p.detach().cpu().numpy().tobytes())
    history = trainer.state.log_history
    return {
        "losses": {e["step"]: e["loss"] for e in history if "loss" in e},
        "eval": {e["step"]: e["eval_reward"] for e in history if "eval_reward" in e},
        "task_success": {  # each step's sampled success per task drawn, over both ranks' episodes
            e["step"]: {k.removeprefix(TASK_RATE): v for k, v in e.items() if k.startswith(TASK_RATE)}
            for e in history
            if "loss" in e
        },
        "env_tokens_seen": trainer._web_env_tokens_seen,
        "curriculum": trainer.curriculum.state_dict(),
        "weights": weights.hexdigest(),
    }


def run(model: str, output_dir: str, mode: str, per_device: int) -> dict:
    full = build(model, os.path.join(output_dir, "full"), mode, per_device)
    full.train()
    resumed = build(model, os.path.join(output_dir, "resumed"), mode, per_device)
    resumed.train(resume_from_checkpoint=os.path.join(output_dir, "full", "checkpoint-2"))
    return {"full": summary(full), "resumed": summary(resumed), "world_size": full.accelerator.num_processes}


if __name__ == "__main__":
    from distributed import end_process_group

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=4)  # the run's length is fixed above
    parser.add_argument("--mode", default="episode")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    report = run(args.model, args.output_dir, args.mode, per_device=2)
    with open(os.path.join(args.output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    end_process_group()
