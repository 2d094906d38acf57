"""The ``sec-rl`` command line: one sub-command per job, each with its own ``--help``."""

from __future__ import annotations

import os
import sys


def _demo_domain(argv: list[str]) -> str:
    """The ``--domain`` of a demo command line (flag or YAML ``--config``), before the full parse."""
    for i, arg in enumerate(argv):
        if arg.startswith("--domain="):
            return arg.split("=", 1)[1]
        if arg == "--domain" and i + 1 < len(argv):
            return argv[i + 1]
    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else argv[i + 1] if arg == "--config" else None
        if path and i + 1 <= len(argv):
            import yaml

            with open(path) as f:
                return str((yaml.safe_load(f) or {}).get("domain", "web"))
    return "web"


def demo_main(argv: list[str] | None = None) -> int:
    """``sec-rl demo``: the web pipeline; ``sec-rl demo --domain arithmetic``: the synthetic-task demo."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    domain = _demo_domain(argv)
    if domain == "arithmetic":
        from sec_rl.demo.arithmetic import ArithmeticDemoConfig as Config
        from sec_rl.demo.arithmetic import run_arithmetic_demo as run

        description = (
            "The arithmetic demo: a tiny model trained by SFT, then SEC-GRPO, with per-level accuracy before and "
            "after and a plot of the curriculum."
        )
    elif domain == "web":
        from sec_rl.demo.web import WebDemoConfig as Config
        from sec_rl.demo.web import run_web_demo as run

        description = (
            "The web-agent demo (default): a scripted teacher collects MiniWoB++ traces in a real browser, a "
            "student (a tiny model built on the spot, or --student smollm2-135m: the pretrained "
            "SmolLM2-135M-Instruct) learns them by SFT with the SEC curriculum, then SEC-GRPO over live episodes; "
            "every stage is evaluated on held-out goals and tasks. --domain arithmetic runs the synthetic-task demo "
            "instead."
        )
    else:
        print(f"sec-rl demo: unknown --domain {domain!r}: use 'web' (default) or 'arithmetic'.", file=sys.stderr)
        return 2
    parser = TrlParser(
        Config, prog="sec-rl demo", description=description + " Options can also come from a YAML file (--config)."
    )
    (config,) = parser.parse_args_and_config(argv)
    run(config)
    return 0


def _stage(
    argv: list[str] | None, prog: str, types: tuple, run_name: str, description: str, **defaults: object
) -> int:
    """Parse a pipeline stage's arguments (flags or ``--config`` YAML, over ``defaults``) and run it."""
    from trl import TrlParser

    from sec_rl.pipeline import stages

    parser = TrlParser(types, prog=prog, description=description)
    parser.set_defaults(**defaults)  # the stage's own defaults: YAML and flags still override them
    parsed = parser.parse_args_and_config(argv)
    result = getattr(stages, run_name)(*parsed)
    if isinstance(result, str):
        print(result)
    return 0


def sft_main(argv: list[str] | None = None) -> int:
    from trl import ModelConfig

    from sec_rl.pipeline.stages import WebSFTArguments
    from sec_rl.trainers import SECSFTConfig

    return _stage(
        argv, "sec-rl sft", (WebSFTArguments, SECSFTConfig, ModelConfig), "run_sft",
        "SFT of a student on teacher traces (loss on assistant turns) with a curriculum over tasks. "
        "Under several GPUs: accelerate launch -m sec_rl.cli sft ...",
        curriculum_column=["task"],  # every trace of `sec-rl collect` names its task
    )  # fmt: skip


def grpo_main(argv: list[str] | None = None) -> int:
    from trl import ModelConfig

    from sec_rl.pipeline.stages import WebGRPOArguments
    from sec_rl.trainers.web_grpo import SECWebGRPOConfig

    return _stage(
        argv, "sec-rl grpo", (WebGRPOArguments, SECWebGRPOConfig, ModelConfig), "run_grpo",
        "SEC-GRPO over live multi-turn web episodes, from an SFT checkpoint or any model (LoRA via --use_peft).",
    )  # fmt: skip


def evaluate_main(argv: list[str] | None = None) -> int:
    from sec_rl.pipeline.stages import WebEvalArguments

    return _stage(
        argv, "sec-rl evaluate", (WebEvalArguments,), "run_evaluate",
        "Evaluate stages (name=checkpoint) on the held-out goals and tasks with bootstrap 95% intervals.",
    )  # fmt: skip


def push_main(argv: list[str] | None = None) -> int:
    from sec_rl.pipeline.stages import PushArguments

    return _stage(
        argv, "sec-rl push", (PushArguments,), "run_push",
        "Push the student to the Hub with a model card recording the pipeline (teacher, traces, steps, "
        "curriculum, evaluation, compute).",
    )  # fmt: skip


def sweep_main(argv: list[str] | None = None) -> int:
    from sec_rl.diagnosis.cli import sweep_main as run

    return run(argv)


def diagnose_main(argv: list[str] | None = None) -> int:
    from sec_rl.diagnosis.cli import diagnose_main as run

    return run(argv)


def collect_main(argv: list[str] | None = None) -> int:
    from sec_rl.pipeline.collect import collect_main as run

    return run(argv)


COMMANDS = {
    "collect": (collect_main, "collect teacher traces on web tasks (resumable, sharded JSON lines)"),
    "sft": (sft_main, "SFT of the student on the traces, with a curriculum over tasks"),
    "grpo": (grpo_main, "SEC-GRPO over live web episodes, from an SFT checkpoint"),
    "evaluate": (evaluate_main, "every stage on the held-out goals and tasks, with 95% intervals"),
    "push": (push_main, "push the student to the Hub with a model card of the pipeline"),
    "demo": (demo_main, "run the offline demo (web pipeline; --domain arithmetic for the synthetic one)"),
    "sweep": (sweep_main, "sample hyperparameter configurations and write their launch commands"),
    "diagnose": (diagnose_main, "bootstrap which hyperparameter values win across a sweep's runs"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: sec-rl <command> [options]\n\ncommands:\n" + "\n".join(lines))
        print("\nRun `sec-rl <command> --help` for a command's options.")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nsec-rl: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, _ = COMMANDS[argv[0]]
    try:
        return command(argv[1:])
    except Exception as error:  # noqa: BLE001 - every command's failure is one line; the traceback on request
        if os.environ.get("SEC_RL_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if not isinstance(error, ValueError | FileNotFoundError):  # not an input error: say what broke
            message = f"{type(error).__name__}: {message}"
        print(f"sec-rl {argv[0]}: error: {message} (SEC_RL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
