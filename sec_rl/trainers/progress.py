"""One readable line per logging step, in place of the Trainer's raw metric dictionaries.

Transformers' ``ProgressCallback`` writes every log as a Python ``dict`` of 20-40 keys (TRL's and the curriculum's);
a terminal full of them hides what a person watching a run wants: the step, the loss, the success rate, what the
curriculum is doing. :class:`ConciseProgressCallback` keeps the progress bar and writes instead::

    step 8/12 | loss 0.0213 | success 62% | reward 0.62 | invalid 4% | lr 1.0e-04 | curriculum: enter-text 41%

Every metric is still in ``state.log_history`` (and in whatever ``report_to`` sends them to); only the terminal
changes. :func:`use_concise_progress` swaps it into a built trainer (the sec-rl commands and the demo do).
"""

from __future__ import annotations

from typing import Any

from transformers import PrinterCallback, ProgressCallback

from sec_rl.trainers.callbacks import PROB_PREFIX

# (key in the logs, label, format): each of these that a log carries is shown, in this order
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", "{:.4g}"),
    ("web/success_rate", "success", "{:.0%}"),
    ("reward", "reward", "{:.3g}"),
    ("web/invalid_action_rate", "invalid", "{:.0%}"),
    ("mean_token_accuracy", "token acc", "{:.0%}"),
    ("learning_rate", "lr", "{:.1e}"),
    ("steps_skipped_without_signal", "skipped", "{:.0f}"),
    ("dynamic_sampling/generation_batches", "batches", "{:.3g}"),
    ("eval_loss", "eval loss", "{:.4g}"),
)


def format_log(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """The one line of a log: step, the known metrics it carries, and the curriculum's likeliest arm."""
    parts = [f"step {step}/{max_steps}"]
    for key, label, spec in FIELDS:
        value = logs.get(key)
        if isinstance(value, (int, float)) and value == value:  # skips None and NaN
            parts.append(f"{label} {spec.format(value)}")
    probabilities = {k[len(PROB_PREFIX) :]: v for k, v in logs.items() if k.startswith(PROB_PREFIX) and v is not None}
    if probabilities:
        arm, p = max(probabilities.items(), key=lambda item: item[1])
        parts.append(f"curriculum: {arm} {p:.0%}")
    if "train_runtime" in logs:
        parts.append(f"done in {logs['train_runtime']:.0f} s")
    return " | ".join(parts)


class ConciseProgressCallback(ProgressCallback):
    """Transformers' progress bar (none with ``disable_tqdm``), and :func:`format_log`'s line for each log.

    Args:
        prefix: put before every line (which run it is, when several share a terminal).
    """

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0
        if not args.disable_tqdm:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        line = self.prefix + format_log(logs or {}, state.global_step, state.max_steps)
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


def use_concise_progress(trainer: Any, prefix: str = "") -> Any:
    """Replace ``trainer``'s progress or printer callback with :class:`ConciseProgressCallback`; returns it."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConciseProgressCallback(prefix))
    return trainer
