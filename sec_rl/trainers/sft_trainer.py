"""``SECSFTTrainer``: TRL's ``SFTTrainer`` whose batches come from a curriculum scored by the training loss.

``SFTCurriculumMixin`` reuses :class:`~sec_rl.trainers.mixin.CurriculumMixin` (categories, strategy, sampler,
checkpoints, logging) and adds SFT's hooks, each overriding one narrow method and calling ``super()``:

- ``get_train_dataloader``: the training loader's collator also returns each row's arm (SFT's collator
  keeps only token columns, so the category would not reach the loss otherwise);
- ``compute_loss``: TRL computes and returns its loss unchanged; a forward hook reads the per-token
  log-probabilities that TRL's fused LM head already returns, giving each sequence's mean token loss at no
  extra forward pass. The losses are gathered from every process, and the strategy learns once per
  optimizer step, from exactly the batch the sampler drew for that step.

How the SFT signal reaches ``Curriculum.update(categories, advantages, rewards)``:

- ``advantages``: with ``curriculum_signal="loss"``, each sequence's mean token loss (``sec`` and ``dump``
  take mean |A| per category, so they favour the categories with the highest loss); with
  ``"loss_decrease"``, every sequence of a category carries the category's drop in mean loss since its
  previous batch (NaN on a category's first batch), so mean |A| is the magnitude of learning progress;
- ``rewards``: ``exp(-loss)``, the geometric mean probability of the sequence's trained tokens, in (0, 1]:
  ``target_success`` aims it at its target, ``learning_progress`` and SEC's ``objective="progress"`` follow
  its change; ``random``, ``ordered`` and ``reverse`` only count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import SFTTrainer

from sec_rl.curriculum import POOL_STRATEGIES, Curriculum, arm_key
from sec_rl.trainers.chat_templates import sft_training_template
from sec_rl.trainers.mixin import CurriculumMixin

#: Batch key carrying each row's arm index (into ``curriculum.categories``; -1 for an unknown category).
ARM_KEY = "curriculum_arm"

TEMPLATE_HELP = (
    "assistant_only_loss=True needs a chat template that marks the assistant's tokens with "
    "{% generation %}...{% endgeneration %}: transformers builds the loss mask from those markers. This tokenizer's "
    "template has none, and TRL has no training template for it (it swaps one in only for the families it knows, "
    "e.g. Qwen2.5/Qwen3, Llama 3, Gemma, Phi-3, DeepSeek). Fix: wrap each assistant message's content and its "
    "end-of-turn token in {% generation %}...{% endgeneration %} in tokenizer.chat_template (the ChatML template "
    "in sec_rl.models.tiny.CHAT_TEMPLATE is an example) and pass that tokenizer as `processing_class`; or set "
    "assistant_only_loss=False to train on every token, system prompts and observations included."
)


class _ArmCollator:
    """Runs the trainer's collator on the rows without their category columns and adds each row's arm index."""

    def __init__(self, collator: Callable, columns: Sequence[str], categories: Sequence[str]):
        self.collator = collator
        self.columns = list(columns)
        self.index = {c: i for i, c in enumerate(categories)}

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples or any(c not in examples[0] for c in self.columns):
            return self.collator(examples)
        arms = [self.index.get(arm_key(row[c] for c in self.columns), -1) for row in examples]
        batch = self.collator([{k: v for k, v in row.items() if k not in self.columns} for row in examples])
        batch[ARM_KEY] = torch.tensor(arms, dtype=torch.long)
        return batch


def sequence_losses(
    log_probs: torch.Tensor,
    label_mask: torch.Tensor,
    seq_idx: torch.Tensor | None = None,
    num_sequences: int | None = None,
) -> torch.Tensor:
    """Mean token loss ``-sum(log p) / n_tokens`` of each sequence; NaN for a sequence without trained tokens.

    ``log_probs`` and ``label_mask`` are TRL's fused-head outputs (zero / False on untrained positions). In
    padding-free batches all sequences share one row: ``seq_idx`` (the collator's, one entry per input token)
    says which sequence each position belongs to.
    """
    nll = -log_probs.detach().float()
    mask = label_mask.float()
    if seq_idx is None:
        total, count = nll.sum(dim=1), mask.sum(dim=1)
    else:
        if seq_idx.size(-1) == nll.size(-1) + 1:  # position t scores token t + 1
            seq_idx = seq_idx[..., 1:]
        seq = seq_idx.reshape(-1).long().to(nll.device)
        keep = seq < num_sequences  # pad_to_multiple_of adds padding "sequences" at the end
        total = nll.new_zeros(num_sequences).index_add_(0, seq[keep], nll.reshape(-1)[keep])
        count = nll.new_zeros(num_sequences).index_add_(0, seq[keep], mask.reshape(-1)[keep])
    losses = total / count.clamp(min=1)
    losses[count == 0] = torch.nan
    return losses


class SFTCurriculumMixin(CurriculumMixin):
    """Adds the curriculum to an ``SFTTrainer`` (or a subclass of it); see the module docstring."""

    def __init__(self, *args: Any, curriculum: Curriculum | None = None, **kwargs: Any):
        #: Gathered ``(arm index, sequence loss)`` of the current optimizer step's micro-batches.
        self._curriculum_batch: list[tuple[int, float]] = []
        #: Mean loss of each category in its latest batch: the reference of ``loss_decrease``.
        self._loss_reference: dict[str, float] = {}
        # assistant_only_loss left unset follows the data, and ChatML templates TRL does not know get generation
        # markers while TRL prepares the data (see chat_templates).
        with sft_training_template(args, kwargs) as (args, kwargs, training_template):
            try:
                super().__init__(*args, curriculum=curriculum, **kwargs)
            except ValueError as err:  # TRL's terse "not training-compatible" for templates it cannot patch
                if "{% generation %}" in str(err) and "not training-compatible" in str(err):
                    raise ValueError(TEMPLATE_HELP) from err
                raise
        if training_template is not None:
            self.chat_template = training_template  # where TRL keeps the training template of a family it knows

    # -- set-up ------------------------------------------------------------------------------------
    def _setup_curriculum(self, curriculum: Curriculum | None) -> None:
        args = self.args
        if (
            args.curriculum_pools is not None
            or getattr(curriculum, "arms_are_pools", False)
            or (curriculum is None and args.curriculum in POOL_STRATEGIES)
        ):
            raise ValueError(
                "difficulty pools move problems by their group success rate, which SFT on fixed traces does not "
                "have: use them with SECGRPOTrainer, and a category strategy (sec, ...) without curriculum_pools here."
            )
        if getattr(args, "packing", False):
            raise ValueError(
                f"packing=True with curriculum={args.curriculum!r}: a packed row mixes several categories and loses "
                "the category column, so the curriculum can neither choose nor score it. Set packing=False "
                "(padding_free=True saves most of the padding without mixing rows), or curriculum='none'."
            )
        if args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
            raise ValueError(
                f"train_sampling_strategy={args.train_sampling_strategy!r} with a curriculum: both choose the rows of "
                "each batch. Set train_sampling_strategy='random' (or 'sequential'), or curriculum='none'."
            )
        rows, chunk = len(self.train_dataset), self._curriculum_chunk_size()
        if rows < chunk:
            raise ValueError(
                f"the training set has {rows} rows after TRL's preparation but one optimizer step takes {chunk} "
                "(per_device_train_batch_size x processes x gradient_accumulation_steps): lower the batch or add rows."
            )
        super()._setup_curriculum(curriculum)

    def _curriculum_chunk_size(self) -> int:
        """Rows per optimizer step over all processes: the unit the curriculum draws and learns from."""
        return self._train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps

    def _planned_curriculum_updates(self, num_rows: int) -> int:
        # One update per optimizer step.
        if self.args.max_steps > 0:
            return self.args.max_steps
        return max(1, math.ceil(self.args.num_train_epochs * (num_rows // self._curriculum_chunk_size())))

    def _curriculum_shuffle(self) -> bool:
        return self.args.train_sampling_strategy != "sequential"

    def get_train_dataloader(self):
        if self.curriculum is None:
            return super().get_train_dataloader()
        collator = self.data_collator
        self._curriculum_collator = _ArmCollator(collator, self._curriculum_columns, self.curriculum.categories)
        self.data_collator = self._curriculum_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The loader read these batches ahead, before the previous step's update: each is replaced by one of the
        # same size drawn now, when the optimizer step that trains on it starts (the Trainer calls this then).
        if self.curriculum is not None:
            epoch_iterator = map(self._draw_batch_like, itertools.islice(epoch_iterator, num_batches))
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def _draw_batch_like(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A micro-batch of as many rows as ``batch``, drawn from the curriculum and collated like the loader's."""
        if ARM_KEY not in batch:
            raise RuntimeError(
                f"the training batch has no {ARM_KEY!r}: the category columns {self._curriculum_columns} did not "
                "reach the collator, so the curriculum cannot tell which row is which. Keep them in the dataset "
                "(the trainer adds them to the signature columns; a custom data pipeline must too), or set "
                "curriculum='none'."
            )
        local, _ = self._draw_rows(batch[ARM_KEY].numel())
        return self._curriculum_collator([self.train_dataset[i] for i in local])

    # -- the signal --------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        arms = inputs.pop(ARM_KEY, None)
        if self.curriculum is None or arms is None or not self.model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        captured: list[Any] = []

        def keep_fused_output(module, args, output):
            if not captured and getattr(output, "log_probs", None) is not None:
                captured.append(output)

        handle = model.register_forward_hook(keep_fused_output)
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(
                "the curriculum found no per-token log-probabilities in this step's forward pass (TRL's fused LM "
                "head returns them as `log_probs`): this trainer's compute_loss does not run TRL's SFT forward. Set "
                "curriculum='none', or compute the per-sequence losses in your override."
            )
        output = captured[0]
        seq_idx = inputs.get("seq_idx") if "cu_seq_lens_q" in inputs else None
        losses = sequence_losses(output.log_probs, output.label_mask, seq_idx, num_sequences=arms.numel())
        self._curriculum_batch.extend(gather_object(list(zip(arms.tolist(), losses.cpu().tolist()))))
        if self.accelerator.sync_gradients:  # the optimizer step's last micro-batch
            self._update_curriculum_from_losses()
        return result

    def _update_curriculum_from_losses(self) -> None:
        """Learn from the optimizer step's gathered sequence losses (the same list, in one order, on all ranks)."""
        batch, self._curriculum_batch = self._curriculum_batch, []
        batch = [(a, loss) for a, loss in batch if a >= 0]
        if not batch:
            return
        categories = [self.curriculum.categories[a] for a, _ in batch]
        losses = [loss for _, loss in batch]
        per_arm: dict[str, list[float]] = {}
        for category, loss in zip(categories, losses):
            if math.isfinite(loss):
                per_arm.setdefault(category, []).append(loss)
        mean_loss = {c: sum(v) / len(v) for c, v in per_arm.items()}
        metrics = {f"curriculum/loss/{c}": v for c, v in mean_loss.items()}
        if self.args.curriculum_signal == "loss_decrease":
            decrease = {c: self._loss_reference[c] - v for c, v in mean_loss.items() if c in self._loss_reference}
            advantages = [decrease.get(c, math.nan) for c in categories]
            metrics.update({f"curriculum/loss_decrease/{c}": v for c, v in decrease.items()})
            self._loss_reference.update(mean_loss)
        else:
            advantages = losses
        rewards = [math.exp(-loss) if math.isfinite(loss) else math.nan for loss in losses]
        self._apply_curriculum_update(categories, advantages, rewards, metrics)

    def _curriculum_signal_state(self) -> dict[str, Any]:
        return {"loss_reference": dict(self._loss_reference)} if self._loss_reference else {}

    def _load_curriculum_signal_state(self, state: dict[str, Any]) -> None:
        self._loss_reference = {str(c): float(v) for c, v in state.get("loss_reference", {}).items()}


class SECSFTTrainer(SFTCurriculumMixin, SFTTrainer):
    """Drop-in for ``trl.SFTTrainer``: same arguments, plus an optional ready ``curriculum`` strategy.

    Each optimizer step's batch draws its rows' categories from the curriculum named by ``args.curriculum``
    (a :class:`~sec_rl.SECSFTConfig`); the strategy then learns from the step's per-sequence losses
    (``args.curriculum_signal``), gathered from every process so that all processes keep the same strategy
    and draw the same batches. The strategy, sampler and signal state are saved in every checkpoint
    (``curriculum_state.json``) and restored by ``trainer.train(resume_from_checkpoint=...)``;
    ``curriculum/*`` metrics go to ``report_to``, and ``curriculum_probabilities.png`` to ``output_dir``.

    Example:
        ```python
        from sec_rl import SECSFTConfig, SECSFTTrainer

        args = SECSFTConfig(output_dir="out", curriculum="sec", curriculum_column="task")
        trainer = SECSFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=args, train_dataset=traces)
        trainer.train()  # traces: rows with "messages" (system, user, assistant, ...) and "task"
        ```
    """
