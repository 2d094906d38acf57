"""FLOPs per stage of the teacher -> SFT -> RL pipeline, counted as the web-agent study counts them.

The study (arXiv 2507.04103) compares SFT and SFT+RL at equal compute, counting four stages: teacher
inference, SFT, RL rollouts (generation) and RL updates (gradient steps). Each uses the standard estimates:

- inference: ``2 x N x tokens processed`` (prompt + completion), one multiply-add per parameter per token;
- training: ``6 x N x tokens trained`` (forward 2N, backward 4N), what ``transformers.Trainer`` accumulates
  in ``state.total_flos`` (``6 x numel(input_ids) x model.num_parameters(exclude_embeddings=True)``).

``N`` is counted as ``transformers`` counts it for ``total_flos``: without the input embeddings (a table
lookup, not a matrix product), so every stage of the ledger uses one convention.

:class:`ComputeLedger` holds FLOPs and tokens per stage and is saved as ``compute.json``; saving merges
into an existing file, so stages run by separate processes (collection, SFT, RL) add up in one file.
:class:`ComputeCallback` fills it from a trainer: it writes ``output_dir/compute.json`` on every save and
at the end of training, a copy into each ``checkpoint-*`` folder (the compute behind that checkpoint,
earlier stages included), and logs ``compute/<stage>_flops`` and ``compute/total_flops``. Evaluating the
checkpoints and reading their ``compute.json`` gives the points of a success-vs-compute plot; the logged
``compute/total_flops`` also serves ``sec-rl diagnose --compute-key compute/total_flops``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

__all__ = [
    "COMPUTE_FILE",
    "STAGES",
    "ComputeCallback",
    "ComputeLedger",
    "StageCompute",
    "count_parameters",
    "inference_flops",
    "training_flops",
]

logger = logging.getLogger(__name__)

COMPUTE_FILE = "compute.json"
STAGES = ("teacher", "sft", "rollouts", "updates")
_FORMAT = "sec_rl.compute/1"


# -- formulas --------------------------------------------------------------------------------------
def _check(num_parameters: int | float, tokens: int | float) -> None:
    if num_parameters is None or not math.isfinite(num_parameters) or num_parameters < 0:
        raise ValueError(f"num_parameters must be a finite number >= 0, got {num_parameters!r}.")
    if tokens is None or not math.isfinite(tokens) or tokens < 0:
        raise ValueError(f"tokens must be a finite number >= 0, got {tokens!r}.")


def inference_flops(num_parameters: int | float, tokens: int | float) -> float:
    """Forward-pass FLOPs: ``2 x N x tokens`` (count prompt and completion tokens alike)."""
    _check(num_parameters, tokens)
    return 2.0 * num_parameters * tokens


def training_flops(num_parameters: int | float, tokens: int | float) -> float:
    """Forward + backward FLOPs: ``6 x N x tokens``, as ``transformers.Trainer.floating_point_ops``."""
    _check(num_parameters, tokens)
    return 6.0 * num_parameters * tokens


def count_parameters(model: Any, exclude_embeddings: bool = False) -> int:
    """Parameters of ``model`` (shared weights once); ``exclude_embeddings`` leaves out ``nn.Embedding`` tables.

    A ``transformers`` model answers with its own ``num_parameters`` (the count behind ``total_flos``);
    any other ``torch.nn.Module`` is counted from its parameters.
    """
    if hasattr(model, "num_parameters"):
        return int(model.num_parameters(exclude_embeddings=exclude_embeddings))
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"count_parameters needs a torch.nn.Module, got {type(model).__name__}.")
    import torch

    skip: set[int] = set()
    if exclude_embeddings:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for _, p in model.named_parameters() if id(p) not in skip)


# -- the ledger ------------------------------------------------------------------------------------
@dataclass
class StageCompute:
    """One stage's totals. ``num_parameters`` is the N its FLOPs were computed with (None: unknown)."""

    flops: float = 0.0
    tokens: int = 0
    num_parameters: int | None = None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock next to ``path`` (POSIX), so two processes never interleave read-merge-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock, writes stay atomic
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (temporary file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def _resolve(path: str | os.PathLike[str]) -> Path:
    """``compute.json`` itself, or the folder that holds one (a run or checkpoint folder)."""
    path = Path(path)
    return path / COMPUTE_FILE if path.is_dir() or not path.suffix else path


@dataclass
class ComputeLedger:
    """FLOPs and tokens per stage; ``save`` merges into an existing ``compute.json``.

    Attributes:
        stages: stage name -> :class:`StageCompute` (the study's stages are :data:`STAGES`; others are allowed).
        sources: ledgers of earlier runs merged in once (e.g. the SFT checkpoint an RL run starts from).
        checkpoints: one entry per saved checkpoint: its folder, step, the stage that wrote it, and the
            per-stage and total FLOPs behind it.
    """

    stages: dict[str, StageCompute] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    # what this ledger last read from / wrote to its file: save() adds only what came after
    _saved: dict[str, StageCompute] = field(default_factory=dict, repr=False, compare=False)
    _saved_checkpoints: int = field(default=0, repr=False, compare=False)

    def add(self, stage: str, flops: float, tokens: int = 0, num_parameters: int | None = None) -> None:
        """Add ``flops`` and ``tokens`` to ``stage`` (created on first use)."""
        if not isinstance(stage, str) or not stage:
            raise ValueError(f"a stage is a non-empty name such as {STAGES}, got {stage!r}.")
        if not math.isfinite(flops) or flops < 0 or tokens < 0:
            raise ValueError(f"stage {stage!r}: flops and tokens must be finite and >= 0, got {flops!r}, {tokens!r}.")
        entry = self.stages.setdefault(stage, StageCompute())
        entry.flops += float(flops)
        entry.tokens += int(tokens)
        if num_parameters is not None:
            entry.num_parameters = int(num_parameters)

    def flops(self, stage: str) -> float:
        """FLOPs of one stage (0 when it has none)."""
        return self.stages[stage].flops if stage in self.stages else 0.0

    @property
    def total(self) -> float:
        """FLOPs of all stages together: the x-axis of a success-vs-compute plot."""
        return sum(entry.flops for entry in self.stages.values())

    def merge(self, other: ComputeLedger, source: str | None = None) -> bool:
        """Add every stage of ``other``; with ``source``, only once (returns False if it was merged before)."""
        if source is not None:
            if source in self.sources:
                return False
            self.sources.append(source)
        for name, entry in other.stages.items():
            self.add(name, entry.flops, entry.tokens, entry.num_parameters)
        for source_of_other in other.sources:
            if source_of_other not in self.sources:
                self.sources.append(source_of_other)
        return True

    def snapshot(self, checkpoint: str, step: int, stage: str) -> dict[str, Any]:
        """Record the compute behind a checkpoint (replacing an earlier entry for the same folder)."""
        entry = {
            "checkpoint": checkpoint,
            "step": int(step),
            "stage": stage,
            "total_flops": self.total,
            "flops": {name: value.flops for name, value in self.stages.items()},
        }
        self.checkpoints = [c for c in self.checkpoints if c.get("checkpoint") != checkpoint] + [entry]
        return entry

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        ordered = [s for s in STAGES if s in self.stages] + [s for s in self.stages if s not in STAGES]
        return {
            "format": _FORMAT,
            "total_flops": self.total,
            "stages": {name: vars(self.stages[name]).copy() for name in ordered},
            "sources": list(self.sources),
            "checkpoints": list(self.checkpoints),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "compute data") -> ComputeLedger:
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise ValueError(f"{where} is not a compute ledger: expected a JSON object with a 'stages' object.")
        ledger = cls(sources=list(data.get("sources", [])), checkpoints=list(data.get("checkpoints", [])))
        for name, entry in data["stages"].items():
            try:
                ledger.add(name, float(entry["flops"]), int(entry.get("tokens", 0)), entry.get("num_parameters"))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{where}: stage {name!r} is malformed ({error}); expected {{'flops', 'tokens'}}."
                ) from error
        ledger._mark_saved()
        return ledger

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ComputeLedger:
        """Read ``compute.json`` (or the one inside a run/checkpoint folder)."""
        file = _resolve(path)
        if not file.is_file():
            raise FileNotFoundError(f"no compute ledger at {file}: it is written by ComputeCallback or ledger.save().")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{file} is not valid JSON ({error}); delete it to start a new ledger.") from error
        return cls.from_dict(data, str(file))

    @classmethod
    def load_or_empty(cls, path: str | os.PathLike[str]) -> ComputeLedger:
        return cls.load(path) if _resolve(path).is_file() else cls()

    @classmethod
    def merged(cls, *paths: str | os.PathLike[str]) -> ComputeLedger:
        """One ledger from several runs' files (those that do not exist are skipped).

        A file that another one already holds as a base (an RL run's ``sources`` name the SFT ledger it
        started from) is counted once, so ``merged(sft_dir, rl_dir)`` is the end-to-end compute.
        """
        ledgers: dict[str, ComputeLedger] = {}
        for path in paths:
            file = _resolve(path)
            if file.is_file():
                ledgers.setdefault(str(file.resolve()), cls.load(file))
            else:
                logger.info("no compute ledger at %s: skipped", file)
        included = {source for ledger in ledgers.values() for source in ledger.sources}
        result = cls()
        for key, ledger in ledgers.items():
            if key not in included:
                result.merge(ledger, source=key)
        return result

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Merge into ``path`` what this ledger added since it last loaded or saved; returns the file.

        Another process's stages in the file are kept, so a collection run, an SFT run and an RL run can
        share one ``compute.json``; saving twice does not count anything twice. Afterwards this ledger holds
        the merged totals.
        """
        file = _resolve(path)
        with _locked(file):
            merged = ComputeLedger.load_or_empty(file)
            for name, entry in self.stages.items():
                before = self._saved.get(name, StageCompute())
                merged.add(name, entry.flops - before.flops, entry.tokens - before.tokens, entry.num_parameters)
            for source in self.sources:
                if source not in merged.sources:
                    merged.sources.append(source)
            for checkpoint in self.checkpoints[self._saved_checkpoints :]:
                merged.checkpoints = [
                    c for c in merged.checkpoints if c.get("checkpoint") != checkpoint.get("checkpoint")
                ] + [checkpoint]
            _write_json(file, merged.to_dict())
        self.stages, self.sources, self.checkpoints = merged.stages, merged.sources, merged.checkpoints
        self._mark_saved()
        return file

    def _mark_saved(self) -> None:
        self._saved = {name: StageCompute(e.flops, e.tokens, e.num_parameters) for name, e in self.stages.items()}
        self._saved_checkpoints = len(self.checkpoints)

    def table(self) -> str:
        """Markdown: FLOPs, tokens and share of the total per stage."""
        total = self.total
        lines = ["| stage | tokens | FLOPs | share |", "|---|---:|---:|---:|"]
        for name, entry in self.to_dict()["stages"].items():
            share = f"{entry['flops'] / total:.1%}" if total > 0 else "-"
            lines.append(f"| {name} | {entry['tokens']:,} | {entry['flops']:.3e} | {share} |")
        lines.append(f"| **total** | {sum(e.tokens for e in self.stages.values()):,} | {total:.3e} | |")
        return "\n".join(lines)


# -- the trainer callback --------------------------------------------------------------------------
_RL_STAGES = ("rl", "grpo")


class ComputeCallback(TrainerCallback):
    """Records a trainer's FLOPs in ``output_dir/compute.json`` (and each checkpoint's), and logs them.

    - SFT (stage ``"sft"``): ``state.total_flos``, i.e. ``6 x N x tokens`` over every batch's ``input_ids``
      (padding included, as ``transformers`` counts); when that is 0 (a model without ``num_parameters``),
      ``6 x N x`` the tokens seen (``state.num_input_tokens_seen`` if ``include_num_input_tokens_seen`` is
      on, else TRL's logged ``num_tokens``). Tokens recorded: the tokens seen, or ``total_flos / 6N``.
    - GRPO (stage ``"rl"``): TRL adds every generation batch's prompt + completion tokens to
      ``state.num_input_tokens_seen`` (``T``, what it logs as ``num_tokens``). Rollouts are ``2 x N x T``;
      updates are ``state.total_flos`` if the trainer counts it (TRL 1.16's GRPO does not: its batches are
      prompts, not ``input_ids``), else ``6 x N x T x num_iterations``, plus ``2 x N x T`` for the reference
      model's forward pass when ``beta != 0``. The old-policy forward pass TRL sometimes adds is not counted.
      With a ``rollout_func`` that returns ``env_mask``, TRL's ``T`` counts the model's tokens only, so
      environment tokens inside completions are not counted (``SECWebGRPOTrainer`` adds them to ``T`` itself).
      With dynamic sampling, refill batches are generated but only the assembled batch is trained on: updates
      count the tokens trained on instead of ``T``, which the trainer keeps in
      ``state.dynamic_sampling_trained_tokens`` (current at every checkpoint, unlike its logged
      ``dynamic_sampling/trained_tokens_seen``).

    Args:
        stage: ``"sft"`` or ``"rl"`` (alias ``"grpo"``); None infers it from the config (``GRPOConfig`` -> rl).
        num_parameters: N; default: the model's count without input embeddings (as ``total_flos`` uses).
        base: a ``compute.json`` (or a folder with one) whose stages this run builds on, merged once into
            ``output_dir/compute.json``; ``"auto"`` (default) uses the one in the folder the model was loaded
            from, if any (the SFT checkpoint an RL run starts from). None: no base.
    """

    def __init__(
        self, stage: str | None = None, *, num_parameters: int | None = None, base: str | os.PathLike | None = "auto"
    ):
        if stage is not None and stage not in ("sft", *_RL_STAGES):
            raise ValueError(f"ComputeCallback stage is 'sft' or 'rl' (alias 'grpo'), got {stage!r}.")
        self.stage, self.num_parameters, self.base = stage, num_parameters, base
        self.ledger: ComputeLedger | None = None
        self._recorded: dict[str, tuple[float, int]] = {}
        self._start = (0.0, 0)
        self._logged_tokens = 0
        self._n = 0

    # -- helpers -----------------------------------------------------------------------------------
    def _is_rl(self, args: Any) -> bool:
        if self.stage is not None:
            return self.stage in _RL_STAGES
        from trl import GRPOConfig

        return isinstance(args, GRPOConfig)

    def _base_file(self, model: Any) -> Path | None:
        if self.base is None:
            return None
        if self.base != "auto":
            file = _resolve(self.base)
            if not file.is_file():
                raise FileNotFoundError(f"ComputeCallback base {file} does not exist: pass a compute.json or None.")
            return file
        origin = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)
        if origin and os.path.isdir(origin) and (Path(origin) / COMPUTE_FILE).is_file():
            return Path(origin) / COMPUTE_FILE
        return None

    def _totals(self, args: Any, state: Any) -> dict[str, tuple[float, int]]:
        """This run's FLOPs and tokens per stage since training began (resumed runs: since the checkpoint)."""
        flos = max(0.0, float(state.total_flos or 0.0) - self._start[0])
        seen = max(0, int(state.num_input_tokens_seen or 0) - self._start[1])
        n = self._n
        if not self._is_rl(args):
            tokens = seen or self._logged_tokens
            if flos > 0:
                if not tokens and n:
                    tokens = round(flos / (6 * n))
                return {"sft": (flos, tokens)}
            return {"sft": (training_flops(n, tokens), tokens)}
        iterations = int(getattr(args, "num_iterations", 1) or 1)
        # dynamic sampling: the tokens of the batches trained on, this run (refill batches are not trained on)
        trained = int(getattr(state, "dynamic_sampling_trained_tokens", seen)) * iterations
        updates = flos if flos > 0 else training_flops(n, trained)
        if float(getattr(args, "beta", 0.0) or 0.0) != 0.0:
            updates += inference_flops(n, seen)
        return {"rollouts": (inference_flops(n, seen), seen), "updates": (updates, trained)}

    def _record(self, args: Any, state: Any) -> None:
        assert self.ledger is not None
        for stage, (flops, tokens) in self._totals(args, state).items():
            done_flops, done_tokens = self._recorded.get(stage, (0.0, 0))
            self.ledger.add(stage, max(0.0, flops - done_flops), max(0, tokens - done_tokens), self._n)
            self._recorded[stage] = (max(flops, done_flops), max(tokens, done_tokens))

    def _stage_names(self, args: Any) -> tuple[str, ...]:
        return ("rollouts", "updates") if self._is_rl(args) else ("sft",)

    # -- events ------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.num_parameters is not None:
            self._n = int(self.num_parameters)
        elif model is not None:
            self._n = count_parameters(model, exclude_embeddings=True)
        else:
            raise ValueError("ComputeCallback needs the model (or num_parameters=...) to count FLOPs.")
        self._start = (float(state.total_flos or 0.0), int(state.num_input_tokens_seen or 0))
        self._recorded, self._logged_tokens = {}, 0
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir) / COMPUTE_FILE
        self.ledger = ComputeLedger.load_or_empty(path)
        base = self._base_file(model)
        if base is not None and base.resolve() != path.resolve():
            self.ledger.merge(ComputeLedger.load(base), source=str(base.resolve()))
        for stage in self._stage_names(args):  # present from the start, so logged metrics always exist
            self.ledger.add(stage, 0.0, 0, self._n)
        self.ledger.save(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs is not None and isinstance(logs.get("num_tokens"), int | float):
            self._logged_tokens = int(logs["num_tokens"])  # TRL's SFT count of non-padding tokens trained
        if self.ledger is None or logs is None:
            return
        self._record(args, state)
        metrics = {f"compute/{stage}_flops": self.ledger.flops(stage) for stage in self.ledger.stages}
        metrics["compute/total_flops"] = self.ledger.total
        logs.update(metrics)
        # the Trainer appended this entry to log_history before calling on_log: keep trainer_state.json in step
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.ledger is None:
            return
        self._record(args, state)
        name = f"checkpoint-{state.global_step}"
        self.ledger.snapshot(name, state.global_step, "rl" if self._is_rl(args) else "sft")
        self.ledger.save(Path(args.output_dir) / COMPUTE_FILE)
        checkpoint = Path(args.output_dir) / name
        if checkpoint.is_dir():
            _write_json(checkpoint / COMPUTE_FILE, self.ledger.to_dict())

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.ledger is None:
            return
        self._record(args, state)
        file = self.ledger.save(Path(args.output_dir) / COMPUTE_FILE)
        logger.info("compute so far (%s):\n%s", file, self.ledger.table())
