"""A callback that turns the logged curriculum metrics into a plot and a JSON history.

It reads ``state.log_history``, which the Trainer restores on resume, so a resumed run still
plots the whole history. It works with any trainer that logs ``curriculum/prob/<arm>`` metrics.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import TrainerCallback

PROB_PREFIX = "curriculum/prob/"


def curriculum_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"steps": [...], "probabilities": {arm: [...]}}`` from a Trainer's ``log_history``."""
    steps: list[int] = []
    probabilities: dict[str, list[float]] = {}
    for entry in log_history:
        probs = {k[len(PROB_PREFIX) :]: v for k, v in entry.items() if k.startswith(PROB_PREFIX) and v is not None}
        if not probs:
            continue
        for arm in probs.keys() - probabilities.keys():
            probabilities[arm] = [float("nan")] * len(steps)
        steps.append(int(entry.get("step", len(steps))))
        for arm, values in probabilities.items():
            values.append(float(probs.get(arm, float("nan"))))
    return {"steps": steps, "probabilities": probabilities}


def plot_curriculum_history(history: dict[str, Any], path: str, title: str = "Curriculum") -> None:
    """Probability of each arm over training steps, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, values in history["probabilities"].items():
        ax.plot(history["steps"], values, label=arm, linewidth=1.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("probability of the category")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(title="category", fontsize=8, ncol=2 if len(history["probabilities"]) > 6 else 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class CurriculumCallback(TrainerCallback):
    """Writes ``curriculum_probabilities.png`` and ``curriculum_history.json`` into ``output_dir``.

    Args:
        every_save: also refresh them at every checkpoint, not only at the end of training.
    """

    def __init__(self, every_save: bool = True):
        self.every_save = every_save

    def _write(self, args, state) -> None:
        if not state.is_world_process_zero:
            return
        history = curriculum_history(state.log_history)
        if not history["steps"]:
            return
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "curriculum_history.json"), "w") as f:
            json.dump(history, f)
        plot_curriculum_history(history, os.path.join(args.output_dir, "curriculum_probabilities.png"))

    def on_save(self, args, state, control, **kwargs):
        if self.every_save:
            self._write(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(args, state)
