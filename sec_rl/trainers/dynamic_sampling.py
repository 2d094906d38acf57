"""Dynamic sampling for GRPO: a group whose rewards are all equal has zero advantage and carries no gradient.

An optimizer step none of whose rows has a non-zero advantage is skipped outright (``skip_steps_without_signal``,
on by default when ``beta == 0``): its gradient is zero, yet Adam's momentum would still move every weight for
several steps after a noisy update, with nothing new to learn from. The step still counts (schedule, logging).

Two ways to give its slot of the generation batch a group that teaches something (``dynamic_sampling``):

- ``"filter"`` (DAPO, arXiv 2503.14476): after a generation batch is scored, every group slot whose rewards are
  all equal is refilled from a further generation batch (new prompts, drawn by the curriculum), until every slot
  holds an informative group or ``dynamic_sampling_max_batches`` batches were generated; a slot still
  uninformative then keeps its first group (zero advantage: it trains nothing).
- ``"replace"`` (POLARIS): an uninformative slot takes the latest informative group generated for that slot in an
  earlier batch, if there is one, used once; no extra generation. Those rollouts come from an older policy.

TRL's batch shapes stay as they are: a slot is a group's position in the generation batch, and each process keeps
the rows it holds of every candidate batch, so no tensor crosses processes. Every generated batch also updates
the curriculum (it is data about the tasks). ``dynamic_sampling/*`` metrics count the batches generated, the
extra rollouts, the slots filled and the tokens trained on (``trained_tokens_seen``). The compute ledger counts
updates over the tokens trained on, rollouts over every generated token: it reads the running total from the
trainer state's ``dynamic_sampling_trained_tokens`` (set after every generation batch, so that a checkpoint or
the end of training between two logs counts every batch; not saved with the state: a count of this run).

The unit that is repeated is :meth:`DynamicSamplingMixin._generate_batch` (draw, generate and score one batch);
a trainer that must act on every generation batch (the web trainer) overrides it, and
:meth:`~DynamicSamplingMixin._batch_informative` if its advantages are not TRL's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

#: Dynamic-sampling modes, each with its meaning (help text and errors use it).
DYNAMIC_SAMPLING_MODES: dict[str, str] = {
    "none": "train on every group as generated (TRL's behaviour)",
    "filter": "refill uninformative groups from further generation batches (DAPO), at most "
    "dynamic_sampling_max_batches batches per step",
    "replace": "swap uninformative groups for informative ones kept from earlier batches (POLARIS)",
}


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """One flag per group: True when its finite rewards are not all equal (at least two of them differ)."""
    groups = rewards.view(-1, group_size).float()
    finite = torch.isfinite(groups)
    high = torch.where(finite, groups, torch.full_like(groups, -torch.inf)).amax(dim=1)
    low = torch.where(finite, groups, torch.full_like(groups, torch.inf)).amin(dim=1)
    return (finite.sum(dim=1) >= 2) & (high - low > 1e-9)


def assemble(batches: Sequence[dict[str, Any]], source: Sequence[int], pad_token_id: int) -> dict[str, Any]:
    """Row ``i`` of the result is row ``i`` of ``batches[source[i]]``, for every per-row tensor of TRL's batch.

    The candidates were padded separately: 2-D tensors are padded to the widest, on the left for prompt tensors
    (TRL left-pads prompts) and on the right for the rest, with ``pad_token_id`` for token ids and 0 otherwise
    (their masks are 0 there). Scalars are left to the caller.
    """
    rows = len(source)
    picked = torch.tensor(source)
    out: dict[str, Any] = {}
    for key, first in batches[0].items():
        if not isinstance(first, torch.Tensor) or first.ndim == 0:
            continue
        if first.shape[0] != rows:
            raise NotImplementedError(
                f"dynamic sampling cannot assemble {key!r} (first dimension {first.shape[0]}, not one per row): "
                "batches with images are not supported. Set dynamic_sampling='none'."
            )
        candidates = [b[key] for b in batches]
        if first.ndim == 2:
            width = max(c.shape[1] for c in candidates)
            value = pad_token_id if key.endswith("_ids") else 0
            left = key.startswith("prompt")
            candidates = [_pad(c, width, value, left) for c in candidates]
        stacked = torch.stack(candidates)  # (batches, rows, ...)
        out[key] = stacked[picked.to(stacked.device), torch.arange(rows, device=stacked.device)]
    return out


def _pad(tensor: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    missing = width - tensor.shape[1]
    if missing == 0:
        return tensor
    filler = torch.full((tensor.shape[0], missing), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([filler, tensor] if left else [tensor, filler], dim=1)


class DynamicSamplingMixin:
    """Dynamic sampling for a ``GRPOTrainer`` whose generation batches are drawn late (``GRPOCurriculumMixin``).

    Put it before ``GRPOCurriculumMixin`` among the bases, so that each extra generation batch is drawn and
    learnt from by the curriculum like any other. Reads ``dynamic_sampling`` and ``dynamic_sampling_max_batches``
    from ``args``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self._replacement: dict[str, Any] | None = None  # "replace": the latest informative group of each slot
        self._replacement_ready: torch.Tensor | None = None  # and whether each slot holds an unused one
        self._step_has_signal = False  # any row of the optimizer step so far with a non-zero advantage
        self.steps_skipped = 0
        self.generation_batches = 0  # training generation batches generated, refills included
        self.trained_tokens = 0  # prompt + completion tokens of the batches trained on, every process (this run)
        super().__init__(*args, **kwargs)
        if getattr(self.args, "skip_steps_without_signal", False) and self.beta == 0.0:
            self.add_callback(_SkipStepsWithoutSignal(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model.training:
            self._step_has_signal |= bool((inputs["advantages"] != 0).any())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    @property
    def _dynamic_sampling(self) -> str:
        return getattr(self.args, "dynamic_sampling", "none")

    def _generate_and_score_completions(self, inputs):
        if self.model.training:
            self.generation_batches += 1
        if self._dynamic_sampling == "none" or not self.model.training:
            return self._generate_batch(inputs)
        batches = [self._generate_batch(inputs)]
        flags = [self._batch_informative(batches[0])]
        if self._dynamic_sampling == "filter":
            while len(batches) < self.args.dynamic_sampling_max_batches and not self._slots(flags).all():
                self.generation_batches += 1
                batches.append(self._generate_batch(inputs))
                flags.append(self._batch_informative(batches[-1]))
            slot_source = self._first_informative(flags)
            output = self._assemble_trained(batches, slot_source)
            filled = slot_source > 0  # slots whose group came from a refill batch
        else:
            output, filled = self._replace(batches[0], flags[0])
        self._log_dynamic_sampling(len(batches), flags, filled, output)
        return output

    def _generate_batch(self, inputs):
        """One generation batch, drawn (by the curriculum, late), generated and scored: what dynamic sampling
        repeats. ``inputs`` are the data loader's rows; each call draws its own."""
        return super()._generate_and_score_completions(inputs)

    # -- the parts -------------------------------------------------------------------------------------
    def _batch_informative(self, output: dict[str, Any]) -> torch.Tensor:
        """Which groups of the batch just scored (``output``) are informative, from the rewards gathered from
        every process."""
        return informative_groups(self._gathered_rewards(), self.num_generations)

    @staticmethod
    def _slots(flags: list[torch.Tensor]) -> torch.Tensor:
        """Slots filled by an informative group in any batch so far."""
        return torch.stack(flags).any(dim=0)

    @staticmethod
    def _first_informative(flags: list[torch.Tensor]) -> torch.Tensor:
        """For each slot, the first batch whose group there is informative (0 when none is)."""
        stacked = torch.stack(flags).int()  # (batches, slots)
        first = stacked.argmax(dim=0)  # first maximum: the first informative batch, or 0 when all are 0
        return torch.where(stacked.any(dim=0), first, torch.zeros_like(first))

    def _local_slots(self, rows: int) -> torch.Tensor:
        """The group slot of each of this process's rows (process ``r`` holds the ``r``-th contiguous slice)."""
        start = self.accelerator.process_index * rows
        return torch.arange(start, start + rows) // self.num_generations

    def _assemble(self, batches: list[dict[str, Any]], slot_source: torch.Tensor) -> dict[str, Any]:
        """This process's rows of each slot taken from batch ``slot_source[slot]``; scalars from the first batch."""
        rows = batches[0]["prompt_ids"].shape[0]
        source = slot_source.cpu()[self._local_slots(rows)].tolist()
        return {**batches[0], **assemble(batches, source, self._tokenizer.pad_token_id)}

    def _assemble_trained(self, batches: list[dict[str, Any]], slot_source: torch.Tensor) -> dict[str, Any]:
        """:meth:`_assemble` for the batch trained on, its ``num_items_in_batch`` recounted as TRL counts it."""
        output = self._assemble(batches, slot_source)
        loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return output

    def _replace(self, batch: dict[str, Any], flags: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
        """POLARIS: uninformative slots take their slot's kept informative group; informative groups are kept."""
        kept = batch if self._replacement is None else self._replacement
        ready = torch.zeros_like(flags) if self._replacement_ready is None else self._replacement_ready
        use = ~flags & ready.to(flags.device)
        output = self._assemble_trained([batch, kept], use.long())
        # Keep this batch's informative groups for later batches (no count needed); a kept group is used once.
        self._replacement = self._assemble([kept, batch], flags.long())
        self._replacement_ready = (ready.to(flags.device) & ~use) | flags
        return output, use

    def _log_dynamic_sampling(
        self, generated: int, flags: list[torch.Tensor], filled: torch.Tensor, output: dict[str, Any]
    ) -> None:
        slots = flags[0].numel()
        informative = (self._slots(flags) if self._dynamic_sampling == "filter" else flags[0] | filled).float()
        tokens = output["prompt_mask"].sum() + output["completion_mask"].sum()
        self.trained_tokens += int(self.accelerator.gather(tokens.reshape(1)).sum().item())
        self.state.dynamic_sampling_trained_tokens = self.trained_tokens  # what ComputeCallback counts
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/trained_tokens_seen"] = [float(self.trained_tokens)]  # a running total
        metrics["dynamic_sampling/generation_batches"].append(float(generated))
        metrics["dynamic_sampling/extra_rollouts"].append(float((generated - 1) * slots * self.num_generations))
        metrics["dynamic_sampling/informative_before"].append(flags[0].float().mean().item())
        metrics["dynamic_sampling/informative_after"].append(informative.mean().item())
        metrics["dynamic_sampling/slots_filled"].append(float(filled.sum().item()))


class _SkipStepsWithoutSignal(TrainerCallback):
    """Drops the gradients of an optimizer step in which no process trained on a non-zero advantage.

    With every ``grad`` None, torch's optimizers leave each weight and its moments untouched (Adam's momentum
    would otherwise keep moving the weights). The decision is gathered, so every process skips or none does.
    """

    def __init__(self, trainer: DynamicSamplingMixin):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        trainer = self.trainer
        signal = torch.tensor([float(trainer._step_has_signal)], device=trainer.accelerator.device)
        trainer._step_has_signal = False
        if trainer.accelerator.gather(signal).sum().item() > 0:
            return
        for parameter in trainer.model.parameters():
            parameter.grad = None
        trainer.steps_skipped += 1
        trainer._metrics["train"]["steps_skipped_without_signal"].append(float(trainer.steps_skipped))
