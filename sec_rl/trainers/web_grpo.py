"""SEC-GRPO for LLM web agents: every rollout is a multi-turn episode in a (browser) environment.

Each dataset row is a goal (``task``, ``seed``), repeated ``num_generations`` times in the batch; the SEC
curriculum chooses among tasks (``curriculum_column="task"``). The trainer plugs into TRL through its public
extension points and narrow overrides, each calling ``super()``:

- ``rollout_func`` (TRL's hook): runs the episodes with :class:`~sec_rl.web.rollout.RolloutEngine`, turns
  them into samples (:mod:`sec_rl.web.samples`), scores them with the user's ``reward_funcs`` if any, computes
  their advantages, and returns one row per batch row with ``env_mask`` (TRL's ``tool_mask``) and the rewards
  (``web_reward``, read by the reward function :func:`web_reward`, and one column per user function);
- ``_generate_batch`` (one generation batch, :mod:`sec_rl.trainers.dynamic_sampling`'s unit): has the
  curriculum draw the batch's goals, tells the rollout which goals the batch holds (``rollout_func`` only sees
  the prompts), then replaces TRL's advantages with the rollout's, in the batch and in TRL's logs: per-step
  discounted returns grouped per goal are not something TRL's row-group arithmetic can compute;
- ``_batch_informative``: for dynamic sampling, a goal's group is informative when one of its rows has a
  non-zero advantage as trained: the rollout's baseline is the goal's mean over all its step samples, or the
  batch's (``web_advantage='batch'``), not the mean of the group's rows that TRL's test of equal rewards assumes;
- ``_calculate_rewards``: silences TRL's warning for rows that carry no reward by design (fillers, errors);
- ``_curriculum_signal``: gives the curriculum one value per row computed from the goal's own samples;
- ``save_model`` / ``_load_optimizer_and_scheduler``: ``web_state.json`` in every checkpoint, so that a
  resumed run subsamples the same per_step rows and keeps counting page tokens.

The environment pool is created on first use, from ``args`` (or the ``env_factory`` argument), and closed
when training ends (a callback, plus a ``finally`` around ``train``), so no browser outlives training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer

from sec_rl.trainers.dynamic_sampling import DynamicSamplingMixin
from sec_rl.trainers.grpo_config import SECGRPOConfig
from sec_rl.trainers.grpo_trainer import SECGRPOTrainer
from sec_rl.web.config import WebConfig
from sec_rl.web.policies import Actor, TokenPolicy, TransformersActor, VLLMActor
from sec_rl.web.pool import EnvironmentPool, Goal
from sec_rl.web.rollout import Episode, RolloutEngine, RolloutResult
from sec_rl.web.samples import (
    FitStats,
    Sample,
    compute_advantages,
    episode_sample,
    fit_step_rows,
    mask_zero_advantage,
    rollout_output,
    row_groups,
    step_samples,
)

__all__ = ["SECWebGRPOConfig", "SECWebGRPOTrainer", "WebAgentArguments", "WebAgentMixin", "web_reward"]

logger = logging.getLogger(__name__)

WEB_STATE_NAME = "web_state.json"
_COUNTS = (
    "episodes",
    "env_errors",
    "samples",
    "samples_filtered",
    "samples_dropped",
    "rows_padded",
    "worker_restarts",
    "env_tokens",
)


def web_reward(completions: list[Any], web_reward: list[float | None], **kwargs: Any) -> list[float | None]:
    """The environment's return carried by each row (episode return, or a step's discounted return).

    None marks a row that says nothing about the agent (environment error, filler row): TRL leaves it out
    of its reward statistics. The advantages themselves come from the rollout (see the module docstring).
    """
    return list(web_reward)


def _silence_unscored_rows(record: logging.LogRecord) -> bool:
    return "All reward functions returned None" not in record.getMessage()  # accelerate may prefix "[RANK i] "


def _carried_reward(index: int, func: Callable[..., Any]) -> Callable[..., list[float | None]]:
    """TRL's stand-in for the user's ``index``-th reward function: the rollout already scored every sample with it
    (per_step samples TRL never sees included), and each row carries its value in ``web_extra_reward_<index>``."""

    def carried(completions: list[Any], **kwargs: Any) -> list[float | None]:
        return list(kwargs[f"web_extra_reward_{index}"])

    carried.__name__ = getattr(func, "__name__", f"reward_{index + 1}")
    return carried


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class WebAgentArguments(WebConfig):
    """The web-agent fields of training: the shared :class:`~sec_rl.web.config.WebConfig` (environment, turns,
    layout, prompt) and what only training uses (returns, advantages, generation batches). Mixed into a TRL
    config dataclass, they parse from flags and YAML like the others."""

    web_gamma: float = field(
        default=0.9, metadata={"help": "Discount of per_step returns, gamma**(T-t) * R. The study swept 0.5-1.0."}
    )
    web_advantage: str = field(
        default="goal",
        metadata={
            "help": "Baseline of the advantage: 'goal' (mean return of the goal's samples: grouped) or 'batch'. "
            "The standard deviation follows TRL's `scale_rewards` ('group' = the goal's, 'batch', 'none')."
        },
    )
    web_zero_advantage_filter: bool = field(
        default=True,
        metadata={"help": "Leave samples with zero advantage out of the loss (the study found it helps)."},
    )
    web_failure_reward: float | None = field(
        default=None,
        metadata={"help": "Return of a failed episode (e.g. -1.0 for the study's +1/-1). Default: the environment's."},
    )
    web_invalid_action_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted from the return for each turn whose output held no valid action (per_step: from that "
            "step's). 0 rewards an episode that succeeds after malformed actions like a clean one, which teaches the "
            "malformed text too: a tiny student's action format wore away under RL (docs/benchmark-web-learning.md)."
        },
    )
    web_episodes_per_goal: int | None = field(
        default=None,
        metadata={
            "help": "per_step only: episodes per goal (<= num_generations); its num_generations rows are filled "
            "with their step samples. Default: num_generations (one episode per row). Set it near "
            "num_generations / mean episode length so that few step samples are dropped."
        },
    )
    web_generation_batch_size: int | None = field(
        default=None,
        metadata={"help": "Contexts per `generate` call without vLLM (None: every live episode at once)."},
    )

    def __post_init__(self):
        super().__post_init__()  # the TRL config's checks (when mixed in), then the shared web settings'
        if self.web_advantage not in ("goal", "batch"):
            raise ValueError(f"web_advantage={self.web_advantage!r} is not supported: use one of ['goal', 'batch'].")
        if not 0.0 < self.web_gamma <= 1.0:
            raise ValueError(f"web_gamma={self.web_gamma} is out of range: use a discount in (0, 1].")
        if not 0.0 <= self.web_invalid_action_penalty < math.inf:
            raise ValueError(
                f"web_invalid_action_penalty={self.web_invalid_action_penalty} is out of range: use a penalty >= 0 "
                "(0: none; e.g. 0.1 per malformed turn against a success's 1.0)."
            )
        if self.web_episodes_per_goal is not None:
            if self.web_layout != "per_step":
                raise ValueError("web_episodes_per_goal applies to web_layout='per_step' only: unset it.")
            generations = getattr(self, "num_generations", None)
            if not 1 <= self.web_episodes_per_goal <= (generations or self.web_episodes_per_goal):
                raise ValueError(
                    f"web_episodes_per_goal={self.web_episodes_per_goal} must be between 1 and num_generations "
                    f"({generations}): a goal's step samples fill its num_generations rows."
                )


@dataclass
class SECWebGRPOConfig(WebAgentArguments, SECGRPOConfig):
    """Configuration of :class:`SECWebGRPOTrainer`: ``GRPOConfig`` + curriculum + ``web_*`` fields.

    The curriculum's category is the task (``curriculum_column="task"``). TRL's fields keep their meaning,
    with two web-specific readings: ``max_completion_length`` limits *one turn* (thought + action), and
    ``scale_rewards`` chooses the standard deviation the advantages are divided by.
    """

    curriculum_column: list[str] | None = field(
        default_factory=lambda: ["task"],
        metadata={"help": "Dataset column(s) holding each row's category: the task, for web agents."},
    )
    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "TRL's loss aggregation (see GRPOConfig). Default: 'grpo' in the episode layout, 'dapo' (TRL's) "
            "in per_step. An episode sample holds every turn, and a failed episode runs all its turns, repeating the "
            "action format more often than a quick success: weighting tokens alike ('dapo') pushes the format's "
            "shared tokens down by the surplus, and a small model's actions stop parsing. 'grpo' weighs each episode "
            "by its advantage whatever its length, so the shared tokens' pushes cancel within a group."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type is None:
            self.loss_type = "grpo" if self.web_layout == "episode" else "dapo"


# -- the trainer -----------------------------------------------------------------------------------
@dataclass
class _WebBatch:
    """What one generation batch carries between TRL's hooks: its goals, then what its rollout computed."""

    goals: list[Goal]
    advantages: torch.Tensor | None = None  # per row: the advantages trained on
    curriculum_rows: list[tuple[float, float]] | None = None  # per row: (|advantage| signal, success)
    zero_std_fraction: float = math.nan  # scored samples whose goal's rewards are all equal


class _CloseEnvironments(TrainerCallback):
    """Closes the environment pool when training ends (callbacks get no trainer: it holds the closer)."""

    def __init__(self, close: Callable[[], None]):
        self._close = close

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close()


def _row_goal(row: dict[str, Any]) -> Goal:
    try:
        return (str(row["task"]), int(row["seed"]))
    except KeyError as err:
        raise KeyError(
            f"a web-agent batch row needs the columns 'task' and 'seed', this one has {sorted(row)}: build the "
            "dataset with sec_rl.web.tasks.goals_dataset / train_goals."
        ) from err


class WebAgentMixin:
    """Multi-turn web episodes as GRPO rollouts, for a :class:`~sec_rl.SECGRPOTrainer` (put it first among the
    bases, as :class:`SECWebGRPOTrainer` does): its generation batches are the unit the mixin works on.

    Args:
        env_factory: a picklable callable building one environment per pool worker; default: from ``args``
            (``web_env``, ``web_env_kwargs``, ``web_actions``).
        actor: what generates the actions; default: the trainer's vLLM when ``use_vllm``, else the model's
            ``generate`` (see :mod:`sec_rl.web.policies`).
    """

    def __init__(
        self,
        model: Any,
        *,
        args: WebAgentArguments,
        env_factory: Callable[[], Any] | None = None,
        actor: Actor | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, WebAgentArguments):
            raise TypeError(
                f"{type(self).__name__} reads its environment settings from `args`: use SECWebGRPOConfig, or add "
                "sec_rl.trainers.web_grpo.WebAgentArguments to the bases of your config dataclass."
            )
        if not isinstance(self, DynamicSamplingMixin):
            raise TypeError(
                f"{type(self).__name__} mixes WebAgentMixin into a trainer that is not a SECGRPOTrainer: the web "
                "rollout runs once per generation batch (SECGRPOTrainer._generate_batch). Derive from "
                "SECWebGRPOTrainer, or put WebAgentMixin first among the bases of a SECGRPOTrainer subclass."
            )
        if kwargs.get("rollout_func") is not None or kwargs.get("environment_factory") is not None:
            raise ValueError(
                "the web trainer runs its own rollouts: do not pass rollout_func or environment_factory "
                "(pass env_factory=... to choose the environment)."
            )
        extra = kwargs.pop("reward_funcs", None) or []
        self._web_extra_rewards: list[Callable[..., list[float | None]]] = (
            list(extra) if isinstance(extra, list | tuple) else [extra]
        )
        for func in self._web_extra_rewards:
            if not callable(func):
                raise ValueError(
                    f"reward_funcs entry {func!r} is not a function: the web trainer scores every sample itself, "
                    "so it takes functions `f(prompts, completions, completion_ids, task, seed, **kwargs) -> "
                    "list[float | None]` (reward models by name are not supported here). They add to the "
                    "environment's return, weighted by reward_weights (the return first)."
                )
        self._web_env_factory = env_factory or args.env_factory()
        self._web_pool: EnvironmentPool | None = None
        self._web_actor: Actor | None = actor
        self._web_engine: RolloutEngine | None = None
        self._web_batch: _WebBatch | None = None  # the generation batch between TRL's hooks
        self._web_env_tokens_seen = 0  # observation tokens inside completions (added to TRL's token count too)
        self._web_calls = 0
        self.web_last_rollout: RolloutResult | None = None  # the last batch's episodes, for inspection
        self.web_last_samples: list[Sample] | None = None  # their samples (per_step: every step)
        self.web_last_rows: list[Sample] | None = None  # and the rows TRL trained on
        with warnings.catch_warnings():  # TRL warns that rollout_func is experimental: the docs say so, not the user
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            super().__init__(
                model,
                reward_funcs=[web_reward, *(_carried_reward(i, f) for i, f in enumerate(self._web_extra_rewards))],
                args=args,
                rollout_func=self._web_rollout,
                **kwargs,
            )
        for name, dataset in (("train_dataset", self.train_dataset), ("eval_dataset", self.eval_dataset)):
            columns = getattr(dataset, "column_names", None)
            if isinstance(columns, dict):  # a DatasetDict of eval sets
                columns = next(iter(columns.values()), [])
            if columns is not None and not {"task", "seed"} <= set(columns):
                raise ValueError(
                    f"the {name} needs the columns 'task' and 'seed' (one goal per row), it has {list(columns)}: "
                    "build it with sec_rl.web.tasks.goals_dataset / train_goals."
                )
        self.add_callback(_CloseEnvironments(self.close_environments))

    # -- the parts, built on first use ------------------------------------------------------------
    @property
    def web_pool(self) -> EnvironmentPool:
        """The environments (worker processes), started on first use."""
        if self._web_pool is None:
            self._web_pool = self.args.make_pool(env_factory=self._web_env_factory)
        return self._web_pool

    @property
    def web_actor(self) -> Actor:
        """The trainer's vLLM with ``use_vllm``, else ``generate`` on the (unwrapped) training model."""
        if self._web_actor is None:
            if self.use_vllm:
                self._web_actor = VLLMActor(self)
            else:
                from trl.models import unwrap_model_for_generation

                def unwrap() -> Any:  # reads model_wrapped at call time: accelerate wraps it once training starts
                    return unwrap_model_for_generation(
                        self.model_wrapped,
                        self.accelerator,
                        gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                        generation_kwargs=self.generation_kwargs,
                        gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                    )

                self._web_actor = TransformersActor(
                    self.model,
                    self._web_tokenizer,
                    self.generation_config,
                    batch_size=self.args.web_generation_batch_size,
                    unwrap=unwrap,
                )
        return self._web_actor

    @web_actor.setter
    def web_actor(self, actor: Actor) -> None:
        self._web_actor = actor
        self._web_engine = None

    @property
    def web_engine(self) -> RolloutEngine:
        if self._web_engine is None:
            policy = TokenPolicy(
                self.web_actor,
                self._web_tokenizer,
                chat_template_kwargs=self.chat_template_kwargs,
                eos_token_ids=self.eos_token_ids,
            )
            sync = self._any_process_busy if self.accelerator.num_processes > 1 else None
            self._web_engine = RolloutEngine.from_config(policy, self.web_pool, self.args, sync=sync)
        return self._web_engine

    @property
    def _web_tokenizer(self) -> Any:
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    def _any_process_busy(self, busy: bool) -> bool:
        flags = self.accelerator.gather(torch.tensor([int(busy)], device=self.accelerator.device))
        return bool(flags.sum().item() > 0)

    def close_environments(self) -> None:
        """Stop every environment worker (and its browser). A later rollout starts a fresh pool."""
        if self._web_pool is not None:
            pool, self._web_pool, self._web_engine = self._web_pool, None, None
            pool.close()

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:  # on_train_end does this on success; an exception must not leave browsers behind either
            self.close_environments()

    # -- checkpoints ------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # The rollout counter seeds per_step row subsampling, and the page-token total is a logged running total:
        # both travel with every checkpoint, so a resumed run picks the same rows and goes on counting pages.
        # (The compute ledger reads TRL's token count, which holds the pages too and travels in the state.)
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            state = {"rollouts": self._web_calls, "env_tokens_seen": self._web_env_tokens_seen}
            with open(os.path.join(output_dir, WEB_STATE_NAME), "w") as f:
                json.dump(state, f)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, WEB_STATE_NAME)
        if not os.path.exists(path):
            logger.warning(
                f"{path} not found (a checkpoint of sec-rl 0.1?): per_step rows are subsampled afresh and "
                "web/env_tokens_seen counts from 0."
            )
            return
        with open(path) as f:
            state = json.load(f)
        self._web_calls, self._web_env_tokens_seen = int(state["rollouts"]), int(state["env_tokens_seen"])

    # -- TRL hooks --------------------------------------------------------------------------------
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [
            *self._signature_columns,
            *(c for c in ("task", "seed") if c not in self._signature_columns),
        ]

    def _generate_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = self._draw_generation_batch(inputs)  # the curriculum (or the refill sampler) chooses the goals now
        batch = self._web_batch = _WebBatch(goals=[_row_goal(row) for row in inputs])
        try:
            output = super()._generate_batch(inputs)
        finally:
            self._web_batch = None
        # TRL computed advantages over groups of rows; the rollout computed the right ones (per goal, per step).
        output["advantages"] = batch.advantages.to(output["advantages"].device, output["advantages"].dtype)
        self._log_trained_advantages(output["advantages"], batch.zero_std_fraction)
        return output

    def _batch_informative(self, output: dict[str, Any]) -> torch.Tensor:
        """Per goal group of the batch (every process's): whether a row of it has a non-zero advantage."""
        advantages = self.accelerator.gather(output["advantages"].detach())
        return (advantages.view(-1, self.num_generations) != 0).any(dim=1)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Filler rows and rows of environment errors carry no reward by design (web/rows_padded, web/env_errors
        # count them): TRL's warning that every reward function returned None is silenced for them.
        grpo_logger = logging.getLogger(GRPOTrainer.__module__)
        grpo_logger.addFilter(_silence_unscored_rows)
        try:
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            grpo_logger.removeFilter(_silence_unscored_rows)

    def _log_trained_advantages(self, local: torch.Tensor, zero_std_fraction: float) -> None:
        """Put the advantages trained on where TRL logged its own (completions table, ``frac_reward_zero_std``)."""
        mode = "train" if self.model.training else "eval"
        gathered = self.accelerator.gather(local.detach()).float().cpu().tolist()
        logged = self._logs["advantages"]
        for _ in range(min(len(gathered), len(logged))):
            logged.pop()
        logged.extend(gathered)
        zero_std = self._metrics[mode].get("frac_reward_zero_std")
        if zero_std:
            zero_std[-1] = zero_std_fraction

    def _curriculum_signal(self, output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row (gathered): the mean |advantage| of its goal's samples, and the episodes' success rate.

        Episode layout: the row's own episode. per_step layout: every step sample of the goal's episodes in this
        batch, before filtering and subsampling (a goal solved by every episode must still count as 0).
        Rows of episodes with environment errors are NaN: the strategy ignores them.
        """
        rows = self._web_batch.curriculum_rows if self._web_batch is not None else None
        if rows is None:
            raise RuntimeError("the web curriculum signal is read after the batch's rollout, inside its generation.")
        local = torch.tensor(rows, dtype=torch.float32, device=self.accelerator.device)
        gathered = self.accelerator.gather(local)
        return gathered[:, 0], gathered[:, 1]

    # -- the rollout ------------------------------------------------------------------------------
    def _web_rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """TRL's ``rollout_func``: episodes for this process's rows, returned as exactly one sample per row."""
        batch = self._web_batch
        if batch is None or len(batch.goals) != len(prompts):
            raise RuntimeError(
                "the web rollout runs inside _generate_batch, which records the batch's goals; "
                "call the trainer's own methods rather than rollout_func directly."
            )
        args = self.args
        phase = "train" if self.model.training else "eval"
        groups = row_groups(batch.goals)
        plan = self._plan_episodes(groups)
        result = self.web_engine.run([groups[g][0] for g in plan])
        eos = self._web_tokenizer.eos_token_id

        if args.web_layout == "episode":
            samples = [
                episode_sample(e, plan[e.index], eos, args.web_failure_reward, args.web_invalid_action_penalty)
                for e in result.episodes
            ]
        else:
            samples = [
                s
                for e in result.episodes
                for s in step_samples(
                    e, plan[e.index], args.web_gamma, args.web_failure_reward, args.web_invalid_action_penalty
                )
            ]
        if self._web_extra_rewards:
            self._score_extra_rewards(samples)
        batch.zero_std_fraction = self._set_advantages(samples)

        stats = FitStats(samples=len(samples))
        if args.web_layout == "episode":
            rows, stats.filtered = mask_zero_advantage(samples) if args.web_zero_advantage_filter else (samples, 0)
        else:
            self._web_calls += 1
            rng = np.random.default_rng(
                [args.seed, self.state.global_step, self.accelerator.process_index, self._web_calls]
            )
            rows, stats = fit_step_rows(samples, groups, rng, eos, drop_zero_advantage=args.web_zero_advantage_filter)
        if len(rows) != len(prompts):
            raise RuntimeError(f"the rollout built {len(rows)} rows for {len(prompts)} batch rows.")

        batch.advantages = torch.tensor([row.advantage for row in rows], dtype=torch.float32)
        self.web_last_rollout, self.web_last_samples, self.web_last_rows = result, samples, rows
        batch.curriculum_rows = self._curriculum_rows(samples, result.episodes, plan, groups)
        env_tokens = sum(len(row.env_mask) - sum(row.env_mask) for row in rows)
        self._log_web_metrics(phase, {**result.metrics(), **stats.metrics(), "env_tokens": float(env_tokens)})
        return rollout_output(rows, num_extra_rewards=len(self._web_extra_rewards))

    def _plan_episodes(self, groups: Sequence[tuple[Goal, int, int]]) -> list[int]:
        """The row group of each episode to run: one per row, or ``web_episodes_per_goal`` per group (per_step)."""
        per_goal = self.args.web_episodes_per_goal
        if self.args.web_layout == "episode" or per_goal is None:
            return [g for g, (_, start, stop) in enumerate(groups) for _ in range(stop - start)]
        size = self.num_generations if self.model.training else self.num_generations_eval
        plan = []
        for g, (_, start, stop) in enumerate(groups):  # a process holding part of a group runs its share
            plan += [g] * max(1, round((stop - start) * per_goal / size))
        return plan

    def _score_extra_rewards(self, samples: list[Sample]) -> None:
        """Each user reward function on every scored sample, called as TRL calls reward functions."""
        scored = [s for s in samples if s.reward is not None]
        if not scored:
            return
        tokenizer = self._web_tokenizer
        completion_ids = [list(s.completion_ids) for s in scored]
        columns = {
            "prompts": tokenizer.batch_decode([s.prompt_ids for s in scored], skip_special_tokens=True),
            "completions": tokenizer.batch_decode(completion_ids, skip_special_tokens=True),
            "completion_ids": completion_ids,
            "task": [s.goal[0] for s in scored],
            "seed": [s.goal[1] for s in scored],
        }
        values = []
        for func in self._web_extra_rewards:
            out = func(**columns, trainer_state=self.state)
            if len(out) != len(scored):
                raise ValueError(
                    f"reward function {getattr(func, '__name__', func)!r} returned {len(out)} values for "
                    f"{len(scored)} samples: return one value (or None) per completion."
                )
            values.append([None if v is None else float(v) for v in out])
        for i, sample in enumerate(scored):
            sample.extra_rewards = tuple(v[i] for v in values)

    def _total_reward(self, sample: Sample) -> float:
        """The reward trained on: TRL's weighted sum of the environment's return and the user's rewards."""
        weights = self.reward_weights.tolist()
        parts = [sample.reward, *sample.extra_rewards]
        return float(sum(w * v for w, v in zip(weights, parts) if v is not None and not math.isnan(v)))

    def _set_advantages(self, samples: list[Sample]) -> float:
        """Advantages over the samples of every process (a goal's rollouts may be spread over processes).

        Returns the fraction of the scored samples whose goal's rewards are all equal (no gradient).
        """
        scored = [s for s in samples if s.reward is not None]
        local = [(s.goal, self._total_reward(s)) for s in scored]
        everything = gather_object(local) if self.accelerator.num_processes > 1 else local
        counts = gather_object([len(local)]) if self.accelerator.num_processes > 1 else [len(local)]
        offset = sum(counts[: self.accelerator.process_index])
        advantages, raw = compute_advantages(
            [reward for _, reward in everything],
            [goal for goal, _ in everything],
            baseline=self.args.web_advantage,  # type: ignore[arg-type]
            scale=self.scale_rewards,
        )
        for i, sample in enumerate(scored):
            sample.advantage = float(advantages[offset + i])
            sample.raw_advantage = float(raw[offset + i])
        # Samples of goals whose rewards are all equal carry no gradient: TRL's frac_reward_zero_std, per goal.
        by_goal: dict[Goal, set[float]] = {}
        for goal, reward in everything:
            by_goal.setdefault(goal, set()).add(round(reward, 9))
        flat = [len(by_goal[goal]) == 1 for goal, _ in everything]
        return float(np.mean(flat)) if flat else math.nan

    def _curriculum_rows(
        self, samples: list[Sample], episodes: list[Episode], plan: list[int], groups: Sequence[tuple[Goal, int, int]]
    ) -> list[tuple[float, float]]:
        """(|advantage| signal, success) per row; NaN where the row's goal says nothing (environment errors).

        The reward is success (0/1), whatever ``web_failure_reward``, so success-rate strategies read a rate.
        """
        raw = getattr(self.args, "curriculum_signal", "advantages") == "raw_advantages"

        def signal(sample: Sample) -> float:
            return abs(sample.raw_advantage if raw else sample.advantage)

        nan = (math.nan, math.nan)
        if self.args.web_layout == "episode":  # rows are episodes, one sample each
            return [(signal(s), float(e.success)) if s.reward is not None else nan for s, e in zip(samples, episodes)]
        rows: list[tuple[float, float]] = []
        for g, (_, start, stop) in enumerate(groups):
            values = [signal(s) for s in samples if s.group == g and s.reward is not None]
            successes = [float(e.success) for e in episodes if plan[e.index] == g and not e.env_error]
            rows += [(float(np.mean(values)), float(np.mean(successes))) if values else nan] * (stop - start)
        return rows

    def _log_web_metrics(self, mode: str, metrics: dict[str, float]) -> None:
        """``web/*`` metrics, combined over processes (counts summed, rates averaged over the processes that have
        them: a task's success rate only where the task was drawn); pool counters too."""
        pool = self._web_pool.metrics() if self._web_pool is not None else {}
        metrics = {**metrics, "worker_restarts": pool.get("worker_restarts", 0.0)}
        if self.accelerator.num_processes > 1:
            every = gather_object([metrics])
            names = sorted({name for m in every for name in m})
            combine = {name: np.sum if name in _COUNTS else np.mean for name in names}
            metrics = {name: float(combine[name]([m[name] for m in every if name in m])) for name in names}
        for name, value in metrics.items():
            self._metrics[mode][f"web/{name}"].append(value)
        if mode == "train":
            # TRL counts a completion's model tokens only (env_mask); the pages between turns are tokens the model
            # reads too. Adding them to its count (state.num_input_tokens_seen, checkpointed with the state) makes
            # TRL's `num_tokens` and the compute ledger count every token, resumed runs included.
            self.state.num_input_tokens_seen += int(metrics["env_tokens"])
            self._web_env_tokens_seen += int(metrics["env_tokens"])
            self._metrics[mode]["web/env_tokens_seen"] = [self._web_env_tokens_seen]  # a running total


class SECWebGRPOTrainer(WebAgentMixin, SECGRPOTrainer):
    """``SECGRPOTrainer`` for LLM web agents: each rollout is a whole multi-turn episode.

    Example:
        ```python
        from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
        from sec_rl.web.tasks import train_goals

        args = SECWebGRPOConfig(output_dir="out", web_env="browsergym", web_layout="per_step",
                                num_generations=8, temperature=0.25, max_completion_length=256)
        trainer = SECWebGRPOTrainer(model="Qwen/Qwen2.5-3B-Instruct", args=args, train_dataset=train_goals(20))
        trainer.train()
        ```
    """
