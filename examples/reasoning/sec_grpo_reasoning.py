"""SEC-GRPO on the SEC paper's reasoning domains: Countdown, Zebra puzzles, ARC-1D, all three at once, or MATH.

    # the paper's settings on a GPU (Qwen2.5-3B, vLLM colocate, bf16)
    python examples/reasoning/sec_grpo_reasoning.py --config examples/reasoning/countdown_qwen2.5-3b.yaml
    accelerate launch --config_file integrations/accelerate/ddp.yaml examples/reasoning/sec_grpo_reasoning.py \
        --config examples/reasoning/multidomain_qwen2.5-3b.yaml

    # the same recipe on this CPU, with an offline tiny model and a few steps
    python examples/reasoning/sec_grpo_reasoning.py --config examples/reasoning/countdown_qwen2.5-3b.yaml --tiny

The usual TRL script (``TrlParser``: YAML and flags) with ``SECGRPOTrainer``/``SECGRPOConfig``. The training data is
built by ``sec_rl.tasks.reasoning`` (reasoning-gym generates it offline: ``pip install "sec-rl[reasoning]"``) or, for
``domain: math``, loaded by ``sec_rl.tasks.math_levels`` from ``dataset_name`` (a Hub name or a local file). The
rewards are a format reward (``<answer>`` tags) and reasoning-gym's own scoring, or the boxed-answer reward for MATH.

``--tiny`` (or ``tiny: true``) replaces the model by a tiny Llama built on the spot and the compute settings by
CPU-friendly ones (no vLLM, no bf16, small batches, ``tiny_steps`` steps), and keeps the curriculum settings, so the
whole pipeline can be checked on a machine without a GPU or network.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from sec_rl import SECGRPOConfig, SECGRPOTrainer

DOMAINS = ("countdown", "zebra", "arc_1d", "multidomain", "math")


@dataclass
class ReasoningScriptArguments(ScriptArguments):
    domain: str = field(default="countdown", metadata={"help": f"Training data: one of {DOMAINS}."})
    n_per_level: int = field(
        default=10_000, metadata={"help": "Generated training problems per level (the paper: 10,000)."}
    )
    problem_seed: int = field(default=0, metadata={"help": "Seed of the generated problems."})
    num_proc: int = field(default=1, metadata={"help": "Processes generating problems (Zebra puzzles are slow)."})
    zebra_characteristics: int = field(default=4, metadata={"help": "Attributes per house in Zebra puzzles."})
    math_level_column: str = field(default="level", metadata={"help": "domain=math: the level column."})
    math_problem_column: str = field(default="problem", metadata={"help": "domain=math: the problem column."})
    math_answer_column: str = field(
        default="answer", metadata={"help": "domain=math: the answer column (else the solution's \\boxed{})."}
    )
    math_levels: list[str] | None = field(
        default=None, metadata={"help": "domain=math: train on these levels only, e.g. 1 2 3 4 5."}
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "Run on CPU with an offline tiny model and CPU-friendly settings (a smoke test)."},
    )
    tiny_steps: int = field(default=2, metadata={"help": "With --tiny: GRPO steps."})
    tiny_n_per_level: int = field(default=8, metadata={"help": "With --tiny: generated problems per level."})


def build_dataset(args: ReasoningScriptArguments):
    n = args.tiny_n_per_level if args.tiny else args.n_per_level
    common = {"split": "train", "n_per_level": n, "seed": args.problem_seed, "num_proc": args.num_proc}
    if args.domain == "math":
        if not args.dataset_name:
            raise ValueError("domain=math needs dataset_name: a Hub dataset or a local json/jsonl/csv/parquet file.")
        from sec_rl.tasks.math_levels import load_leveled_dataset

        dataset = load_leveled_dataset(
            args.dataset_name,
            level_column=args.math_level_column,
            problem_column=args.math_problem_column,
            answer_column=args.math_answer_column,
            split=args.dataset_train_split,
            config_name=args.dataset_config,
            levels=args.math_levels,
        )
        return dataset.select(range(min(len(dataset), 8 * n))) if args.tiny else dataset
    from sec_rl.tasks import reasoning

    if args.domain == "multidomain":
        return reasoning.make_multidomain_dataset(num_characteristics=args.zebra_characteristics, **common)
    if args.domain == "zebra":
        return reasoning.make_zebra_dataset(num_characteristics=args.zebra_characteristics, **common)
    if args.domain in ("countdown", "arc_1d"):
        return reasoning.make_reasoning_dataset(args.domain, **common)
    raise ValueError(f"unknown domain {args.domain!r}: choose one of {DOMAINS}.")


def reward_functions(domain: str) -> list:
    if domain == "math":
        from sec_rl.tasks.math_levels import boxed_answer_reward

        return [boxed_answer_reward]
    from sec_rl.tasks.reasoning import answer_format_reward, correctness_reward

    return [correctness_reward, answer_format_reward]


def tiny_setup(dataset, training_args: SECGRPOConfig, steps: int) -> tuple[str, SECGRPOConfig]:
    """An offline tiny model trained on the dataset's own text, and CPU settings that keep the curriculum's."""
    from sec_rl.models.tiny import build_tiny_model_and_tokenizer

    texts = [m["content"] for prompt in dataset["prompt"][:64] for m in prompt]
    texts += [f"<answer>{a}</answer>" for a in dataset["answer"][:64]]
    model_dir = os.path.join(training_args.output_dir, "tiny-model")
    build_tiny_model_and_tokenizer(texts, hidden_size=32, max_position_embeddings=4096, output_dir=model_dir)
    keep = {
        name: getattr(training_args, name)
        for name in (
            "curriculum",
            "curriculum_column",
            "curriculum_categories",
            "curriculum_alpha",
            "curriculum_temperature",
            "curriculum_signal",
            "curriculum_kwargs",
            "curriculum_seed",
            "reward_weights",
            "seed",
            "output_dir",
            "beta",
            "loss_type",
            "scale_rewards",
        )
    }
    tiny_args = SECGRPOConfig(
        **keep,
        max_steps=steps,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        temperature=1.0,
        learning_rate=1e-4,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        use_vllm=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    return model_dir, tiny_args


#: Flags appended in tiny mode, before parsing: a GPU recipe's bf16/vLLM settings would be refused on a CPU.
TINY_OVERRIDES = ["--use_cpu", "True", "--bf16", "False", "--use_vllm", "False", "--gradient_checkpointing", "False"]


def tiny_requested(argv: list[str]) -> bool:
    """``--tiny`` on the command line (``--tiny`` / ``--tiny true``), or ``tiny: true`` in the ``--config`` YAML."""
    for i, arg in enumerate(argv):
        if arg == "--tiny":
            return i + 1 == len(argv) or argv[i + 1].lower() not in ("false", "0", "no")
        if arg.startswith("--tiny="):
            return arg.split("=", 1)[1].lower() not in ("false", "0", "no")
    if "--config" in argv:
        import yaml

        with open(argv[argv.index("--config") + 1]) as f:
            return bool((yaml.safe_load(f) or {}).get("tiny", False))
    return False


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if tiny_requested(argv):
        argv += TINY_OVERRIDES
    parser = TrlParser((ReasoningScriptArguments, SECGRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    dataset = build_dataset(script_args)
    model = model_args.model_name_or_path
    if script_args.tiny:
        model, training_args = tiny_setup(dataset, training_args, script_args.tiny_steps)
    else:
        training_args.model_init_kwargs = {"revision": model_args.model_revision, "dtype": model_args.dtype}

    trainer = SECGRPOTrainer(
        model=model,
        reward_funcs=reward_functions(script_args.domain),
        args=training_args,
        train_dataset=dataset,
        peft_config=None if script_args.tiny else get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=None if script_args.tiny else training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    summary = {
        "domain": script_args.domain,
        "steps": trainer.state.global_step,
        "probabilities": trainer.curriculum.probabilities() if trainer.curriculum else None,
    }
    print(json.dumps(summary))
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name or f"reasoning-gym/{script_args.domain}")


if __name__ == "__main__":
    main()
