"""The whole pipeline, one stage after the other: collect -> sft -> grpo -> evaluate (-> push).

    python examples/web_agent/pipeline.py --config examples/web_agent/pipeline.yaml
    python examples/web_agent/pipeline.py --config examples/web_agent/pipeline.yaml \
        --train_launcher "accelerate launch --config_file integrations/accelerate/zero3.yaml"

Each stage is its own script and YAML (the files next to this one), run as a subprocess so that training
stages can run under `accelerate launch` on several GPUs. Every stage resumes from what it finds on disk
(traces already written, the last checkpoint, evaluations already saved), so rerunning the pipeline after an
interruption continues where it stopped. Options after the known ones go to every stage unchanged.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

HERE = Path(__file__).resolve().parent
STAGES = ("collect", "sft", "grpo", "evaluate", "push")
TRAINING = ("sft", "grpo")


@dataclass
class PipelineArguments:
    stages: list[str] = field(
        default_factory=lambda: ["collect", "sft", "grpo", "evaluate"],
        metadata={"help": f"Stages to run, in order, among {list(STAGES)}."},
    )
    collect_config: str = field(default=str(HERE / "collect.yaml"), metadata={"help": "YAML of the collect stage."})
    sft_config: str = field(default=str(HERE / "sft.yaml"), metadata={"help": "YAML of the SFT stage."})
    grpo_config: str = field(default=str(HERE / "grpo.yaml"), metadata={"help": "YAML of the GRPO stage."})
    evaluate_config: str = field(default=str(HERE / "evaluate.yaml"), metadata={"help": "YAML of the evaluation."})
    push_config: str = field(default=str(HERE / "push.yaml"), metadata={"help": "YAML of the Hub push."})
    train_launcher: str = field(
        default="accelerate launch",
        metadata={"help": "Command that runs the training stages (e.g. with --config_file integrations/...)."},
    )


def command(args: PipelineArguments, stage: str) -> list[str]:
    launcher = shlex.split(args.train_launcher) if stage in TRAINING else [sys.executable]
    return [*launcher, str(HERE / f"{stage}.py"), "--config", getattr(args, f"{stage}_config")]


def main() -> None:
    (args,) = TrlParser(PipelineArguments).parse_args_and_config()
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}: choose among {list(STAGES)}.")
    for stage in args.stages:
        cmd = command(args, stage)
        print(f"\n=== {stage}: {shlex.join(cmd)}", flush=True)
        result = subprocess.run(cmd)
        if result.returncode != 0:
            raise SystemExit(
                f"stage {stage!r} failed (exit {result.returncode}); fix it and rerun: done work is kept."
            )


if __name__ == "__main__":
    main()
