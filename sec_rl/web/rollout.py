"""The rollout engine: every live episode of a batch advances together, one turn at a time.

Three roles, as in PipelineRL:

- the **actor** turns token contexts into completions: :class:`TransformersActor` (plain
  ``model.generate`` with left padding) or :class:`VLLMActor` (the trainer's own vLLM client or engine);
- the **environments** live in an :class:`~sec_rl.web.pool.EnvironmentPool` and step in parallel;
- the **engine** (:class:`RolloutEngine`) schedules episodes onto pool slots and, each turn, makes
  *one* batched generation call for every live episode, then *one* parallel step of the pool.

The engine records everything training needs, token for token (:class:`Step`, :class:`Episode`); turning
episodes into training samples is :mod:`sec_rl.web.samples`' job, and the trainer's
(:mod:`sec_rl.trainers.web_grpo`) is to feed them to TRL.

What the model sees depends on the sample mode:

- ``"per_step"``: each turn is a fresh prompt, :func:`~sec_rl.web.observation.render_messages` of the
  current observation and the last actions (the web-agent study's setup: long pages stay within context);
- ``"episode"``: one growing conversation; each turn's context is the previous context, the completion
  exactly as generated, and the next observation as a user message. Contexts are kept as token ids, never
  re-tokenised, so the episode can later be trained on as one sequence.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sec_rl.web.observation import Observation, PromptConfig, render_messages, render_observation
from sec_rl.web.pool import EnvironmentPool, Goal

__all__ = [
    "Actor",
    "Episode",
    "Generation",
    "RolloutEngine",
    "RolloutResult",
    "SampleMode",
    "Step",
    "TransformersActor",
    "VLLMActor",
    "encode_messages",
    "observation_suffix_ids",
]

logger = logging.getLogger(__name__)

SampleMode = Literal["episode", "per_step"]
SAMPLE_MODES: tuple[str, ...] = ("episode", "per_step")
Messages = list[dict[str, str]]


# -- the actor -------------------------------------------------------------------------------------
@dataclass
class Generation:
    """One completion: its token ids (ending with EOS unless cut at the length limit) and sampling logprobs."""

    completion_ids: list[int]
    logprobs: list[float] | None = None


class Actor(Protocol):
    """Generates one completion per context. Called once per turn with every live episode's context.

    Under several processes every process calls :meth:`generate` the same number of times (possibly with
    no context at all), so that actors built on collective operations (vLLM server mode, ZeRO-3) stay in step.
    """

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Generation]: ...


def _eos_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list | tuple) else [eos])


class TransformersActor:
    """Plain ``model.generate`` over left-padded contexts; sampling settings come from ``generation_config``.

    Args:
        model: a causal LM (or a distributed wrapper, with ``unwrap``).
        tokenizer: its tokenizer (pad and EOS ids).
        generation_config: ``transformers.GenerationConfig``; its ``max_new_tokens`` is the length limit of one
            turn. Default: sampling at temperature 1 with 256 new tokens.
        batch_size: contexts per ``generate`` call (None: all at once).
        unwrap: a context manager factory yielding the model to generate with, e.g. TRL's
            ``unwrap_model_for_generation`` (DeepSpeed ZeRO-3 gathers the weights there). It is entered on every
            call, even with no context, so that its collectives run on every process.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        generation_config: Any = None,
        *,
        batch_size: int | None = None,
        unwrap: Callable[[], AbstractContextManager[Any]] | None = None,
    ):
        from transformers import GenerationConfig

        self.model, self.tokenizer = model, tokenizer
        if generation_config is None:
            generation_config = GenerationConfig(
                max_new_tokens=256, do_sample=True, temperature=1.0, pad_token_id=tokenizer.pad_token_id
            )
        if generation_config.pad_token_id is None:
            generation_config.pad_token_id = tokenizer.pad_token_id
        if generation_config.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to its EOS token).")
        self.generation_config = generation_config
        self.batch_size = batch_size
        self.unwrap = unwrap
        self.eos_ids = _eos_ids(generation_config, tokenizer)

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Generation]:
        import torch

        context = self.unwrap() if self.unwrap is not None else nullcontext(self.model)
        outputs: list[Generation] = []
        with context as model, torch.no_grad():
            size = self.batch_size or max(1, len(prompts))
            for start in range(0, len(prompts), size):
                outputs.extend(self._generate_chunk(model, prompts[start : start + size]))
        return outputs

    def _generate_chunk(self, model: Any, prompts: Sequence[Sequence[int]]) -> list[Generation]:
        import torch

        pad = self.generation_config.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        device = next(model.parameters()).device
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=self.generation_config,
        )
        results = []
        for row in generated[:, width:].tolist():
            end = next((i + 1 for i, token in enumerate(row) if token in self.eos_ids), len(row))
            results.append(Generation(row[:end]))
        return results


class VLLMActor:
    """The trainer's own vLLM (``trainer.vllm_generation``: server or colocate mode), one completion per context.

    Weights are synchronised by ``GRPOTrainer._generate`` before each rollout; the sampling settings are the
    trainer's (temperature, top-p, ``max_completion_length`` per turn). Untested here: no GPU and no vLLM.

    TRL's server mode gathers every process's prompts and slices the answers back assuming equal counts (and
    colocate mode with tensor parallelism gathers within its group), so under several processes each process
    pads its list to the largest one with one-token prompts and drops their answers.
    """

    def __init__(self, trainer: Any):
        if not getattr(trainer, "use_vllm", False):
            raise ValueError("VLLMActor needs a trainer created with use_vllm=True.")
        self.trainer = trainer

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Generation]:
        trainer = self.trainer
        prompts = [list(p) for p in prompts]
        count = len(prompts)
        if trainer.accelerator.num_processes > 1:  # equal counts on every process (see the class docstring)
            import torch

            sizes = trainer.accelerator.gather(torch.tensor([count], device=trainer.accelerator.device))
            tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
            prompts += [[tokenizer.eos_token_id]] * (int(sizes.max()) - count)
        if not prompts:
            return []
        _, completion_ids, logprobs, _ = trainer.vllm_generation.generate(
            prompts=prompts, images=None, num_generations=1
        )
        results = []
        for i in range(count):
            sampled = [lp[0] for lp in logprobs[i]] if logprobs is not None else None  # top-1 = the sampled token
            results.append(Generation(list(completion_ids[i]), sampled))
        return results


# -- chat templates --------------------------------------------------------------------------------
def encode_messages(
    tokenizer: Any, messages: Messages, *, add_generation_prompt: bool = True, **chat_template_kwargs: Any
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template (no extra special tokens)."""
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False, **chat_template_kwargs
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def observation_suffix_ids(
    tokenizer: Any, conversation: Messages, user_message: dict[str, str], **chat_template_kwargs: Any
) -> list[int]:
    """The tokens that follow an assistant turn's end-of-turn token when ``user_message`` comes next.

    ``conversation`` ends with the assistant turn. Both renderings are cut after the last EOS (the end of that
    turn), so the suffix is the template's glue, the user message and the next generation prompt; it can be
    appended to the generated ids without re-tokenising them.
    """
    prefix = encode_messages(tokenizer, conversation, add_generation_prompt=False, **chat_template_kwargs)
    eos = tokenizer.eos_token_id
    ends = [i for i, token in enumerate(prefix) if token == eos]
    if ends:
        prefix = prefix[: ends[-1] + 1]
    full = encode_messages(
        tokenizer, [*conversation, user_message], add_generation_prompt=True, **chat_template_kwargs
    )
    if full[: len(prefix)] != prefix:
        raise ValueError(
            "the chat template does not render a conversation as a prefix of its continuation, so an episode "
            "cannot be trained on as one sequence: use web_sample_mode='per_step', or a template without "
            "history-dependent rewriting (e.g. one that strips earlier reasoning)."
        )
    return full[len(prefix) :]


# -- what the engine records -----------------------------------------------------------------------
@dataclass
class Step:
    """One agent turn.

    Attributes:
        messages: the chat messages the context was rendered from (the whole conversation in episode mode).
        prompt_ids: the exact context the actor generated from.
        completion_ids: the generated ids (ending with EOS unless ``truncated``).
        logprobs: the sampling logprob of each generated token, when the actor reports them (vLLM).
        text: the decoded completion (thought and action), as the environment received it.
        action: the canonical action executed, None if the output held no valid action.
        reward, done: what the environment returned.
        error: the action's error as the next observation shows it ("" if none).
        env_error: the environment failed during this step (the episode is left out of the loss).
        truncated: the completion hit the per-turn length limit before its end-of-turn token.
    """

    messages: Messages
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None
    text: str
    action: str | None
    reward: float
    done: bool
    error: str = ""
    env_error: bool = False
    truncated: bool = False


@dataclass
class Episode:
    """One episode of one goal; ``index`` is its position in the batch the engine was given."""

    task: str
    seed: int
    index: int
    steps: list[Step] = field(default_factory=list)
    env_error: bool = False
    error: str = ""
    hit_max_turns: bool = False

    @property
    def goal(self) -> Goal:
        return (self.task, self.seed)

    @property
    def reward(self) -> float:
        """The undiscounted return (MiniWoB: 1.0 on success, else 0.0)."""
        return sum(step.reward for step in self.steps)

    @property
    def success(self) -> bool:
        return not self.env_error and self.reward > 0

    @property
    def num_turns(self) -> int:
        return len(self.steps)


@dataclass
class RolloutResult:
    """The episodes of one :meth:`RolloutEngine.run`, in the order of its goals, and what it cost."""

    episodes: list[Episode]
    generate_seconds: float = 0.0
    env_seconds: float = 0.0
    seconds: float = 0.0
    turns: int = 0  # batched generation calls
    generated_tokens: int = 0

    def metrics(self) -> dict[str, float]:
        """Per-batch figures: success over the episodes that count, environment errors, turns, throughput."""
        counted = [e for e in self.episodes if not e.env_error]
        steps = [s for e in self.episodes for s in e.steps]
        n = max(1, len(counted))
        return {
            "episodes": float(len(self.episodes)),
            "success_rate": sum(e.success for e in counted) / n,
            "env_errors": float(len(self.episodes) - len(counted)),
            "episode_turns": sum(e.num_turns for e in counted) / n,
            "max_turns_rate": sum(e.hit_max_turns for e in counted) / n,
            "invalid_action_rate": sum(s.action is None for s in steps) / max(1, len(steps)),
            "truncated_turn_rate": sum(s.truncated for s in steps) / max(1, len(steps)),
            "generate_seconds": self.generate_seconds,
            "env_seconds": self.env_seconds,
            "episodes_per_minute": 60.0 * len(self.episodes) / self.seconds if self.seconds > 0 else 0.0,
        }


@dataclass
class _Live:
    """An episode in progress on a pool slot: what the next turn's context is made of."""

    episode: Episode
    messages: Messages
    context: list[int]
    history: list[str] = field(default_factory=list)


# -- the engine ------------------------------------------------------------------------------------
class RolloutEngine:
    """Runs episodes for a list of goals on a pool, one batched generation per turn.

    Episodes are scheduled onto the pool's slots as they free up, so a batch larger than the pool runs in
    waves without ever idling a slot. Each turn: reset the new episodes (in parallel), generate for every live
    episode (one actor call), step every live episode (in parallel). An episode ends when the environment says
    so, after ``max_turns`` actions (a failure), or on an environment error (``Episode.env_error``; a failed
    reset is retried ``reset_retries`` times first, since the pool has restarted the worker by then).

    Args:
        actor: generates completions (see :class:`Actor`).
        pool: the environments.
        tokenizer: renders prompts (chat template) and decodes completions.
        mode: ``"per_step"`` or ``"episode"`` (see the module docstring).
        max_turns: actions per episode at most.
        prompt: how observations are rendered.
        chat_template_kwargs: extra arguments of ``apply_chat_template`` (e.g. ``enable_thinking``).
        sync: under several processes, a function mapping "this process still has work" to "some process
            still has work", so that every process makes the same number of actor calls.
        reset_retries: how often a goal whose reset failed is tried again on a fresh worker.
        eos_token_ids: the tokens that end a turn (default: the tokenizer's EOS); a completion ending otherwise
            was cut at the length limit.
    """

    def __init__(
        self,
        actor: Actor,
        pool: EnvironmentPool,
        tokenizer: Any,
        *,
        mode: SampleMode = "per_step",
        max_turns: int = 10,
        prompt: PromptConfig | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        sync: Callable[[bool], bool] | None = None,
        reset_retries: int = 1,
        eos_token_ids: Iterable[int] | None = None,
    ):
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, not {mode!r}.")
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}.")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token: the engine needs it to end and join turns.")
        self.actor, self.pool, self.tokenizer = actor, pool, tokenizer
        self.mode: SampleMode = mode
        self.max_turns = max_turns
        self.prompt = prompt or PromptConfig()
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.sync = sync
        self.reset_retries = reset_retries
        self.eos_token_ids = set(eos_token_ids) if eos_token_ids is not None else {tokenizer.eos_token_id}

    # -- public API -------------------------------------------------------------------------------
    def run(self, goals: Sequence[Goal]) -> RolloutResult:
        """One episode per goal (duplicates allowed: a GRPO group is the same goal several times)."""
        started = time.perf_counter()
        result = RolloutResult([Episode(str(task), int(seed), i) for i, (task, seed) in enumerate(goals)])
        pending = deque((i, 0) for i in range(len(goals)))  # (episode index, attempt)
        live: dict[int, _Live] = {}  # pool slot -> episode in progress
        while True:
            self._start_episodes(pending, live, result)
            busy = bool(live or pending)
            if not (self.sync(busy) if self.sync is not None else busy):
                break
            slots = sorted(live)
            tick = time.perf_counter()
            generations = self.actor.generate([live[slot].context for slot in slots])  # [] joins the collective
            result.generate_seconds += time.perf_counter() - tick
            result.turns += 1
            if not slots:
                continue
            if len(generations) != len(slots):
                raise RuntimeError(f"the actor returned {len(generations)} completions for {len(slots)} contexts.")
            result.generated_tokens += sum(len(g.completion_ids) for g in generations)
            texts = self.tokenizer.batch_decode([g.completion_ids for g in generations], skip_special_tokens=True)
            actions: list[str | None] = [None] * self.pool.size
            for slot, text in zip(slots, texts):
                actions[slot] = text
            tick = time.perf_counter()
            outcomes = self.pool.step_many(actions)
            result.env_seconds += time.perf_counter() - tick
            for slot, generation, text in zip(slots, generations, texts):
                outcome = outcomes[slot]
                assert outcome is not None
                if self._record(live[slot], generation, text, outcome):
                    del live[slot]
        result.seconds = time.perf_counter() - started
        return result

    # -- scheduling -------------------------------------------------------------------------------
    def _start_episodes(self, pending: deque[tuple[int, int]], live: dict[int, _Live], result: RolloutResult) -> None:
        """Reset pending goals on free slots (in parallel), retrying failed resets on the restarted workers."""
        while pending:
            free = [slot for slot in range(self.pool.size) if slot not in live]
            if not free:
                return
            starting = {slot: pending.popleft() for slot in free[: len(pending)]}
            goals: list[Goal | None] = [None] * self.pool.size
            for slot, (index, _) in starting.items():
                goals[slot] = result.episodes[index].goal
            tick = time.perf_counter()
            outcomes = self.pool.reset_many(goals)
            result.env_seconds += time.perf_counter() - tick
            for slot, (index, attempt) in starting.items():
                outcome = outcomes[slot]
                episode = result.episodes[index]
                assert outcome is not None
                if not outcome.env_error:
                    live[slot] = self._first_turn(episode, outcome.observation)
                elif attempt < self.reset_retries:
                    pending.appendleft((index, attempt + 1))
                else:
                    episode.env_error = True
                    episode.error = str(outcome.info.get("error", "reset failed"))
            # Loop: slots whose reset failed are free again and the retries are first in line.
            if all(outcomes[slot] is not None and not outcomes[slot].env_error for slot in starting):
                return

    # -- contexts ---------------------------------------------------------------------------------
    def _first_turn(self, episode: Episode, observation: Observation) -> _Live:
        messages = render_messages(observation, (), self.prompt, self.tokenizer)
        context = encode_messages(self.tokenizer, messages, **self.chat_template_kwargs)
        return _Live(episode, messages, context)

    def _next_turn(self, state: _Live, step: Step, observation: Observation) -> None:
        """Build the next context: a fresh prompt (per_step) or the conversation grown by one exchange (episode)."""
        if self.mode == "per_step":
            state.messages = render_messages(observation, state.history, self.prompt, self.tokenizer)
            state.context = encode_messages(self.tokenizer, state.messages, **self.chat_template_kwargs)
            return
        # The episode's previous actions are in the conversation itself: the user message shows only the page.
        user = {"role": "user", "content": render_observation(observation, (), self.prompt, self.tokenizer)}
        conversation = [*state.messages, {"role": "assistant", "content": step.text}]
        suffix = observation_suffix_ids(self.tokenizer, conversation, user, **self.chat_template_kwargs)
        closing = [self.tokenizer.eos_token_id] if step.truncated else []  # close a turn cut at the length limit
        state.messages = [*conversation, user]
        state.context = [*state.context, *step.completion_ids, *closing, *suffix]

    def _record(self, state: _Live, generation: Generation, text: str, outcome: Any) -> bool:
        """Append the turn to its episode; returns True when the episode is over."""
        episode = state.episode
        ids = generation.completion_ids
        step = Step(
            messages=state.messages,
            prompt_ids=state.context,
            completion_ids=list(ids),
            logprobs=generation.logprobs,
            text=text,
            action=outcome.info.get("action"),
            reward=float(outcome.reward),
            done=bool(outcome.done),
            error=outcome.observation.last_action_error if not outcome.env_error else "",
            env_error=bool(outcome.env_error),
            truncated=not ids or ids[-1] not in self.eos_token_ids,
        )
        episode.steps.append(step)
        state.history.append(step.action or "(invalid action)")
        if outcome.env_error:
            episode.env_error = True
            episode.error = str(outcome.info.get("error", "environment error"))
            return True
        if outcome.done:
            return True
        if len(episode.steps) >= self.max_turns:
            episode.hit_max_turns = True
            return True
        self._next_turn(state, step, outcome.observation)
        return False
