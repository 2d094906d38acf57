"""Dynamic sampling in SECGRPOTrainer: informative groups, batch assembly, filter (DAPO) and replace (POLARIS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from grpo_run import SUCCESS_PATTERN, build_trainer

from sec_rl import SECGRPOConfig
from sec_rl.trainers.dynamic_sampling import assemble, informative_groups


def test_informative_groups_by_hand():
    nan = float("nan")
    rewards = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 0.5, nan, nan, nan, 0.5, 0.5, nan, 0.2])
    assert informative_groups(rewards, 4).tolist() == [False, True, False, True]


def test_assemble_pads_prompts_left_and_completions_right():
    first = {
        "prompt_ids": torch.tensor([[5, 6], [7, 8]]),
        "prompt_mask": torch.tensor([[1, 1], [1, 1]]),
        "completion_ids": torch.tensor([[1], [2]]),
        "advantages": torch.tensor([0.5, -0.5]),
        "num_items_in_batch": torch.tensor(2),
    }
    second = {
        "prompt_ids": torch.tensor([[9, 9, 9], [3, 4, 5]]),
        "prompt_mask": torch.tensor([[1, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[4, 4], [6, 6]]),
        "advantages": torch.tensor([1.0, 2.0]),
        "num_items_in_batch": torch.tensor(4),
    }
    out = assemble([first, second], source=[0, 1], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 5, 6], [3, 4, 5]]
    assert out["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert out["completion_ids"].tolist() == [[1, 0], [6, 6]]
    assert out["advantages"].tolist() == [0.5, 2.0]
    assert "num_items_in_batch" not in out  # scalars are the caller's


class Probe:
    """Records what each generation batch's groups were and what TRL trained on."""

    def __init__(self, trainer):
        self.levels, self.trained = [], []
        draw = trainer._draw_generation_batch

        def recording_draw(inputs):
            rows = draw(inputs)
            if rows is not inputs:
                self.levels.append([row["difficulty"] for row in rows])
            return rows

        trainer._draw_generation_batch = recording_draw
        outer = trainer._generate_and_score_completions

        def recording(inputs):
            output = outer(inputs)
            self.trained.append(output)
            return output

        trainer._generate_and_score_completions = recording


def group_informative(levels: list[str]) -> list[bool]:
    return [len(set(SUCCESS_PATTERN[level])) > 1 for level in levels[::4]]


@pytest.mark.parametrize("curriculum", ["random", "none"])
def test_filter_refills_uninformative_groups(tiny_model_dir, tmp_path, curriculum):
    """Level 1 is always solved: its groups are refilled from further batches, up to the bound."""
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=3, dynamic_sampling="filter", dynamic_sampling_max_batches=3,
        curriculum=curriculum, curriculum_temperature=None, save_strategy="no", per_device_train_batch_size=8,
    )  # fmt: skip
    probe = Probe(trainer)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "dynamic_sampling/generation_batches" in e]
    assert len(logged) == 3
    batches = iter(probe.levels)
    for entry, output in zip(logged, probe.trained):
        generated = [next(batches) for _ in range(int(entry["dynamic_sampling/generation_batches"]))]
        flags = np.array([group_informative(levels) for levels in generated])
        # Refills stop as soon as every slot is informative, or at the bound.
        assert flags.any(axis=0).all() or len(generated) == 3
        assert len(generated) == 1 or not flags[:-1].any(axis=0).all()
        # Each slot trains on the first informative group generated for it (else the first batch's group).
        source = np.where(flags.any(axis=0), flags.argmax(axis=0), 0)
        expected = [generated[source[slot]][4 * slot] for slot in range(2)]
        rewards = [SUCCESS_PATTERN[level] for level in expected]
        trained = output["advantages"].view(2, 4).tolist()
        for slot in range(2):  # scale_rewards="none": r - group mean
            r = np.array(rewards[slot], dtype=float)
            assert trained[slot] == pytest.approx((r - r.mean()).tolist())
        assert entry["dynamic_sampling/extra_rollouts"] == (len(generated) - 1) * 8
        assert entry["dynamic_sampling/informative_after"] == pytest.approx(flags.any(axis=0).mean())
        mask = output["completion_mask"]
        assert output["num_items_in_batch"].item() == mask.sum().item()
    if curriculum == "random":  # every generated batch is data for the curriculum
        assert trainer.curriculum.num_updates == len(probe.levels)


def test_replace_swaps_in_a_kept_informative_group(tiny_model_dir, tmp_path):
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=6, dynamic_sampling="replace", curriculum="random",
        curriculum_temperature=None, save_strategy="no", per_device_train_batch_size=8,
    )  # fmt: skip
    probe = Probe(trainer)
    trainer.train()
    assert len(probe.levels) == 6  # no extra generation
    kept: dict[int, str] = {}
    for levels, output in zip(probe.levels, probe.trained):
        trained = output["advantages"].view(2, 4).tolist()
        for slot in range(2):
            level = levels[4 * slot]
            if not group_informative([level])[0] and slot in kept:
                level = kept.pop(slot)  # used once
            elif group_informative([level])[0]:
                kept[slot] = level
            r = np.array(SUCCESS_PATTERN[level], dtype=float)
            assert trained[slot] == pytest.approx((r - r.mean()).tolist())


def test_bad_settings_are_named(tmp_path):
    base = dict(output_dir=str(tmp_path), curriculum="none", use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match=r"dynamic_sampling='dapo' is not supported: use one of \['none', 'filter'"):
        SECGRPOConfig(**base, dynamic_sampling="dapo")
    with pytest.raises(ValueError, match=r"dynamic_sampling_max_batches=0: at least the first generation batch"):
        SECGRPOConfig(**base, dynamic_sampling="filter", dynamic_sampling_max_batches=0)
    with pytest.raises(ValueError, match=r"at least 2 generations per prompt"):  # TRL's own check covers groups of 1
        SECGRPOConfig(**base, dynamic_sampling="filter", num_generations=1, per_device_train_batch_size=1)


@pytest.mark.parametrize("skip", [True, False])
def test_a_step_without_signal_does_not_move_the_weights(tiny_model_dir, tmp_path, skip):
    """Step 1 has signal; step 2's rewards are all equal: Adam's momentum would still move the weights."""
    from sec_rl import SECGRPOTrainer
    from sec_rl.tasks.arithmetic import make_arithmetic_dataset

    def first_step_only(completions, trainer_state, **kwargs):
        if trainer_state.global_step == 0:
            return [float(i % 2) for i in range(len(completions))]
        return [1.0] * len(completions)

    args = SECGRPOConfig(
        output_dir=str(tmp_path), curriculum="none", skip_steps_without_signal=skip, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=4, max_steps=2, learning_rate=1e-2, use_cpu=True, bf16=False,
        report_to="none", gradient_checkpointing=False, save_strategy="no", logging_steps=1,
    )  # fmt: skip
    dataset = make_arithmetic_dataset(levels=(1,), n_per_level=8, seed=0)
    trainer = SECGRPOTrainer(model=tiny_model_dir, reward_funcs=first_step_only, args=args, train_dataset=dataset)
    weights = []
    trainer.add_callback(type("Snap", (__import__("transformers").TrainerCallback,), {
        "on_step_end": lambda self, *a, **k: weights.append(
            torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
        )
    })())  # fmt: skip
    trainer.train()
    assert len(weights) == 2
    moved = not torch.equal(weights[0], weights[1])
    assert moved is not skip
    assert trainer.steps_skipped == (1 if skip else 0)
