"""A real chat template and a multi-turn web trace, shared by the template tests on the tiny tokenizer and on
SmolLM2's own (``test_chat_templates.py``, ``test_real_student.py``), and a reference assistant mask."""

from __future__ import annotations

# SmolLM2-135M-Instruct's template, verbatim: a default system prompt when none is given, one expression per message.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SYSTEM = {"role": "system", "content": "You are a web agent. Answer with one action."}
TRACE = [
    {"role": "user", "content": "Goal: click OK.\n[12] button 'OK'"},
    {"role": "assistant", "content": "Thought: the button is 12.\nAction: click('12')"},
    {"role": "user", "content": "[13] textbox 'Name'"},
    {"role": "assistant", "content": "Action: fill('13', 'Ann')"},
    {"role": "user", "content": "[14] button 'Submit'"},
    {"role": "assistant", "content": "Action: click('14')"},
]


def assistant_mask(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and, independently of any template, 1 on tokens inside a reply + its <|im_end|>."""
    header, spans, cursor = "<|im_start|>assistant\n", [], text.find("<|im_start|>assistant\n")
    while cursor >= 0:
        start = cursor + len(header)
        end = text.index("<|im_end|>", start) + len("<|im_end|>")
        spans.append((start, end))
        cursor = text.find(header, end)
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    mask = []
    for lo, hi in encoded["offset_mapping"]:
        assert not any(lo < s < hi or lo < e < hi for s, e in spans), "a token crosses a turn boundary"
        mask.append(int(any(s <= lo and hi <= e for s, e in spans)))
    return encoded["input_ids"], mask
