"""The episode loop: every episode of sec-rl, in training, evaluation and collection, runs here.

:class:`RolloutEngine` schedules goals onto the slots of an :class:`~sec_rl.web.pool.EnvironmentPool` and,
each turn, makes *one* call to its policy for every live episode, then *one* parallel step of the pool (the
PipelineRL / verifiers shape). The policy (:mod:`sec_rl.web.policies`) is the only part that differs: token
ids for the model being trained or evaluated (:class:`~sec_rl.web.policies.TokenPolicy`), chat messages for
teachers and API models (:class:`~sec_rl.web.policies.ChatPolicy`). Prompts are rendered here, once, with the
policy's tokenizer (page token budgets), so an agent sees in evaluation what it saw in training.

What the policy sees depends on the sample layout:

- ``"per_step"``: each turn is a fresh prompt, :func:`~sec_rl.web.observation.render_messages` of the
  current observation and the last actions (the web-agent study's setup: long pages stay within context);
- ``"episode"``: one growing conversation; the next user message shows the new page alone (the actions are
  in the conversation). A token policy extends its context token for token, so the episode can later be
  trained on as one sequence.

Everything is recorded (:class:`Step`, :class:`Episode`): token ids for training
(:mod:`sec_rl.web.samples`), the conversation and token counts for traces, the outcome for scores.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sec_rl.web.config import Layout, WebConfig, check_layout
from sec_rl.web.observation import Messages, Observation, PromptConfig, render_messages, render_observation
from sec_rl.web.policies import Policy, Reply, as_policy
from sec_rl.web.pool import EnvironmentPool, Goal

__all__ = ["Episode", "RolloutEngine", "RolloutResult", "Step"]

logger = logging.getLogger(__name__)

INVALID_ACTION = "(invalid action)"


# -- what the engine records -----------------------------------------------------------------------
@dataclass
class Step:
    """One turn of an episode: what the policy read, what it answered, what the environment made of it.

    Attributes:
        messages: the chat messages of the turn's prompt (the whole conversation in the episode layout).
        prompt_ids: the exact context a token policy generated from (``[]`` for a chat policy).
        completion_ids: the generated ids (ending with EOS unless ``truncated``; ``[]`` for a chat policy).
        logprobs: the sampling logprob of each generated token, when the actor reports them (vLLM).
        text: the reply (thought and action), as the environment received it.
        action: the canonical action executed, None if the output held no valid action.
        reward, done: what the environment returned.
        error: the action's error as the next observation shows it ("" if none).
        env_error: the environment failed during this step (the episode is left out of the loss).
        truncated: the completion hit the per-turn length limit before its end-of-turn token.
        prompt_tokens, completion_tokens: what the turn cost, as the policy counts it (0 when it does not).
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
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def conversation(self) -> Messages:
        """The turn's prompt followed by its reply (in the per_step layout, one SFT row)."""
        return [*self.messages, {"role": "assistant", "content": self.text}]


@dataclass
class Episode:
    """One episode of one goal; ``index`` is its position in the goals the engine was given."""

    task: str
    seed: int
    index: int = 0
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

    @property
    def actions(self) -> list[str]:
        """The canonical action of every turn (``"(invalid action)"`` for an output that held none)."""
        return [step.action or INVALID_ACTION for step in self.steps]

    @property
    def invalid_turns(self) -> list[bool]:
        """Per turn, whether the output held no valid action (the environment left the page as it was)."""
        return [step.action is None for step in self.steps]

    @property
    def messages(self) -> Messages:
        """The last turn's prompt and reply: the whole conversation in the ``"episode"`` layout (a trace)."""
        return self.steps[-1].conversation if self.steps else []

    @property
    def prompt_tokens(self) -> int:
        return sum(step.prompt_tokens for step in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(step.completion_tokens for step in self.steps)

    def summary(self) -> dict[str, Any]:
        """The outcome without the conversation or token ids (an evaluation file's row; ``steps`` counts turns)."""
        return {
            "task": self.task,
            "seed": self.seed,
            "reward": self.reward,
            "steps": self.num_turns,
            "env_error": self.env_error,
            "error": self.error,
            "actions": self.actions,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "success": self.success,
        }


@dataclass
class RolloutResult:
    """The episodes of one :meth:`RolloutEngine.run`, in the order of its goals, and what it cost."""

    episodes: list[Episode]
    generate_seconds: float = 0.0
    env_seconds: float = 0.0
    seconds: float = 0.0
    turns: int = 0  # batched policy calls
    generated_tokens: int = 0

    def metrics(self) -> dict[str, float]:
        """Per-batch figures: success over the episodes that count (overall and per task present), environment
        errors, turns, throughput."""
        counted = [e for e in self.episodes if not e.env_error]
        steps = [s for e in self.episodes for s in e.steps]
        n = max(1, len(counted))
        per_task: dict[str, list[bool]] = {}
        for e in counted:
            per_task.setdefault(e.task, []).append(e.success)
        return {
            "episodes": float(len(self.episodes)),
            "success_rate": sum(e.success for e in counted) / n,
            **{f"success_rate/{task}": sum(wins) / len(wins) for task, wins in sorted(per_task.items())},
            "env_errors": float(len(self.episodes) - len(counted)),
            "episode_turns": sum(e.num_turns for e in counted) / n,
            "max_turns_rate": sum(e.hit_max_turns for e in counted) / n,
            "invalid_action_rate": sum(sum(e.invalid_turns) for e in self.episodes) / max(1, len(steps)),
            "truncated_turn_rate": sum(s.truncated for s in steps) / max(1, len(steps)),
            "generate_seconds": self.generate_seconds,
            "env_seconds": self.env_seconds,
            "episodes_per_minute": 60.0 * len(self.episodes) / self.seconds if self.seconds > 0 else 0.0,
        }


@dataclass
class _Live:
    """An episode in progress on a pool slot: what its next turn is made of."""

    episode: Episode
    attempt: int
    messages: Messages
    context: list[int]
    history: list[str] = field(default_factory=list)


# -- the engine ------------------------------------------------------------------------------------
class RolloutEngine:
    """Runs one episode per goal on a pool, one batched policy call per turn.

    Episodes are scheduled onto the pool's slots as they free up, so a batch larger than the pool runs in
    waves without ever idling a slot. Each turn: reset the new episodes (in parallel), ask the policy for every
    live episode (one call), step every live episode (in parallel). An episode ends when the environment says
    so, after ``max_turns`` actions (a failure), or on an environment error (``Episode.env_error``).

    Args:
        policy: a :class:`~sec_rl.web.policies.Policy`, or an agent (callable, ``act_batch``, Teacher), which is
            wrapped in a :class:`~sec_rl.web.policies.ChatPolicy`.
        pool: the environments.
        layout: ``"per_step"`` or ``"episode"`` (see the module docstring).
        max_turns: actions per episode at most.
        prompt: how observations are rendered.
        retries: how often a goal whose environment failed is tried again (the pool has restarted the worker).
        retry_crashed: retry episodes whose environment failed mid-way too, not only failed resets. Evaluation
            and collection do, so that every goal counts; training records them and leaves them out of the loss.
        sync: under several processes, a function mapping "this process still has work" to "some process
            still has work", so that every process makes the same number of policy calls.
    """

    def __init__(
        self,
        policy: Policy | Any,
        pool: EnvironmentPool,
        *,
        layout: Layout = "per_step",
        max_turns: int = 10,
        prompt: PromptConfig | None = None,
        retries: int = 1,
        retry_crashed: bool = False,
        sync: Callable[[bool], bool] | None = None,
    ):
        check_layout(layout)
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}.")
        self.policy = as_policy(policy)
        self.prompt = prompt or PromptConfig()
        if self.prompt.max_page_tokens is not None and getattr(self.policy, "tokenizer", None) is None:
            raise ValueError(
                "max_page_tokens counts the page in tokens, and this agent has no tokenizer: wrap it as "
                "ChatPolicy(agent, tokenizer=<the student's tokenizer>), or use max_page_chars."
            )
        self.pool = pool
        self.layout: Layout = layout
        self.max_turns = max_turns
        self.retries, self.retry_crashed = retries, retry_crashed
        self.sync = sync

    @classmethod
    def from_config(cls, policy: Policy | Any, pool: EnvironmentPool, web: WebConfig, **options: Any) -> RolloutEngine:
        """An engine with the layout, turns and prompt of ``web`` (the settings every command shares)."""
        layout, max_turns = web.web_layout, web.web_max_turns
        return cls(policy, pool, layout=layout, max_turns=max_turns, prompt=web.prompt_config(), **options)  # type: ignore[arg-type]

    # -- public API -------------------------------------------------------------------------------
    def run(self, goals: Sequence[Goal], on_episode: Callable[[Episode], None] | None = None) -> RolloutResult:
        """One episode per goal (duplicates allowed: a GRPO group is the same goal several times).

        ``on_episode`` is called with each episode as soon as it is over (in finishing order; a retried attempt
        is not), e.g. to write it to disk before the next turn: a crash then loses only the episodes in flight.
        """
        started = time.perf_counter()
        result = RolloutResult([Episode(str(task), int(seed), i) for i, (task, seed) in enumerate(goals)])
        pending = deque((i, 0) for i in range(len(goals)))  # (episode index, attempt)
        live: dict[int, _Live] = {}  # pool slot -> episode in progress
        while True:
            self._start_episodes(pending, live, result, on_episode)
            busy = bool(live or pending)
            if not (self.sync(busy) if self.sync is not None else busy):
                break
            slots = sorted(live)
            tick = time.perf_counter()
            replies = self.policy.act([live[s].messages for s in slots], [live[s].context for s in slots])
            result.generate_seconds += time.perf_counter() - tick
            result.turns += 1
            if not slots:  # this process is done; its empty call kept the others' collectives in step
                continue
            if len(replies) != len(slots):
                raise RuntimeError(f"the policy returned {len(replies)} replies for {len(slots)} episodes.")
            result.generated_tokens += sum(reply.completion_tokens for reply in replies)
            actions: list[str | None] = [None] * self.pool.size
            for slot, reply in zip(slots, replies):
                actions[slot] = reply.text
            tick = time.perf_counter()
            outcomes = self.pool.step_many(actions)
            result.env_seconds += time.perf_counter() - tick
            for slot, reply in zip(slots, replies):
                state = live[slot]
                if self._record(state, reply, outcomes[slot]):
                    del live[slot]
                    self._finish(state.episode, state.attempt, pending, result, on_episode)
        result.seconds = time.perf_counter() - started
        return result

    # -- scheduling -------------------------------------------------------------------------------
    def _start_episodes(
        self,
        pending: deque[tuple[int, int]],
        live: dict[int, _Live],
        result: RolloutResult,
        on_episode: Callable[[Episode], None] | None,
    ) -> None:
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
                    live[slot] = self._first_turn(episode, attempt, outcome.observation)
                else:
                    episode.env_error = True
                    episode.error = str(outcome.info.get("error", "reset failed"))
                    self._finish(episode, attempt, pending, result, on_episode)
            # Loop: slots whose reset failed are free again and the retries are first in line.
            if all(outcomes[slot] is not None and not outcomes[slot].env_error for slot in starting):
                return

    def _finish(
        self,
        episode: Episode,
        attempt: int,
        pending: deque[tuple[int, int]],
        result: RolloutResult,
        on_episode: Callable[[Episode], None] | None,
    ) -> None:
        """An episode is over: try its goal again after an environment error (while retries last), else report it."""
        if episode.env_error and attempt < self.retries and (self.retry_crashed or not episode.steps):
            result.episodes[episode.index] = Episode(episode.task, episode.seed, episode.index)
            pending.appendleft((episode.index, attempt + 1))
        elif on_episode is not None:
            on_episode(episode)

    # -- turns ------------------------------------------------------------------------------------
    def _render(self, observation: Observation, history: Sequence[str]) -> Messages:
        return render_messages(observation, history, self.prompt, self.policy.tokenizer)

    def _first_turn(self, episode: Episode, attempt: int, observation: Observation) -> _Live:
        messages = self._render(observation, ())
        return _Live(episode, attempt, messages, self.policy.context(messages))

    def _next_turn(self, state: _Live, step: Step, observation: Observation) -> None:
        """Build the next turn: a fresh prompt (per_step) or the conversation grown by one exchange (episode)."""
        if self.layout == "per_step":
            state.messages = self._render(observation, state.history)
            state.context = self.policy.context(state.messages)
            return
        # The episode's previous actions are in the conversation itself: the user message shows only the page.
        page = render_observation(observation, (), self.prompt, self.policy.tokenizer)
        state.messages = [*step.conversation, {"role": "user", "content": page}]  # step.messages: the turn's prompt
        state.context = self.policy.context(state.messages, step)

    def _record(self, state: _Live, reply: Reply, outcome: Any) -> bool:
        """Append the turn to its episode; returns True when the episode is over."""
        assert outcome is not None
        episode = state.episode
        step = Step(
            messages=state.messages,
            prompt_ids=state.context,
            completion_ids=list(reply.completion_ids),
            logprobs=reply.logprobs,
            text=reply.text,
            action=outcome.info.get("action"),
            reward=float(outcome.reward),
            done=bool(outcome.done),
            error=outcome.observation.last_action_error if not outcome.env_error else "",
            env_error=bool(outcome.env_error),
            truncated=reply.truncated,
            prompt_tokens=int(reply.prompt_tokens or 0),
            completion_tokens=int(reply.completion_tokens or 0),
        )
        episode.steps.append(step)
        state.history.append(step.action or INVALID_ACTION)
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
