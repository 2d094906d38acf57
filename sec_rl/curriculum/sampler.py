"""An index sampler that lets a curriculum choose each prompt's category.

It yields exactly the structure of TRL's ``RepeatSampler``: chunks of ``batch_size`` prompts, each
prompt repeated ``mini_repeat_count`` times (the GRPO group), each chunk repeated ``repeat_count``
times (``num_iterations * steps_per_generation``). A chunk is one generation batch, so the curriculum
is consulted once per generation batch, lazily, right when the data loader asks for it.

Every process builds the same sampler with the same seed and updates its curriculum from the same
gathered data, so every process draws the identical index stream without communicating.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from sec_rl.curriculum.base import Curriculum


class CurriculumSampler:
    """Draws each prompt's category from ``curriculum`` and a problem of that category without replacement.

    Args:
        row_categories: the category (arm key) of every dataset row, in row order.
        curriculum: the strategy to consult once per chunk.
        mini_repeat_count: times each prompt is repeated in a row (``num_generations``).
        batch_size: distinct prompts per chunk (``generation_batch_size // num_generations``).
        repeat_count: times each chunk is repeated (``num_iterations * steps_per_generation``).
        shuffle: shuffle each category's problems (else take them in dataset order).
        seed: seed of the sampler's private generator; the global RNGs are never touched.
        history: chunks kept in :meth:`state_dict` so that a resumed run replays the ones the data
            loader had already prefetched when the checkpoint was written.
    """

    def __init__(
        self,
        row_categories: Sequence[str],
        curriculum: Curriculum,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        history: int = 8,
    ):
        if batch_size < 1 or mini_repeat_count < 1 or repeat_count < 1:
            raise ValueError("batch_size, mini_repeat_count and repeat_count must all be >= 1.")
        self.curriculum = curriculum
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.history = history
        self.num_samples = len(row_categories)
        if self.num_samples < batch_size:
            raise ValueError(
                f"the dataset has {self.num_samples} rows but a generation batch needs {batch_size} distinct "
                "prompts: lower generation_batch_size or add rows."
            )

        rows: dict[str, list[int]] = {c: [] for c in curriculum.categories}
        for index, category in enumerate(row_categories):
            category = str(category)
            if category not in rows:
                raise ValueError(
                    f"row {index} has category {category!r}, which is not among the curriculum's categories "
                    f"{curriculum.categories}."
                )
            rows[category].append(index)
        empty = [c for c, r in rows.items() if not r]
        if empty:
            raise ValueError(
                f"categories {empty} have no rows in the dataset: remove them from the curriculum's categories "
                "or add rows for them."
            )
        self.rows = {c: np.array(r, dtype=np.int64) for c, r in rows.items()}

        self.rng = np.random.default_rng(seed)
        self.queues: dict[str, list[int]] = {c: [] for c in curriculum.categories}
        self.chunks_drawn = 0
        self.epoch = 0
        self._epoch_was_set = False
        self._iterated = False
        self.recent_chunks: dict[int, list[int]] = {}

    # -- torch Sampler protocol -----------------------------------------------------------------
    @property
    def chunks_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def __len__(self) -> int:
        return self.chunks_per_epoch * self.batch_size * self.mini_repeat_count * self.repeat_count

    def set_epoch(self, epoch: int) -> None:
        """Called by the HF Trainer before each epoch; chunk ``j`` of epoch ``e`` is chunk ``e * K + j``."""
        self.epoch = epoch
        self._epoch_was_set = True

    def __iter__(self) -> Iterator[int]:
        if self._iterated and not self._epoch_was_set:
            self.epoch += 1  # iterated by hand, without set_epoch: move on to the next epoch
        self._iterated, self._epoch_was_set = True, False
        first = self.epoch * self.chunks_per_epoch
        for chunk_id in range(first, first + self.chunks_per_epoch):
            chunk = self._chunk(chunk_id)
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    # -- drawing ---------------------------------------------------------------------------------
    def _chunk(self, chunk_id: int) -> list[int]:
        if chunk_id < self.chunks_drawn:
            # Drawn before a checkpoint: replay it if it may still be trained on; otherwise the trainer
            # skips it on resume and any valid indices do.
            return self.recent_chunks.get(chunk_id, list(range(self.batch_size)))
        chunk = self.draw(self.batch_size)
        self.chunks_drawn = chunk_id + 1
        self.recent_chunks[chunk_id] = chunk
        for old in [c for c in self.recent_chunks if c <= chunk_id - self.history]:
            del self.recent_chunks[old]
        return chunk

    def draw(self, n: int) -> list[int]:
        """Draw ``n`` categories i.i.d. from the curriculum, then the next problem of each."""
        probs = self.curriculum.probability_vector()
        arms = self.rng.choice(len(self.curriculum.categories), size=n, p=probs / probs.sum())
        return [self._next_problem(self.curriculum.categories[a]) for a in arms]

    def _next_problem(self, category: str) -> int:
        queue = self.queues[category]
        if not queue:  # exhausted (or first use): refill with a fresh pass over the category
            rows = self.rows[category]
            order = self.rng.permutation(rows) if self.shuffle else rows
            queue.extend(order[::-1].tolist())  # stored reversed, so that pop() is O(1)
        return queue.pop()

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (generator, per-category queues, recent chunks)."""
        return {
            "rng": self.rng.bit_generator.state,
            "queues": {c: list(q) for c, q in self.queues.items()},
            "chunks_drawn": self.chunks_drawn,
            "epoch": self.epoch,
            "recent_chunks": {str(k): list(v) for k, v in self.recent_chunks.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["queues"]) != set(self.queues):
            raise ValueError(
                f"sampler state has categories {sorted(state['queues'])}, this sampler {sorted(self.queues)}: "
                "resume with the same dataset and category columns."
            )
        self.rng.bit_generator.state = _json_state(state["rng"])
        self.queues = {c: list(q) for c, q in state["queues"].items()}
        self.chunks_drawn = int(state["chunks_drawn"])
        self.epoch = int(state["epoch"])
        self.recent_chunks = {int(k): list(v) for k, v in state["recent_chunks"].items()}
        self._iterated = False


def _json_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """numpy's bit-generator state after a JSON round trip (ints stay ints, dicts stay dicts)."""
    return {k: _json_state(v) if isinstance(v, Mapping) else v for k, v in state.items()}
