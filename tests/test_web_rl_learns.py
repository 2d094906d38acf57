"""RL on the text world lifts a seeded weak policy by a wide margin: the regression test of web RL (issue 11).

The weak policy is seeded by SFT: on each training goal of ``click-button`` the tiny model is taught to click the
right button once for every two clicks on one wrong button (a button on the page: the episode ends with reward
0). It has the action format and the right answer in reach, but greedy it clicks the wrong button, and sampled at
temperature 1 it succeeds about a third of the time. SEC-GRPO on those goals must make the right click the greedy
one. Whatever breaks the learning signal (the advantages' sign, a mask that trains on the page instead of the
action, a loss that never reaches the weights, steps skipped that carry a gradient) leaves the policy where it was
and fails this test. ``benchmarks/web_learning.py`` asks the harder question, on held-out goals.
"""

from __future__ import annotations

import re

import pytest
from datasets import Dataset
from helpers.web_model import SYSTEM, build_web_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
from sec_rl.web import TextEnvironment, render_messages
from sec_rl.web.config import WebConfig
from sec_rl.web.evaluate import evaluate
from sec_rl.web.policies import ModelAgent
from sec_rl.web.tasks import goals_dataset

TASK, SEEDS = "click-button", range(3, 9)
WEB = {"web_env": "text", "web_num_workers": 2, "web_max_turns": 1, "web_system_prompt": SYSTEM, "web_history": 2}
QUIET = {"use_cpu": True, "bf16": False, "report_to": "none", "save_strategy": "no", "disable_tqdm": True}


def weak_policy_rows(web: WebConfig) -> list[dict]:
    """Each goal's prompt, as training renders it, answered once rightly and twice with the same wrong button."""
    rows, env = [], TextEnvironment()
    for seed in SEEDS:
        observation = env.reset(TASK, seed)
        target = re.search(r'"(.+?)"', observation.goal).group(1)
        buttons = re.findall(r"\[(\d+)\] button '(.+?)'", observation.axtree)
        right = next(bid for bid, label in buttons if label == target)
        wrong = next(bid for bid, label in buttons if label != target)
        prompt = render_messages(observation, [], web.prompt_config())
        for bid in (right, wrong, wrong):
            rows.append({"messages": [*prompt, {"role": "assistant", "content": f"Action: click('{bid}')"}]})
    return rows


def greedy_success(model_dir: str, web: WebConfig) -> float:
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    return evaluate(ModelAgent(model, tokenizer, max_new_tokens=16), [TASK], SEEDS, web).overall.success_rate


@pytest.fixture(scope="module")
def weak_policy(tmp_path_factory) -> str:
    """The tiny model after SFT on :func:`weak_policy_rows`: the right click is one answer in three it learned."""
    path = tmp_path_factory.mktemp("weak-policy")
    model, tokenizer = build_web_model()
    rows = weak_policy_rows(WebConfig(**WEB))  # a one-turn prompt reads the same in both layouts
    SFTTrainer(
        model=model, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
        args=SFTConfig(output_dir=str(path / "sft"), max_steps=120, learning_rate=3e-3, warmup_steps=5,
                       per_device_train_batch_size=len(rows), assistant_only_loss=True, seed=0, **QUIET),
    ).train()  # fmt: skip
    model.save_pretrained(path / "model")
    tokenizer.save_pretrained(path / "model")
    return str(path / "model")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["episode", "per_step"])
def test_rl_lifts_a_seeded_weak_policy(weak_policy, tmp_path, mode):
    web = WebConfig(**WEB, web_layout=mode)
    start = greedy_success(weak_policy, web)
    assert start <= 1 / 6, f"the seeded policy should prefer the wrong button; greedy success {start:.0%}"

    rl = SECWebGRPOTrainer(
        model=weak_policy, train_dataset=goals_dataset([TASK], SEEDS),
        args=SECWebGRPOConfig(output_dir=str(tmp_path), **WEB, web_layout=mode, num_generations=8,
                              per_device_train_batch_size=8 * len(SEEDS), max_completion_length=16, temperature=1.0,
                              beta=0.0, learning_rate=2e-3, max_steps=10, logging_steps=1, seed=0, **QUIET),
    )  # fmt: skip
    rl.train()
    rl.save_model(str(tmp_path / "rl"))
    final = greedy_success(str(tmp_path / "rl"), web)
    sampled = [round(entry["web/success_rate"], 2) for entry in rl.state.log_history if "web/success_rate" in entry]
    assert final >= 5 / 6, f"RL left greedy success at {final:.0%} (from {start:.0%}); sampled per step: {sampled}"
