"""SEC-GRPO for LLM web agents: every rollout is a multi-turn episode in a (browser) environment.

Each dataset row is a goal (``task``, ``seed``); TRL's sampler repeats it ``num_generations`` times and
the SEC curriculum chooses among tasks (``curriculum_column="task"``). The trainer plugs into TRL through
its public extension points and three narrow overrides, each calling ``super()``:

- ``rollout_func`` (TRL's hook): runs the episodes with :class:`~sec_rl.web.rollout.RolloutEngine`, turns
  them into samples (:mod:`sec_rl.web.samples`), computes their advantages, and returns one row per batch
  row with ``env_mask`` (TRL's ``tool_mask``) and ``web_reward`` (read by the reward function :func:`web_reward`);
- ``_generate_and_score_completions``: tells the rollout which goals the batch holds (``rollout_func`` only
  sees the prompts), then replaces TRL's advantages with the rollout's: per-step discounted returns grouped
  per goal are not something TRL's row-group arithmetic can compute;
- ``_curriculum_signal``: gives the curriculum one value per row computed from the goal's own samples.

The environment pool is created on first use, from ``args`` (or the ``env_factory`` argument), and closed
when training ends (a callback, plus a ``finally`` around ``train``), so no browser outlives training.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback

from sec_rl.trainers.grpo_config import SECGRPOConfig
from sec_rl.trainers.grpo_trainer import SECGRPOTrainer
from sec_rl.web.observation import PromptConfig
from sec_rl.web.pool import EnvironmentPool, Goal
from sec_rl.web.rollout import (
    SAMPLE_MODES,
    Actor,
    Episode,
    RolloutEngine,
    RolloutResult,
    TransformersActor,
    VLLMActor,
)
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

WEB_ENVS = ("browsergym", "text")
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


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class WebAgentArguments:
    """The web-agent fields, mixed into a TRL config dataclass (they parse from flags and YAML like the others)."""

    web_env: str = field(
        default="browsergym",
        metadata={"help": f"Environment of each pool worker: one of {WEB_ENVS} ('text': the fast text world)."},
    )
    web_env_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": 'Keyword arguments of the environment class, as a dict or JSON (e.g. \'{"reuse": "page"}\').'
        },
    )
    web_num_workers: int = field(
        default=4, metadata={"help": "Environments (worker processes) per training process: episodes run at once."}
    )
    web_step_timeout: float = field(
        default=30.0, metadata={"help": "Seconds one step may take before its worker is restarted (env error)."}
    )
    web_reset_timeout: float | None = field(
        default=None, metadata={"help": "Seconds one reset may take. Default: max(web_step_timeout, 60)."}
    )
    web_episode_timeout: float | None = field(
        default=600.0, metadata={"help": "Wall-clock seconds per episode; beyond, it ends as an environment error."}
    )
    web_max_turns: int = field(default=10, metadata={"help": "Actions per episode at most (then it has failed)."})
    web_sample_mode: str = field(
        default="per_step",
        metadata={
            "help": "'per_step': every agent step is a sample with its discounted return (the web-agent study); "
            "'episode': the whole episode is one completion, observations masked out of the loss."
        },
    )
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
    web_episodes_per_goal: int | None = field(
        default=None,
        metadata={
            "help": "per_step only: episodes per goal (<= num_generations); its num_generations rows are filled "
            "with their step samples. Default: num_generations (one episode per row). Set it near "
            "num_generations / mean episode length so that few step samples are dropped."
        },
    )
    web_view: str = field(default="axtree", metadata={"help": "Page view in prompts: 'axtree' or 'html'."})
    web_max_page_chars: int | None = field(
        default=8000, metadata={"help": "Character budget of the page text in a prompt (None: no limit)."}
    )
    web_max_page_tokens: int | None = field(
        default=None, metadata={"help": "Token budget of the page text in a prompt (None: no limit)."}
    )
    web_history: int = field(default=3, metadata={"help": "How many previous actions the prompt shows."})
    web_error_feedback: bool = field(
        default=True, metadata={"help": "Show the last action's error in the prompt (the study's error logs)."}
    )
    web_actions: list[str] | None = field(
        default=None,
        metadata={"help": "Allowed actions or groups ('bid', 'coord', 'chat', ...). Default: the environment's set."},
    )
    web_system_prompt: str | None = field(
        default=None, metadata={"help": "A system prompt replacing the default one (which documents the actions)."}
    )
    web_generation_batch_size: int | None = field(
        default=None,
        metadata={"help": "Contexts per `generate` call without vLLM (None: every live episode at once)."},
    )

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if isinstance(self.web_env_kwargs, str):
            import json

            try:
                self.web_env_kwargs = json.loads(self.web_env_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f'web_env_kwargs is not valid JSON ({err}): pass e.g. \'{{"reuse": "page"}}\'.'
                ) from err
        choices = {
            "web_env": (self.web_env, WEB_ENVS),
            "web_sample_mode": (self.web_sample_mode, SAMPLE_MODES),
            "web_advantage": (self.web_advantage, ("goal", "batch")),
            "web_view": (self.web_view, ("axtree", "html")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not supported: use one of {list(allowed)}.")
        if not 0.0 < self.web_gamma <= 1.0:
            raise ValueError(f"web_gamma={self.web_gamma} is out of range: use a discount in (0, 1].")
        for name in ("web_num_workers", "web_max_turns", "web_history"):
            low = 0 if name == "web_history" else 1
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)} must be at least {low}.")
        if self.web_episodes_per_goal is not None:
            if self.web_sample_mode != "per_step":
                raise ValueError("web_episodes_per_goal applies to web_sample_mode='per_step' only: unset it.")
            generations = getattr(self, "num_generations", None)
            if not 1 <= self.web_episodes_per_goal <= (generations or self.web_episodes_per_goal):
                raise ValueError(
                    f"web_episodes_per_goal={self.web_episodes_per_goal} must be between 1 and num_generations "
                    f"({generations}): a goal's step samples fill its num_generations rows."
                )

    def prompt_config(self) -> PromptConfig:
        """How observations become prompts, from the ``web_*`` fields."""
        return PromptConfig(
            view=self.web_view,  # type: ignore[arg-type]
            max_page_chars=self.web_max_page_chars,
            max_page_tokens=self.web_max_page_tokens,
            history=self.web_history,
            error_feedback=self.web_error_feedback,
            actions=tuple(self.web_actions) if self.web_actions else None,
            system=self.web_system_prompt,
        )

    def env_factory(self) -> Callable[[], Any]:
        """A picklable factory of one environment, for the pool's worker processes."""
        from sec_rl.web.env import BrowserGymEnvironment, TextEnvironment

        cls = BrowserGymEnvironment if self.web_env == "browsergym" else TextEnvironment
        kwargs = dict(self.web_env_kwargs or {})
        if self.web_actions:
            kwargs.setdefault("actions", list(self.web_actions))
        return functools.partial(cls, **kwargs)


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


# -- the trainer -----------------------------------------------------------------------------------
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
    """Multi-turn web episodes as GRPO rollouts, for a ``GRPOTrainer`` (put it first among the bases).

    Args:
        env_factory: a picklable callable building one environment per pool worker; default: from ``args``
            (``web_env``, ``web_env_kwargs``, ``web_actions``).
        actor: what generates the actions; default: the trainer's vLLM when ``use_vllm``, else the model's
            ``generate`` (see :mod:`sec_rl.web.rollout`).
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
        if kwargs.get("rollout_func") is not None or kwargs.get("environment_factory") is not None:
            raise ValueError(
                "the web trainer runs its own rollouts: do not pass rollout_func or environment_factory "
                "(pass env_factory=... to choose the environment)."
            )
        if kwargs.pop("reward_funcs", None) is not None:
            raise ValueError(
                "the web trainer's reward is the environment's return (advantages are computed from it in the "
                "rollout): do not pass reward_funcs. Shape the return with web_failure_reward / web_gamma, or "
                "in the environment."
            )
        self._web_env_factory = env_factory or args.env_factory()
        self._web_pool: EnvironmentPool | None = None
        self._web_actor: Actor | None = actor
        self._web_engine: RolloutEngine | None = None
        self._web_row_goals: list[Goal] | None = None
        self._web_advantages: torch.Tensor | None = None
        self._web_env_tokens_seen = 0  # observation tokens inside completions: TRL's num_tokens leaves them out
        self._web_curriculum_rows: list[tuple[float, float]] | None = None
        self._web_calls = 0
        self.web_last_rollout: RolloutResult | None = None  # the last batch's episodes, for inspection
        self.web_last_rows: list[Sample] | None = None  # and the rows TRL trained on
        with warnings.catch_warnings():  # TRL warns that rollout_func is experimental: the docs say so, not the user
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            super().__init__(model, reward_funcs=[web_reward], args=args, rollout_func=self._web_rollout, **kwargs)
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
            args = self.args
            self._web_pool = EnvironmentPool(
                self._web_env_factory,
                num_workers=args.web_num_workers,
                step_timeout=args.web_step_timeout,
                reset_timeout=args.web_reset_timeout,
                episode_timeout=args.web_episode_timeout,
            )
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
            self._web_engine = RolloutEngine(
                self.web_actor,
                self.web_pool,
                self._web_tokenizer,
                mode=self.args.web_sample_mode,  # type: ignore[arg-type]
                max_turns=self.args.web_max_turns,
                prompt=self.args.prompt_config(),
                chat_template_kwargs=self.chat_template_kwargs,
                sync=self._any_process_busy if self.accelerator.num_processes > 1 else None,
                eos_token_ids=self.eos_token_ids,
            )
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

    # -- TRL hooks --------------------------------------------------------------------------------
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [
            *self._signature_columns,
            *(c for c in ("task", "seed") if c not in self._signature_columns),
        ]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._web_row_goals = [_row_goal(row) for row in inputs]
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._web_row_goals = None
        # TRL computed advantages over groups of rows; the rollout computed the right ones (per goal, per step).
        assert self._web_advantages is not None
        output["advantages"] = self._web_advantages.to(output["advantages"].device, output["advantages"].dtype)
        return output

    def _curriculum_signal(self, output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row (gathered): the mean |advantage| of its goal's samples, and the episodes' success rate.

        Episode mode: the row's own episode. per_step mode: every step sample of the goal's episodes in this
        batch, before filtering and subsampling (a goal solved by every episode must still count as 0).
        Rows of episodes with environment errors are NaN: the strategy ignores them.
        """
        assert self._web_curriculum_rows is not None
        local = torch.tensor(self._web_curriculum_rows, dtype=torch.float32, device=self.accelerator.device)
        gathered = self.accelerator.gather(local)
        return gathered[:, 0], gathered[:, 1]

    # -- the rollout ------------------------------------------------------------------------------
    def _web_rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """TRL's ``rollout_func``: episodes for this process's rows, returned as exactly one sample per row."""
        goals = self._web_row_goals
        if goals is None or len(goals) != len(prompts):
            raise RuntimeError(
                "the web rollout runs inside _generate_and_score_completions, which records the batch's goals; "
                "call the trainer's own methods rather than rollout_func directly."
            )
        args = self.args
        phase = "train" if self.model.training else "eval"
        groups = row_groups(goals)
        plan = self._plan_episodes(groups)
        result = self.web_engine.run([groups[g][0] for g in plan])
        eos = self._web_tokenizer.eos_token_id

        if args.web_sample_mode == "episode":
            samples = [episode_sample(e, plan[e.index], eos, args.web_failure_reward) for e in result.episodes]
        else:
            samples = [
                s
                for e in result.episodes
                for s in step_samples(e, plan[e.index], args.web_gamma, args.web_failure_reward)
            ]
        self._set_advantages(samples)

        stats = FitStats(samples=len(samples))
        if args.web_sample_mode == "episode":
            rows, stats.filtered = mask_zero_advantage(samples) if args.web_zero_advantage_filter else (samples, 0)
        else:
            self._web_calls += 1
            rng = np.random.default_rng(
                [args.seed, self.state.global_step, self.accelerator.process_index, self._web_calls]
            )
            rows, stats = fit_step_rows(samples, groups, rng, eos, drop_zero_advantage=args.web_zero_advantage_filter)
        if len(rows) != len(prompts):
            raise RuntimeError(f"the rollout built {len(rows)} rows for {len(prompts)} batch rows.")

        self._web_advantages = torch.tensor([row.advantage for row in rows], dtype=torch.float32)
        self.web_last_rollout, self.web_last_rows = result, rows
        self._web_curriculum_rows = self._curriculum_rows(samples, result.episodes, plan, groups)
        env_tokens = sum(len(row.env_mask) - sum(row.env_mask) for row in rows)
        self._log_web_metrics(phase, {**result.metrics(), **stats.metrics(), "env_tokens": float(env_tokens)})
        return rollout_output(rows)

    def _plan_episodes(self, groups: Sequence[tuple[Goal, int, int]]) -> list[int]:
        """The row group of each episode to run: one per row, or ``web_episodes_per_goal`` per group (per_step)."""
        per_goal = self.args.web_episodes_per_goal
        if self.args.web_sample_mode == "episode" or per_goal is None:
            return [g for g, (_, start, stop) in enumerate(groups) for _ in range(stop - start)]
        size = self.num_generations if self.model.training else self.num_generations_eval
        plan = []
        for g, (_, start, stop) in enumerate(groups):  # a process holding part of a group runs its share
            plan += [g] * max(1, round((stop - start) * per_goal / size))
        return plan

    def _set_advantages(self, samples: list[Sample]) -> None:
        """Advantages over the samples of every process: a goal's rollouts may be spread over processes."""
        scored = [s for s in samples if s.reward is not None]
        local = [(s.goal, float(s.reward)) for s in scored]  # type: ignore[arg-type]
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
        if self.args.web_sample_mode == "episode":  # rows are episodes, one sample each
            return [(signal(s), float(e.success)) if s.reward is not None else nan for s, e in zip(samples, episodes)]
        rows: list[tuple[float, float]] = []
        for g, (_, start, stop) in enumerate(groups):
            values = [signal(s) for s in samples if s.group == g and s.reward is not None]
            successes = [float(e.success) for e in episodes if plan[e.index] == g and not e.env_error]
            rows += [(float(np.mean(values)), float(np.mean(successes))) if values else nan] * (stop - start)
        return rows

    def _log_web_metrics(self, mode: str, metrics: dict[str, float]) -> None:
        """``web/*`` metrics, combined over processes (counts summed, rates averaged); pool counters too."""
        pool = self._web_pool.metrics() if self._web_pool is not None else {}
        metrics = {**metrics, "worker_restarts": pool.get("worker_restarts", 0.0)}
        if self.accelerator.num_processes > 1:
            every = gather_object([metrics])
            combine = {name: np.sum if name in _COUNTS else np.mean for name in metrics}
            metrics = {name: float(combine[name]([m[name] for m in every])) for name in metrics}
        for name, value in metrics.items():
            self._metrics[mode][f"web/{name}"].append(value)
        if mode == "train":  # a running total, like TRL's num_tokens: compute accounting adds it (ComputeCallback)
            self._web_env_tokens_seen += int(metrics["env_tokens"])
            self._metrics[mode]["web/env_tokens_seen"] = [self._web_env_tokens_seen]


class SECWebGRPOTrainer(WebAgentMixin, SECGRPOTrainer):
    """``SECGRPOTrainer`` for LLM web agents: each rollout is a whole multi-turn episode.

    Example:
        ```python
        from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
        from sec_rl.web.tasks import train_goals

        args = SECWebGRPOConfig(output_dir="out", web_env="browsergym", web_sample_mode="per_step",
                                num_generations=8, temperature=0.25, max_completion_length=256)
        trainer = SECWebGRPOTrainer(model="Qwen/Qwen2.5-3B-Instruct", args=args, train_dataset=train_goals(20))
        trainer.train()
        ```
    """
