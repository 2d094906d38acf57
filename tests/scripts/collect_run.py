"""Trace collection on the text world with a scripted teacher, for the collect tests (in-process or killed).

    python tests/scripts/collect_run.py OUTPUT_DIR --seeds 12 --delay 0.3 --workers 2

``TextTeacher`` solves :class:`~sec_rl.web.env.TextEnvironment`'s tasks from the last user message (goal and
page), optionally sleeping ``delay`` seconds per batched call so that a test can kill the run mid-way.
Its token counts are word counts, so the tests can check the sums against a formula.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sec_rl.pipeline.teachers import Messages, Reply, Teacher

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from text_world import solve  # noqa: E402  (the tests' shared text-world policy)


def words(messages: Messages) -> int:
    return sum(len(m["content"].split()) for m in messages)


class TextTeacher(Teacher):
    """A scripted expert of the text world; tokens are counted as words (prompt: all messages, completion: reply)."""

    name = "text-expert"
    num_parameters = 0

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0

    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        replies = []
        for messages in conversations:
            text = solve(messages[-1]["content"])
            replies.append(Reply(text, words(messages), len(text.split())))
        return replies


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
