"""Who answers in an episode: the policy hook of the one episode loop (:class:`~sec_rl.web.rollout.RolloutEngine`).

The loop renders every turn as chat messages and asks a *policy* for one :class:`Reply` per live episode, all
in one call. What differs between training, evaluation and collection is only the policy:

- :class:`TokenPolicy` reads **token ids**: the model being trained or evaluated. A turn's context is the chat
  template's rendering of its messages; in the ``"episode"`` layout each next context is the previous one, the
  completion exactly as generated and the template's rendering of the next observation, never re-tokenised.
  Its :class:`Actor` generates: :class:`TransformersActor` (``model.generate``) or :class:`VLLMActor` (the
  trainer's vLLM). :class:`ModelAgent` is a TokenPolicy over a ``transformers`` model with decoding settings,
  so a checkpoint is evaluated on the very ids it was trained on.
- :class:`ChatPolicy` reads **messages**: teachers, API models and scripted agents. It wraps a callable
  ``messages -> text``, an object with ``act_batch(conversations) -> texts``, or one with
  ``generate(conversations) -> replies`` (a :class:`~sec_rl.pipeline.teachers.Teacher`, which reports tokens).

Nothing here imports torch or transformers until a model generates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sec_rl.web.observation import Messages

if TYPE_CHECKING:
    from sec_rl.web.rollout import Step

__all__ = [
    "Actor",
    "BatchAgent",
    "ChatPolicy",
    "ModelAgent",
    "Policy",
    "Reply",
    "TokenPolicy",
    "TransformersActor",
    "VLLMActor",
    "as_policy",
    "encode_messages",
    "observation_suffix_ids",
    "stop_token_ids",
]


@dataclass
class Reply:
    """One turn's answer: the text the environment receives, and what it cost (0 where not counted).

    Token-level policies also fill ``completion_ids`` (ending with an end-of-turn token unless ``truncated`` at
    the length limit) and, when the actor reports them (vLLM), the sampling ``logprobs``.
    """

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    truncated: bool = False


class Policy(Protocol):
    """The hook of the episode loop: how a turn's messages become a context, and one reply per context.

    Attributes:
        tokenizer: renders page token budgets (``max_page_tokens``); None when the policy has none.
    """

    tokenizer: Any

    def context(self, messages: Messages, previous: Step | None = None) -> list[int]:
        """The token ids the policy generates from (``[]`` for a policy that reads messages).

        ``previous`` is the turn this one continues in the ``"episode"`` layout (``messages`` then ends with its
        reply and the next observation); None for a fresh prompt.
        """
        ...

    def act(self, conversations: Sequence[Messages], contexts: Sequence[list[int]]) -> list[Reply]:
        """One reply per live episode, in order. Under several processes it is called on every process the
        same number of times, possibly with no episode, so that collective generation stays in step."""
        ...


# -- token ids -------------------------------------------------------------------------------------
class Actor(Protocol):
    """Generates one completion per token context: a :class:`Reply` with ``completion_ids`` (and ``logprobs``)."""

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Reply]: ...


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """The tokens that end a turn: the tokenizer's EOS and the generation config's EOS id(s), as TRL counts them."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list | tuple) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def encode_messages(
    tokenizer: Any, messages: Messages, *, add_generation_prompt: bool = True, **chat_template_kwargs: Any
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template (no extra special tokens)."""
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False, **chat_template_kwargs
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def observation_suffix_ids(
    tokenizer: Any, conversation: Messages, user_message: dict[str, str], **chat_template_kwargs: Any
) -> list[int]:
    """The tokens that follow an assistant turn's end-of-turn token when ``user_message`` comes next.

    ``conversation`` ends with the assistant turn. Both renderings are cut after the last EOS (the end of that
    turn), so the suffix is the template's glue, the user message and the next generation prompt; it can be
    appended to the generated ids without re-tokenising them.
    """
    prefix = encode_messages(tokenizer, conversation, add_generation_prompt=False, **chat_template_kwargs)
    eos = tokenizer.eos_token_id
    ends = [i for i, token in enumerate(prefix) if token == eos]
    if ends:
        prefix = prefix[: ends[-1] + 1]
    full = encode_messages(
        tokenizer, [*conversation, user_message], add_generation_prompt=True, **chat_template_kwargs
    )
    if full[: len(prefix)] != prefix:
        raise ValueError(
            "the chat template does not render a conversation as a prefix of its continuation, so an episode "
            "cannot be trained on as one sequence: use web_layout='per_step', or a template without "
            "history-dependent rewriting (e.g. one that strips earlier reasoning)."
        )
    return full[len(prefix) :]


class TransformersActor:
    """Plain ``model.generate`` over left-padded contexts; sampling settings come from ``generation_config``.

    Args:
        model: a causal LM (or a distributed wrapper, with ``unwrap``).
        tokenizer: its tokenizer (pad and EOS ids).
        generation_config: ``transformers.GenerationConfig``; its ``max_new_tokens`` is the length limit of one
            turn. Default: sampling at temperature 1 with 256 new tokens.
        batch_size: contexts per ``generate`` call (None: all at once).
        unwrap: a context manager factory yielding the model to generate with, e.g. TRL's
            ``unwrap_model_for_generation`` (DeepSpeed ZeRO-3 gathers the weights there). It is entered on every
            call, even with no context, so that its collectives run on every process.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        generation_config: Any = None,
        *,
        batch_size: int | None = None,
        unwrap: Callable[[], AbstractContextManager[Any]] | None = None,
    ):
        from transformers import GenerationConfig

        self.model, self.tokenizer = model, tokenizer
        if generation_config is None:
            generation_config = GenerationConfig(
                max_new_tokens=256, do_sample=True, temperature=1.0, pad_token_id=tokenizer.pad_token_id
            )
        if generation_config.pad_token_id is None:
            generation_config.pad_token_id = tokenizer.pad_token_id
        if generation_config.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to its EOS token).")
        self.generation_config = generation_config
        self.batch_size = batch_size
        self.unwrap = unwrap
        self.eos_ids = stop_token_ids(tokenizer, generation_config)

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Reply]:
        import torch

        context = self.unwrap() if self.unwrap is not None else nullcontext(self.model)
        outputs: list[Reply] = []
        with context as model, torch.no_grad():
            size = self.batch_size or max(1, len(prompts))
            for start in range(0, len(prompts), size):
                outputs.extend(self._generate_chunk(model, prompts[start : start + size]))
        return outputs

    def _generate_chunk(self, model: Any, prompts: Sequence[Sequence[int]]) -> list[Reply]:
        import torch

        pad = self.generation_config.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        device = next(model.parameters()).device
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=self.generation_config,
        )
        results = []
        for row in generated[:, width:].tolist():
            end = next((i + 1 for i, token in enumerate(row) if token in self.eos_ids), len(row))
            results.append(Reply(completion_ids=row[:end]))
        return results


class VLLMActor:
    """The trainer's own vLLM (``trainer.vllm_generation``: server or colocate mode), one completion per context.

    Weights are synchronised by ``GRPOTrainer._generate`` before each rollout; the sampling settings are the
    trainer's (temperature, top-p, ``max_completion_length`` per turn). Untested here: no GPU and no vLLM.

    TRL's server mode gathers every process's prompts and slices the answers back assuming equal counts (and
    colocate mode with tensor parallelism gathers within its group), so under several processes each process
    pads its list to the largest one with one-token prompts and drops their answers.
    """

    def __init__(self, trainer: Any):
        if not getattr(trainer, "use_vllm", False):
            raise ValueError("VLLMActor needs a trainer created with use_vllm=True.")
        self.trainer = trainer

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Reply]:
        trainer = self.trainer
        prompts = [list(p) for p in prompts]
        count = len(prompts)
        if trainer.accelerator.num_processes > 1:  # equal counts on every process (see the class docstring)
            import torch

            sizes = trainer.accelerator.gather(torch.tensor([count], device=trainer.accelerator.device))
            tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
            prompts += [[tokenizer.eos_token_id]] * (int(sizes.max()) - count)
        if not prompts:
            return []
        _, completion_ids, logprobs, _ = trainer.vllm_generation.generate(
            prompts=prompts, images=None, num_generations=1
        )
        results = []
        for i in range(count):
            sampled = [lp[0] for lp in logprobs[i]] if logprobs is not None else None  # top-1 = the sampled token
            results.append(Reply(completion_ids=list(completion_ids[i]), logprobs=sampled))
        return results


class TokenPolicy:
    """Contexts as token ids, generated from by an :class:`Actor` (the trained model's view of an episode).

    Args:
        actor: generates the completions.
        tokenizer: renders prompts (chat template) and decodes completions.
        chat_template_kwargs: extra arguments of ``apply_chat_template`` (e.g. ``enable_thinking``).
        eos_token_ids: the tokens that end a turn (default: :func:`stop_token_ids` of the actor's generation
            config); a completion ending otherwise was cut at the length limit.
    """

    def __init__(
        self,
        actor: Actor,
        tokenizer: Any,
        *,
        chat_template_kwargs: dict[str, Any] | None = None,
        eos_token_ids: Sequence[int] | set[int] | None = None,
    ):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token: a token policy needs it to end and join turns.")
        self.actor, self.tokenizer = actor, tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        default = stop_token_ids(tokenizer, getattr(actor, "generation_config", None))
        self.eos_token_ids = set(eos_token_ids) if eos_token_ids is not None else default

    def context(self, messages: Messages, previous: Step | None = None) -> list[int]:
        if previous is None:
            return encode_messages(self.tokenizer, messages, **self.chat_template_kwargs)
        conversation, user = messages[:-1], messages[-1]
        suffix = observation_suffix_ids(self.tokenizer, conversation, user, **self.chat_template_kwargs)
        closing = [self.tokenizer.eos_token_id] if previous.truncated else []  # close a turn cut at the limit
        return [*previous.prompt_ids, *previous.completion_ids, *closing, *suffix]

    def act(self, conversations: Sequence[Messages], contexts: Sequence[list[int]]) -> list[Reply]:
        replies = self.actor.generate(contexts)  # even with no context: the actor's collectives run everywhere
        texts = self.tokenizer.batch_decode([r.completion_ids for r in replies], skip_special_tokens=True)
        for reply, text, context in zip(replies, texts, contexts):
            ids = reply.completion_ids
            reply.text, reply.prompt_tokens, reply.completion_tokens = text, len(context), len(ids)
            reply.truncated = not ids or ids[-1] not in self.eos_token_ids
        return replies

    # -- the agent interface: whole conversations, each rendered afresh (a teacher, a one-off question)
    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        """One reply per conversation: ``prompt_tokens`` without padding, ``completion_tokens`` to the end of turn."""
        return self.act(conversations, [self.context(list(m)) for m in conversations])

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]:
        return [reply.text for reply in self.generate(conversations)]

    def __call__(self, messages: Messages) -> str:
        return self.act_batch([messages])[0]


class ModelAgent(TokenPolicy):
    """A ``transformers`` causal LM as a token policy: batched ``generate`` over the chat template.

    Args:
        model: the causal LM.
        tokenizer: its tokenizer (a pad token is set to EOS if missing).
        temperature: 0 for greedy decoding; the web-agent study found 0.25 best for its RL runs.
        top_p: nucleus sampling (with ``temperature`` > 0).
        max_new_tokens: length limit of one turn's output (thought + action).
        batch_size: contexts per ``generate`` call.
        chat_template_kwargs: as the trainer's (``chat_template_kwargs`` of its config), so prompts match.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        batch_size: int = 16,
        chat_template_kwargs: dict[str, Any] | None = None,
    ):
        from transformers import GenerationConfig

        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        base = getattr(model, "generation_config", None)
        config = copy.deepcopy(base) if base is not None else GenerationConfig()  # keeps the model's EOS ids
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        config.update(
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        actor = TransformersActor(model, tokenizer, config, batch_size=batch_size)
        super().__init__(actor, tokenizer, chat_template_kwargs=chat_template_kwargs)
        self.model = model


# -- chat messages ---------------------------------------------------------------------------------
@runtime_checkable
class BatchAgent(Protocol):
    """An agent that answers many conversations in one call (one batched generation)."""

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]: ...


class ChatPolicy:
    """Contexts as chat messages, answered by an agent (teachers, API models, scripted agents).

    Args:
        agent: a callable ``messages -> text``, an object with ``act_batch``, or one with ``generate`` returning
            :class:`Reply` objects (a Teacher: its token counts are recorded).
        tokenizer: measures ``max_page_tokens`` when prompts have a token budget (the student's tokenizer, so
            that the agent sees the pages the student sees).
    """

    def __init__(self, agent: BatchAgent | Callable[[Messages], str], tokenizer: Any = None):
        self.agent, self.tokenizer = agent, tokenizer
        generate = getattr(agent, "generate", None)
        if isinstance(agent, BatchAgent) and callable(generate):  # a Teacher: replies with token counts
            self._ask: Callable[[list[Messages]], list[Reply]] = generate
        elif isinstance(agent, BatchAgent):
            self._ask = lambda conversations: [Reply(text) for text in agent.act_batch(conversations)]
        elif callable(agent):
            self._ask = lambda conversations: [Reply(agent(messages)) for messages in conversations]
        else:
            raise TypeError(f"an agent is a callable messages -> text or has act_batch(); got {type(agent).__name__}.")

    def context(self, messages: Messages, previous: Step | None = None) -> list[int]:
        return []

    def act(self, conversations: Sequence[Messages], contexts: Sequence[list[int]]) -> list[Reply]:
        return self._ask(list(conversations)) if conversations else []


def as_policy(agent: Any) -> Policy:
    """``agent`` itself when it is a :class:`Policy` (token ids), else a :class:`ChatPolicy` over it (messages)."""
    if callable(getattr(agent, "context", None)) and callable(getattr(agent, "act", None)):
        return agent
    return ChatPolicy(agent)
