"""Curriculum behaviour for TRL trainers, as mixins that override the narrowest methods and call ``super()``.

``CurriculumMixin`` holds what every trainer needs (categories from the dataset, the strategy, the train
sampler, the update from gathered values, checkpointing and logging); ``GRPOCurriculumMixin`` adds GRPO's
sampler shape and the update from each generation batch's advantages (``SFTCurriculumMixin``, in
``sft_trainer.py``, the update from each optimizer step's per-sequence losses). Put a mixin first in the bases
of your own trainer: ``class MyTrainer(GRPOCurriculumMixin, MyGRPOTrainer)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset, IterableDataset

from sec_rl.curriculum import Curriculum, CurriculumSampler, arm_key, make_curriculum
from sec_rl.trainers.callbacks import CurriculumCallback

logger = logging.getLogger(__name__)

CURRICULUM_STATE_NAME = "curriculum_state.json"


def natural_sort(values: Sequence[str]) -> list[str]:
    """Numbers by value, then the rest alphabetically: "2" < "10" < "easy"."""

    def key(value: str) -> tuple[int, float, str]:
        try:
            return (0, float(value), value)
        except ValueError:
            return (1, 0.0, value)

    return sorted(values, key=key)


class CurriculumMixin:
    """Categories, strategy, checkpointing and logging of a curriculum; reads its settings from ``args``.

    Args:
        curriculum: a ready strategy to use instead of the one ``args.curriculum`` names (for instance a
            custom :class:`~sec_rl.curriculum.Curriculum` subclass). Its categories must match the data.
    """

    def __init__(self, *args: Any, curriculum: Curriculum | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not hasattr(self.args, "curriculum_enabled"):
            raise TypeError(
                f"{type(self).__name__} reads its curriculum settings from `args`, but got a "
                f"{type(self.args).__name__}: use SECGRPOConfig / SECSFTConfig, or add "
                "sec_rl.trainers.CurriculumArguments to the bases of your config dataclass."
            )
        self.curriculum: Curriculum | None = None
        self.curriculum_sampler: CurriculumSampler | None = None
        if self.args.curriculum_enabled or curriculum is not None:
            self._setup_curriculum(curriculum)

    # -- set-up ------------------------------------------------------------------------------------
    def _setup_curriculum(self, curriculum: Curriculum | None) -> None:
        dataset = self.train_dataset
        columns = list(self.args.curriculum_column or [])
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "a curriculum needs a map-style `datasets.Dataset`: it draws a problem of the chosen category by "
                "index, which a stream cannot do. Materialise it, e.g. `Dataset.from_list(list(stream.take(n)))`, "
                "or set curriculum='none'."
            )
        if dataset is None:
            raise ValueError("a curriculum needs a `train_dataset` with a category column.")
        if not columns:
            raise ValueError(
                "set `curriculum_column` in the config: the dataset column(s) holding each row's category."
            )
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"curriculum_column {missing} not in the training dataset, whose columns are {dataset.column_names}: "
                "add the column or name an existing one."
            )
        self._curriculum_columns = columns
        values = [list(dataset[c]) for c in columns]
        self._row_arms = [arm_key(parts) for parts in zip(*values)]
        found = natural_sort(sorted(set(self._row_arms)))
        categories = list(self.args.curriculum_categories or found)
        unlisted = sorted(set(found) - set(categories))
        if unlisted:
            raise ValueError(
                f"the data has categories {unlisted} that `curriculum_categories` does not list: add them to "
                f"curriculum_categories (now {categories}) or drop those rows."
            )
        if curriculum is None:
            sizes = [self._row_arms.count(c) for c in categories]
            curriculum = make_curriculum(
                self.args.curriculum,
                categories,
                sizes=sizes,
                total_updates=self._planned_curriculum_updates(len(dataset)),
                **self.args.curriculum_params(),
            )
        elif set(curriculum.categories) != set(categories):
            raise ValueError(
                f"the curriculum's categories {curriculum.categories} differ from the data's {categories}."
            )
        self.curriculum = curriculum
        self.curriculum_sampler = self._make_curriculum_sampler()
        if not any(isinstance(cb, CurriculumCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(CurriculumCallback())

    def _planned_curriculum_updates(self, num_rows: int) -> int:
        """How many times the strategy will be updated in the planned run (the 'ordered' strategy splits it)."""
        raise NotImplementedError

    def _make_curriculum_sampler(self) -> CurriculumSampler | None:
        """The sampler the trainer's data loader will use (None if the trainer samples some other way)."""
        return None

    def _get_train_sampler(self, dataset: Dataset | None = None):
        # The Trainer passes the training set itself, or (remove_unused_columns=True) a copy with fewer columns and
        # the same rows: both are indexed like the rows the curriculum sampler knows. Anything else keeps TRL's.
        sampler = self.curriculum_sampler
        same_rows = dataset is None or dataset is self.train_dataset
        if sampler is not None and not same_rows and isinstance(dataset, Dataset):
            same_rows = len(dataset) == sampler.num_samples and set(self._curriculum_columns) <= set(
                dataset.column_names
            )
        if sampler is None or not same_rows:
            return super()._get_train_sampler(dataset)
        return sampler

    def _set_signature_columns_if_needed(self):
        # With remove_unused_columns=True the category columns must survive: each batch row names its arm.
        super()._set_signature_columns_if_needed()
        extra = [c for c in getattr(self.args, "curriculum_column", None) or [] if c not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]

    def _row_arm(self, row: dict[str, Any]) -> str:
        return arm_key(row[c] for c in self._curriculum_columns)

    # -- learning and logging ---------------------------------------------------------------------
    def _update_curriculum(self, local_rows: list[dict[str, Any]], advantages: torch.Tensor, rewards: torch.Tensor):
        """Update the strategy from one batch; ``advantages`` and ``rewards`` are already gathered (global order).

        Every process gathers the same values in the same order, so every strategy stays identical.
        """
        categories = gather_object([self._row_arm(row) for row in local_rows])
        self._apply_curriculum_update(categories, advantages.float().cpu().tolist(), rewards.float().cpu().tolist())

    def _apply_curriculum_update(
        self,
        categories: Sequence[str],
        advantages: Sequence[float],
        rewards: Sequence[float] | None,
        extra_metrics: dict[str, float] | None = None,
    ) -> None:
        """Feed one batch, gathered from every process in the same order, to the strategy and queue its metrics."""
        self.curriculum.update(categories, advantages, rewards)
        metrics = self._metrics["train"]
        for name, value in {**self.curriculum.metrics(), **(extra_metrics or {})}.items():
            metrics[name].append(value)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        # The curriculum's metrics are states, not per-batch samples: report their latest value, not a mean.
        for name, values in self._metrics["train"].items():
            if name.startswith("curriculum/") and len(values) > 1:
                del values[:-1]
        super().log(logs, *args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Checkpoints and final saves both go through save_model, so the strategy travels with every model.
        super().save_model(output_dir, _internal_call)
        if self.curriculum is not None and self.args.should_save:
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            # The parameters and the next draw's probabilities make the file readable without the config
            # (model cards, `sec_rl.pipeline.hub.load_curriculum_state`); loading uses "curriculum" only.
            probabilities = {c: float(p) for c, p in self.curriculum.probabilities().items()}
            state = {
                "curriculum": self.curriculum.state_dict(),
                "params": self.args.curriculum_params(),
                "probabilities": probabilities,
            }
            if self.curriculum_sampler is not None:
                state["sampler"] = self.curriculum_sampler.state_dict()
            signal_state = self._curriculum_signal_state()
            if signal_state:
                state["signal"] = signal_state
            with open(os.path.join(output_dir, CURRICULUM_STATE_NAME), "w") as f:
                json.dump(state, f, allow_nan=False)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.curriculum is None:
            return
        path = os.path.join(checkpoint, CURRICULUM_STATE_NAME)
        if not os.path.exists(path):
            logger.warning(f"{path} not found: the curriculum starts afresh (was this checkpoint written by TRL?).")
            return
        with open(path) as f:
            state = json.load(f)
        self.curriculum.load_state_dict(state["curriculum"])
        if self.curriculum_sampler is not None and "sampler" in state:
            self.curriculum_sampler.load_state_dict(state["sampler"])
        self._load_curriculum_signal_state(state.get("signal", {}))

    def _curriculum_signal_state(self) -> dict[str, Any]:
        """JSON state of the trainer's signal itself (e.g. reference losses), saved beside the strategy's."""
        return {}

    def _load_curriculum_signal_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_curriculum_signal_state` saved (``{}`` for a checkpoint without it)."""


class GRPOCurriculumMixin(CurriculumMixin):
    """Adds the curriculum to a ``GRPOTrainer`` (or a subclass of it)."""

    def _planned_curriculum_updates(self, num_rows: int) -> int:
        # One update per generation batch; a generation batch is repeated num_iterations * steps_per_generation
        # times in the data loader, and each optimizer step consumes gradient_accumulation_steps batches.
        args = self.args
        repeats = self.num_iterations * args.steps_per_generation
        if args.max_steps > 0:
            return max(1, math.ceil(args.max_steps * args.gradient_accumulation_steps / repeats))
        chunks_per_epoch = num_rows // (args.generation_batch_size // self.num_generations)
        return max(1, math.ceil(args.num_train_epochs * chunks_per_epoch))

    def _make_curriculum_sampler(self) -> CurriculumSampler:
        return CurriculumSampler(
            self._row_arms,
            self.curriculum,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed if self.args.curriculum_seed is None else self.args.curriculum_seed,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Keep the rewards of every process (TRL gathers them here) for the curriculum's update.
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._curriculum_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.curriculum is not None and self.model.training:
            advantages, rewards = self._curriculum_signal(output)
            self._update_curriculum(inputs, advantages, rewards)
        return output

    def _curriculum_signal(self, output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-rollout advantages and rewards of the whole generation batch, gathered from every process.

        Rollouts that no reward function could score get NaN, so that they never reach the strategy.
        """
        per_func = self._curriculum_rewards_per_func
        unscorable = torch.isnan(per_func).all(dim=1)
        rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        if self.args.curriculum_signal == "raw_advantages":
            groups = rewards.view(-1, self.num_generations)
            advantages = (groups - groups.nanmean(dim=1, keepdim=True)).view(-1)
        else:
            local = output["advantages"]
            if local.dim() == 2:  # token-level advantages: masked token mean of |A| per response
                mask = output["completion_mask"].to(local.dtype)
                local = (local.abs() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            advantages = self.accelerator.gather(local.detach()).to(rewards.device).float()
            advantages[unscorable] = torch.nan
        return advantages, rewards
