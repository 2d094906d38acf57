"""SECWebGRPOTrainer: real GRPO steps of a tiny model over multi-turn episodes, in both sample layouts.

The text-world tests run everywhere; the BrowserGym ones (marked ``browser``) need Chromium,
``browsergym-miniwob`` and ``miniwob``, and skip with the reason otherwise.

A random tiny model never solves a task, so every advantage would be zero and no weight would move.
Half the contexts of each turn are therefore answered by :class:`OracleActor` (which reads the page),
the other half by the model: episodes of the same goal then differ, as in any useful GRPO batch. The
completions are still trained on as the model's own (their logprobs are recomputed by TRL).
"""

from __future__ import annotations

import math

import numpy as np
import psutil
import pytest
import torch
from helpers.runs import browser_missing, run_two_processes
from helpers.web_model import SYSTEM, KillingActor, OracleActor, build_web_model

from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
from sec_rl.web.samples import compute_advantages
from sec_rl.web.tasks import goals_dataset

TASKS = ("click-button", "enter-text")


@pytest.fixture(scope="module")
def web_model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-web-model")
    build_web_model(output_dir=path)
    return str(path)


class ProbeTrainer(SECWebGRPOTrainer):
    """Keeps what TRL trained on: the batch dict of every generation batch."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.batches = [*getattr(self, "batches", []), {k: v for k, v in output.items()}]
        self.rows = [*getattr(self, "rows", []), self.web_last_rows]
        return output


def make_trainer(
    model_dir: str, output_dir: str, mode: str, reward_funcs=None, trainer_class=ProbeTrainer, **overrides
) -> ProbeTrainer:
    settings = dict(
        output_dir=output_dir,
        web_env="text",
        web_num_workers=4,
        web_max_turns=2,
        web_layout=mode,
        web_system_prompt=SYSTEM,
        web_history=2,
        curriculum_temperature=0.5,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=10,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        gradient_checkpointing=False,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    trainer = trainer_class(
        model=model_dir, args=SECWebGRPOConfig(**settings), train_dataset=goals_dataset(TASKS, range(3, 9)),
        reward_funcs=reward_funcs,
    )  # fmt: skip
    trainer.web_actor = OracleActor(trainer.processing_class, inner=trainer.web_actor, every=2)
    return trainer


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def check_trained(trainer: ProbeTrainer, before: dict[str, torch.Tensor]) -> None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == trainer.args.max_steps and all(math.isfinite(x) for x in losses)
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert changed, "no weight changed"
    assert trainer.curriculum.num_updates == trainer.args.max_steps
    assert trainer.curriculum.counts.sum() == trainer.args.max_steps * 4  # one count per row
    assert any(v > 0 for v in trainer.curriculum.q_values)
    assert trainer._web_pool is None  # closed at the end of training


def check_loss_is_hand_computed(trainer: ProbeTrainer) -> None:
    """TRL's loss of the last step, by hand from its batch, with n_i the tokens row i trains on (generated, not
    filtered; not the pages). One pass, so the ratio is 1: DAPO's loss (per_step's default) is
    -sum_i A_i * n_i / sum_i n_i; GRPO's (the episode layout's) is -mean_i A_i [n_i > 0], each episode once."""
    batch = trainer.batches[-1]
    trained = (batch["completion_mask"] * batch["tool_mask"]).sum(dim=1).float()
    if trainer.args.web_layout == "episode":
        assert trainer.args.loss_type == "grpo"
        expected = -(batch["advantages"] * (trained > 0)).mean()
    else:
        assert trainer.args.loss_type == "dapo"
        expected = -(batch["advantages"] * trained).sum() / trained.sum().clamp(min=1.0)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry][-1]
    assert trainer.args.num_iterations == 1 and trainer.args.beta == 0.0
    assert logged == pytest.approx(expected.item(), abs=1e-4)


def generated_mask(episode, completion_length: int) -> list[int]:
    """1 on the tokens the model generated in an episode completion, 0 on the environment's, by construction."""
    mask: list[int] = []
    for t, step in enumerate(episode.steps):
        mask += [1] * len(step.completion_ids)
        if t + 1 < len(episode.steps):
            mask += [0] * (len(episode.steps[t + 1].prompt_ids) - len(step.prompt_ids) - len(step.completion_ids))
    assert len(mask) == completion_length
    return mask


def test_episode_mode_trains_with_observations_masked(web_model_dir, tmp_path):
    trainer = make_trainer(web_model_dir, str(tmp_path), "episode")
    before = snapshot(trainer.model)
    trainer.train()
    check_trained(trainer, before)
    check_loss_is_hand_computed(trainer)

    # The last batch, token by token: TRL's loss mask is 1 exactly on the tokens the model generated.
    batch, result = trainer.batches[-1], trainer.web_last_rollout
    loss_mask = batch["completion_mask"] * batch["tool_mask"]
    for row, episode in enumerate(result.episodes):
        ids = batch["completion_ids"][row]
        length = int(batch["completion_mask"][row].sum())
        expected = [*episode.steps[0].completion_ids]
        for t in range(1, episode.num_turns):
            previous = episode.steps[t - 1]
            expected += episode.steps[t].prompt_ids[len(previous.prompt_ids) + len(previous.completion_ids) :]
            expected += episode.steps[t].completion_ids
        assert ids[:length].tolist() == expected
        mask = generated_mask(episode, length)
        if batch["advantages"][row] != 0:  # zero-advantage rows are filtered: fully masked
            assert loss_mask[row, :length].tolist() == mask
        else:
            assert loss_mask[row].sum() == 0
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()
        assert prompt == episode.steps[0].prompt_ids
    # One advantage per episode, grouped per goal: each click-button group has one success and one failure.
    rewards = [e.reward for e in result.episodes]
    advantages = batch["advantages"].tolist()
    for g in range(0, 4, 2):
        if rewards[g] != rewards[g + 1]:
            assert advantages[g] == pytest.approx(-advantages[g + 1]) and advantages[g] != 0
    logged = [e for e in trainer.state.log_history if "web/success_rate" in e]
    assert len(logged) == 2 and {"web/episode_turns", "web/env_errors", "web/samples_filtered"} <= logged[0].keys()


def test_per_step_mode_trains_on_steps_with_discounted_returns(web_model_dir, tmp_path):
    trainer = make_trainer(
        web_model_dir, str(tmp_path), "per_step", web_gamma=0.5, web_episodes_per_goal=1, web_failure_reward=-1.0
    )
    before = snapshot(trainer.model)
    trainer.train()
    check_trained(trainer, before)
    check_loss_is_hand_computed(trainer)

    batch, result, rows = trainer.batches[-1], trainer.web_last_rollout, trainer.web_last_rows
    assert len(result.episodes) == 2  # one episode per goal, whose steps fill the goal's two rows
    steps = {(e.index, t): step for e in result.episodes for t, step in enumerate(e.steps)}
    for row, sample in enumerate(rows):
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()
        completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
        assert prompt == sample.prompt_ids and completion == sample.completion_ids
        assert batch["advantages"][row].item() == pytest.approx(sample.advantage)
        loss_tokens = (batch["tool_mask"][row] * batch["completion_mask"][row]).sum()
        if sample.episode < 0:  # filler row: nothing trained
            assert loss_tokens == 0 and sample.env_mask == [0]
            continue
        assert loss_tokens == len(sample.completion_ids)
        step = steps[(sample.episode, sample.step)]
        episode = result.episodes[sample.episode]
        assert prompt == step.prompt_ids and completion == step.completion_ids  # the history prompt, the action
        assert sample.goal == episode.goal == (rows[row].goal)
        outcome = 1.0 if episode.success else -1.0  # web_failure_reward
        assert sample.reward == pytest.approx(0.5 ** (episode.num_turns - 1 - sample.step) * outcome)


def test_invalid_action_penalty_reaches_the_trained_returns(web_model_dir, tmp_path):
    trainer = make_trainer(web_model_dir, str(tmp_path), "episode", max_steps=1, web_invalid_action_penalty=0.25)
    trainer.train()
    episodes, samples = trainer.web_last_rollout.episodes, trainer.web_last_samples
    assert [s.reward for s in samples] == pytest.approx([e.reward - 0.25 * sum(e.invalid_turns) for e in episodes])
    assert any(e.invalid_turns[0] for e in episodes), "no malformed turn: the test checks nothing"


def test_user_reward_functions_add_to_the_return_weighted_as_in_trl(web_model_dir, tmp_path):
    """A shaping reward scores every step sample (not only TRL's rows); advantages and logs use the weighted sum."""
    seen: list[str] = []

    def short_actions(completions, completion_ids, task, seed, **kwargs):
        seen.extend(completions)
        return [None if i % 3 == 2 else -0.01 * len(ids) for i, ids in enumerate(completion_ids)]

    trainer = make_trainer(
        web_model_dir, str(tmp_path), "per_step", web_episodes_per_goal=2, max_steps=1, reward_weights=[1.0, 0.5],
        reward_funcs=[short_actions],
    )  # fmt: skip
    assert trainer.reward_func_names == ["web_reward", "short_actions"]  # TRL's list: the return, then the stand-in
    trainer.train()

    samples = [s for s in trainer.web_last_samples if s.reward is not None]
    assert len(seen) == len(samples) > len(trainer.web_last_rows) // 2  # every scored sample, not only the rows
    totals = []
    for i, sample in enumerate(samples):
        extra = None if i % 3 == 2 else -0.01 * len(sample.completion_ids)
        assert sample.extra_rewards == (pytest.approx(extra) if extra is not None else None,)
        totals.append(sample.reward + (0.5 * extra if extra is not None else 0.0))
    advantages, _ = compute_advantages(totals, [s.goal for s in samples])
    assert [s.advantage for s in samples] == pytest.approx(advantages.tolist())
    batch = trainer.batches[-1]
    rows = trainer.web_last_rows
    assert batch["advantages"].tolist() == pytest.approx([r.advantage for r in rows])
    # TRL's logs show what was trained on: its reward per function, and the completions table's advantages.
    entry = trainer.state.log_history[0]
    assert "rewards/short_actions/mean" in entry and "rewards/web_reward/mean" in entry
    assert list(trainer._logs["advantages"]) == pytest.approx([r.advantage for r in rows])
    flat = [len({round(t, 9) for t, o in zip(totals, samples) if o.goal == s.goal}) == 1 for s in samples]
    assert entry["frac_reward_zero_std"] == pytest.approx(sum(flat) / len(flat))


def test_a_killed_worker_is_excluded_and_training_goes_on(web_model_dir, tmp_path):
    trainer = make_trainer(web_model_dir, str(tmp_path), "episode", max_steps=2)
    # Slot 1 runs a model episode (the oracle answers even positions), still live at the second turn.
    trainer.web_actor = KillingActor(trainer.web_actor, lambda: trainer.web_pool, at_call=2, slot=1)
    pids: list[int] = []
    original = trainer._web_rollout

    def rollout(prompts, _trainer):
        output = original(prompts, _trainer)
        pids.extend(p for p in trainer.web_pool.worker_pids() if p is not None)
        return output

    trainer.rollout_func = rollout
    trainer.train()
    first, second = [e for e in trainer.state.log_history if "web/env_errors" in e]
    assert first["web/env_errors"] == 1 and second["web/env_errors"] == 0
    assert second["web/worker_restarts"] >= 1
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
    # The crashed episode's row was excluded: no reward, no loss tokens.
    crashed = trainer.batches[0]
    excluded = [row for row in range(4) if (crashed["tool_mask"][row] * crashed["completion_mask"][row]).sum() == 0]
    assert 1 in excluded
    # No worker outlives training.
    assert trainer._web_pool is None
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_bad_configurations_fail_early(web_model_dir, tmp_path):
    def config(**overrides):
        settings = dict(output_dir=str(tmp_path), web_env="text", use_cpu=True, bf16=False, report_to="none",
                        per_device_train_batch_size=4, num_generations=2)  # fmt: skip
        settings.update(overrides)
        return SECWebGRPOConfig(**settings)

    with pytest.raises(ValueError, match=r"web_layout='turn' is not supported: use one of \['episode', 'per_step'\]"):
        config(web_layout="turn")
    assert config(web_sample_mode="episode").web_layout == "episode"  # the option's old name still works
    with pytest.raises(ValueError, match=r"web_env='chrome' is not supported"):
        config(web_env="chrome")
    with pytest.raises(ValueError, match=r"web_gamma=0.0 is out of range"):
        config(web_gamma=0.0)
    with pytest.raises(ValueError, match=r"web_invalid_action_penalty=-0.1 is out of range: use a penalty >= 0"):
        config(web_invalid_action_penalty=-0.1)
    with pytest.raises(ValueError, match=r"web_episodes_per_goal=3 must be between 1 and num_generations \(2\)"):
        config(web_episodes_per_goal=3)
    with pytest.raises(ValueError, match=r"applies to web_layout='per_step' only"):
        config(web_layout="episode", web_episodes_per_goal=1)
    assert config().curriculum_column == ["task"]
    # The loss aggregation follows the layout unless given: each episode once, or TRL's per-token DAPO per step.
    assert (config(web_layout="episode").loss_type, config(web_layout="per_step").loss_type) == ("grpo", "dapo")
    assert config(web_sample_mode="episode").loss_type == "grpo"  # the layout's old name too
    assert config(web_layout="episode", loss_type="dapo").loss_type == "dapo"
    dataset = goals_dataset(TASKS, [3, 4])
    with pytest.raises(ValueError, match=r"reward_funcs entry 'org/reward-model' is not a function.*reward_weights"):
        SECWebGRPOTrainer(model=web_model_dir, reward_funcs=["org/reward-model"], args=config(), train_dataset=dataset)
    with pytest.raises(ValueError, match=r"needs the columns 'task' and 'seed'"):
        SECWebGRPOTrainer(
            model=web_model_dir,
            args=config(curriculum="none"),
            train_dataset=dataset.remove_columns("seed"),
        )
    with pytest.raises(TypeError, match=r"not a SECGRPOTrainer.*put WebAgentMixin first among the bases"):
        from trl import GRPOTrainer

        from sec_rl.trainers.web_grpo import WebAgentMixin

        type("PlainWebTrainer", (WebAgentMixin, GRPOTrainer), {})(
            model=web_model_dir, args=config(), train_dataset=dataset
        )
    with pytest.raises(TypeError, match=r"use SECWebGRPOConfig"):
        from sec_rl import SECGRPOConfig

        SECWebGRPOTrainer(
            model=web_model_dir,
            args=SECGRPOConfig(output_dir=str(tmp_path), curriculum_column="task", use_cpu=True, bf16=False),
            train_dataset=dataset,
        )


class SolvesClickButton:
    """Every click-button episode succeeds (its groups carry no gradient); the episodes of other goals alternate
    between the oracle and the model (:class:`OracleActor`), so their groups do."""

    def __init__(self, tokenizer, inner):
        self.tokenizer = tokenizer
        self.alternating, self.oracle = OracleActor(tokenizer, inner=inner, every=2), OracleActor(tokenizer)

    def generate(self, prompts):
        alternating, solved = self.alternating.generate(prompts), self.oracle.generate(prompts)
        clicks = ["Click on the" in self.tokenizer.decode(ids) for ids in prompts]
        return [s if click else a for click, a, s in zip(clicks, alternating, solved)]


class RefillProbe(ProbeTrainer):
    """Also keeps every generation batch generated, refills included: its rows and its output."""

    def _generate_batch(self, inputs):
        output = super()._generate_batch(inputs)
        self.candidates = [*getattr(self, "candidates", []), (list(self.web_last_rows), output)]
        return output


@pytest.mark.parametrize(("mode", "baseline"), [("episode", "goal"), ("per_step", "goal"), ("episode", "batch")])
def test_dynamic_sampling_refills_goals_whose_rows_carry_no_gradient(web_model_dir, tmp_path, mode, baseline):
    """dynamic_sampling='filter': a goal group without a non-zero advantage is refilled from a further batch of
    goals drawn by the curriculum; each slot trains on its first informative group; the ledger's updates count
    the tokens trained on, its rollouts every token generated. With the batch baseline, a group of equal returns
    still carries a gradient when other groups' returns differ: it is not refilled."""
    from sec_rl.pipeline.compute import ComputeCallback, ComputeLedger

    trainer = make_trainer(
        web_model_dir, str(tmp_path), mode, trainer_class=RefillProbe, curriculum="random",
        curriculum_temperature=None, max_steps=3, dynamic_sampling="filter", dynamic_sampling_max_batches=3,
        web_advantage=baseline,
    )  # fmt: skip
    trainer.add_callback(ComputeCallback(stage="rl", base=None))
    trainer.web_actor = SolvesClickButton(trainer.processing_class, inner=trainer.web_actor.inner)  # the model
    trainer.train()

    logged = [e for e in trainer.state.log_history if "dynamic_sampling/generation_batches" in e]
    candidates, refilled, solved_kept, trained_tokens = iter(trainer.candidates), 0, 0, 0
    assert len(logged) == len(trainer.batches) == 3
    for entry, output in zip(logged, trainer.batches):
        generated = [next(candidates) for _ in range(int(entry["dynamic_sampling/generation_batches"]))]
        goals = [[row.goal for row in rows[::2]] for rows, _ in generated]
        flags = np.array([[any(row.advantage != 0 for row in rows[2 * g : 2 * g + 2]) for g in range(2)]
                          for rows, _ in generated])  # fmt: skip
        for slot_goals, slot_flags in zip(goals, flags):  # a click-button goal's returns are all equal
            solved = [f for (task, _), f in zip(slot_goals, slot_flags) if task == "click-button"]
            assert not any(solved) if baseline == "goal" else all(solved) == slot_flags.any()
            solved_kept += sum(solved)
        assert flags.any(axis=0).all() or len(generated) == 3
        assert len(generated) == 1 or not flags[:-1].any(axis=0).all()
        source = np.where(flags.any(axis=0), flags.argmax(axis=0), 0)
        for row in range(4):
            rows, candidate = generated[source[row // 2]]
            assert output["advantages"][row].item() == pytest.approx(rows[row].advantage)
            kept = output["completion_ids"][row][output["completion_mask"][row].bool()].tolist()
            assert kept == candidate["completion_ids"][row][candidate["completion_mask"][row].bool()].tolist()
        refilled += len(generated) - 1
        trained_tokens += int(output["prompt_mask"].sum() + output["completion_mask"].sum())
    assert next(candidates, None) is None
    assert refilled > 0 if baseline == "goal" else solved_kept > 0
    assert trainer.curriculum.num_updates == len(trainer.candidates)  # every batch generated is curriculum data
    ledger = ComputeLedger.load(tmp_path / "compute.json")
    every_token = sum(len(r.prompt_ids) + len(r.completion_ids) for rows, _ in trainer.candidates for r in rows)
    assert ledger.stages["rollouts"].tokens == every_token
    assert ledger.stages["updates"].tokens == trained_tokens
    assert (trained_tokens < every_token) == (refilled > 0)


def test_dynamic_sampling_ledger_counts_steps_between_logs(web_model_dir, tmp_path):
    """With ``logging_steps`` > 1, checkpoints and the end of training fall between logs: each checkpoint's ledger
    and the final one still count, as updates, every batch trained on up to their step."""
    from sec_rl.pipeline.compute import ComputeCallback, ComputeLedger

    trainer = make_trainer(
        web_model_dir, str(tmp_path), "episode", curriculum="random", curriculum_temperature=None, max_steps=3,
        logging_steps=2, save_strategy="steps", save_steps=1, dynamic_sampling="filter",
        dynamic_sampling_max_batches=3,
    )  # fmt: skip
    trainer.add_callback(ComputeCallback(stage="rl", base=None))
    trainer.web_actor = SolvesClickButton(trainer.processing_class, inner=trainer.web_actor.inner)
    trainer.train()

    trained = np.cumsum([int(b["prompt_mask"].sum() + b["completion_mask"].sum()) for b in trainer.batches])
    assert len(trained) == 3
    for step in (1, 2, 3):
        ledger = ComputeLedger.load(tmp_path / f"checkpoint-{step}" / "compute.json")
        assert ledger.stages["updates"].tokens == trained[step - 1], step
    assert ComputeLedger.load(tmp_path / "compute.json").stages["updates"].tokens == trained[-1]


def test_dynamic_sampling_under_gradient_accumulation(web_model_dir, tmp_path):
    """The real student's layout (``benchmarks/real_student.py --dynamic_sampling``): a step's goals spread over
    micro-batches. Refills still happen once per optimizer step, for the whole generation batch, and the ledger
    counts as updates exactly the rows trained on."""
    from sec_rl.pipeline.compute import ComputeCallback, ComputeLedger

    trainer = make_trainer(
        web_model_dir, str(tmp_path), "episode", trainer_class=RefillProbe, curriculum="random",
        curriculum_temperature=None, max_steps=3, dynamic_sampling="filter", dynamic_sampling_max_batches=3,
        per_device_train_batch_size=2, gradient_accumulation_steps=2,
    )  # fmt: skip
    trainer.add_callback(ComputeCallback(stage="rl", base=None))
    trainer.web_actor = SolvesClickButton(trainer.processing_class, inner=trainer.web_actor.inner)  # the model
    trainer.train()

    batches = [int(e["dynamic_sampling/generation_batches"]) for e in trainer.state.log_history
               if "dynamic_sampling/generation_batches" in e]  # fmt: skip
    assert trainer.state.global_step == len(batches) == 3
    assert len(trainer.candidates) == sum(batches) > 3  # every generation batch of a step, and at least one refill
    assert all(len(rows) == 4 for rows, _ in trainer.candidates)  # 2 goals x 2 episodes: the whole step's batch
    assert len(trainer.batches) == 3 and all(len(b["advantages"]) == 4 for b in trainer.batches)
    trained = sum(int(b["prompt_mask"].sum() + b["completion_mask"].sum()) for b in trainer.batches)
    assert ComputeLedger.load(tmp_path / "compute.json").stages["updates"].tokens == trained


def test_dynamic_sampling_replace_swaps_in_a_kept_informative_goal(web_model_dir, tmp_path):
    """dynamic_sampling='replace': a goal slot without gradient trains on the latest informative group kept for that
    slot from an earlier batch (once); no extra episodes are run."""
    trainer = make_trainer(
        web_model_dir, str(tmp_path), "episode", trainer_class=RefillProbe, curriculum="random",
        curriculum_temperature=None, max_steps=6, dynamic_sampling="replace",
    )  # fmt: skip
    trainer.web_actor = SolvesClickButton(trainer.processing_class, inner=trainer.web_actor.inner)  # the model
    trainer.train()
    assert len(trainer.candidates) == len(trainer.batches) == 6  # one generation batch per step
    kept: dict[int, list[float]] = {}
    swapped = 0
    for (rows, _), output in zip(trainer.candidates, trainer.batches):
        for slot in range(2):
            own = [row.advantage for row in rows[2 * slot : 2 * slot + 2]]
            trained = output["advantages"][2 * slot : 2 * slot + 2].tolist()
            if any(own):
                kept[slot] = own
            elif slot in kept:
                own, swapped = kept.pop(slot), swapped + 1  # used once
            assert trained == pytest.approx(own)
    assert swapped > 0


# -- real browsers ---------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("mode", ["episode", "per_step"])
def test_grpo_step_over_miniwob_episodes(web_model_dir, tmp_path, mode):
    missing = browser_missing()
    if missing:
        pytest.skip(f"needs Chromium and BrowserGym: {missing}")
    settings = dict(
        output_dir=str(tmp_path), web_env="browsergym", web_num_workers=2, web_max_turns=2, web_layout=mode,
        web_system_prompt=SYSTEM, web_max_page_chars=700, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=10, max_steps=1, learning_rate=1e-2, use_cpu=True, bf16=False, report_to="none",
        gradient_checkpointing=False, save_strategy="no", seed=0, disable_tqdm=True, logging_steps=1,
    )  # fmt: skip
    trainer = ProbeTrainer(
        model=web_model_dir,
        args=SECWebGRPOConfig(**settings),
        train_dataset=goals_dataset(["click-test", "click-button"], [3, 4]),
    )
    trainer.web_actor = OracleActor(trainer.processing_class, inner=trainer.web_actor, every=2)
    before = snapshot(trainer.model)
    trainer.train()

    result, batch = trainer.web_last_rollout, trainer.batches[-1]
    assert all(not e.env_error for e in result.episodes)
    assert any(e.success for e in result.episodes)  # the oracle's episodes solve the real pages
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.curriculum.num_updates == 1 and trainer._web_pool is None
    if mode == "episode":
        loss_mask = batch["completion_mask"] * batch["tool_mask"]
        for row, episode in enumerate(result.episodes):
            length = int(batch["completion_mask"][row].sum())
            if batch["advantages"][row] != 0:
                assert loss_mask[row, :length].tolist() == generated_mask(episode, length)
    else:
        for row, sample in enumerate(trainer.web_last_rows):
            completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
            assert completion == sample.completion_ids


def test_compute_counts_every_token_of_episode_completions(web_model_dir, tmp_path):
    """Episode completions hold the pages between turns; TRL's num_tokens counts only generated ones, so the trainer
    adds the pages to it. A run resumed from a checkpoint records what the uninterrupted run records."""
    import shutil

    from sec_rl.pipeline.compute import ComputeCallback, ComputeLedger

    def run(resume: str | None = None) -> ProbeTrainer:
        trainer = make_trainer(
            web_model_dir, str(tmp_path), "episode", max_steps=2, save_strategy="steps", save_steps=1
        )
        trainer.add_callback(ComputeCallback(stage="rl", base=None))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    trainer = run()
    rows = [row for batch in trainer.rows for row in batch]  # both generation batches
    env_tokens = sum(len(row.env_mask) - sum(row.env_mask) for row in rows)
    every_token = sum(len(row.prompt_ids) + len(row.completion_ids) for row in rows)
    assert env_tokens > 0 and trainer._web_env_tokens_seen == env_tokens
    assert trainer.state.num_input_tokens_seen == every_token  # TRL's count of the generated tokens + the pages
    ledger = ComputeLedger.load(tmp_path / "compute.json")
    assert ledger.stages["rollouts"].tokens == every_token
    n = ledger.stages["rollouts"].num_parameters
    assert ledger.flops("rollouts") == 2 * n * every_token and ledger.flops("updates") == 6 * n * every_token
    # a run that stopped after its first checkpoint (whose ledger the output folder then held), resumed from it
    shutil.copy(tmp_path / "checkpoint-1" / "compute.json", tmp_path / "compute.json")
    run(resume=str(tmp_path / "checkpoint-1"))
    assert ComputeLedger.load(tmp_path / "compute.json").to_dict()["stages"] == ledger.to_dict()["stages"]


def check_resumed_exactly(report: dict, mode: str) -> None:
    full, resumed = report["full"], report["resumed"]
    # The resumed trainer's history holds the checkpoint's steps 1-2, then its own 3-4.
    assert len(full["losses"]) == 4 and resumed["losses"] == pytest.approx(full["losses"], abs=1e-6)
    assert resumed["eval"] == pytest.approx(full["eval"]) and len(full["eval"]) == 2  # steps 2 and 4
    assert resumed["curriculum"] == full["curriculum"]
    assert resumed["task_success"] == full["task_success"] and len(full["task_success"]) == 4
    for rates in full["task_success"].values():  # the tasks drawn at each step, whichever rank drew them
        assert rates and set(rates) <= {"click-button", "enter-text"} and all(0 <= r <= 1 for r in rates.values())
    assert resumed["env_tokens_seen"] == full["env_tokens_seen"]  # pages before the checkpoint counted
    assert (full["env_tokens_seen"] > 0) == (mode == "episode")  # per_step completions hold no page
    assert resumed["weights"] == full["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["episode", "per_step"])
def test_resume_is_exact_with_evaluation(web_model_dir, tmp_path, mode):
    from web_grpo_run import run

    check_resumed_exactly(run(web_model_dir, str(tmp_path), mode, per_device=4), mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["episode", "per_step"])
def test_two_processes_resume_exactly_and_agree(web_model_dir, tmp_path, mode):
    """Goals split across ranks, evaluation during training, a resumed run: the ranks end identical."""
    reports = run_two_processes("web_grpo_run.py", web_model_dir, tmp_path, 4, extra=("--mode", mode))
    for report in reports:
        check_resumed_exactly(report, mode)
    assert reports[0]["full"] == reports[1]["full"]


def test_an_environment_of_your_own_by_import_path(tmp_path):
    base = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=4,
                num_generations=2)  # fmt: skip
    args = SECWebGRPOConfig(**base, web_env="sec_rl.web.env:TextEnvironment", web_env_kwargs='{"time_scale": 0.0}')
    with args.env_factory()() as env:
        observation = env.reset("click-button", 3)
        assert observation.goal and type(env).__name__ == "TextEnvironment"
    with pytest.raises(ValueError, match=r"web_env='sec_rl.web.env:Nope': .*no WebEnvironment subclass named 'Nope'"):
        SECWebGRPOConfig(**base, web_env="sec_rl.web.env:Nope")


# -- evaluation sees what training saw ---------------------------------------------------------------
def test_evaluation_prompts_a_checkpoint_with_the_ids_its_training_rollouts_read(web_model_dir, tmp_path, monkeypatch):
    """Same ``web_*`` settings and chat template kwargs, same goal: the evaluation of a checkpoint generates, turn
    after turn, from the very token ids its training rollout generated from (a growing episode, a page cut to a
    token budget, a template argument), because both run the one episode loop with the same token policy."""
    import shutil

    from transformers import AutoTokenizer

    from sec_rl.models.tiny import CHAT_TEMPLATE
    from sec_rl.pipeline.report import evaluate_stages
    from sec_rl.pipeline.stages import WebEvalArguments
    from sec_rl.web.policies import TransformersActor

    model_dir = tmp_path / "model"  # the web model with a template that reads an argument
    shutil.copytree(web_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = "{%- if tag is defined %}{{- tag }}{%- endif %}" + CHAT_TEMPLATE
    tokenizer.save_pretrained(model_dir)
    web = dict(web_env="text", web_num_workers=1, web_layout="episode", web_max_turns=3, web_max_page_tokens=12,
               web_system_prompt=SYSTEM, chat_template_kwargs={"tag": "[T]"})  # fmt: skip
    contexts: list[list[int]] = []
    generate = TransformersActor.generate

    def recording(actor, prompts):
        contexts.extend(list(p) for p in prompts)
        return generate(actor, prompts)

    monkeypatch.setattr(TransformersActor, "generate", recording)
    args = SECWebGRPOConfig(
        output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
        max_completion_length=10, generation_kwargs={"do_sample": False}, use_cpu=True, bf16=False,
        report_to="none", gradient_checkpointing=False, **web,
    )  # fmt: skip
    trainer = SECWebGRPOTrainer(model=str(model_dir), args=args, train_dataset=goals_dataset(["enter-text"], [4]))
    try:
        trained = trainer.web_engine.run([("enter-text", 4)]).episodes[0]
    finally:
        trainer.close_environments()
    training, contexts[:] = list(contexts), []

    evaluation = WebEvalArguments(max_new_tokens=10, **web)
    evaluate_stages(
        {"student": str(model_dir)}, evaluation, goal_tasks=["enter-text"], task_tasks=[], goal_seeds=[4],
        output_dir=tmp_path / "eval", max_new_tokens=evaluation.max_new_tokens,
        chat_template_kwargs=evaluation.chat_template_kwargs,
    )  # fmt: skip
    assert contexts == training == [step.prompt_ids for step in trained.steps]
    assert len(training) == trained.num_turns > 1  # a growing conversation: every turn compared
    first = tokenizer.decode(training[0])
    assert first.startswith("[T]<|im_start|>system\n") and "[... page truncated: " in first


def test_trl_warning_about_unscored_rows_is_silenced(web_model_dir, tmp_path, caplog):
    """Filler and environment-error rows carry no reward by design; TRL's warning about them would flood the logs."""
    from trl import GRPOTrainer

    trainer = make_trainer(web_model_dir, str(tmp_path), "per_step")
    inputs = [{"prompt": "p", "task": "click-button", "seed": 3, "web_reward": None}]
    arguments = (inputs, ["p"], ["c"], [[1]])
    with caplog.at_level("WARNING"):
        GRPOTrainer._calculate_rewards(trainer, *arguments)  # TRL alone warns (accelerate prefixes "[RANK 0]")
        assert any("All reward functions returned None" in r.getMessage() for r in caplog.records)
        caplog.clear()
        rewards = trainer._calculate_rewards(*arguments)
    assert torch.isnan(rewards).all()
    assert not [r for r in caplog.records if "All reward functions returned None" in r.getMessage()]
