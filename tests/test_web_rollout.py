"""The rollout engine and the episode -> sample conversion, on the text world with a tiny model (no browser).

The engine runs real episodes in a pool of ``TextEnvironment`` workers, generating with a tiny Llama or with
:class:`~helpers.web_model.OracleActor`, which reads the page and answers correctly (its episodes have known
lengths and rewards). Returns and advantages are checked against numbers worked out by hand.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from helpers.web_model import PROMPT, KillingActor, OracleActor, build_web_model
from transformers import GenerationConfig

from sec_rl.web import EnvironmentPool, TextEnvironment
from sec_rl.web.policies import TokenPolicy, TransformersActor, encode_messages
from sec_rl.web.rollout import Episode, RolloutEngine, RolloutResult, Step
from sec_rl.web.samples import (
    compute_advantages,
    discounted_returns,
    episode_sample,
    fit_step_rows,
    mask_zero_advantage,
    rollout_output,
    row_groups,
    step_samples,
)

MAX_NEW_TOKENS = 10


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_and_tokenizer():
    return build_web_model()


@pytest.fixture(scope="module")
def pool():
    with EnvironmentPool(TextEnvironment, num_workers=3, step_timeout=20) as pool:
        yield pool


def model_actor(model, tokenizer) -> TransformersActor:
    config = GenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=1.0, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return TransformersActor(model, tokenizer, config)


GOALS = [("click-button", 3), ("click-button", 3), ("enter-text", 4), ("enter-text", 4), ("click-checkboxes", 5)]


# -- the engine -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["per_step", "episode"])
def test_engine_runs_a_batch_with_the_model(model_and_tokenizer, pool, mode):
    model, tokenizer = model_and_tokenizer
    policy = TokenPolicy(model_actor(model, tokenizer), tokenizer)
    engine = RolloutEngine(policy, pool, layout=mode, max_turns=3, prompt=PROMPT)
    result = engine.run(GOALS)  # 5 episodes on 3 workers: two waves

    assert [e.goal for e in result.episodes] == GOALS
    for episode in result.episodes:
        assert not episode.env_error and 1 <= episode.num_turns <= 3
        assert episode.hit_max_turns or episode.steps[-1].done
        for t, step in enumerate(episode.steps):
            assert 1 <= len(step.completion_ids) <= MAX_NEW_TOKENS
            assert step.truncated == (step.completion_ids[-1] != tokenizer.eos_token_id)
            if mode == "per_step":  # a fresh prompt: the observation and the previous actions
                assert step.prompt_ids == encode_messages(tokenizer, step.messages)
                assert len(step.messages) == 2
            else:  # one growing conversation: every context extends the previous one token for token
                assert len(step.messages) == 2 * t + 2
                if t > 0:
                    before = episode.steps[t - 1]
                    assert step.prompt_ids[: len(before.prompt_ids)] == before.prompt_ids
                    assert (
                        step.prompt_ids[len(before.prompt_ids) :][: len(before.completion_ids)]
                        == before.completion_ids
                    )
    # One batched generation per turn: at most max_turns turns per wave, and the engine counted them.
    assert 3 <= result.turns <= 6
    metrics = result.metrics()
    assert metrics["episodes"] == 5 and metrics["env_errors"] == 0
    assert metrics["episodes_per_minute"] > 0


def test_scripted_agent_gets_known_lengths_and_rewards(pool):
    _, tokenizer = build_web_model()
    engine = RolloutEngine(TokenPolicy(OracleActor(tokenizer), tokenizer), pool, max_turns=4, prompt=PROMPT)
    result = engine.run(GOALS[:4])
    assert [e.num_turns for e in result.episodes] == [1, 1, 2, 2]
    assert [e.reward for e in result.episodes] == [1.0, 1.0, 1.0, 1.0]
    assert result.turns == 3  # 3 workers: the 4th episode starts when a click-button episode frees its slot
    second = result.episodes[2].steps[1]
    assert re.fullmatch(r"click\('\w+'\)", second.action)
    assert "# Previous actions\n1. fill(" in second.messages[1]["content"]  # the history is in the prompt


def test_episode_sample_masks_observations_token_by_token(pool):
    _, tokenizer = build_web_model()
    policy = TokenPolicy(OracleActor(tokenizer), tokenizer)
    engine = RolloutEngine(policy, pool, layout="episode", max_turns=4, prompt=PROMPT)
    episode = engine.run([("enter-text", 4)]).episodes[0]
    assert episode.num_turns == 2 and episode.success
    sample = episode_sample(episode, group=0, eos_token_id=tokenizer.eos_token_id)
    first, second = episode.steps
    assert sample.prompt_ids == first.prompt_ids
    assert len(sample.completion_ids) == len(sample.env_mask)

    # Walk the completion: assistant turn (1s), observation (0s), assistant turn (1s).
    between = second.prompt_ids[len(first.prompt_ids) + len(first.completion_ids) :]
    expected_ids = [*first.completion_ids, *between, *second.completion_ids]
    expected_mask = [1] * len(first.completion_ids) + [0] * len(between) + [1] * len(second.completion_ids)
    assert sample.completion_ids == expected_ids
    assert sample.env_mask == expected_mask
    observation = tokenizer.decode(between)
    assert observation.startswith("\n<|im_start|>user\n# Goal\nEnter ")
    assert observation.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "value='" in observation  # the page after the fill
    assert tokenizer.decode([t for t, m in zip(sample.completion_ids, sample.env_mask) if m]) == (
        first.text + "<|im_end|>" + second.text + "<|im_end|>"
    )
    # The whole sequence is the chat template's rendering of the conversation.
    conversation = [*second.messages, {"role": "assistant", "content": second.text}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer.decode(sample.prompt_ids + sample.completion_ids) == rendered.removesuffix("\n")


def test_killed_worker_mid_rollout_excludes_the_episode(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with EnvironmentPool(TextEnvironment, num_workers=2, step_timeout=20) as pool:
        actor = KillingActor(model_actor(model, tokenizer), pool, at_call=2, slot=0)
        engine = RolloutEngine(TokenPolicy(actor, tokenizer), pool, layout="per_step", max_turns=3, prompt=PROMPT)
        result = engine.run([("enter-text", 3), ("enter-text", 3)])
        crashed, fine = result.episodes
        assert crashed.env_error and "worker 0" in crashed.error and crashed.num_turns == 2
        assert not fine.env_error and fine.num_turns == 3
        assert pool.metrics()["worker_deaths"] == 1
        assert result.metrics()["env_errors"] == 1
        # Left out of the loss: no step samples, and a fully masked episode row with no reward.
        assert step_samples(crashed, group=0, gamma=0.9) == []
        row = episode_sample(crashed, group=0, eos_token_id=tokenizer.eos_token_id)
        assert row.reward is None and not any(row.env_mask) and not row.trainable
        # The restarted worker serves the next batch.
        again = engine.run([("click-button", 3)])
        assert not again.episodes[0].env_error


# -- returns, advantages, rows (hand-computed) ------------------------------------------------------
def make_episode(task: str, seed: int, index: int, rewards: list[float], env_error: bool = False) -> Episode:
    steps = [
        Step([], [100 + index, t], [7, t, 2], None, "text", "click('1')", reward, t == len(rewards) - 1)
        for t, reward in enumerate(rewards)
    ]
    return Episode(task, seed, index, steps, env_error=env_error)


def test_success_is_reported_overall_and_per_task_over_the_episodes_that_count():
    result = RolloutResult([
        make_episode("a", 0, 0, [1.0]), make_episode("a", 1, 1, [0.0, 0.0]), make_episode("b", 2, 2, [0.0, 1.0]),
        make_episode("b", 3, 3, [1.0], env_error=True),  # an environment error: not a failure, not counted
    ])  # fmt: skip
    metrics = result.metrics()
    assert metrics["success_rate"] == pytest.approx(2 / 3) and metrics["env_errors"] == 1
    per_task = {k: v for k, v in metrics.items() if k.startswith("success_rate/")}
    assert per_task == {"success_rate/a": 0.5, "success_rate/b": 1.0}


def test_discounted_returns():
    assert discounted_returns(1.0, 3, 0.5) == [0.25, 0.5, 1.0]
    assert discounted_returns(-1.0, 2, 0.9) == [-0.9, -1.0]
    assert discounted_returns(1.0, 1, 0.5) == [1.0]


def test_step_samples_carry_discounted_returns():
    success = make_episode("a", 1, 0, [0.0, 0.0, 1.0])
    failure = make_episode("a", 1, 1, [0.0, 0.0])
    samples = step_samples(success, group=0, gamma=0.5)
    assert [s.reward for s in samples] == [0.25, 0.5, 1.0]
    assert [s.step for s in samples] == [0, 1, 2]
    assert samples[1].prompt_ids == [100, 1] and samples[1].completion_ids == [7, 1, 2]
    assert samples[1].env_mask == [1, 1, 1] and samples[1].goal == ("a", 1)
    assert [s.reward for s in step_samples(failure, 0, gamma=0.5)] == [0.0, 0.0]
    assert [s.reward for s in step_samples(failure, 0, gamma=0.5, failure_reward=-1.0)] == [-0.5, -1.0]
    assert step_samples(make_episode("a", 1, 2, [0.0], env_error=True), 0, gamma=0.5) == []


def test_invalid_action_penalty_per_malformed_turn():
    """Two malformed turns before the right click: the episode carries 1 - 2p, each per_step sample its own."""

    def step(prompt, completion, action, reward):
        return Step([], prompt, completion, None, "text", action, reward, reward > 0)

    steps = [
        step([1, 2], [3, 4], None, 0.0),
        step([1, 2, 3, 4, 9], [5, 6], None, 0.0),
        step([1, 2, 3, 4, 9, 5, 6, 9], [7, 2], "click('13')", 1.0),
    ]
    episode = Episode("a", 1, 0, steps)
    assert episode.invalid_turns == [True, True, False]
    assert episode_sample(episode, 0, eos_token_id=2).reward == 1.0
    whole = episode_sample(episode, 0, eos_token_id=2, invalid_action_penalty=0.1)
    assert whole.reward == pytest.approx(0.8)
    assert whole.env_mask == [1, 1, 0, 1, 1, 0, 1, 1]  # the penalty changes the return, not what is trained
    per_step = step_samples(episode, 0, gamma=0.5, invalid_action_penalty=0.1)
    assert [s.reward for s in per_step] == pytest.approx([0.25 - 0.1, 0.5 - 0.1, 1.0])
    failed = step_samples(Episode("a", 1, 1, steps[:2]), 0, gamma=0.5, failure_reward=-1.0, invalid_action_penalty=0.1)
    assert [s.reward for s in failed] == pytest.approx([-0.6, -1.1])


def test_grouped_advantages_against_hand_computed_values():
    # Goal g: a success in 3 steps and a failure (-1) in 2, gamma 0.5: returns .25 .5 1 | -.5 -1.
    rewards = [0.25, 0.5, 1.0, -0.5, -1.0]
    goals = ["g"] * 5
    mean = 0.25 / 5  # 0.05
    raw = [0.2, 0.45, 0.95, -0.55, -1.05]
    std = math.sqrt((0.04 + 0.2025 + 0.9025 + 0.3025 + 1.1025) / 4)  # Bessel-corrected: 0.798436
    advantages, unscaled = compute_advantages(rewards, goals, baseline="goal", scale="group")
    np.testing.assert_allclose(unscaled, np.array(rewards) - mean)
    np.testing.assert_allclose(unscaled, raw, atol=1e-12)
    np.testing.assert_allclose(advantages, np.array(raw) / (std + 1e-4))
    advantages, _ = compute_advantages(rewards, goals, baseline="goal", scale="none")
    np.testing.assert_allclose(advantages, raw, atol=1e-12)


def test_goal_versus_batch_advantages():
    rewards, goals = [1.0, 0.0, 0.5, 1.0], ["a", "a", "a", "b"]
    # Per goal: a has mean .5 and std .5; b has one sample (std undefined: A = 0, as in TRL).
    advantages, raw = compute_advantages(rewards, goals, baseline="goal", scale="group")
    np.testing.assert_allclose(raw, [0.5, -0.5, 0.0, 0.0])
    np.testing.assert_allclose(advantages, [0.5 / 0.5001, -0.5 / 0.5001, 0.0, 0.0])
    # Whole batch: mean .625, std sqrt(.6875 / 3).
    advantages, raw = compute_advantages(rewards, goals, baseline="batch", scale="batch")
    np.testing.assert_allclose(raw, [0.375, -0.625, -0.125, 0.375])
    np.testing.assert_allclose(advantages, np.array(raw) / (math.sqrt(0.6875 / 3) + 1e-4))
    advantages, _ = compute_advantages(rewards, goals, baseline="batch", scale="none")
    np.testing.assert_allclose(advantages, [0.375, -0.625, -0.125, 0.375])
    # Equal returns within a goal give exactly zero, even when their mean is not exact in floating point.
    advantages, raw = compute_advantages([0.9, 0.9, 0.9], ["c"] * 3)
    assert advantages.tolist() == [0.0, 0.0, 0.0] and raw.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="baseline must be 'goal' or 'batch'"):
        compute_advantages([1.0], ["a"], baseline="episode")


def test_rows_keep_their_goal_filter_subsample_and_pad():
    row_goals = [("a", 1)] * 4 + [("b", 2)] * 4
    groups = row_groups(row_goals)
    assert groups == [(("a", 1), 0, 4), (("b", 2), 4, 8)]
    # Goal a: two 3-step episodes (6 samples > 4 rows); goal b: two 1-step successes (A = 0: filtered, all padded).
    episodes = [make_episode("a", 1, 0, [0, 0, 1]), make_episode("a", 1, 1, [0, 0, 0])]
    episodes += [make_episode("b", 2, 2, [1]), make_episode("b", 2, 3, [1])]
    samples = [s for e in episodes for s in step_samples(e, group=0 if e.task == "a" else 1, gamma=0.5)]
    advantages, raw = compute_advantages([s.reward for s in samples], [s.goal for s in samples])
    for sample, a, r in zip(samples, advantages, raw):
        sample.advantage, sample.raw_advantage = float(a), float(r)
    rows, stats = fit_step_rows(samples, groups, np.random.default_rng(0), eos_token_id=2)
    assert len(rows) == 8
    assert all(row.goal == ("a", 1) for row in rows[:4]) and all(row.goal == ("b", 2) for row in rows[4:])
    assert all(row.trainable and row.advantage != 0 for row in rows[:4])
    assert all(not row.trainable and row.env_mask == [0] and row.reward is None for row in rows[4:])
    # Goal a's failed episode has returns 0, 0, 0 and the success .25, .5, 1: mean .291667, no zero advantage.
    assert (stats.samples, stats.filtered, stats.dropped, stats.padded) == (8, 2, 2, 4)
    output = rollout_output(rows)
    assert output["env_mask"][4:] == [[0]] * 4 and output["web_reward"][4:] == [None] * 4
    assert output["logprobs"] is None and len(output["prompt_ids"]) == 8

    # Without filtering, goal b's samples fill two of its rows and two are padded.
    rows, stats = fit_step_rows(samples, groups, np.random.default_rng(0), 2, drop_zero_advantage=False)
    assert (stats.filtered, stats.dropped, stats.padded) == (0, 2, 2)
    assert [row.reward for row in rows[4:6]] == [1.0, 1.0] and rows[4].advantage == 0.0

    # Episode mode keeps every row: a zero-advantage episode stays, masked out of the loss.
    whole = [episode_sample(e, group=0, eos_token_id=2) for e in episodes[2:]]
    for sample in whole:
        sample.advantage = 0.0
    masked, count = mask_zero_advantage(whole)
    assert count == 2 and all(not any(s.env_mask) for s in masked) and masked[0].reward == 1.0
