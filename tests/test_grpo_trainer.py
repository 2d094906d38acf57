"""SECGRPOTrainer end to end on a tiny model: drop-in use, logging, checkpoints, resume, 2 processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from grpo_run import SUCCESS_PATTERN, build_trainer, make_reward
from helpers.runs import record_draws, run_two_processes

from sec_rl import SECGRPOConfig, SECGRPOTrainer
from sec_rl.curriculum import SelfEvolvingCurriculum
from sec_rl.tasks.arithmetic import make_arithmetic_dataset
from sec_rl.trainers.mixin import CURRICULUM_STATE_NAME


def read_calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_abs_advantage(level: str) -> float:
    """Mean |r - group mean| of the fixed reward pattern, the bandit's reward for that level."""
    r = np.array(SUCCESS_PATTERN[level], dtype=float)
    return float(np.abs(r - r.mean()).mean())


def test_drop_in_trains_logs_and_checkpoints(tiny_model_dir, tmp_path):
    log = tmp_path / "calls.jsonl"
    trainer = build_trainer(tiny_model_dir, str(tmp_path / "out"), max_steps=4, log_path=str(log))
    trainer.train()

    # The bandit learned from exactly the rollouts it was given: replay them through a fresh SEC.
    calls = read_calls(log)
    assert len(calls) == 4 and all(len(c) == 8 for c in calls)
    replay = SelfEvolvingCurriculum(["1", "2", "3"], alpha=0.5, temperature=0.3)
    for levels in calls:
        rewards = [SUCCESS_PATTERN[level][i % 4] for i, level in enumerate(levels)]
        groups = np.array(rewards, dtype=float).reshape(-1, 4)
        advantages = (groups - groups.mean(axis=1, keepdims=True)).ravel()
        replay.update(levels, advantages, rewards)
    np.testing.assert_allclose(trainer.curriculum.q_values, replay.q_values, atol=1e-6)
    assert trainer.curriculum.num_updates == 4
    # Level 1 is always solved and level 3 has the same |A| as 2 only in half the cases: check the formula's inputs.
    assert expected_abs_advantage("1") == 0.0 and expected_abs_advantage("2") == 0.5

    # Every group holds one prompt: the sampler's structure survives TRL's batching.
    for levels in calls:
        assert all(len(set(levels[i : i + 4])) == 1 for i in range(0, 8, 4))

    logged = [e for e in trainer.state.log_history if "curriculum/prob/1" in e]
    assert len(logged) == 4
    for entry in logged:
        total = sum(entry[f"curriculum/prob/{lvl}"] for lvl in "123")
        assert total == pytest.approx(1.0)
        assert {"curriculum/value/1", "curriculum/count/1"} <= entry.keys()

    out = tmp_path / "out"
    state = json.loads((out / "checkpoint-4" / CURRICULUM_STATE_NAME).read_text())
    assert state["curriculum"]["q_values"] == pytest.approx(trainer.curriculum.q_values.tolist())
    assert (out / "curriculum_probabilities.png").stat().st_size > 0
    history = json.loads((out / "curriculum_history.json").read_text())
    assert history["steps"] == [1, 2, 3, 4]


@pytest.mark.parametrize("ignore_data_skip", [False, True])
def test_resume_draws_the_same_categories(tiny_model_dir, tmp_path, ignore_data_skip):
    """The rows are drawn at generation, not by the data loader: where the loader restarts does not matter."""
    full_log, resumed_log = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    build_trainer(tiny_model_dir, str(tmp_path / "full"), max_steps=8, log_path=str(full_log)).train()

    # Same run, stopped at the step-4 checkpoint (a fresh trainer per leg, as after a crash).
    partial = tmp_path / "partial"
    build_trainer(tiny_model_dir, str(partial), max_steps=8, log_path=None, save_steps=4).train()
    resumed = build_trainer(
        tiny_model_dir, str(partial), max_steps=8, log_path=str(resumed_log), ignore_data_skip=ignore_data_skip
    )
    resumed.train(resume_from_checkpoint=str(partial / "checkpoint-4"))

    full, after = read_calls(full_log), read_calls(resumed_log)
    assert len(full) == 8 and len(after) == 4
    assert after == full[4:]


def test_two_processes_share_one_stream(tiny_model_dir, tmp_path):
    out = tmp_path / "ddp"
    reports = run_two_processes("grpo_run.py", tiny_model_dir, out, max_steps=4)
    assert reports[0]["curriculum"] == reports[1]["curriculum"]
    assert reports[0]["sampler"] == reports[1]["sampler"]
    assert reports[0]["curriculum"]["num_updates"] == 4

    # Each rank scored its own contiguous half of every generation batch, groups whole: TRL's layout, which its
    # advantage code slices by process (a change there breaks the hand computation below).
    calls = [read_calls(out / f"rewards_rank{r}.jsonl") for r in (0, 1)]
    assert len(calls[0]) == len(calls[1]) == 4
    for step in range(4):
        for rank in (0, 1):
            levels, advantages = calls[rank][step], reports[rank]["advantages"][step]
            assert len(levels) == 4 and len(set(levels)) == 1  # one group of 4 per rank
            rewards = np.array(SUCCESS_PATTERN[levels[0]], dtype=float)
            np.testing.assert_allclose(advantages, rewards - rewards.mean(), atol=1e-6)
    assert reports[0]["draws"] == reports[1]["draws"] == [0, 1, 2, 3]  # updates seen at each draw


@pytest.mark.parametrize(
    ("grad_accum", "steps_per_generation", "num_iterations", "workers"),
    [(1, 1, 1, 0), (2, 2, 1, 0), (4, 4, 1, 0), (2, 4, 1, 0), (2, 2, 2, 0), (4, 2, 1, 0), (1, 1, 1, 2)],
)
def test_each_draw_sees_every_update_before_it(
    tiny_model_dir, tmp_path, grad_accum, steps_per_generation, num_iterations, workers
):
    """Whatever the layout and the loader's prefetching, generation batch k is drawn after k updates."""
    generations = 4
    max_steps = generations * steps_per_generation * num_iterations // grad_accum
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=max_steps, gradient_accumulation_steps=grad_accum,
        steps_per_generation=steps_per_generation, num_iterations=num_iterations, dataloader_num_workers=workers,
        per_device_train_batch_size=4, save_strategy="no",
    )  # fmt: skip
    draws = record_draws(trainer)
    trainer.train()
    assert [seen for seen, _ in draws] == list(range(generations))
    assert trainer.curriculum.num_updates == generations


def test_trl_aggregates_rewards_as_the_curriculum_reads_them(tiny_model_dir, tmp_path):
    """Weighted sum over reward functions, NaN where none scored: TRL's logged mean reward must agree."""
    log = tmp_path / "calls.jsonl"
    reference = build_trainer(tiny_model_dir, str(tmp_path / "ref"), max_steps=1)

    def half_scored(completions, **kwargs):  # scores only the first two rows of each group
        return [0.25 if i % 4 < 2 else None for i in range(len(completions))]

    args = reference.args
    args.reward_weights = [2.0, 3.0]
    trainer = SECGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[make_reward(str(log)), half_scored], args=args,
        train_dataset=reference.train_dataset,
    )  # fmt: skip
    captured = []
    signal = trainer._curriculum_signal
    trainer._curriculum_signal = lambda output: captured.append(signal(output)) or captured[-1]
    trainer.train()
    levels = read_calls(log)[0]
    expected = [2.0 * SUCCESS_PATTERN[lvl][i % 4] + (0.75 if i % 4 < 2 else 0.0) for i, lvl in enumerate(levels)]
    _, rewards = captured[0]
    np.testing.assert_allclose(rewards.tolist(), expected, atol=1e-6)
    logged = next(e["reward"] for e in trainer.state.log_history if "reward" in e)
    assert logged == pytest.approx(float(np.mean(expected)), abs=1e-5)


def test_bad_input_fails_early(tiny_model_dir, tmp_path):
    dataset = Dataset.from_dict({"prompt": ["1+1="] * 4, "level": ["a", "a", "b", "b"]})

    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    def make(**overrides):
        settings = dict(output_dir=str(tmp_path), curriculum_column="difficulty", use_cpu=True, bf16=False,
                        report_to="none", per_device_train_batch_size=4, num_generations=2)  # fmt: skip
        settings.update(overrides)
        return SECGRPOConfig(**settings)

    with pytest.raises(ValueError, match=r"curriculum_column \['difficulty'\] not in .*\['prompt', 'level'\]"):
        SECGRPOTrainer(model=tiny_model_dir, reward_funcs=reward, args=make(), train_dataset=dataset)
    with pytest.raises(ValueError, match=r"unknown curriculum 'bandit': choose one of .*'sec'"):
        make(curriculum="bandit")
    with pytest.raises(ValueError, match=r"temperature=0\.0 is out of range"):
        make(curriculum_temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha=1\.5 is out of range"):
        make(curriculum_alpha=1.5)
    with pytest.raises(ValueError, match=r"needs `curriculum_column`"):
        make(curriculum_column=None)
    with pytest.raises(ValueError, match=r"categories \['c'\] have no rows"):
        SECGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=reward,
            args=make(curriculum_column="level", curriculum_categories=["a", "b", "c"]),
            train_dataset=dataset,
        )
    with pytest.raises(ValueError, match=r"map-style `datasets.Dataset`"):
        SECGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=reward,
            args=make(curriculum_column="level", max_steps=1),
            train_dataset=dataset.to_iterable_dataset(),
        )


@pytest.mark.parametrize("signal", ["advantages", "raw_advantages"])
def test_signal_choice_under_group_scaling(tiny_model_dir, tmp_path, signal):
    """With scale_rewards='group', 'advantages' sees TRL's std-normalised values, 'raw_advantages' r - mean."""
    log = tmp_path / "calls.jsonl"
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=2, log_path=str(log), scale_rewards="group", curriculum_signal=signal
    )
    trainer.train()
    replay = SelfEvolvingCurriculum(["1", "2", "3"], alpha=0.5, temperature=0.3)
    for levels in read_calls(log):
        groups = np.array([SUCCESS_PATTERN[lvl][i % 4] for i, lvl in enumerate(levels)], dtype=float).reshape(-1, 4)
        advantages = groups - groups.mean(axis=1, keepdims=True)
        if signal == "advantages":  # TRL: unbiased std per group, plus 1e-4
            advantages = advantages / (groups.std(axis=1, ddof=1, keepdims=True) + 1e-4)
        replay.update(levels, advantages.ravel(), groups.ravel())
    np.testing.assert_allclose(trainer.curriculum.q_values, replay.q_values, rtol=1e-5, atol=1e-6)


def test_mixin_on_a_users_own_trainer_with_a_custom_strategy(tiny_model_dir, tmp_path):
    """A user's GRPOTrainer subclass gains the curriculum from the mixin; a ready strategy can be passed in."""
    from trl import GRPOTrainer

    from sec_rl import GRPOCurriculumMixin
    from sec_rl.curriculum import Curriculum

    class AlwaysHardest(Curriculum):
        name = "always_hardest"

        def probabilities(self):
            return {c: float(c == self.categories[-1]) for c in self.categories}

        def _update(self, advantages, rewards):
            pass

    class MyGRPOTrainer(GRPOTrainer):
        """Stands for a user's own subclass with its own tweaks."""

        def _generate_and_score_completions(self, inputs):
            self.seen_batches = getattr(self, "seen_batches", 0) + 1
            return super()._generate_and_score_completions(inputs)

    class MyCurriculumTrainer(GRPOCurriculumMixin, MyGRPOTrainer):
        pass

    log = tmp_path / "calls.jsonl"
    reference = build_trainer(tiny_model_dir, str(tmp_path / "ref"), max_steps=2)
    trainer = MyCurriculumTrainer(
        model=tiny_model_dir,
        reward_funcs=make_reward(str(log)),
        args=reference.args,
        train_dataset=reference.train_dataset,
        curriculum=AlwaysHardest(["1", "2", "3"]),
    )
    trainer.train()
    assert trainer.seen_batches == 2 and trainer.curriculum.num_updates == 2
    assert all(level == "3" for call in read_calls(log) for level in call)


def test_joint_arms_from_two_columns(tiny_model_dir, tmp_path):
    """Several category columns make joint arms 'difficulty-domain', as in the paper's multi-domain run."""
    dataset = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=4).map(
        lambda row, i: {"domain": "even" if i % 2 == 0 else "odd"}, with_indices=True
    )
    log = tmp_path / "calls.jsonl"
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), 1, str(log), dataset=dataset, curriculum_column=["difficulty", "domain"]
    )
    assert trainer.curriculum.categories == ["1-even", "1-odd", "2-even", "2-odd", "3-even", "3-odd"]
    trainer.train()
    assert trainer.curriculum.counts.sum() == 8


def test_a_plain_grpo_config_trains_without_a_curriculum(tiny_model_dir, tmp_path):
    """Swapping the import alone keeps TRL's behaviour; a strategy without curriculum fields is refused."""
    from trl import GRPOConfig

    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=4,
        max_steps=1, use_cpu=True, bf16=False, report_to="none", gradient_checkpointing=False, save_strategy="no",
    )  # fmt: skip
    dataset = make_arithmetic_dataset(levels=(1, 2), n_per_level=4, seed=0)
    trainer = SECGRPOTrainer(model=tiny_model_dir, reward_funcs=make_reward(None), args=args, train_dataset=dataset)
    assert trainer.curriculum is None
    trainer.train()
    assert trainer.state.global_step == 1
    with pytest.raises(TypeError, match=r"a curriculum was passed but `args` is a GRPOConfig.*use SECGRPOConfig"):
        SECGRPOTrainer(
            model=tiny_model_dir, reward_funcs=make_reward(None), args=args, train_dataset=dataset,
            curriculum=SelfEvolvingCurriculum(["1", "2"]),
        )  # fmt: skip


@pytest.mark.parametrize(("curriculum", "pools"), [("difficulty_pools", None), ("sec", True)])
def test_difficulty_pools_learn_each_problems_group_success(tiny_model_dir, tmp_path, curriculum, pools):
    """The sampler records each drawn prompt's group success; the pools then place the problem by it."""
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=3, curriculum=curriculum, curriculum_pools=pools,
        curriculum_temperature=None, save_strategy="no",
    )  # fmt: skip
    draws = record_draws(trainer)
    trainer.train()
    rate = {level: float(np.mean(pattern)) for level, pattern in SUCCESS_PATTERN.items()}
    success = trainer.curriculum_sampler.difficulty.success
    drawn = {i for _, indices in draws for i in indices}
    for i in drawn:
        assert success[i] == pytest.approx(rate[trainer.train_dataset[i]["difficulty"]])
    assert np.isnan(np.delete(success, sorted(drawn))).all()  # nothing recorded for problems never drawn
    if curriculum == "difficulty_pools":
        assert trainer.curriculum.categories == ["easy", "normal", "hard"]
        logged = trainer.state.log_history[-2]
        assert {"curriculum/prob/easy", "curriculum/prob/hard"} <= logged.keys()


def test_pool_settings_are_checked(tmp_path):
    base = dict(output_dir=str(tmp_path), curriculum_column="difficulty", use_cpu=True, bf16=False)
    with pytest.raises(ValueError, match=r"already draws by difficulty pools, so curriculum_pools cannot compose"):
        SECGRPOConfig(**base, curriculum="difficulty_pools", curriculum_pools=True)
    with pytest.raises(ValueError, match=r"curriculum_pools=\{'hardest': 0.1\}.*Use the fields hard, normal"):
        SECGRPOConfig(**base, curriculum_pools={"hardest": 0.1})
    with pytest.raises(ValueError, match=r"curriculum_pools is not valid JSON"):
        SECGRPOConfig(**base, curriculum_pools="{hard: 0.1}")
    assert SECGRPOConfig(**base, curriculum_pools='{"hard": 0.1}').curriculum_pools == {"hard": 0.1}
    SECGRPOConfig(**{**base, "curriculum_column": None}, curriculum="difficulty_pools")  # no column needed
    # From the command line and YAML (TrlParser), as a JSON string or true.
    from trl import TrlParser

    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--curriculum_column", "difficulty"]
    for value, expected in (('{"hard": 0.1}', {"hard": 0.1}), ("true", {})):
        (parsed,) = TrlParser([SECGRPOConfig]).parse_args_and_config([*argv, "--curriculum_pools", value])
        assert parsed.curriculum_pools == expected


def test_a_strategy_of_your_own_by_import_path(tiny_model_dir, tmp_path, monkeypatch):
    """`curriculum="module:Class"` (as YAML and the CLI give it) trains, checkpoints and resumes like a built-in."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples" / "custom_strategy"))
    trainer = build_trainer(
        tiny_model_dir, str(tmp_path), max_steps=4, curriculum="thompson:ThompsonSampling",
        curriculum_temperature=None, curriculum_kwargs='{"target": 0.5}',
    )  # fmt: skip
    trainer.train()
    strategy = trainer.curriculum
    assert type(strategy).__name__ == "ThompsonSampling" and strategy.num_updates == 4
    assert strategy.successes.sum() + strategy.failures.sum() == 3 + 3 + 4 * 8  # priors + every rollout
    saved = json.loads((tmp_path / "checkpoint-4" / CURRICULUM_STATE_NAME).read_text())
    assert saved["curriculum"]["successes"] == pytest.approx(strategy.successes.tolist())
    with pytest.raises(ValueError, match=r"module 'no_such_pkg' cannot be imported.*'my_pkg.module:MyCurriculum'"):
        SECGRPOConfig(output_dir=str(tmp_path), curriculum="no_such_pkg:X", curriculum_column="c", use_cpu=True)
    with pytest.raises(ValueError, match=r"has no Curriculum subclass named 'Nope'"):
        SECGRPOConfig(output_dir=str(tmp_path), curriculum="thompson:Nope", curriculum_column="c", use_cpu=True)
