"""``SECGRPOTrainer``: TRL's ``GRPOTrainer`` whose batches come from a curriculum."""

from __future__ import annotations

from trl import GRPOTrainer

from sec_rl.trainers.dynamic_sampling import DynamicSamplingMixin
from sec_rl.trainers.mixin import GRPOCurriculumMixin


class SECGRPOTrainer(DynamicSamplingMixin, GRPOCurriculumMixin, GRPOTrainer):
    """Drop-in for ``trl.GRPOTrainer``: same arguments, plus an optional ready ``curriculum`` strategy.

    Each generation batch draws its prompts' categories from the curriculum named by
    ``args.curriculum``; after generation, the strategy learns from the batch's advantages, gathered
    from every process so that all processes keep the same strategy and draw the same batches.
    The strategy and sampler state are saved in every checkpoint (``curriculum_state.json``) and
    restored by ``trainer.train(resume_from_checkpoint=...)``; ``curriculum/*`` metrics go to
    ``report_to``, and ``curriculum_probabilities.png`` is written into ``output_dir``. With
    ``args.dynamic_sampling``, groups whose rewards are all equal are refilled or replaced (see
    :mod:`sec_rl.trainers.dynamic_sampling`).

    Example:
        ```python
        from sec_rl import SECGRPOConfig, SECGRPOTrainer

        args = SECGRPOConfig(output_dir="out", curriculum="sec", curriculum_column="difficulty")
        trainer = SECGRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=my_reward, args=args,
                                 train_dataset=dataset)  # dataset has a "difficulty" column
        trainer.train()
        ```
    """
