"""Trace collection on the text world with a scripted teacher, for the collect tests (in-process or killed).

    python tests/scripts/collect_run.py OUTPUT_DIR --seeds 12 --delay 0.3 --workers 2

:class:`~helpers.text_world.TextTeacher` solves :class:`~sec_rl.web.env.TextEnvironment`'s tasks from the last user
message (goal and page), optionally sleeping ``delay`` seconds per batched call so that a test can kill the run
mid-way. The test that launches it puts ``tests/`` on ``PYTHONPATH`` (as pytest's ``pythonpath`` does in-process).
"""

from __future__ import annotations

import argparse

from helpers.text_world import TextTeacher


def main() -> None:
    from sec_rl.pipeline.collect import collect_traces
    from sec_rl.web.config import WebConfig
    from sec_rl.web.env import TextEnvironment

    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--layout", default="episode")
    args = parser.parse_args()
    goals = [(task, seed) for task in TextEnvironment.TASKS for seed in range(3, 3 + args.seeds)]
    summary = collect_traces(
        TextTeacher(args.delay),
        goals,
        args.output_dir,
        WebConfig(web_env="text", web_num_workers=args.workers, web_max_turns=6, web_layout=args.layout),
        progress=False,
    )
    print(summary)


if __name__ == "__main__":
    main()
