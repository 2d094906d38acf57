"""WorkArena (ServiceNow) tasks through the same environment layer, when an instance is configured.

WorkArena's tasks run against a live ServiceNow instance named by three environment variables
(:data:`WORKARENA_ENV_VARS`) and need ``pip install browsergym-workarena`` (then ``workarena-install``
once, to load the benchmark's data into the instance). Nothing here can run without them, which is
the case on the project's own machines: :func:`check_workarena` says exactly what is missing.

Task ids are BrowserGym's, e.g. ``workarena.servicenow.order-standard-laptop``; they go to
:class:`~sec_rl.web.env.BrowserGymEnvironment` like MiniWoB's. WorkArena pages are large: the study
used the accessibility tree, and each episode gets a fresh browser context (logins and records must
not leak between episodes), so :func:`workarena_environment` sets ``reuse="browser"``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from sec_rl.web.env import BrowserGymEnvironment

__all__ = [
    "WORKARENA_ENV_VARS",
    "WorkArenaUnavailableError",
    "check_workarena",
    "missing_workarena_config",
    "workarena_environment",
    "workarena_tasks",
]

WORKARENA_ENV_VARS: tuple[str, ...] = ("SNOW_INSTANCE_URL", "SNOW_INSTANCE_UNAME", "SNOW_INSTANCE_PWD")
WORKARENA_ACTIONS: tuple[str, ...] = ("bid", "chat", "nav", "tab")  # WorkArena navigates between pages


class WorkArenaUnavailableError(RuntimeError):
    """WorkArena cannot run here: the message names the missing variables or package."""


def missing_workarena_config() -> list[str]:
    """The WorkArena environment variables that are unset or empty."""
    return [name for name in WORKARENA_ENV_VARS if not os.environ.get(name)]


def check_workarena() -> None:
    """Raise :class:`WorkArenaUnavailableError` unless an instance is configured and the package installed."""
    problems = []
    missing = missing_workarena_config()
    if missing:
        problems.append(
            f"no ServiceNow instance configured: set {', '.join(missing)} (a developer instance from "
            "https://developer.servicenow.com, with `workarena-install` run once against it)"
        )
    try:
        importlib.import_module("browsergym.workarena")
    except ImportError:
        problems.append("the WorkArena tasks are not installed: `pip install browsergym-workarena`")
    if problems:
        raise WorkArenaUnavailableError("WorkArena is unavailable: " + "; ".join(problems) + ".")


def workarena_tasks(level: str = "l1") -> list[str]:
    """Task ids of WorkArena's ``l1`` (atomic) tasks, or of all its tasks with ``level="all"``."""
    check_workarena()
    workarena = importlib.import_module("browsergym.workarena")
    if level == "l1":
        classes = workarena.ATOMIC_TASKS
    elif level == "all":
        classes = workarena.ALL_WORKARENA_TASKS
    else:
        raise ValueError(f"level must be 'l1' or 'all', not {level!r}.")
    return [task.get_task_id() for task in classes]


def workarena_environment(**kwargs: Any) -> BrowserGymEnvironment:
    """A :class:`BrowserGymEnvironment` set up for WorkArena (checks the configuration first).

    To use it in a pool, pass the function itself as the factory (it is picklable):
    ``EnvironmentPool(workarena_environment, num_workers=4)``, or a ``functools.partial`` of it.
    """
    check_workarena()
    options: dict[str, Any] = {"reuse": "browser", "actions": WORKARENA_ACTIONS, "slow_mo": None}
    options.update(kwargs)
    return BrowserGymEnvironment(**options)
