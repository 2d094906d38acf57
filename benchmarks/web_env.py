"""BrowserGym environments: pooled workers against BrowserGym's own loop, measured in the same run.

Four measurements (MiniWoB++ tasks, real Chromium):

1. reset time of a pooled worker (the browser is kept, the task's setup re-runs in the open page)
   against BrowserGym's own ``env.reset`` (which relaunches its two browsers); target <= 0.5 s;
2. environment steps per second with 1, 2 and 4 workers against a bare loop of BrowserGym
   environments in as many processes doing the same actions (target >= 0.9x). The pool runs twice:
   in its default configuration (no screenshot, no chat window) and doing BrowserGym's full work
   (``screenshot=True, chat_browser=True``), which isolates the pool's own overhead. The three
   setups live side by side and are measured in alternating rounds (median of the rounds), so that
   the load of a shared machine hits all three alike;
3. memory (PSS: shared pages split among sharers) per worker, browsers included;
4. an endurance run of ``--episodes`` episodes: browser processes and memory at the start and end.

    python benchmarks/web_env.py --episodes 500 --steps 20 --rounds 5
    python benchmarks/web_env.py --quick            # a smoke run: few steps, 40 episodes

Results go to ``benchmarks/results/web_env.json``; the figures in docs/web-environments.md come from it.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from sec_rl.provenance import environment_info
from sec_rl.web import EnvironmentPool
from sec_rl.web.env import BrowserGymEnvironment

console = Console()
STEP_TASK, STEP_ACTION = "enter-text", "fill('14', 'hello')"  # the text field of enter-text has bid 14
RESET_TASKS = ("click-test", "click-button", "enter-text", "click-checkboxes", "focus-text")
SETTINGS = {"pre_observation_delay": 0.0, "slow_mo": 0}  # the same for BrowserGym's loop and the pool


# -- helpers -------------------------------------------------------------------------------------------
def tree_memory(pid: int) -> tuple[float, float, int]:
    """(PSS MB, RSS MB, number of processes) of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0, 0
    pss = rss = 0.0
    for process in processes:
        try:
            info = process.memory_full_info()
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
        except psutil.Error:
            continue
    return pss / 2**20, rss / 2**20, len(processes)


def chromium_count(pid: int) -> int:
    try:
        return sum("chrom" in p.name().lower() for p in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return 0


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "median": statistics.median(values),
        "p90": values[min(len(values) - 1, int(0.9 * len(values)))],
        "mean": statistics.fmean(values),
        "n": len(values),
    }


# -- BrowserGym's own loop, one environment per process ----------------------------------------------------
def bare_process(conn: Any, task: str, seed: int) -> None:
    """BrowserGym as its users run it: gym.make, reset, step. Only Chromium's path and flags are wired in."""
    import browsergym.miniwob  # noqa: F401
    import gymnasium as gym

    from sec_rl.web.browser import prepare_browser

    prepare_browser()
    env = gym.make(f"browsergym/miniwob.{task}", disable_env_checker=True, **SETTINGS)
    env.reset(seed=seed)
    conn.send(("ready", os.getpid()))
    while True:
        command, count = conn.recv()
        if command == "close":
            break
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            if command == "reset":
                env.reset(seed=seed + i + 1)
            else:
                env.step(STEP_ACTION)
            times.append(time.perf_counter() - t0)
        conn.send(times)
    env.close()


class BareRunner:
    """``workers`` processes, each with its own BrowserGym environment, stepped freely (no lock-step)."""

    name = "browsergym"

    def __init__(self, workers: int):
        context = mp.get_context("spawn")
        self.pipes, self.processes = [], []
        for w in range(workers):
            parent, child = context.Pipe()
            process = context.Process(target=bare_process, args=(child, STEP_TASK, 100 * w), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        self.pids = [pipe.recv()[1] for pipe in self.pipes]

    def run(self, command: str, count: int) -> tuple[float, list[float]]:
        """(seconds for all workers to do ``count`` steps each, per-step times)."""
        start = time.perf_counter()
        for pipe in self.pipes:
            pipe.send((command, count))
        times = [t for pipe in self.pipes for t in pipe.recv()]
        return time.perf_counter() - start, times

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("close", 0))
        for process in self.processes:
            process.join(timeout=30)


# -- the pool ----------------------------------------------------------------------------------------------
class PoolRunner:
    """An EnvironmentPool stepping all its workers in lock-step, as a rollout engine does."""

    def __init__(self, name: str, workers: int, **options: Any):
        self.name, self.workers = name, workers
        self.pool = EnvironmentPool(functools.partial(BrowserGymEnvironment, **SETTINGS, **options), workers)
        assert not any(r.env_error for r in self.pool.reset_many([(STEP_TASK, 100 * w) for w in range(workers)]))
        self.pids = self.pool.worker_pids()

    def run(self, command: str, count: int) -> tuple[float, list[float]]:
        times = []
        start = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            results = self.pool.step_many([f"Action: {STEP_ACTION}"] * self.workers)
            times.append(time.perf_counter() - t0)
            assert not any(r.env_error or r.observation.last_action_error for r in results), results
        return time.perf_counter() - start, times

    def close(self) -> None:
        self.pool.close()


def compare_throughput(workers: int, steps: int, rounds: int) -> dict[str, Any]:
    """Steps per second of the three setups, measured in alternating rounds so that machine noise hits all."""
    runners = [
        BareRunner(workers),
        PoolRunner("pool", workers),
        PoolRunner("pool_full_work", workers, screenshot=True, chat_browser=True),
    ]
    try:
        for runner in runners:
            runner.run("step", 2)  # warm
        rates: dict[str, list[float]] = {runner.name: [] for runner in runners}
        times: dict[str, list[float]] = {runner.name: [] for runner in runners}
        for round_ in range(rounds):
            for runner in runners[round_ % 3 :] + runners[: round_ % 3]:  # rotate the order
                elapsed, step_times = runner.run("step", steps)
                rates[runner.name].append(workers * steps / elapsed)
                times[runner.name].extend(step_times)
        memory = {runner.name: [tree_memory(pid) for pid in runner.pids if pid] for runner in runners}
    finally:
        for runner in runners:
            runner.close()
    row: dict[str, Any] = {"workers": workers}
    for name in rates:
        row[name] = {
            "steps_per_second": statistics.median(rates[name]),
            "steps_per_second_rounds": rates[name],
            "step_seconds": summary(times[name]),
            "memory_pss_mb": statistics.fmean(m[0] for m in memory[name]),
            "memory_rss_mb": statistics.fmean(m[1] for m in memory[name]),
            "processes": statistics.fmean(m[2] for m in memory[name]),
        }
    return row


def run_pool_resets(count: int) -> dict[str, Any]:
    factory = functools.partial(BrowserGymEnvironment, **SETTINGS)
    with EnvironmentPool(factory, 1) as pool:
        pool.reset(0, RESET_TASKS[0], 0)  # launches the browser
        browsers = pool.call(0, "browser_pids")
        same_task, mixed = [], []
        for i in range(count):
            same_task.append(pool.reset(0, STEP_TASK, i + 1).info["reset_seconds"])
        for i in range(count):
            mixed.append(pool.reset(0, RESET_TASKS[i % len(RESET_TASKS)], i + 1).info["reset_seconds"])
        assert pool.call(0, "browser_pids") == browsers, "a pooled reset relaunched the browser"
    return {"same_task": summary(same_task), "mixed_tasks": summary(mixed)}


# -- endurance ---------------------------------------------------------------------------------------------
BUTTON = re.compile(r"\[(\w+)\] button")


def run_endurance(episodes: int, workers: int) -> dict[str, Any]:
    """Many short episodes (reset, then click the first button); process count and memory over time."""
    factory = functools.partial(BrowserGymEnvironment, **SETTINGS)
    samples = []
    tasks = ("click-test", "click-button", "click-dialog", "enter-text", "click-link", "focus-text")
    with EnvironmentPool(factory, workers, step_timeout=60) as pool:
        done, start = 0, time.perf_counter()
        while done < episodes:
            goals = [(tasks[(done + w) % len(tasks)], done + w) for w in range(workers)]
            results = pool.reset_many(goals)
            actions = []
            for result in results:
                match = BUTTON.search(result.observation.axtree) if result and not result.env_error else None
                actions.append(f"Action: click('{match.group(1)}')" if match else "Action: noop(0)")
            pool.step_many(actions)
            done += workers
            if done == workers * 5 or done >= episodes or done % 50 < workers:
                pids = [pid for pid in pool.worker_pids() if pid]
                memory = [tree_memory(pid) for pid in pids]
                samples.append(
                    {
                        "episodes": done,
                        "seconds": time.perf_counter() - start,
                        "processes": sum(m[2] for m in memory),
                        "chromium_processes": sum(chromium_count(pid) for pid in pids),
                        "pss_mb": sum(m[0] for m in memory),
                        "rss_mb": sum(m[1] for m in memory),
                    }
                )
        time.sleep(5)  # let short-lived helper processes (spare renderers) come and go, then look again
        pids = [pid for pid in pool.worker_pids() if pid]
        memory = [tree_memory(pid) for pid in pids]
        settled = {
            "episodes": done,
            "seconds": time.perf_counter() - start,
            "processes": sum(m[2] for m in memory),
            "chromium_processes": sum(chromium_count(pid) for pid in pids),
            "pss_mb": sum(m[0] for m in memory),
            "rss_mb": sum(m[1] for m in memory),
            "settled": True,
        }
        samples.append(settled)
        metrics = pool.metrics()
    return {"workers": workers, "samples": samples, "metrics": metrics}


# -- main --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=500, help="episodes of the endurance run")
    parser.add_argument("--endurance-workers", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4", help="worker counts of the throughput comparison")
    parser.add_argument(
        "--steps", type=int, default=20, help="steps per worker and round of the throughput comparison"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the throughput comparison")
    parser.add_argument("--resets", type=int, default=20)
    parser.add_argument(
        "--parts", default="reset,throughput,endurance", help="which measurements to run (comma-separated)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 steps, 5 resets, 40 episodes")
    parser.add_argument("--output", default="benchmarks/results/web_env.json")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.resets, args.episodes = 10, 2, 5, 40

    parts = set(args.parts.split(","))
    unknown = parts - {"reset", "throughput", "endurance"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}: choose among reset, throughput, endurance")
    output = Path(args.output)
    result: dict[str, Any] = json.loads(output.read_text()) if output.exists() and not args.quick else {}
    command = "python benchmarks/web_env.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("quick", "output")
    )
    machine = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
    }
    for part, measure in (
        ("reset", measure_resets),
        ("throughput", measure_throughput),
        ("endurance", measure_endurance),
    ):
        if part in parts:
            result[part] = measure(args) | {"command": command, "machine": machine}
            result[part]["machine"]["load_average_end"] = os.getloadavg()
    result["environment"] = environment_info()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {output}")


def measure_resets(args: argparse.Namespace) -> dict[str, Any]:
    console.rule("reset")
    bare = BareRunner(1)
    try:
        _, bare_resets = bare.run("reset", args.resets)
    finally:
        bare.close()
    result = {"browsergym": summary(bare_resets), "pool": run_pool_resets(args.resets)}
    table = Table("reset", "median s", "p90 s")
    table.add_row(
        "BrowserGym env.reset", f"{result['browsergym']['median']:.3f}", f"{result['browsergym']['p90']:.3f}"
    )
    for key, value in result["pool"].items():
        table.add_row(f"pooled worker ({key.replace('_', ' ')})", f"{value['median']:.3f}", f"{value['p90']:.3f}")
    console.print(table)
    return result


def measure_throughput(args: argparse.Namespace) -> dict[str, Any]:
    console.rule("steps per second")
    rows = []
    table = Table("workers", "BrowserGym loop", "pool (default)", "ratio", "pool (full BrowserGym work)", "ratio")
    for workers in [int(w) for w in args.workers.split(",")]:
        row = compare_throughput(workers, args.steps, args.rounds)
        rows.append(row)
        bare_rate = row["browsergym"]["steps_per_second"]
        cells = [f"{bare_rate:.2f}"]
        for name in ("pool", "pool_full_work"):
            rate = row[name]["steps_per_second"]
            cells += [f"{rate:.2f}", f"{rate / bare_rate:.2f}x"]
        table.add_row(str(workers), *cells)
    console.print(table)
    table = Table("memory per worker", "PSS MB", "RSS MB", "processes")
    for row in rows:
        for name in ("browsergym", "pool", "pool_full_work"):
            run = row[name]
            table.add_row(
                f"{name}, {row['workers']} workers",
                f"{run['memory_pss_mb']:.0f}",
                f"{run['memory_rss_mb']:.0f}",
                f"{run['processes']:.0f}",
            )
    console.print(table)
    return {"rows": rows}


def measure_endurance(args: argparse.Namespace) -> dict[str, Any]:
    console.rule(f"endurance: {args.episodes} episodes")
    result = run_endurance(args.episodes, args.endurance_workers)
    table = Table("episodes", "seconds", "processes", "chromium", "PSS MB", "RSS MB")
    for s in result["samples"]:
        table.add_row(
            f"{s['episodes']}{' (settled)' if s.get('settled') else ''}",
            f"{s['seconds']:.0f}",
            str(s["processes"]),
            str(s["chromium_processes"]),
            f"{s['pss_mb']:.0f}",
            f"{s['rss_mb']:.0f}",
        )
    console.print(table)
    console.print(result["metrics"])
    return result


if __name__ == "__main__":
    main()
