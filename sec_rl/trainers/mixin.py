"""Curriculum behaviour for TRL trainers, as mixins that override the narrowest methods and call ``super()``.

``CurriculumMixin`` holds what every trainer needs (categories from the dataset, the strategy, the sampler that
draws a batch's rows when the batch is about to be used, the update from gathered values, checkpointing and
logging); ``GRPOCurriculumMixin`` draws each generation batch when it is generated and updates the strategy from
its advantages (``SFTCurriculumMixin``, in ``sft_trainer.py``, draws each micro-batch when its optimizer step
starts and updates from the step's per-sequence losses). Drawing late, rather than when TRL's data loader
prefetches, is what lets every draw see every update before it. Put a mixin first in the bases of your own
trainer: ``class MyTrainer(GRPOCurriculumMixin, MyGRPOTrainer)``. A trainer given a plain TRL config (without
the curriculum fields) behaves as TRL's.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset

from sec_rl.curriculum import (
    POOL_STRATEGIES,
    POOLS,
    Curriculum,
    CurriculumSampler,
    DifficultyPools,
    RandomCurriculum,
    arm_key,
    make_curriculum,
    upgrade_curriculum_state,
)
from sec_rl.curriculum.sampler import ALL_ROWS
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
        self.curriculum: Curriculum | None = None
        self.curriculum_sampler: CurriculumSampler | None = None
        self._curriculum_drawn: list[dict[str, Any]] | None = None  # the rows of the batch being generated
        self._curriculum_arms: list[str] = []  # and the arm of every row of that batch, all processes
        self._curriculum_problems: list[int] = []  # the dataset row of each prompt of the latest draw
        super().__init__(*args, **kwargs)
        if not hasattr(self.args, "curriculum_enabled"):
            # A plain TRL config (or none): the import was swapped but not the config, so behave as TRL does.
            if curriculum is not None:
                raise TypeError(
                    f"a curriculum was passed but `args` is a {type(self.args).__name__}, which has no curriculum "
                    "fields (curriculum_column, ...): use SECGRPOConfig / SECSFTConfig, or add "
                    "sec_rl.trainers.CurriculumArguments to the bases of your config dataclass."
                )
            logger.info(
                f"{type(self).__name__} got a {type(self.args).__name__}: training without a curriculum, as TRL "
                "does. Use SECGRPOConfig / SECSFTConfig to choose one."
            )
            return
        if self.args.curriculum_enabled or curriculum is not None:
            self._setup_curriculum(curriculum)
        elif getattr(self.args, "dynamic_sampling", "none") != "none":
            # Refill batches need fresh prompts: drawn uniformly, late, by the sampler a curriculum would steer.
            self._row_arms = ["all"] * len(self.train_dataset)
            uniform = RandomCurriculum(["all"])
            self.curriculum_sampler = CurriculumSampler(
                self._row_arms, uniform, shuffle=self._curriculum_shuffle(), seed=self._sampler_seed()
            )

    # -- set-up ------------------------------------------------------------------------------------
    def _setup_curriculum(self, curriculum: Curriculum | None) -> None:
        dataset = self.train_dataset
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "a curriculum needs a map-style `datasets.Dataset`: it draws a problem of the chosen category by "
                "index, which a stream cannot do. Materialise it, e.g. `Dataset.from_list(list(stream.take(n)))`, "
                "or set curriculum='none'."
            )
        if dataset is None:
            raise ValueError("a curriculum needs a `train_dataset` with a category column.")
        name = self.args.curriculum
        if getattr(curriculum, "arms_are_pools", False) or (curriculum is None and name in POOL_STRATEGIES):
            # Arms are difficulty pools that problems move between: no category column is read.
            self._curriculum_columns = list(self.args.curriculum_column or [])
            self._row_arms = [ALL_ROWS] * len(dataset)
            categories = list(POOLS)
        else:
            self._row_arms, categories = self._row_categories(dataset)
        if curriculum is None:
            sizes = [self._row_arms.count(c) for c in categories]
            curriculum = make_curriculum(
                name,
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

    def _row_categories(self, dataset: Dataset) -> tuple[list[str], list[str]]:
        """Each row's arm (from ``curriculum_column``) and the arms in order (``curriculum_categories`` or sorted)."""
        columns = list(self.args.curriculum_column or [])
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
        row_arms = [arm_key(parts) for parts in zip(*values)]
        found = natural_sort(sorted(set(row_arms)))
        categories = list(self.args.curriculum_categories or found)
        unlisted = sorted(set(found) - set(categories))
        if unlisted:
            raise ValueError(
                f"the data has categories {unlisted} that `curriculum_categories` does not list: add them to "
                f"curriculum_categories (now {categories}) or drop those rows."
            )
        return row_arms, categories

    def _planned_curriculum_updates(self, num_rows: int) -> int:
        """How many times the strategy will be updated in the planned run (the 'ordered' strategy splits it)."""
        raise NotImplementedError

    def _make_curriculum_sampler(self) -> CurriculumSampler:
        pools = self.args.curriculum_pools
        return CurriculumSampler(
            self._row_arms,
            self.curriculum,
            shuffle=self._curriculum_shuffle(),
            seed=self._sampler_seed(),
            pools=None if pools is None else DifficultyPools(**pools),
        )

    def _sampler_seed(self) -> int:
        return self.args.seed if self.args.curriculum_seed is None else self.args.curriculum_seed

    def _curriculum_shuffle(self) -> bool:
        """Whether each category's problems are taken in a shuffled order (else in dataset order)."""
        return True

    def _draw_rows(self, local_size: int, repeats: int = 1) -> tuple[list[int], list[str]]:
        """Draw a global batch now and return this process's row indices and every row's arm (global order).

        The global batch holds ``local_size * num_processes`` rows: ``local_size * num_processes // repeats``
        problems, each repeated ``repeats`` times in a row (GRPO's groups); process ``r`` keeps the ``r``-th
        contiguous slice. Every process draws the same batch, so the arms need no communication.
        """
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        total = local_size * world
        if total % repeats:
            raise RuntimeError(
                f"a batch of {total} rows over {world} processes cannot hold whole groups of {repeats}: make "
                "the global batch size a multiple of the group size."
            )
        problems = self.curriculum_sampler.draw(total // repeats)
        self._curriculum_problems = list(problems)
        indices = np.repeat(problems, repeats).tolist()
        arms = np.repeat(self.curriculum_sampler.last_arms, repeats).tolist()  # a category, or a pool
        return indices[rank * local_size : (rank + 1) * local_size], arms

    def _set_signature_columns_if_needed(self):
        # With remove_unused_columns=True the category columns must survive: each batch row names its arm.
        super()._set_signature_columns_if_needed()
        extra = [c for c in getattr(self.args, "curriculum_column", None) or [] if c not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]

    # -- learning and logging ---------------------------------------------------------------------
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
        if self.curriculum_sampler is None or not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        state: dict[str, Any] = {"sampler": self.curriculum_sampler.state_dict()}
        if self.curriculum is not None:
            # The parameters and the next draw's probabilities make the file readable without the config
            # (model cards, `sec_rl.pipeline.hub.load_curriculum_state`); loading uses "curriculum" only.
            state["curriculum"] = self.curriculum.state_dict()
            state["params"] = self.args.curriculum_params()
            state["probabilities"] = {c: float(p) for c, p in self.curriculum.probabilities().items()}
        signal_state = self._curriculum_signal_state()
        if signal_state:
            state["signal"] = signal_state
        with open(os.path.join(output_dir, CURRICULUM_STATE_NAME), "w") as f:
            json.dump(state, f, allow_nan=False)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.curriculum_sampler is None:
            return
        path = os.path.join(checkpoint, CURRICULUM_STATE_NAME)
        if not os.path.exists(path):
            logger.warning(f"{path} not found: the curriculum starts afresh (was this checkpoint written by TRL?).")
            return
        with open(path) as f:
            state = json.load(f)
        if self.curriculum is not None:
            state = upgrade_curriculum_state(state, self.curriculum.categories)  # arm names of sec-rl 0.1 files
            self.curriculum.load_state_dict(state["curriculum"])
        if "sampler" in state:
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

    def _curriculum_shuffle(self) -> bool:
        return self.shuffle_dataset

    def _draw_generation_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This process's rows of a new generation batch, drawn now from the curriculum.

        TRL's data loader fetches a generation batch ahead of time (``get_batch_samples`` and accelerate's
        one-batch read-ahead), before the previous batch's advantages exist; the rows it fetched are replaced
        here, when the batch is generated, so the draw sees every update before it in any layout. GRPO's
        collator is the identity, so a row is the dataset row itself (restricted to the loader's columns). The
        layout is TRL's: groups of ``num_generations`` copies of a prompt, process ``r`` holding the ``r``-th
        contiguous slice (TRL slices its gathered advantages that way). Rows already drawn pass through, so a
        subclass may draw first (the web trainer reads the goals before calling ``super()``).
        """
        if self.curriculum_sampler is None or not self.model.training or inputs is self._curriculum_drawn:
            return inputs
        local, self._curriculum_arms = self._draw_rows(len(inputs), repeats=self.num_generations)
        columns = inputs[0].keys()
        self._curriculum_drawn = [{k: v for k, v in self.train_dataset[i].items() if k in columns} for i in local]
        return self._curriculum_drawn

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Keep the rewards of every process (TRL gathers them here) for the curriculum's update.
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._curriculum_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        inputs = self._draw_generation_batch(inputs)
        output = super()._generate_and_score_completions(inputs)
        if inputs is self._curriculum_drawn and self.curriculum is not None:
            advantages, rewards = self._curriculum_signal(output)
            # Each prompt's group success, its mean reward clipped to [0, 1] (binary rewards: the success rate),
            # is its difficulty for the pools; NaN where no rollout was scored.
            groups = rewards.float().clamp(0.0, 1.0).view(-1, self.num_generations)
            self.curriculum_sampler.observe(self._curriculum_problems, groups.nanmean(dim=1).cpu().tolist())
            self._apply_curriculum_update(
                self._curriculum_arms, advantages.float().cpu().tolist(), rewards.float().cpu().tolist()
            )
        self._curriculum_drawn = None
        return output

    def _gathered_rewards(self) -> torch.Tensor:
        """The latest batch's reward per rollout, every process's, as TRL aggregates them; NaN where none scored."""
        per_func = self._curriculum_rewards_per_func
        unscorable = torch.isnan(per_func).all(dim=1)
        rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        return rewards

    def _curriculum_signal(self, output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-rollout advantages and rewards of the whole generation batch, gathered from every process.

        Rollouts that no reward function could score get NaN, so that they never reach the strategy.
        """
        rewards = self._gathered_rewards()
        unscorable = torch.isnan(rewards)
        if "raw_advantages" in (self.args.curriculum_signal, getattr(self.curriculum, "signal", None)):
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
