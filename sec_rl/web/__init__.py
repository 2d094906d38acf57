"""Web environments for training and evaluating LLM agents: BrowserGym MiniWoB++ / WorkArena and a text world.

The roles, one module each:

- :mod:`~sec_rl.web.actions`: the action language; ``parse_action(text)`` turns a model's output into
  one whitelisted BrowserGym call, or raises ``InvalidActionError``. Nothing else reaches the browser.
- :mod:`~sec_rl.web.env`: the environment interface (``reset(task, seed)``, ``step(text)``, ``close()``),
  ``BrowserGymEnvironment`` (real Chromium, kept alive between episodes) and ``TextEnvironment``.
- :mod:`~sec_rl.web.pool`: ``EnvironmentPool``, environments in worker processes, stepped in parallel,
  restarted when they crash or hang.
- :mod:`~sec_rl.web.observation`: observations and their rendering into chat messages.
- :mod:`~sec_rl.web.browser`: finding Chromium and wiring it into Playwright.
- :mod:`~sec_rl.web.tasks`: the MiniWoB++ split and goal datasets for the trainer.
- :mod:`~sec_rl.web.config`: ``WebConfig``, the ``web_*`` settings training, evaluation and collection share.
- :mod:`~sec_rl.web.rollout`: ``RolloutEngine``, the one episode loop: all live episodes advanced together
  (one batched policy call per turn, then every environment steps in parallel).
- :mod:`~sec_rl.web.policies`: who answers: token ids (``TokenPolicy``, ``ModelAgent``, the actors) or chat
  messages (``ChatPolicy``: teachers, API models).
- :mod:`~sec_rl.web.samples`: episodes into training rows (``episode`` or ``per_step``) and advantages.
- :mod:`~sec_rl.web.evaluate`: success rates with bootstrap intervals.
- :mod:`~sec_rl.web.workarena`: WorkArena, when a ServiceNow instance is configured.

Names load lazily, so that ``import sec_rl.web`` stays cheap in worker processes.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "sec_rl.web.actions": ("Action", "InvalidActionError", "parse_action", "describe_actions", "DEFAULT_ACTIONS"),
    "sec_rl.web.env": (
        "WebEnvironment",
        "StepResult",
        "BrowserGymEnvironment",
        "TextEnvironment",
        "UnknownTaskError",
        "EnvironmentCrashedError",
    ),
    "sec_rl.web.observation": (
        "Messages",
        "Observation",
        "PromptConfig",
        "render_messages",
        "render_observation",
        "system_prompt",
    ),
    "sec_rl.web.pool": ("EnvironmentPool", "Goal"),
    "sec_rl.web.browser": ("ChromiumNotFoundError", "find_chromium", "miniwob_url", "prepare_browser"),
    "sec_rl.web.tasks": (
        "TRAIN_TASKS",
        "HELDOUT_TASKS",
        "HELDOUT_GOAL_SEEDS",
        "HELDOUT_TASK_SEEDS",
        "goals_dataset",
        "train_goals",
        "heldout_goals",
        "heldout_task_goals",
    ),
    "sec_rl.web.config": ("WebConfig", "LAYOUTS", "ENVIRONMENTS"),
    "sec_rl.web.rollout": ("RolloutEngine", "Episode", "Step", "RolloutResult"),
    "sec_rl.web.policies": ("ChatPolicy", "ModelAgent", "Reply", "TokenPolicy", "TransformersActor", "VLLMActor"),
    "sec_rl.web.samples": ("compute_advantages", "discounted_returns", "episode_sample", "step_samples"),
    "sec_rl.web.evaluate": ("evaluate", "EvalReport"),
    "sec_rl.web.workarena": ("WorkArenaUnavailableError", "check_workarena", "workarena_environment"),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sec_rl.web' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
