"""The ``sec-rl`` command line: one sub-command per job, each with its own ``--help``."""

from __future__ import annotations

import sys


def demo_main(argv: list[str] | None = None) -> int:
    """Options come from ``ArithmeticDemoConfig`` (flags, or a YAML file with ``--config``)."""
    from trl import TrlParser

    from sec_rl.demo.arithmetic import ArithmeticDemoConfig, run_arithmetic_demo

    parser = TrlParser(
        ArithmeticDemoConfig,
        prog="sec-rl demo",
        description="Run the offline demo: a tiny model trained by SFT, then SEC-GRPO, with per-level accuracy "
        "before and after and a plot of the curriculum. Every option can also come from a YAML file (--config).",
    )
    (config,) = parser.parse_args_and_config(argv)
    run_arithmetic_demo(config)
    return 0


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
    "demo": (demo_main, "run the offline demo (tiny model, SFT then SEC-GRPO)"),
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
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
