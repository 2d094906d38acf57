"""A pool of environments in worker processes, stepped in parallel, that survives crashes and hangs.

Each worker process owns one environment (Playwright's sync API, which BrowserGym uses, cannot be
shared across threads) and serves one slot of the pool. The caller drives all slots at once::

    with EnvironmentPool(TextEnvironment, num_workers=4, step_timeout=30) as pool:
        results = pool.reset_many([("click-button", 3), ("enter-text", 4), None, None])
        results = pool.step_many(["Action: click('12')", "Action: fill('5', 'apple')", None, None])

Faults are the pool's business, not the caller's: a worker that dies, raises, or does not answer
within ``step_timeout`` is killed with everything it started (its browsers included) and replaced
by a fresh one; the episode it was running ends with ``done=True, env_error=True``, so that the
training loop leaves it out of the loss, and the fault is counted in :meth:`EnvironmentPool.metrics`.
An episode that outlives ``episode_timeout`` (wall clock since its reset) ends the same way. Only the
caller's own mistakes (an unknown task id, stepping a slot with no episode) raise.

No worker or browser outlives the pool: :meth:`close` (also called by ``with``, by the garbage
collector and at interpreter exit) kills every process tree, and each worker dies with its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from sec_rl.web.env import StepResult, UnknownTaskError, WebEnvironment
from sec_rl.web.observation import Observation

__all__ = ["EnvironmentPool", "Goal"]

Goal = tuple[str, int]  # (task, seed)
EnvFactory = Callable[[], WebEnvironment]

_CALLER_ERRORS = (UnknownTaskError,)  # re-raised in the caller; the worker stays


# -- the worker process ----------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the process that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(conn: Connection, factory: EnvFactory) -> None:
    """Serve one environment: ("reset", task, seed) | ("step", text) | ("call", method, args) | ("close",)."""
    _die_with_parent()
    os.setpgrp()  # its own process group, so the pool can kill it with everything it started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the pool
    env = None
    try:
        env = factory()
        conn.send(("ready", os.getpid()))
        while True:
            try:
                command, *args = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if command == "close":
                return
            try:
                if command == "reset":
                    reply: Any = env.reset(*args)
                elif command == "step":
                    reply = env.step(*args)
                elif command == "call":
                    reply = getattr(env, args[0])(*args[1])
                else:
                    raise ValueError(f"unknown command {command!r}")
            except _CALLER_ERRORS as error:
                conn.send(("caller_error", error))
                continue
            except Exception as error:  # noqa: BLE001 - reported to the pool, which restarts this worker
                conn.send(("env_error", f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}"))
                continue
            conn.send(("ok", reply))
    except Exception as error:  # noqa: BLE001 - the factory failed: report why, then exit
        with contextlib.suppress(Exception):
            conn.send(("env_error", f"creating the environment failed: {type(error).__name__}: {error}"))
    finally:
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()


def _tree(process: Any) -> list[Any]:
    """A worker and all its descendants as ``psutil.Process`` objects, read while the worker is alive.

    Read only while the worker is unreaped, so that its pid cannot belong to another process; psutil
    then refuses to signal any of these objects whose pid was reused later.
    """
    import psutil

    if process.exitcode is not None:
        return []
    try:
        root = psutil.Process(process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _kill(process: Any, tree: list[Any]) -> None:
    """SIGKILL a worker's process group and every process of ``tree`` still running, then wait for them.

    Browsers run in process groups of their own (Playwright detaches them), hence the tree.
    A worker's process group id cannot be reused while any member of the group lives.
    """
    import psutil

    with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
        os.killpg(process.pid, signal.SIGKILL)
    for member in tree:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(tree, timeout=5)
    process.join(timeout=1)


def _shutdown(workers: dict[int, Any], grace: float) -> None:
    """Stop workers: ask them to close, wait up to ``grace`` seconds, then kill what is left. Idempotent."""
    trees = {slot: _tree(worker.process) for slot, worker in workers.items()}
    for worker in workers.values():
        with contextlib.suppress(Exception):
            worker.conn.send(("close",))
    deadline = time.monotonic() + grace
    for slot, worker in list(workers.items()):
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        _kill(worker.process, trees[slot])  # helpers a clean exit left behind, or a worker that did not exit
        with contextlib.suppress(Exception):
            worker.conn.close()
        workers.pop(slot, None)


# -- the pool --------------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False  # it has built its environment


@dataclass
class _Episode:
    task: str
    seed: int
    started: float
    observation: Observation | None = None
    steps: int = 0
    done: bool = False


@dataclass
class _Stats:
    counts: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)


class EnvironmentPool:
    """``num_workers`` environments in worker processes, reset and stepped in parallel.

    Args:
        factory: builds one environment in a worker; must be picklable (a class such as
            ``TextEnvironment``, or ``functools.partial(BrowserGymEnvironment, reuse="page")``).
        num_workers: number of worker processes, i.e. of episodes that can run at once.
        step_timeout: seconds a step may take before its worker counts as hung and is replaced.
        reset_timeout: the same for a reset (default ``max(step_timeout, 60)``: a first reset launches Chromium).
        episode_timeout: wall-clock seconds from a reset after which the episode ends as an environment error.
        start_timeout: seconds a fresh worker may take to build its environment, on top of the command's timeout.
        mp_context: multiprocessing start method; ``spawn`` is the one safe with threads and Playwright.
    """

    def __init__(
        self,
        factory: EnvFactory,
        num_workers: int = 4,
        *,
        step_timeout: float = 30.0,
        reset_timeout: float | None = None,
        episode_timeout: float | None = None,
        start_timeout: float = 120.0,
        mp_context: str = "spawn",
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}.")
        self.factory = factory
        self.num_workers = num_workers
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout if reset_timeout is not None else max(step_timeout, 60.0)
        self.episode_timeout = episode_timeout
        self.start_timeout = start_timeout
        self._context = mp.get_context(mp_context)
        self._workers: dict[int, _Worker] = {}
        self._episodes: list[_Episode | None] = [None] * num_workers
        self._stats = _Stats()
        self._closed = False
        # Runs at close(), when the pool is garbage-collected, or at interpreter exit: whichever comes first.
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, 0.0)
        for slot in range(num_workers):
            self._start(slot)

    # -- public API -------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.num_workers

    def __len__(self) -> int:
        return self.num_workers

    def reset_many(self, goals: Sequence[Goal | None]) -> list[StepResult | None]:
        """Start an episode in slot ``i`` for each ``goals[i]`` that is not None, all in parallel.

        A slot's running episode, if any, is abandoned. Returns one :class:`StepResult` per goal
        (reward 0, ``done=False``; ``env_error=True, done=True`` if the environment failed), None
        where the goal was None. Raises :class:`UnknownTaskError` for a task id that does not exist.
        """
        self._check_open(len(goals))
        commands = {}
        for slot, goal in enumerate(goals):
            if goal is not None:
                task, seed = str(goal[0]), int(goal[1])
                self._episodes[slot] = _Episode(task, seed, started=time.monotonic())
                commands[slot] = ("reset", task, seed)
        replies = self._run(commands, self.reset_timeout)
        results: list[StepResult | None] = [None] * len(goals)
        caller_error: Exception | None = None
        for slot, (status, value, seconds) in replies.items():
            episode = self._episodes[slot]
            assert episode is not None
            self._stats.counts["resets"] += 1
            if status == "ok":
                self._stats.seconds["reset"] += seconds
                episode.observation = value
                results[slot] = StepResult(value, 0.0, False, {"reset_seconds": seconds})
            elif status == "caller_error":
                self._episodes[slot] = None
                caller_error = caller_error or value
            else:
                results[slot] = self._fail(slot, status, value, phase="reset")
        if caller_error is not None:
            raise caller_error
        return results

    def step_many(self, actions: Sequence[str | None]) -> list[StepResult | None]:
        """Apply ``actions[i]`` (the model's output) to slot ``i``'s episode, all in parallel; None skips a slot.

        Returns one :class:`StepResult` per action (None where the action was None). An episode that
        ended (``done``) must be reset before it can be stepped again.
        """
        self._check_open(len(actions))
        commands = {}
        results: list[StepResult | None] = [None] * len(actions)
        for slot, action in enumerate(actions):
            if action is None:
                continue
            episode = self._episodes[slot]
            if episode is None or episode.done:
                state = "has no episode" if episode is None else "has finished its episode"
                raise ValueError(f"slot {slot} {state}: reset it before stepping it.")
            if self._expired(episode):
                results[slot] = self._fail(slot, "episode_timeout", self._timeout_message(episode), phase="episode")
                continue
            commands[slot] = ("step", action)
        replies = self._run(commands, self.step_timeout)
        for slot, (status, value, seconds) in replies.items():
            episode = self._episodes[slot]
            assert episode is not None
            self._stats.counts["steps"] += 1
            if status != "ok":
                results[slot] = self._fail(slot, status, value, phase="step")
                continue
            self._stats.seconds["step"] += seconds
            episode.steps += 1
            episode.observation = value.observation
            value.info["step_seconds"] = seconds
            if value.done:
                episode.done = True
                self._stats.counts["episodes_done"] += 1
            elif self._expired(episode):
                value = self._fail(
                    slot, "episode_timeout", self._timeout_message(episode), phase="episode", result=value
                )
            results[slot] = value
        return results

    def reset(self, slot: int, task: str, seed: int) -> StepResult:
        """:meth:`reset_many` for one slot."""
        goals: list[Goal | None] = [None] * self.num_workers
        goals[slot] = (task, seed)
        result = self.reset_many(goals)[slot]
        assert result is not None
        return result

    def step(self, slot: int, action: str) -> StepResult:
        """:meth:`step_many` for one slot."""
        actions: list[str | None] = [None] * self.num_workers
        actions[slot] = action
        result = self.step_many(actions)[slot]
        assert result is not None
        return result

    def call(self, slot: int, method: str, *args: Any) -> Any:
        """Call a public method of slot ``slot``'s environment (diagnostics, e.g. ``browser_pids``)."""
        if method.startswith("_"):
            raise ValueError(f"only public methods can be called, not {method!r}.")
        self._check_open(slot + 1)
        status, value, _ = self._run({slot: ("call", method, args)}, self.step_timeout)[slot]
        if status != "ok":
            raise RuntimeError(f"{method}() failed in worker {slot}: {value}")
        return value

    def worker_pids(self) -> list[int | None]:
        """Process id of each slot's worker (None while none runs)."""
        return [self._workers[s].process.pid if s in self._workers else None for s in range(self.num_workers)]

    def metrics(self) -> dict[str, float]:
        """Counters since the pool started: resets, steps, episodes, faults, mean seconds per reset/step."""
        counts = self._stats.counts
        out = {
            name: float(counts[name])
            for name in (
                "resets",
                "steps",
                "episodes_done",
                "env_errors",
                "worker_restarts",
                "worker_deaths",
                "step_timeouts",
                "episode_timeouts",
                "env_exceptions",
            )
        }
        ok_resets = counts["resets"] - counts["reset_failures"]
        ok_steps = counts["steps"] - counts["step_failures"]
        out["reset_seconds_mean"] = self._stats.seconds["reset"] / ok_resets if ok_resets else 0.0
        out["step_seconds_mean"] = self._stats.seconds["step"] / ok_steps if ok_steps else 0.0
        return out

    def close(self) -> None:
        """Stop every worker (a few seconds' grace to close browsers cleanly, then SIGKILL)."""
        if not self._closed:
            self._closed = True
            self._finalizer.detach()
            _shutdown(self._workers, grace=5.0)

    def __enter__(self) -> EnvironmentPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers ----------------------------------------------------------------------------------
    def _start(self, slot: int) -> None:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child, self.factory), name=f"sec-rl-env-{slot}", daemon=True
        )
        process.start()
        child.close()
        self._workers[slot] = _Worker(process, parent)

    def _restart(self, slot: int) -> None:
        worker = self._workers.pop(slot, None)
        if worker is not None:
            _kill(worker.process, _tree(worker.process))
            with contextlib.suppress(Exception):
                worker.conn.close()
        self._stats.counts["worker_restarts"] += 1
        self._start(slot)  # starts in the background; its first command waits for it

    def _run(self, commands: dict[int, tuple], timeout: float) -> dict[int, tuple[str, Any, float]]:
        """Send each slot its command, then gather replies: slot -> (status, value, seconds).

        Status: ``ok``, ``caller_error``, ``env_error`` (the environment raised), ``died`` (the worker
        exited), ``timeout``.
        """
        replies: dict[int, tuple[str, Any, float]] = {}
        deadlines: dict[int, float] = {}
        sent: dict[int, float] = {}
        for slot, command in commands.items():
            worker = self._workers[slot]
            try:
                worker.conn.send(command)
            except (OSError, ValueError) as error:
                replies[slot] = ("died", f"worker {slot} could not be reached: {error}", 0.0)
                continue
            sent[slot] = time.monotonic()
            deadlines[slot] = sent[slot] + timeout + (0.0 if worker.ready else self.start_timeout)
        while deadlines:
            by_conn = {self._workers[slot].conn: slot for slot in deadlines}
            ready = wait(list(by_conn), timeout=max(0.0, min(deadlines.values()) - time.monotonic()))
            for conn in ready:
                slot = by_conn[conn]
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    code = self._workers[slot].process.exitcode
                    replies[slot] = ("died", f"worker {slot} died (exit code {code})", 0.0)
                    del deadlines[slot]
                    continue
                if status == "ready":  # a fresh worker finished building its environment
                    self._workers[slot].ready = True
                    sent[slot] = time.monotonic()
                    deadlines[slot] = sent[slot] + timeout
                    continue
                replies[slot] = (status, value, time.monotonic() - sent[slot])
                del deadlines[slot]
            now = time.monotonic()
            for slot in [s for s, deadline in deadlines.items() if now >= deadline]:
                replies[slot] = ("timeout", f"no answer from worker {slot} within {timeout:g} s", now - sent[slot])
                del deadlines[slot]
        return replies

    def _fail(
        self, slot: int, status: str, message: str, *, phase: str, result: StepResult | None = None
    ) -> StepResult:
        """End slot ``slot``'s episode as an environment error.

        ``phase`` is ``reset`` or ``step`` (the worker failed: it is replaced) or ``episode`` (the
        episode ran out of time: the worker is fine and stays).
        """
        counts = self._stats.counts
        counts["env_errors"] += 1
        kinds = {"died": "worker_deaths", "timeout": "step_timeouts", "episode_timeout": "episode_timeouts"}
        counts[kinds.get(status, "env_exceptions")] += 1
        if phase != "episode":
            counts[f"{phase}_failures"] += 1
            self._restart(slot)
        episode = self._episodes[slot]
        observation = (result.observation if result else None) or (episode.observation if episode else None)
        if observation is None:
            observation = Observation(
                goal="", task=episode.task if episode else "", seed=episode.seed if episode else None
            )
        if episode is not None:
            episode.done = True
        info = dict(result.info if result else {})
        info.update({"error": message, "error_kind": status})
        return StepResult(observation, 0.0, True, info, env_error=True)

    def _expired(self, episode: _Episode) -> bool:
        return self.episode_timeout is not None and time.monotonic() - episode.started > self.episode_timeout

    def _timeout_message(self, episode: _Episode) -> str:
        return f"episode of {episode.task!r} (seed {episode.seed}) exceeded episode_timeout={self.episode_timeout:g} s"

    def _check_open(self, length: int) -> None:
        if self._closed:
            raise RuntimeError("the pool is closed.")
        if length > self.num_workers:
            raise ValueError(f"got {length} entries for a pool of {self.num_workers} workers.")
