"""The SEC paper's reasoning domains from `reasoning-gym`: Countdown, Zebra puzzles and ARC-1D.

Each builder returns a :class:`datasets.Dataset` with one row per problem:

* ``prompt``: a conversation (``[{"role": "user", "content": ...}]``, optionally after a system message) that asks
  for the final answer inside ``<answer>...</answer>`` tags;
* ``answer``: reasoning-gym's reference answer (one valid solution; Countdown accepts any correct expression);
* ``difficulty``: the level as a string, the paper's knob (Countdown: how many numbers, Zebra: how many houses,
  ARC-1D: the sequence length);
* ``level``: the level's rank, ``"1"``-``"3"`` for the paper's three training levels and ``"4"`` for the harder
  out-of-distribution one;
* ``domain``: ``"countdown"``, ``"zebra"`` or ``"arc_1d"``;
* ``entry``: reasoning-gym's whole entry (question, answer, metadata) as a JSON string, which its ``score_answer``
  needs, kept as text so that the dataset stays Arrow-friendly.

The reward functions have TRL's signature (``completions`` plus dataset columns as keyword arguments) and score
with reasoning-gym's own ``score_answer``. reasoning-gym is imported lazily: ``pip install "sec-rl[reasoning]"``.

Train and test problems do not coincide: reasoning-gym derives item ``i`` from ``seed + i``, so every (split, seed,
level) gets its own block of 10**7 consecutive seeds, placed by a hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, concatenate_datasets

#: Appended to every question: the answer format the rewards check.
ANSWER_INSTRUCTION = (
    "Think it through, then give only the final answer inside <answer> </answer> tags, "
    "for example <answer>your answer</answer>."
)
SPLITS = ("train", "test")
_SEED_STRIDE = 10**7  # items of one dataset are seed + i, i < n_per_level <= _SEED_STRIDE
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _require_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the reasoning domains need reasoning-gym: pip install "sec-rl[reasoning]" (or pip install reasoning-gym)'
        ) from err
    return reasoning_gym


@dataclass(frozen=True)
class ReasoningDomain:
    """One reasoning-gym task family and the knob that sets its difficulty."""

    name: str
    gym_name: str
    train_levels: tuple[int, ...]
    ood_level: int
    knob: Callable[[int], dict[str, Any]]
    knob_help: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> tuple[int, ...]:
        return (*self.train_levels, self.ood_level)

    def rank(self, level: int) -> str:
        """``"1"``, ``"2"``, ... in order of difficulty (the OOD level is the last)."""
        return str(sorted(self.levels).index(level) + 1) if level in self.levels else str(level)


def _countdown_knob(n: int) -> dict[str, Any]:
    return {"min_numbers": n, "max_numbers": n}


def _zebra_knob(n: int) -> dict[str, Any]:
    return {"num_people": n}


def _arc_knob(n: int) -> dict[str, Any]:
    return {"min_size": n, "max_size": n}


#: The paper's three domains: training levels and the harder out-of-distribution level of each.
DOMAINS: dict[str, ReasoningDomain] = {
    "countdown": ReasoningDomain(
        "countdown", "countdown", (3, 4, 5), 6, _countdown_knob, "numbers to combine (min_numbers = max_numbers)"
    ),
    # reasoning-gym also sets the number of attributes per house; the paper names only the houses. 4 is
    # reasoning-gym's default and keeps generation fast (6 houses x 6 attributes takes ~1.6 s per puzzle).
    "zebra": ReasoningDomain(
        "zebra",
        "zebra_puzzles",
        (3, 4, 5),
        6,
        _zebra_knob,
        "houses (num_people)",
        defaults={"num_characteristics": 4},
    ),
    "arc_1d": ReasoningDomain(
        "arc_1d", "arc_1d", (10, 20, 30), 40, _arc_knob, "sequence length (min_size = max_size)"
    ),
}


def _generate_block(gym_name: str, config: dict[str, Any], seed: int, start: int, stop: int) -> list[dict[str, Any]]:
    """Items ``start..stop-1`` of one reasoning-gym dataset (a module-level function, so that workers can run it)."""
    rg = _require_reasoning_gym()
    dataset = rg.create_dataset(gym_name, size=stop, seed=seed, **config)
    return [dataset[i] for i in range(start, stop)]


def _generate(gym_name: str, config: dict[str, Any], seed: int, n: int, num_proc: int) -> list[dict[str, Any]]:
    # Item i depends only on (config, seed + i), so splitting the indices across processes changes nothing.
    if num_proc <= 1 or n < 2 * num_proc:
        return _generate_block(gym_name, config, seed, 0, n)
    bounds = [n * k // num_proc for k in range(num_proc + 1)]
    with ProcessPoolExecutor(num_proc) as pool:
        blocks = pool.map(_generate_block, *zip(*[(gym_name, config, seed, a, b) for a, b in zip(bounds, bounds[1:])]))
        return [item for block in blocks for item in block]


def _messages(question: str, system_prompt: str | None, instruction: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    content = f"{question.rstrip()}\n\n{instruction}" if instruction else question
    return [*messages, {"role": "user", "content": content}]


def make_reasoning_dataset(
    domain: str,
    split: str = "train",
    n_per_level: int = 1000,
    seed: int = 0,
    levels: Sequence[int] | None = None,
    system_prompt: str | None = None,
    instruction: str = ANSWER_INSTRUCTION,
    num_proc: int = 1,
    **config: Any,
) -> Dataset:
    """Problems of one domain, ``n_per_level`` per level.

    Args:
        domain: ``"countdown"``, ``"zebra"`` or ``"arc_1d"`` (keys of :data:`DOMAINS`).
        split: ``"train"``: the paper's three training levels; ``"test"``: those plus the out-of-distribution level.
            Train and test items never coincide.
        n_per_level: problems per level (the paper: 10,000 for training, 200 for testing).
        seed: seed of the generator; the same arguments always give the same rows.
        levels: the levels to build instead of the split's (values of the knob, e.g. ``(3, 4)`` numbers).
        system_prompt: an optional system message before the question.
        instruction: appended to every question; the default asks for ``<answer>...</answer>`` tags.
        num_proc: worker processes for generation (Zebra puzzles with many houses take ~0.1-1 s each).
        **config: other fields of the reasoning-gym config (e.g. ``max_target=100`` for Countdown).
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: choose one of {sorted(DOMAINS)}.")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0 < n_per_level <= _SEED_STRIDE:
        raise ValueError(f"n_per_level must be in 1..{_SEED_STRIDE}, got {n_per_level}.")
    spec = DOMAINS[domain]
    chosen = tuple(levels) if levels is not None else (spec.train_levels if split == "train" else spec.levels)
    rows: dict[str, list[Any]] = {k: [] for k in ("prompt", "answer", "difficulty", "level", "domain", "entry")}
    for level in chosen:
        settings = {**spec.defaults, **config, **spec.knob(level)}
        for entry in _generate(spec.gym_name, settings, _block_seed(split, seed, level), n_per_level, num_proc):
            rows["prompt"].append(_messages(entry["question"], system_prompt, instruction))
            rows["answer"].append(str(entry["answer"]))
            rows["difficulty"].append(str(level))
            rows["level"].append(spec.rank(level))
            rows["domain"].append(domain)
            rows["entry"].append(json.dumps(entry, default=_jsonable))
    return Dataset.from_dict(rows)


def _block_seed(split: str, seed: int, level: int) -> int:
    """The first reasoning-gym seed of a (split, seed, level) block; item i uses this + i.

    Blocks start at multiples of 10**7 drawn from a hash, so two blocks overlap only if their hashes collide
    (a 2**-48 chance), whatever the seeds and levels.
    """
    digest = hashlib.sha256(f"{split}/{seed}/{level}".encode()).digest()
    return int.from_bytes(digest[:6], "big") * _SEED_STRIDE


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def make_countdown_dataset(split: str = "train", n_per_level: int = 1000, seed: int = 0, **kwargs: Any) -> Dataset:
    """Countdown: combine all the given numbers with + - * / to reach the target. Levels: 3, 4, 5 numbers; OOD 6.

    Takes :func:`make_reasoning_dataset`'s keyword arguments (``levels``, ``system_prompt``, reasoning-gym config
    such as ``min_value``/``max_value``/``min_target``/``max_target``).
    """
    return make_reasoning_dataset("countdown", split, n_per_level, seed, **kwargs)


def make_zebra_dataset(
    split: str = "train", n_per_level: int = 1000, seed: int = 0, num_characteristics: int = 4, **kwargs: Any
) -> Dataset:
    """Zebra (Einstein) puzzles: name the person in a given house. Levels: 3, 4, 5 houses; OOD 6.

    ``num_characteristics`` is the number of attributes per house (reasoning-gym's default, 4); generation time grows
    fast with both numbers, so use ``num_proc`` for large sets.
    """
    return make_reasoning_dataset("zebra", split, n_per_level, seed, num_characteristics=num_characteristics, **kwargs)


def make_arc1d_dataset(split: str = "train", n_per_level: int = 1000, seed: int = 0, **kwargs: Any) -> Dataset:
    """ARC-1D: infer a rule from three input/output rows and apply it. Levels: length 10, 20, 30; OOD 40."""
    return make_reasoning_dataset("arc_1d", split, n_per_level, seed, **kwargs)


def make_multidomain_dataset(
    split: str = "train",
    n_per_level: int = 1000,
    seed: int = 0,
    domains: Iterable[str] = ("countdown", "zebra", "arc_1d"),
    difficulty: str = "rank",
    num_characteristics: int = 4,
    **kwargs: Any,
) -> Dataset:
    """The paper's multi-domain run: every domain's levels in one dataset, for joint arms difficulty x domain.

    With ``difficulty="rank"`` (default) the ``difficulty`` column holds the level's rank (``"1"``-``"3"``, ``"4"`` for
    out-of-distribution), comparable across domains, so ``curriculum_column=["difficulty", "domain"]`` gives the
    paper's 3 x 3 = 9 arms (``"1-arc_1d"``, ``"1-countdown"``, ...). ``difficulty="value"`` keeps each domain's own
    knob value. ``num_characteristics`` goes to the Zebra puzzles; other keyword arguments go to every domain's
    builder (``num_proc``, ``system_prompt``, ...).
    """
    if difficulty not in ("rank", "value"):
        raise ValueError(f"difficulty must be 'rank' or 'value', got {difficulty!r}.")
    parts = []
    for name in domains:
        extra = {"num_characteristics": num_characteristics} if name == "zebra" else {}
        part = make_reasoning_dataset(name, split, n_per_level, seed, **extra, **kwargs)
        if difficulty == "rank":
            part = part.map(lambda row: {"difficulty": row["level"]})
        parts.append(part)
    if not parts:
        raise ValueError("domains is empty: name at least one of " + ", ".join(sorted(DOMAINS)) + ".")
    return concatenate_datasets(parts)


# -- rewards ---------------------------------------------------------------------------------------------------------
def _text(completion: str | list[dict[str, Any]]) -> str:
    if isinstance(completion, str):
        return completion
    return "\n".join(str(message.get("content") or "") for message in completion)


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>`` pair, stripped (``None`` if there is none)."""
    matches = _ANSWER.findall(text)
    return matches[-1].strip() if matches else None


def answer_format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion holds exactly one non-empty ``<answer>...</answer>`` pair, else 0.0.

    Give it a small weight beside the correctness reward (the paper's reward: 1 for a correct answer, 0.1 for a
    well-formatted wrong one, 0 otherwise, is ``reward_weights=[1.0, 0.1]`` with :func:`correctness_reward`).
    """
    rewards = []
    for completion in completions:
        text = _text(completion)
        matches = _ANSWER.findall(text)
        ok = len(matches) == 1 and matches[0].strip() != "" and text.count("<answer>") == 1
        rewards.append(1.0 if ok else 0.0)
    return rewards


@functools.cache
def _scorer(gym_name: str) -> Callable[[str | None, dict[str, Any]], float]:
    return _require_reasoning_gym().get_score_answer_fn(gym_name)


def _score(completion: Any, entry: str | dict[str, Any]) -> float:
    record = json.loads(entry) if isinstance(entry, str) else entry
    gym_name = record["metadata"]["source_dataset"]
    return float(_scorer(gym_name)(extract_answer(_text(completion)), record))


def score_reward(completions: list[Any], entry: list[Any], **kwargs: Any) -> list[float]:
    """reasoning-gym's own score of the answer in tags, as it is (partial credit included).

    Countdown gives 1.0 for a correct expression, 0.05 for a wrong one, 0.01 for none; ARC-1D gives
    ``len(reference) / len(answer)`` when the answer contains the reference; Zebra is 1.0 or 0.0.
    """
    return [_score(c, e) for c, e in zip(completions, entry, strict=True)]


def correctness_reward(completions: list[Any], entry: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when reasoning-gym scores the answer in tags as fully correct (score 1.0), else 0.0.

    The binary reward SEC's analysis assumes (mean |advantage| peaks at 50% success); ``entry`` is the dataset
    column TRL passes as a keyword argument.
    """
    return [1.0 if s >= 1.0 else 0.0 for s in score_reward(completions, entry)]


__all__ = [
    "ANSWER_INSTRUCTION",
    "DOMAINS",
    "ReasoningDomain",
    "answer_format_reward",
    "correctness_reward",
    "extract_answer",
    "make_arc1d_dataset",
    "make_countdown_dataset",
    "make_multidomain_dataset",
    "make_reasoning_dataset",
    "make_zebra_dataset",
    "score_reward",
]
