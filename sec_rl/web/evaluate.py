"""Evaluate an agent on web tasks: episodes in parallel environments, success rates with bootstrap intervals.

An *agent* is anything that maps chat messages to the model's output text:

- a callable ``agent(messages) -> str`` (one conversation at a time), or
- an object with ``act_batch(list_of_messages) -> list[str]`` (all live episodes in one call), such as
  :class:`ModelAgent`, which wraps a ``transformers`` model and tokenizer.

A :class:`~sec_rl.pipeline.teachers.Teacher` (or any agent with both ``generate`` and ``act_batch``) is
asked through ``generate``, so that each episode also records the tokens it cost.

All live episodes advance together: one agent call for every episode that is waiting, then one
parallel step of the pool. An episode that fails because of the environment (``env_error``) is
retried, and if it fails again it is reported apart and left out of the success rates.

Two prompt layouts, the same as :class:`~sec_rl.web.rollout.RolloutEngine`'s sample modes:

- ``"per_step"``: each turn is a fresh system + user prompt (the observation and the last actions);
- ``"episode"``: one growing conversation, the agent's replies as assistant turns and each new page as a
  user turn. Each :class:`EpisodeResult` keeps its conversation (``messages``), so finished episodes can be
  written as traces as they come (``on_episode``).
"""

from __future__ import annotations

import functools
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from sec_rl.web.observation import Observation, PromptConfig, render_messages, render_observation
from sec_rl.web.pool import EnvironmentPool, Goal

__all__ = [
    "LAYOUTS",
    "BatchAgent",
    "EpisodeResult",
    "Layout",
    "EvalReport",
    "Generation",
    "ModelAgent",
    "TaskScore",
    "bootstrap_interval",
    "evaluate",
    "run_episodes",
]

Messages = list[dict[str, str]]
Layout = Literal["per_step", "episode"]
LAYOUTS: tuple[str, ...] = ("per_step", "episode")


@runtime_checkable
class BatchAgent(Protocol):
    """An agent that answers many conversations in one call (one batched generation)."""

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]: ...


@dataclass
class _Turn:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _batched(agent: BatchAgent | Callable[[Messages], str]) -> Callable[[Sequence[Messages]], list[_Turn]]:
    """One call answering many conversations; token counts come from ``generate`` where the agent has it."""
    generate = getattr(agent, "generate", None)
    if isinstance(agent, BatchAgent) and callable(generate):  # a Teacher: replies with token counts

        def ask(conversations: Sequence[Messages]) -> list[_Turn]:
            replies = generate(conversations)
            return [_Turn(r.text, int(r.prompt_tokens or 0), int(r.completion_tokens or 0)) for r in replies]

        return ask
    if isinstance(agent, BatchAgent):
        return lambda conversations: [_Turn(text) for text in agent.act_batch(conversations)]
    if callable(agent):
        return lambda conversations: [_Turn(agent(messages)) for messages in conversations]
    raise TypeError(f"an agent is a callable messages -> text or has act_batch(); got {type(agent).__name__}.")


class Generation(NamedTuple):
    """One generated turn and its token counts (see :meth:`ModelAgent.generate`)."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class ModelAgent:
    """A ``transformers`` causal LM as an agent: batched generation over the tokenizer's chat template.

    Args:
        model, tokenizer: the model and its tokenizer (a pad token is set to EOS if missing).
        temperature: 0 for greedy decoding; the web-agent study found 0.25 best for its RL runs.
        max_new_tokens: length limit of one turn's output (thought + action).
        batch_size: conversations per ``generate`` call.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        batch_size: int = 16,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_p = temperature, top_p
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]:
        return [generation.text for generation in self.generate(conversations)]

    def generate(self, conversations: Sequence[Messages]) -> list[Generation]:
        """Like :meth:`act_batch`, with each turn's token counts (for compute accounting).

        ``prompt_tokens`` counts the chat-templated prompt without padding; ``completion_tokens`` the tokens
        generated up to and including the first end-of-sequence token (the padding after it is not generated).
        """
        import torch

        texts = [
            self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            for messages in conversations
        ]
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
        options = sampling if self.temperature > 0 else {"do_sample": False}
        stop_ids = self._stop_ids()
        outputs: list[Generation] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            encoded = self.tokenizer(
                chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
            ).to(self.model.device)
            with torch.no_grad():
                generated = self.model.generate(
                    **encoded,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **options,
                )
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
            for text, prompt_length, row in zip(decoded, prompt_lengths, new_tokens.tolist(), strict=True):
                stop = next((i for i, token in enumerate(row) if token in stop_ids), None)
                outputs.append(Generation(text, int(prompt_length), len(row) if stop is None else stop + 1))
        return outputs

    def _stop_ids(self) -> set[int]:
        """Token ids that end a turn: the generation config's EOS ids and the tokenizer's EOS."""
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def __call__(self, messages: Messages) -> str:
        return self.act_batch([messages])[0]


# -- episodes --------------------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    """One finished episode. ``success`` is ``reward > 0`` (MiniWoB's rewards are 0 or 1).

    ``messages``: in the ``"episode"`` layout the whole conversation, ending with the last assistant turn; in
    ``"per_step"`` the last turn's prompt and reply. ``prompt_tokens`` / ``completion_tokens``: summed over the
    episode's turns when the agent reports them (a Teacher, a ModelAgent), else 0; an attempt lost to an
    environment error and retried is not counted.
    """

    task: str
    seed: int
    reward: float
    steps: int
    env_error: bool = False
    error: str = ""
    actions: list[str] = field(default_factory=list)
    messages: Messages = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def success(self) -> bool:
        return not self.env_error and self.reward > 0


@dataclass
class _Live:
    goal: Goal
    attempt: int
    observation: Observation
    history: list[str] = field(default_factory=list)
    messages: Messages = field(default_factory=list)  # the next turn's prompt (episode: the conversation so far)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def run_episodes(
    agent: BatchAgent | Callable[[Messages], str],
    goals: Iterable[Goal],
    pool: EnvironmentPool,
    *,
    max_steps: int = 10,
    prompt: PromptConfig | None = None,
    retries: int = 1,
    layout: Layout = "per_step",
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Run one episode per goal on ``pool``'s slots; returns the results in the order of ``goals``.

    An episode ends when the task says so, after ``max_steps`` actions (a failure), or on an
    environment error (retried up to ``retries`` times, then reported with ``env_error=True``).

    Args:
        layout: ``"per_step"`` (a fresh prompt each turn) or ``"episode"`` (one growing conversation); see the
            module docstring.
        on_episode: called with each result as soon as its episode is over (in finishing order), e.g. to write
            it to disk before the next turn: a crash then loses only the episodes in flight.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}.")
    act = _batched(agent)
    queue = deque((index, goal, 0) for index, goal in enumerate(goals))
    results: dict[int, EpisodeResult] = {}
    live: list[tuple[int, _Live] | None] = [None] * pool.size

    def finish(index: int, episode: _Live, reward: float, env_error: bool = False, error: str = "") -> None:
        if env_error and episode.attempt < retries:
            queue.appendleft((index, episode.goal, episode.attempt + 1))
            return
        task, seed = episode.goal
        result = EpisodeResult(
            task,
            seed,
            reward,
            len(episode.history),
            env_error,
            error,
            episode.history,
            episode.messages,
            episode.prompt_tokens,
            episode.completion_tokens,
        )
        results[index] = result
        if on_episode is not None:
            on_episode(result)

    while queue or any(live):
        free = [slot for slot, entry in enumerate(live) if entry is None]
        starting: dict[int, tuple[int, Goal, int]] = {}
        for slot in free:
            if queue:
                starting[slot] = queue.popleft()
        if starting:
            resets = pool.reset_many([starting[s][1] if s in starting else None for s in range(pool.size)])
            for slot, (index, goal, attempt) in starting.items():
                result = resets[slot]
                assert result is not None
                episode = _Live(goal, attempt, result.observation)
                if result.env_error:
                    finish(index, episode, 0.0, True, result.info.get("error", ""))
                else:
                    episode.messages = render_messages(result.observation, (), prompt)
                    live[slot] = (index, episode)
        waiting = [slot for slot, entry in enumerate(live) if entry is not None]
        if not waiting:
            continue
        replies = act([live[s][1].messages for s in waiting])  # type: ignore[index]
        if len(replies) != len(waiting):
            raise RuntimeError(f"the agent returned {len(replies)} replies for {len(waiting)} conversations.")
        actions: list[str | None] = [None] * pool.size
        for slot, reply in zip(waiting, replies, strict=True):
            actions[slot] = reply.text
        steps = pool.step_many(actions)
        for slot, reply in zip(waiting, replies, strict=True):
            index, episode = live[slot]  # type: ignore[misc]
            result = steps[slot]
            assert result is not None
            episode.prompt_tokens += reply.prompt_tokens
            episode.completion_tokens += reply.completion_tokens
            episode.messages = [*episode.messages, {"role": "assistant", "content": reply.text}]
            episode.observation = result.observation
            episode.history.append(result.info.get("action") or "(invalid action)")
            if result.env_error:
                live[slot] = None
                finish(index, episode, 0.0, True, result.info.get("error", ""))
            elif result.done or len(episode.history) >= max_steps:
                live[slot] = None
                finish(index, episode, result.reward)
            elif layout == "episode":  # as RolloutEngine: the page alone; the actions are in the conversation
                user = render_observation(result.observation, (), prompt)
                episode.messages = [*episode.messages, {"role": "user", "content": user}]
            else:
                episode.messages = render_messages(result.observation, episode.history, prompt)
    return [results[i] for i in sorted(results)]


# -- scores ----------------------------------------------------------------------------------------
def bootstrap_interval(
    groups: Sequence[Sequence[float]], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-group means and its percentile bootstrap interval, resampling within each group.

    With one group this is the ordinary bootstrap of a mean; with one group per task it is the
    stratified bootstrap of the task-averaged success rate (every task keeps its number of episodes).
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([g.mean() for g in groups]))
    resampled = np.zeros(n_resamples)
    for g in groups:
        picks = rng.integers(0, len(g), size=(n_resamples, len(g)))
        resampled += g[picks].mean(axis=1)
    resampled /= len(groups)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return estimate, float(low), float(high)


@dataclass
class TaskScore:
    """Success rate of one task (or overall) with its bootstrap interval; env-error episodes left out."""

    success_rate: float
    low: float
    high: float
    episodes: int
    env_errors: int


@dataclass
class EvalReport:
    """Per-episode results, per-task and overall scores; ``table()`` renders them as markdown."""

    episodes: list[EpisodeResult]
    per_task: dict[str, TaskScore]
    overall: TaskScore
    confidence: float = 0.95

    def table(self) -> str:
        level = f"{self.confidence:.0%}"
        lines = [
            f"| task | episodes | success | {level} interval | env errors |",
            "|---|---:|---:|---:|---:|",
        ]

        def row(name: str, score: TaskScore) -> str:
            interval = f"[{score.low:.1%}, {score.high:.1%}]" if score.episodes else "-"
            rate = f"{score.success_rate:.1%}" if score.episodes else "-"
            return f"| {name} | {score.episodes} | {rate} | {interval} | {score.env_errors} |"

        lines += [row(task, score) for task, score in self.per_task.items()]
        lines.append(row("**overall (mean over tasks)**", self.overall))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Scores and per-episode outcomes; conversations are left out (they can run to megabytes: write traces)."""
        return {
            "overall": vars(self.overall),
            "per_task": {task: vars(score) for task, score in self.per_task.items()},
            "episodes": [
                {k: v for k, v in vars(e).items() if k != "messages"} | {"success": e.success} for e in self.episodes
            ],
        }


def score(
    episodes: Sequence[EpisodeResult], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> EvalReport:
    """Per-task and overall success rates of finished episodes, with bootstrap intervals."""
    by_task: dict[str, list[EpisodeResult]] = defaultdict(list)
    for episode in episodes:
        by_task[episode.task].append(episode)
    per_task, outcomes = {}, []
    for task, results in by_task.items():
        valid = [float(e.success) for e in results if not e.env_error]
        errors = sum(e.env_error for e in results)
        rate, low, high = bootstrap_interval([valid], n_resamples, confidence, seed)
        per_task[task] = TaskScore(rate, low, high, len(valid), errors)
        outcomes.append(valid)
    rate, low, high = bootstrap_interval(outcomes, n_resamples, confidence, seed)
    overall = TaskScore(rate, low, high, sum(len(v) for v in outcomes), sum(s.env_errors for s in per_task.values()))
    return EvalReport(list(episodes), per_task, overall, confidence)


def evaluate(
    agent: BatchAgent | Callable[[Messages], str],
    tasks: Iterable[str],
    seeds: Iterable[int],
    *,
    num_workers: int = 4,
    max_steps: int = 10,
    env_factory: Callable[[], Any] | None = None,
    pool: EnvironmentPool | None = None,
    prompt: PromptConfig | None = None,
    retries: int = 1,
    step_timeout: float = 30.0,
    episode_timeout: float | None = None,
    layout: Layout = "per_step",
    on_episode: Callable[[EpisodeResult], None] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvalReport:
    """Success rate of ``agent`` on every (task, seed), per task and overall, with bootstrap intervals.

    Args:
        agent: a callable ``messages -> text`` or an object with ``act_batch`` (see the module docstring).
        tasks, seeds: every task is run once with every seed.
        num_workers: parallel environments (ignored when ``pool`` is given).
        max_steps: actions per episode before it counts as a failure.
        env_factory: builds one environment in a worker (default: MiniWoB in BrowserGym).
        pool: an existing pool to use (left open); by default one is made and closed.
        prompt: how observations are rendered.
        retries: attempts after an environment error before the episode is reported as one.
        layout: ``"per_step"`` or ``"episode"`` prompts (see the module docstring).
        on_episode: called with each finished episode at once (see :func:`run_episodes`).
        n_resamples, confidence, seed: the bootstrap.
    """
    goals = [(task, int(s)) for task in tasks for s in seeds]
    own_pool = pool is None
    if pool is None:
        if env_factory is None:
            from sec_rl.web.env import BrowserGymEnvironment

            env_factory = functools.partial(BrowserGymEnvironment)
        pool = EnvironmentPool(
            env_factory, min(num_workers, len(goals)), step_timeout=step_timeout, episode_timeout=episode_timeout
        )
    try:
        episodes = run_episodes(
            agent,
            goals,
            pool,
            max_steps=max_steps,
            prompt=prompt,
            retries=retries,
            layout=layout,
            on_episode=on_episode,
        )
    finally:
        if own_pool:
            pool.close()
    return score(episodes, n_resamples, confidence, seed)
