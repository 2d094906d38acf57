"""A TRL GRPO script with SEC: the usual `trl` script, with `SECGRPOTrainer`/`SECGRPOConfig` imported instead.

    # one process
    python examples/sec_grpo.py --config examples/arithmetic/sec_grpo.yaml
    # several GPUs
    accelerate launch --config_file integrations/accelerate/ddp.yaml examples/sec_grpo.py \
        --config examples/arithmetic/sec_grpo.yaml

The dataset is a Hub name, a folder written by `Dataset.save_to_disk`, or a json/jsonl/csv/parquet file;
it needs a `prompt` column, the column(s) named by `curriculum_column`, and what the reward functions read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from datasets import load_dataset, load_from_disk
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from sec_rl import SECGRPOConfig, SECGRPOTrainer


def reward_function(name: str):
    """Reward functions by name; add your own here."""
    if name == "arithmetic":
        from sec_rl.tasks.arithmetic import arithmetic_reward

        return arithmetic_reward
    if name in ("accuracy", "think_format"):
        from trl import rewards

        return getattr(rewards, f"{name}_reward")
    raise ValueError(f"unknown reward function {name!r}: use 'arithmetic', 'accuracy' or 'think_format'.")


@dataclass
class SECScriptArguments(ScriptArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: ["arithmetic"],
        metadata={"help": "Reward functions by name: 'arithmetic', 'accuracy' (math), 'think_format'."},
    )


def load_train_dataset(args: SECScriptArguments):
    name = args.dataset_name
    if os.path.isdir(name):
        dataset = load_from_disk(name)
        return dataset[args.dataset_train_split] if hasattr(dataset, "keys") else dataset
    extension = os.path.splitext(name)[1].lstrip(".")
    if os.path.isfile(name) and extension in ("json", "jsonl", "csv", "parquet"):
        builder = "json" if extension == "jsonl" else extension
        return load_dataset(builder, data_files=name, split="train")
    return load_dataset(name, args.dataset_config, split=args.dataset_train_split)


def main() -> None:
    parser = TrlParser((SECScriptArguments, SECGRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    training_args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype}

    trainer = SECGRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=[reward_function(name) for name in script_args.reward_funcs],
        args=training_args,
        train_dataset=load_train_dataset(script_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


if __name__ == "__main__":
    main()
