"""Success rate of the scripted MiniWoB++ expert (:class:`sec_rl.pipeline.scripted.ScriptedTeacher`) in Chromium.

Every supported training task (or ``--tasks``) runs once per seed through :func:`sec_rl.web.evaluate.evaluate`,
the same loop that measures a model; a task counts as solved at a success rate of at least ``--threshold``.

    python benchmarks/scripted_teacher.py                      # all supported tasks, seeds 3-7, 2 workers
    python benchmarks/scripted_teacher.py --tasks enter-text,click-tab --seeds 3-4 --layout episode
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sec_rl.pipeline.scripted import ScriptedTeacher
from sec_rl.provenance import environment_info
from sec_rl.web.config import LAYOUTS, WebConfig
from sec_rl.web.evaluate import evaluate
from sec_rl.web.tasks import HELDOUT_GOAL_SEEDS, TRAIN_TASKS


def parse_seeds(text: str) -> list[int]:
    """``"3-7"`` or ``"3,5,9"`` (ranges inclusive) to a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise argparse.ArgumentTypeError(f"seeds must look like '3-7' or '3,5,9', not {text!r}.")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="", help="comma-separated tasks (default: every supported one)")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("3-7"), help="e.g. 3-7 (training seeds)")
    parser.add_argument("--workers", type=int, default=2, help="parallel browsers")
    parser.add_argument("--layout", choices=LAYOUTS, default="per_step")
    parser.add_argument("--max-turns", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.8, help="success rate that counts a task as solved")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = parser.parse_args()

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or list(ScriptedTeacher.tasks)
    teacher = ScriptedTeacher(tasks)
    held_out = sorted(set(args.seeds) & set(HELDOUT_GOAL_SEEDS))
    if held_out:
        print(f"note: seeds {held_out} are held-out goals, not training seeds")
    start = time.perf_counter()
    web = WebConfig(web_num_workers=args.workers, web_max_turns=args.max_turns, web_layout=args.layout)
    report = evaluate(teacher, tasks, args.seeds, web)
    wall = time.perf_counter() - start

    print(report.table())
    solved = [t for t, s in report.per_task.items() if s.episodes and s.success_rate >= args.threshold]
    training = [t for t in solved if t in TRAIN_TASKS]
    print(
        f"\nsolved (success >= {args.threshold:.0%}): {len(solved)} of {len(tasks)} tasks "
        f"({len(training)} training tasks); {len(report.episodes)} episodes, layout {args.layout}, "
        f"{args.workers} workers, {wall:.1f} s"
    )
    unsolved = sorted(set(tasks) - set(solved))
    if unsolved:
        print(f"below the threshold: {', '.join(unsolved)}")
    if args.json is not None:
        payload = {**report.to_dict(), "solved": solved, "wall_s": wall, "layout": args.layout, "seeds": args.seeds}
        payload["environment"] = environment_info()
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
