"""A simulated learner for curriculum experiments: K difficulty levels, binary rewards, GRPO updates, no network.

It exists to test and compare curriculum strategies quickly (hundreds of seeds in seconds) on the premise
the SEC paper (arXiv 2505.14970) rests on: *a policy learns fastest from problems it solves about half the
time*, because GRPO's learning signal vanishes on problems it always or never solves.

The model
---------
There are ``K`` categories (difficulty levels) of ``M`` problems each. Problem ``i`` of category ``c(i)``
has a difficulty ``d_i = gap * c(i) + spread * eps_i`` (``eps_i ~ N(0, 1)``, fixed per seed), and the
learner has one latent skill ``s_c`` per category. A rollout on problem ``i`` succeeds with probability

    p_i = sigmoid(z_i),   z_i = s_c(i) - d_i                                  (success logit)

and the success rate of category ``c`` is the mean of ``p_i`` over its ``M`` problems.

One training step is one GRPO step: a batch of ``B`` problems (chosen by the curriculum), ``G`` rollouts
each with rewards ``y_ij ~ Bernoulli(p_i)``, group-relative advantages

    A_ij = (y_ij - mean_j y_ij) / (std_j y_ij + 1e-4)     scale_rewards="group" (GRPO, TRL's default; std
                                                          with Bessel's correction, as torch.std)
    A_ij =  y_ij - mean_j y_ij                            scale_rewards="none" (Dr. GRPO, RLOO-like)

and a policy-gradient step ``theta += lr * mean_ij A_ij * grad log pi(y_ij)`` averaged over all ``B * G``
rollouts of the batch, as GRPO's loss is. The learner models the policy's "success" direction only: the
score of a Bernoulli outcome with logit ``z`` is ``d log pi(y) / dz = y - p``; categories share parameters
through features ``phi_c`` whose overlap ``<phi_j, phi_k> = transfer ** |j - k|`` (neighbouring levels
share sub-skills; a linearised, neural-tangent-kernel view of a network's shared weights). The step on
category ``j``'s skill is therefore

    Delta s_j = lr * (1 / (B G)) * sum_ij  transfer ** |j - c(i)|  *  A_ij * (y_ij - p_i)      (update)

Nothing else is assumed. Because a group's advantages sum to zero and the rewards are binary, each group
contributes exactly ``sum_j A_ij (y_ij - p_i) = sum_j A_ij y_ij = (1/2) sum_j |A_ij|``: the step a level's own
skill takes is half the mean |advantage| of its rollouts times their share of the batch, *the very quantity SEC
uses as its bandit reward*. In expectation over the rollouts of a problem with success rate ``p``:

* ``scale_rewards="none"``: ``E|A| = (1 - 1/G) * 2 p (1 - p)``;
* ``scale_rewards="group"``: ``E|A| -> 2 sqrt(p (1 - p))`` for large ``G`` (0.87 at ``p = 0.5`` for ``G = 8``);
  for small ``G`` it is ``P(group not uniform)`` times a constant (every non-uniform pair has ``|A| = 0.707``);

zero when ``p = 0`` or ``p = 1`` (every group uniform, all advantages 0), largest at ``p = 0.5``. Rollouts
spent on mastered or hopeless problems dilute the step; a hard level becomes learnable only once transfer
from easier levels lifts its success rate off zero. A curriculum matters because of that, and for no other
reason built into the simulator. What SEC's reward does *not* see is where a step transfers: it values a
unit of learning on an easy level as much as one on the level that is the goal.

Not modelled: forgetting and interference (a skill never decreases: the step is ``>= 0`` on every level), noise
of the gradient outside the success direction, and problems that differ in more than difficulty.

The parameters are physical (logit units) and their defaults were fixed before any strategy was run:
``gap`` is the logit distance between levels (``gap = 2`` puts level 2 at 12% and level 3 at 2% when
level 1 is at 50%), ``transfer`` the share of a step that reaches the next level, ``lr`` only sets the
time scale. ``benchmarks/simulated_learner.py --sweep`` shows how the comparison of strategies moves with
each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from sec_rl.curriculum.pools import DifficultyPools
from sec_rl.curriculum.sampler import CurriculumSampler

ScaleRewards = Literal["group", "none"]
DynamicSampling = Literal["none", "filter"]

#: TRL adds this to the group std before dividing (``GRPOTrainer``, ``scale_rewards="group"``).
STD_EPSILON = 1e-4


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # stable for any x


def group_advantages(rewards: np.ndarray, scale_rewards: ScaleRewards = "group") -> np.ndarray:
    """GRPO advantages of a ``(prompts, G)`` reward array: reward minus its group mean, optionally over the group std.

    ``"group"`` divides by the group's std with Bessel's correction plus ``1e-4`` (as TRL does); ``"none"``
    leaves the centred rewards as they are. A group whose rewards are all equal gets advantages of 0.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape (prompts, group_size), got {rewards.shape}.")
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        if rewards.shape[1] < 2:
            raise ValueError('scale_rewards="group" needs groups of at least 2 rollouts.')
        return centred / (rewards.std(axis=1, ddof=1, keepdims=True) + STD_EPSILON)
    raise ValueError(f'scale_rewards={scale_rewards!r} is not supported: choose "group" or "none".')


@dataclass(frozen=True)
class LearnerConfig:
    """Parameters of a :class:`SimulatedLearner` (logit units; see the module docstring for the model).

    Args:
        num_categories: difficulty levels ``K``; level ``k`` has mean difficulty ``gap * k``.
        problems_per_category: problems ``M`` per level.
        gap: logit distance between consecutive levels.
        spread: std of problem difficulty within a level.
        initial_skill: ``s_c`` of every level at the start (0: the easiest level is solved half the time).
        transfer: overlap of neighbouring levels' features, ``<phi_j, phi_k> = transfer ** |j - k|``.
        learning_rate: step size ``lr`` of the policy-gradient update.
    """

    num_categories: int = 5
    problems_per_category: int = 64
    gap: float = 2.0
    spread: float = 0.5
    initial_skill: float = 0.0
    transfer: float = 0.5
    learning_rate: float = 0.5

    def __post_init__(self) -> None:
        if self.num_categories < 1 or self.problems_per_category < 1:
            raise ValueError("num_categories and problems_per_category must be >= 1.")
        if not 0.0 <= self.transfer <= 1.0:
            raise ValueError(f"transfer={self.transfer!r} must lie in [0, 1].")
        if self.learning_rate <= 0 or self.spread < 0:
            raise ValueError("learning_rate must be > 0 and spread >= 0.")


class SimulatedLearner:
    """A policy reduced to one success logit per problem, trained by GRPO steps (see the module docstring).

    Args:
        config: the model's parameters.
        seed: seeds the problems' difficulties (the rollouts draw from the generator passed to :meth:`rollout`).
    """

    def __init__(self, config: LearnerConfig | None = None, seed: int | np.random.SeedSequence = 0):
        self.config = config = config or LearnerConfig()
        rng = np.random.default_rng(seed)
        k, m = config.num_categories, config.problems_per_category
        #: Names of the levels, easiest first ("1" .. "K").
        self.categories: list[str] = [str(i + 1) for i in range(k)]
        #: Level index of every problem, in problem order (levels contiguous).
        self.problem_category = np.repeat(np.arange(k), m)
        #: Difficulty ``d_i`` of every problem.
        self.difficulty = config.gap * self.problem_category + config.spread * rng.standard_normal(k * m)
        #: Latent skill ``s_c`` of every level.
        self.skills = np.full(k, float(config.initial_skill))
        levels = np.arange(k)
        #: Feature overlap ``<phi_j, phi_k>`` (a positive semi-definite Kac-Murdock-Szego matrix).
        self.kernel = config.transfer ** np.abs(levels[:, None] - levels[None, :]).astype(np.float64)

    @property
    def row_categories(self) -> list[str]:
        """The level name of every problem, as a dataset's category column would hold it."""
        return [self.categories[c] for c in self.problem_category]

    def success_probability(self, problems: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``p_i`` of the given problems (all problems when ``None``)."""
        idx = slice(None) if problems is None else np.asarray(problems, dtype=np.int64)
        return sigmoid(self.skills[self.problem_category[idx]] - self.difficulty[idx])

    def category_success(self) -> np.ndarray:
        """Success rate of every level: the mean ``p_i`` over its problems (an exact, noise-free evaluation)."""
        k, m = self.config.num_categories, self.config.problems_per_category
        return self.success_probability().reshape(k, m).mean(axis=1)

    def rollout(self, problems: Sequence[int] | np.ndarray, group_size: int, rng: np.random.Generator) -> np.ndarray:
        """Binary rewards of ``group_size`` rollouts of each problem: a ``(len(problems), group_size)`` array."""
        p = self.success_probability(problems)
        return (rng.random((len(p), group_size)) < p[:, None]).astype(np.float64)

    def train_step(self, problems: Sequence[int] | np.ndarray, rewards: np.ndarray, advantages: np.ndarray) -> None:
        """One policy-gradient step, the (update) rule, from ``(B, G)`` rewards and advantages."""
        problems = np.asarray(problems, dtype=np.int64)
        rewards, advantages = np.asarray(rewards, dtype=np.float64), np.asarray(advantages, dtype=np.float64)
        p = self.success_probability(problems)
        # sum over a prompt's rollouts of A_ij * d log pi(y_ij) / dz_i, then over the prompts of each level
        per_prompt = (advantages * (rewards - p[:, None])).sum(axis=1)
        per_level = np.bincount(self.problem_category[problems], weights=per_prompt, minlength=len(self.skills))
        self.skills += self.config.learning_rate * (self.kernel @ per_level) / rewards.size


@dataclass
class Trajectory:
    """What :func:`simulate` recorded: ``success[t]`` after ``t`` steps, ``probabilities[t]`` used at step ``t``."""

    categories: list[str]
    success: np.ndarray  # (steps + 1, K): every level's success rate, before the first step and after each
    probabilities: np.ndarray  # (steps, arms): the curriculum's distribution when it chose step t's first batch
    sampled: np.ndarray  # (steps, K): prompts of each level generated at step t
    informative: np.ndarray  # (steps,): share of step t's generated groups with non-uniform rewards (a signal)
    steps_to_target: int | None  # first t with success[t, -1] >= target, None if never within the run
    target: float
    params: dict[str, Any] = field(default_factory=dict)
    #: (steps,): rollouts generated at step t (``batch_size * group_size`` without dynamic sampling).
    rollouts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def steps(self) -> int:
        return len(self.probabilities)

    def level_steps_to_target(self) -> list[int | None]:
        """First step at which each level's success reaches ``target`` (None if never)."""
        reached = self.success >= self.target
        return [int(np.argmax(col)) if col.any() else None for col in reached.T]

    def rollouts_until(self, step: int | None) -> int | None:
        """Rollouts generated by the first ``step`` steps (None stays None)."""
        return None if step is None else int(self.rollouts[:step].sum())


def filter_and_refill(
    generate: Callable[[], tuple[np.ndarray, np.ndarray]], batch_size: int, max_refills: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """DAPO's dynamic sampling: generate batches until ``batch_size`` groups with non-uniform rewards are kept.

    ``generate()`` returns one generation batch, ``(problems, rewards)`` of shapes ``(B,)`` and ``(B, G)``. At most
    ``max_refills`` batches are generated beyond the first; the trained batch keeps TRL's fixed shape: the first
    ``batch_size`` informative groups, padded with uniform groups (zero advantage, no gradient) when too few were
    found. Returns the trained problems, their rewards, and the number of generation batches.
    """
    if max_refills < 1:
        raise ValueError(
            f"max_refills={max_refills}: filter-and-refill needs at least one refill (a bound of 0 generates the "
            "batch once and filters nothing); use dynamic_sampling='none' for plain GRPO."
        )
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    dropped: list[tuple[np.ndarray, np.ndarray]] = []
    batches = 0
    while batches <= max_refills and sum(len(p) for p, _ in kept) < batch_size:
        problems, rewards = generate()
        batches += 1
        signal = rewards.min(axis=1) != rewards.max(axis=1)
        kept.append((problems[signal], rewards[signal]))
        dropped.append((problems[~signal], rewards[~signal]))
    problems = np.concatenate([p for p, _ in kept + dropped])[:batch_size]
    rewards = np.concatenate([r for _, r in kept + dropped])[:batch_size]
    return problems, rewards, batches


def simulate(
    curriculum: Any,
    learner: SimulatedLearner,
    steps: int,
    *,
    batch_size: int = 32,
    group_size: int = 8,
    scale_rewards: ScaleRewards = "group",
    seed: int | np.random.SeedSequence = 0,
    target: float = 0.8,
    stop_at_target: bool = False,
    callback: Callable[[int, SimulatedLearner], None] | None = None,
    pools: DifficultyPools | None = None,
    dynamic_sampling: DynamicSampling = "none",
    max_refills: int = 4,
) -> Trajectory:
    """Train ``learner`` for ``steps`` GRPO steps, letting ``curriculum`` choose every batch.

    Each generation batch: a :class:`~sec_rl.curriculum.sampler.CurriculumSampler` draws ``batch_size`` problems
    (an arm from the curriculum's distribution, then the next problem of that arm, without replacement); each gets
    ``group_size`` Bernoulli rollouts; the curriculum gets ``update(arms, advantages, rewards)`` with one entry per
    rollout (reward minus group mean when its ``signal`` is ``"raw_advantages"``), and the sampler
    ``observe(problems, group success rates)``. The learner then takes its step on the batch's advantages
    (:func:`group_advantages`).

    Args:
        curriculum: any :class:`~sec_rl.curriculum.base.Curriculum` over ``learner.categories``, or a pool strategy.
        learner: trained in place.
        steps: training steps to run.
        seed: seeds the sampler and the rollouts (independently of the learner's own seed).
        target: success rate of the hardest level that counts as reached.
        stop_at_target: stop as soon as the hardest level reaches ``target`` (the arrays are then shorter).
        callback: called as ``callback(t, learner)`` after every step.
        pools: difficulty pools inside each level (see :class:`~sec_rl.curriculum.pools.DifficultyPools`).
        dynamic_sampling: ``"none"`` (one generation batch per step) or ``"filter"`` (DAPO, :func:`filter_and_refill`;
            every extra generation batch is counted in ``Trajectory.rollouts`` and updates the curriculum).
        max_refills: generation batches a ``"filter"`` step may add to its first one.
    """
    pool_arms = bool(getattr(curriculum, "arms_are_pools", False))
    if not pool_arms and list(curriculum.categories) != learner.categories:
        raise ValueError(f"the curriculum's categories {curriculum.categories} differ from {learner.categories}.")
    if dynamic_sampling not in ("none", "filter"):
        raise ValueError(f"dynamic_sampling={dynamic_sampling!r} is not supported: choose 'none' or 'filter'.")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    # children derived without spawn(), which would mutate a caller's SeedSequence between calls
    sampler_seed, rollout_seed = (
        np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i)) for i in range(2)
    )
    sampler = CurriculumSampler(
        learner.row_categories, curriculum, seed=int(sampler_seed.generate_state(1)[0]), pools=pools
    )
    rng = np.random.default_rng(rollout_seed)
    raw_signal = getattr(curriculum, "signal", "advantages") == "raw_advantages"
    k = len(learner.categories)
    success = np.empty((steps + 1, k))
    probabilities = np.empty((steps, len(curriculum.categories)))
    sampled = np.zeros((steps, k), dtype=np.int64)
    informative = np.zeros(steps)
    rollouts = np.zeros(steps, dtype=np.int64)
    success[0] = learner.category_success()
    reached = 0 if success[0, -1] >= target else None
    done = steps
    t = 0

    def generate() -> tuple[np.ndarray, np.ndarray]:
        """One generation batch, scored, then fed to the curriculum and the sampler as a trainer would."""
        problems = np.asarray(sampler.draw(batch_size), dtype=np.int64)
        rewards = learner.rollout(problems, group_size, rng)
        signal = group_advantages(rewards, "none" if raw_signal else scale_rewards)
        curriculum.update(np.repeat(sampler.last_arms, group_size).tolist(), signal.ravel().tolist(),
                          rewards.ravel().tolist())  # fmt: skip
        sampler.observe(problems, rewards.mean(axis=1))
        sampled[t] += np.bincount(learner.problem_category[problems], minlength=k)
        generated.append(rewards.min(axis=1) != rewards.max(axis=1))
        return problems, rewards

    for t in range(steps):
        if reached is not None and stop_at_target:
            done = t
            break
        probabilities[t] = curriculum.probability_vector()
        generated: list[np.ndarray] = []
        if dynamic_sampling == "filter":
            problems, rewards, _ = filter_and_refill(generate, batch_size, max_refills)
        else:
            problems, rewards = generate()
        informative[t] = np.concatenate(generated).mean()
        rollouts[t] = sum(len(g) for g in generated) * group_size
        learner.train_step(problems, rewards, group_advantages(rewards, scale_rewards))
        success[t + 1] = learner.category_success()
        if reached is None and success[t + 1, -1] >= target:
            reached = t + 1
        if callback is not None:
            callback(t, learner)
    params = {
        **asdict(learner.config),
        "batch_size": batch_size,
        "group_size": group_size,
        "scale_rewards": scale_rewards,
        "dynamic_sampling": dynamic_sampling,
    }
    return Trajectory(
        categories=list(learner.categories),
        success=success[: done + 1],
        probabilities=probabilities[:done],
        sampled=sampled[:done],
        informative=informative[:done],
        steps_to_target=reached,
        target=target,
        params=params,
        rollouts=rollouts[:done],
    )


__all__ = [
    "LearnerConfig",
    "SimulatedLearner",
    "Trajectory",
    "filter_and_refill",
    "group_advantages",
    "sigmoid",
    "simulate",
]
