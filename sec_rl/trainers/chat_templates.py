"""Training templates for ChatML chat templates: ``assistant_only_loss=True`` on models as users have them.

transformers builds SFT's assistant-only loss mask from ``{% generation %}...{% endgeneration %}`` markers in the
chat template. Models from the Hub ship templates without them; TRL swaps in a marked copy for the families it
knows and stops with "not training-compatible" otherwise. ChatML (``<|im_start|>role\\n content<|im_end|>\\n``)
is the template of many families TRL does not list (SmolLM2, Qwen1.5/Qwen2, Hermes, OpenHermes, ...), and these
templates all render each message with one expression. :func:`chatml_training_template` rewrites that expression
so that an assistant message's content and its ``<|im_end|>`` sit inside the markers (the model learns to stop;
the role header and the newline stay outside), keeps every other message as it was, and accepts the result only
if it renders exactly what the original renders on probe conversations.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["chatml_training_template", "needs_training_template", "sft_training_template"]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# One `{{ ... }}` output expression, with its whitespace-control signs.
_OUTPUT = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.S)
_GENERATION_TAG = re.compile(r"\{%[-+]?\s*generation\s*[-+]?%\}")
_ROLE, _CONTENT = object(), object()

# Conversations on which the patched template must render exactly as the original (and mask only assistant text).
_PROBES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Click OK."},
        {"role": "assistant", "content": "Action: click('12')"},
        {"role": "user", "content": "Page:\n[12] button 'OK'"},
        {"role": "assistant", "content": "Thought: done.\nAction: noop()"},
    ],
    [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"}, {"role": "user", "content": "?"}],
]


def needs_training_template(processing_class: Any) -> bool:
    """True when ``assistant_only_loss`` would fail: no generation markers, and TRL has no training template."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = getattr(processing_class, "chat_template", None)
    if not isinstance(template, str) or has_generation_markers(template):
        return False
    try:
        get_training_chat_template(processing_class)
    except ValueError:
        return True
    return False


def chatml_training_template(processing_class: Any) -> str | None:
    """The tokenizer's ChatML template with generation markers around each assistant reply, or None.

    None means the template is not one this function can patch safely: not ChatML, already marked, rendering
    messages in more than one place, or rendering anything differently once patched.
    """
    template = getattr(processing_class, "chat_template", None)
    if not isinstance(template, str) or IM_START not in template or _GENERATION_TAG.search(template):
        return None
    candidates = [(m, parts) for m in _OUTPUT.finditer(template) if (parts := _message_expression(m.group(2)))]
    if len(candidates) != 1:
        return None
    match, (variable, suffix) = candidates[0]
    patched = template[: match.start()] + _marked(match, variable, suffix) + template[match.end() :]
    return patched if _renders_alike(processing_class, template, patched) else None


def _message_expression(body: str) -> tuple[str, str] | None:
    """``(loop variable, suffix)`` if ``body`` is ``'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>'...``."""
    import jinja2
    from jinja2 import nodes

    try:
        output = jinja2.Environment().parse("{{" + body + "}}").body[0]
    except jinja2.TemplateSyntaxError:
        return None
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        return None
    leaves: list[Any] = []
    variables: set[str] = set()

    def flatten(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Add | nodes.Concat):
            children = node.nodes if isinstance(node, nodes.Concat) else [node.left, node.right]
            return all(flatten(child) for child in children)
        if isinstance(node, nodes.Const) and isinstance(node.value, str):
            leaves.append(node.value)
            return True
        field = _message_field(node)
        if field is None:
            return False
        variables.add(field[0])
        leaves.append(_ROLE if field[1] == "role" else _CONTENT)
        return True

    if not flatten(output.nodes[0]) or len(variables) != 1:
        return None
    merged: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, str) and merged and isinstance(merged[-1], str):
            merged[-1] += leaf
        else:
            merged.append(leaf)
    if len(merged) != 5 or merged[:4] != [IM_START, _ROLE, "\n", _CONTENT] or not isinstance(merged[4], str):
        return None
    if not merged[4].startswith(IM_END) or merged[4][len(IM_END) :].strip():
        return None
    return variables.pop(), merged[4][len(IM_END) :]


def _message_field(node: Any) -> tuple[str, str] | None:
    """``("message", "role")`` for ``message['role']`` or ``message.role`` (and the same for content)."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name, key = node.node, node.arg.value
    elif isinstance(node, nodes.Getattr):
        name, key = node.node, node.attr
    else:
        return None
    if isinstance(name, nodes.Name) and key in ("role", "content"):
        return name.name, key
    return None


def _marked(match: re.Match[str], variable: str, suffix: str) -> str:
    """The expression split in two branches; assistant content + ``<|im_end|>`` inside the generation markers.

    The block tags keep the original expression's whitespace behaviour: ``{%-``/``-%}`` where it stripped,
    ``{%+``/``+%}`` elsewhere (a ``{{ }}`` is never touched by the ``lstrip_blocks``/``trim_blocks`` that
    transformers renders with, and the ``+`` turns those off for the new block tags).
    """
    left = "-" if match.group(1) == "-" else "+"
    right = "-" if match.group(3) == "-" else "+"
    role, content = f"{variable}['role']", f"{variable}['content']"
    tail = "{{ " + repr(suffix) + " }}" if suffix else ""
    return (
        f"{{%{left} if {role} == 'assistant' %}}"
        f"{{{{ '{IM_START}' + {role} + '\\n' }}}}"
        f"{{% generation %}}{{{{ {content} + '{IM_END}' }}}}{{% endgeneration %}}{tail}"
        f"{{% else %}}{{{{{match.group(2)}}}}}{{% endif {right}%}}"
    )


def _renders_alike(processing_class: Any, original: str, patched: str) -> bool:
    """Same text as the original on every probe, and a mask covering exactly each reply + ``<|im_end|>``."""
    try:
        for messages in _PROBES:
            for add_generation_prompt in (False, True):
                kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
                before = processing_class.apply_chat_template(messages, chat_template=original, **kwargs)
                if processing_class.apply_chat_template(messages, chat_template=patched, **kwargs) != before:
                    return False
            encoded = processing_class.apply_chat_template(
                messages, chat_template=patched, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
            expected = "".join(m["content"] + IM_END for m in messages if m["role"] == "assistant")
            if processing_class.decode(masked) != expected:
                return False
    except Exception:  # a template (or processor) that cannot render a probe is not one to patch blindly
        return False
    return True


@contextmanager
def sft_training_template(trainer_args: tuple, trainer_kwargs: dict[str, Any]) -> Iterator[tuple[tuple, dict, Any]]:
    """Around ``SFTTrainer.__init__``: a ChatML tokenizer carries its training template while TRL prepares data.

    TRL reads the tokenizer's template and tokenizes the datasets inside ``__init__``; with the markers in place
    it takes the template as training-compatible, exactly as for the families it patches itself. The user's own
    template is put back afterwards, so the saved tokenizer renders (and serves) as before. Yields the trainer's
    arguments (with the tokenizer, loaded as TRL would when none was given) and the patched template, or None
    when nothing needed patching: TRL's own behaviour then applies unchanged, its clear errors included. An
    ``assistant_only_loss`` left unset (``SECSFTConfig``) is first settled from the training data, here where the
    trainer's arguments are bound once.
    """
    from trl import SFTTrainer

    from sec_rl.trainers.sft_config import resolve_assistant_only_loss

    try:
        bound = inspect.signature(SFTTrainer.__init__).bind_partial(None, *trainer_args, **trainer_kwargs)
    except TypeError:  # a subclass's own arguments: leave everything to TRL
        yield trainer_args, trainer_kwargs, None
        return
    values = bound.arguments
    training_args = values.get("args")
    if training_args is not None:  # SECSFTConfig's unset assistant_only_loss follows the data first
        resolve_assistant_only_loss(training_args, values.get("train_dataset"))
    if not getattr(training_args, "assistant_only_loss", False) or values.get("model") is None:
        yield trainer_args, trainer_kwargs, None
        return
    if values.get("processing_class") is None:
        values["processing_class"] = _load_processing_class(values["model"], training_args)
    processing_class = values["processing_class"]
    patched = chatml_training_template(processing_class) if needs_training_template(processing_class) else None
    original = processing_class.chat_template
    if patched is not None:
        processing_class.chat_template = patched
    try:
        yield bound.args[1:], bound.kwargs, patched
    finally:
        processing_class.chat_template = original


def _load_processing_class(model: Any, training_args: Any) -> Any:
    """The processor TRL would load for ``model`` (same id, revision and remote-code setting)."""
    from transformers import AutoProcessor

    model_id = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
    revision = (getattr(training_args, "model_init_kwargs", None) or {}).get("revision")
    return AutoProcessor.from_pretrained(
        model_id, revision=revision, trust_remote_code=getattr(training_args, "trust_remote_code", False)
    )
