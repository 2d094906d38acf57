"""A tiny SEC-SFT run on multi-turn web-agent traces, used by the SFT trainer tests in-process or under `accelerate`.

The traces imitate BrowserGym/MiniWoB episodes: a system prompt, then per step an observation (user) and the
agent's thought + action (assistant). Tasks differ in trace length and action vocabulary, so their losses differ.
"""

from __future__ import annotations

import argparse
import json
import os

from datasets import Dataset

from sec_rl import SECSFTConfig, SECSFTTrainer

SYSTEM = "You are a web agent. Answer with one action."
TASKS = {
    "click-button": (["click"], 1),
    "enter-text": (["fill", "click"], 2),
    "choose-list": (["select_option", "click", "press"], 3),
}


def make_trace(task: str, seed: int) -> dict:
    """One successful episode of ``task``: system, then (observation, action) for each step."""
    actions, steps = TASKS[task]
    messages = [{"role": "system", "content": SYSTEM}]
    for step in range(steps):
        node = 10 + (seed * 7 + step * 3) % 40
        messages.append({"role": "user", "content": f"Goal: {task} {seed}. [{node}] button 'OK'"})
        action = actions[step % len(actions)]
        messages.append({"role": "assistant", "content": f"I act on {node}. {action}('{node}')"})
    return {"messages": messages, "task": task}


def make_traces(n_per_task: int = 8) -> Dataset:
    return Dataset.from_list([make_trace(task, seed) for seed in range(n_per_task) for task in TASKS])


def sft_settings(output_dir: str, max_steps: int, **overrides) -> dict:
    settings = dict(
        output_dir=output_dir,
        curriculum="sec",
        curriculum_column="task",
        curriculum_temperature=0.3,
        per_device_train_batch_size=4,
        max_steps=max_steps,
        max_length=256,
        logging_steps=1,
        save_steps=4,
        learning_rate=3e-3,
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return settings


def build_trainer(model: str, output_dir: str, max_steps: int, dataset=None, strategy=None, **overrides):
    """``overrides`` are SECSFTConfig fields; ``strategy`` a ready strategy to use instead of the named one."""
    args = SECSFTConfig(**sft_settings(output_dir, max_steps, **overrides))
    return SECSFTTrainer(
        model=model, args=args, train_dataset=make_traces() if dataset is None else dataset, curriculum=strategy
    )


if __name__ == "__main__":
    from distributed import end_process_group

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=4)
    parser.add_argument("--curriculum_signal", default="loss")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    trainer = build_trainer(
        args.model, args.output_dir, args.max_steps, per_device_train_batch_size=2,
        curriculum_signal=args.curriculum_signal,
    )  # fmt: skip
    trainer.train()
    report = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "curriculum": trainer.curriculum.state_dict(),
        "sampler": trainer.curriculum_sampler.state_dict(),
        "loss_reference": trainer._loss_reference,
    }
    with open(os.path.join(args.output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    end_process_group()
