"""ChatML templates as models ship them, made trainable with ``assistant_only_loss=True``.

The templates are the real texts (SmolLM2-135M-Instruct's, as its GGUF file carries it; Qwen1.5/Qwen2's; the
Hermes/OpenHermes one). They run here on the tiny tokenizer, so these tests need no model download; the same
checks on SmolLM2's own tokenizer are in ``test_real_student.py``.
"""

from __future__ import annotations

import re

import pytest
from helpers.chat import SMOLLM2_TEMPLATE, SYSTEM, TRACE, assistant_mask
from transformers import AutoTokenizer

from sec_rl import SECSFTConfig, SECSFTTrainer
from sec_rl.trainers.chat_templates import chatml_training_template, needs_training_template
from sec_rl.trainers.sft_trainer import TEMPLATE_HELP

QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}"
)
HERMES_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Written with whitespace control, `~` and attribute access.
STYLED_TEMPLATE = (
    "{%- for m in messages %}\n  {{- '<|im_start|>' ~ m.role ~ '\\n' ~ m.content ~ '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Indented, with a newline after the expression that the rendering keeps: new block tags must not trim it.
NEWLINES_TEMPLATE = (
    "{% for message in messages %}\n  {{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>'}}\n{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEMPLATES = {
    "smollm2": SMOLLM2_TEMPLATE,
    "qwen2": QWEN2_TEMPLATE,
    "hermes": HERMES_TEMPLATE,
    "styled": STYLED_TEMPLATE,
    "newlines": NEWLINES_TEMPLATE,
}


@pytest.fixture
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_patching_changes_nothing_in_what_the_template_renders(tokenizer, name):
    tokenizer.chat_template = TEMPLATES[name]
    assert needs_training_template(tokenizer)  # markerless, and not a family TRL knows
    patched = chatml_training_template(tokenizer)
    assert patched is not None
    assert len(re.findall(r"\{%[-+]?\s*generation\s*%\}", patched)) == 1
    for messages in (TRACE, [SYSTEM, *TRACE], TRACE[:3], [SYSTEM, *TRACE[:1]], TRACE[:1]):
        for add_generation_prompt in (False, True):
            kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
            original = tokenizer.apply_chat_template(messages, **kwargs)
            assert tokenizer.apply_chat_template(messages, chat_template=patched, **kwargs) == original
            assert original.count("<|im_start|>") >= len(messages)  # it did render the conversation


@pytest.mark.parametrize("name", ["smollm2", "styled"])
def test_mask_covers_each_reply_and_its_end_token(tokenizer, name):
    tokenizer.chat_template = TEMPLATES[name]
    patched = chatml_training_template(tokenizer)
    for messages in (TRACE, [SYSTEM, *TRACE]):
        encoded = tokenizer.apply_chat_template(
            messages, chat_template=patched, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids, expected = assistant_mask(tokenizer, text)
        assert encoded["input_ids"] == ids
        assert encoded["assistant_masks"] == expected
        trained = [t for t, m in zip(ids, expected) if m]
        assert tokenizer.decode(trained) == "".join(
            m["content"] + "<|im_end|>" for m in TRACE if m["role"] == "assistant"
        )


def test_sft_on_the_models_own_chatml_template(tokenizer, tiny_model_dir, tmp_path):
    """SECSFTTrainer with assistant_only_loss on SmolLM2's template: TRL's labels, token by token; template kept."""
    from datasets import Dataset

    tokenizer.chat_template = SMOLLM2_TEMPLATE
    args = SECSFTConfig(
        output_dir=str(tmp_path), curriculum="sec", curriculum_column="task", per_device_train_batch_size=2,
        max_steps=1, max_length=512, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        gradient_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    dataset = Dataset.from_list([{"messages": TRACE, "task": "a"}, {"messages": [SYSTEM, *TRACE], "task": "b"}] * 2)
    trainer = SECSFTTrainer(model=tiny_model_dir, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.args.assistant_only_loss  # SECSFTConfig's choice for `messages` traces
    assert trainer.chat_template == chatml_training_template(tokenizer)
    assert tokenizer.chat_template == SMOLLM2_TEMPLATE  # the user's template is given back untouched
    for i, messages in enumerate((TRACE, [SYSTEM, *TRACE])):
        row = trainer.train_dataset[i]
        ids, mask = assistant_mask(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
        assert row["input_ids"] == ids
        assert row["labels"] == [t if m else -100 for t, m in zip(ids, mask)]
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] > 0
    trainer.save_model(str(tmp_path / "saved"))
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").chat_template == SMOLLM2_TEMPLATE


def test_templates_that_cannot_be_patched_keep_the_clear_error(tokenizer, tiny_model_dir, tmp_path):
    llama2 = "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{% endif %}{% endfor %}"  # noqa: E501
    trimmed = HERMES_TEMPLATE.replace("message['content']", "message['content'] | trim")
    twice = SMOLLM2_TEMPLATE.replace(
        "{% endfor %}", "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}{% endfor %}"
    )  # noqa: E501
    for template in (llama2, trimmed, twice):
        tokenizer.chat_template = template
        assert chatml_training_template(tokenizer) is None
    from datasets import Dataset

    tokenizer.chat_template = trimmed
    args = SECSFTConfig(
        output_dir=str(tmp_path),
        curriculum="none",
        assistant_only_loss=True,
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    dataset = Dataset.from_list([{"messages": TRACE}] * 2)
    with pytest.raises(ValueError, match=re.escape(TEMPLATE_HELP[:60])):
        SECSFTTrainer(model=tiny_model_dir, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert tokenizer.chat_template == trimmed
