"""Teachers: whatever writes the expert traces the student learns from by SFT.

A teacher answers a batch of chat conversations (system prompt, observations, its own earlier turns)
with one :class:`~sec_rl.web.policies.Reply` each: the text (a thought, then one action) and the tokens it
cost, which the trace records and compute accounting turns into FLOPs. A teacher reads chat messages: the
episode loop asks it through a :class:`~sec_rl.web.policies.ChatPolicy`, in collection as in
:func:`sec_rl.web.evaluate.evaluate`, so a teacher's success rate is measured the same way as the student's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sec_rl.web.observation import Messages
from sec_rl.web.policies import Reply

__all__ = ["Messages", "OpenAITeacher", "Reply", "Teacher", "TeacherError", "TransformersTeacher"]

logger = logging.getLogger(__name__)


class Teacher(ABC):
    """Maps conversations to replies, many at once (one batched call per turn of all live episodes).

    Attributes:
        name: recorded in every trace (e.g. the served model's name).
        num_parameters: the model's parameter count, for inference FLOPs (2 x parameters x tokens);
            0 for a teacher without a model, None when unknown (its compute is then not counted).
    """

    name: str = "teacher"
    num_parameters: int | None = None

    @abstractmethod
    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        """One reply per conversation, in order. A failed turn is a reply whose text holds no action."""

    def act_batch(self, conversations: Sequence[Messages]) -> list[str]:
        """The chat-agent interface (an object with ``act_batch``): texts only."""
        return [reply.text for reply in self.generate(conversations)]

    def close(self) -> None:  # noqa: B027 - optional: teachers holding no resources need not override it
        """Release clients, models or threads."""

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TeacherError(RuntimeError):
    """The teacher cannot answer at all (endpoint down, wrong model name, refused key); the message says the fix."""


def _httpx() -> Any:
    """``httpx``, or ``httpx2`` (its successor, which newer ``huggingface_hub`` releases install instead)."""
    try:
        import httpx
    except ImportError:
        try:
            import httpx2 as httpx
        except ImportError as error:
            raise ImportError("OpenAITeacher needs an HTTP client: pip install httpx") from error
    return httpx


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _context_overflow(text: str) -> bool:
    """Whether a 400 answer says the conversation does not fit the model's context (vLLM's and OpenAI's wording)."""
    text = text.lower()
    return "context_length_exceeded" in text or ("context length" in text and "maximum" in text)


class OpenAITeacher(Teacher):
    """Any OpenAI-compatible chat-completions endpoint as a teacher: ``vllm serve``, TGI, a hosted API.

    Conversations of one call are sent as parallel requests (a thread pool of ``concurrency``), which is
    how a vLLM or TGI server batches them. Failures that may pass (connection errors, timeouts, HTTP 429
    and 5xx) are retried with exponential backoff and jitter; errors that will not pass raise a
    :class:`TeacherError` saying what to fix. One malformed answer (no ``choices``, not JSON) or one
    conversation longer than the model's context becomes an empty reply (the environment records an
    invalid action), logged and counted in ``malformed``, so one bad turn does not stop a collection.

    Args:
        base_url: the API root, e.g. ``http://localhost:8000/v1`` for ``vllm serve``.
        model: the served model's name (checked once against ``GET {base_url}/models``, on first use).
        api_key: sent as a bearer token; default ``$OPENAI_API_KEY``, else ``"EMPTY"`` (what a local server
            without ``--api-key`` accepts).
        temperature: 0.0 (greedy) by default: a teacher should write its most likely action at every step.
            The study's 0.25 is the student's sampling temperature for RL exploration; raise this one only
            to collect several different traces per goal.
        max_tokens: length limit of one turn (thought + action).
        concurrency: requests in flight at once.
        max_retries: retries of one request after its first attempt.
        timeout: seconds per request.
        backoff: the first retry waits about ``backoff`` seconds, doubling up to ``max_backoff`` (each wait
            randomised to 50-100%, so parallel requests do not retry in lockstep).
        max_backoff: the longest wait between retries (a ``Retry-After`` header is honoured up to it).
        num_parameters: the served model's parameter count, for inference FLOPs (None: not counted).
        extra_body: more request fields (``top_p``, ``stop``, vLLM's ``repetition_penalty``...).
        name: recorded in traces (default: ``model``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        num_parameters: int | None = None,
        extra_body: dict[str, Any] | None = None,
        name: str | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://, e.g. http://localhost:8000/v1; got {base_url!r}."
            )
        if concurrency < 1 or max_retries < 0 or max_tokens < 1 or temperature < 0:
            raise ValueError(
                "concurrency and max_tokens must be >= 1, max_retries and temperature >= 0; "
                f"got {concurrency}, {max_tokens}, {max_retries}, {temperature}."
            )
        self.base_url, self.model = base_url.rstrip("/"), model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.temperature, self.max_tokens = temperature, max_tokens
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.num_parameters, self.extra_body = num_parameters, dict(extra_body or {})
        self.name = name or model
        # running totals over every request (read them for compute accounting or monitoring)
        self.requests = self.prompt_tokens = self.completion_tokens = self.malformed = 0
        self._httpx = _httpx()
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._model_checked = False
        self._random = random.Random()

    # -- HTTP --------------------------------------------------------------------------------------
    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._httpx.Client(
                    timeout=self.timeout,
                    headers={"Authorization": f"Bearer {self.api_key}"},
                    limits=self._httpx.Limits(
                        max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                    ),
                )
            return self._client

    def _wait(self, attempt: int, response: Any) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + 0.5 * self._random.random())
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep the backoff
                delay = min(self.max_backoff, max(delay, float(retry_after)))
        return delay

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request with retries; returns the first answer that is neither a transient error nor a refusal."""
        url = f"{self.base_url}{path}"
        last_error: Exception | None = None
        response = None
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._wait(attempt, response))
            try:
                response = self._http().request(method, url, json=body)
            except self._httpx.TransportError as error:  # refused, reset, timed out
                last_error, response = error, None
                logger.debug("%s %s failed (%s), attempt %d/%d", method, url, error, attempt + 1, attempts)
                continue
            if response.status_code in (401, 403):
                raise TeacherError(
                    f"{url} refused the API key (HTTP {response.status_code}: {_snippet(response.text)}). "
                    "Set OPENAI_API_KEY or pass api_key=... with a key this endpoint accepts "
                    "(a local `vllm serve` started with --api-key KEY expects exactly KEY)."
                )
            if response.status_code in (408, 429) or response.status_code >= 500:
                last_error = None
                logger.debug("%s %s: HTTP %d, attempt %d/%d", method, url, response.status_code, attempt + 1, attempts)
                continue
            return response
        if response is not None:
            raise TeacherError(
                f"{method} {url} still answered HTTP {response.status_code} after {attempts} attempts "
                f"({_snippet(response.text)}). The server is overloaded or failing: lower concurrency, "
                "raise max_retries, or check the server's log."
            )
        raise TeacherError(
            f"cannot reach the OpenAI-compatible endpoint {self.base_url} ({type(last_error).__name__}: {last_error}; "
            f"{attempts} attempts). Start a server, e.g. `vllm serve {self.model} --port 8000` "
            "(then base_url=http://localhost:8000/v1), or pass the base_url of a running one."
        ) from last_error

    def _check_model(self) -> None:
        """Once: is ``model`` among the served models? A wrong name otherwise fails every request alike."""
        with self._lock:
            if self._model_checked:
                return
        response = self._request("GET", "/models")
        served: list[str] | None = None
        if response.status_code == 200:
            try:
                served = [str(entry["id"]) for entry in response.json()["data"]]
            except (ValueError, KeyError, TypeError):
                served = None
        if served is None:
            logger.warning(
                "%s/models gave no model list (HTTP %d): the model name %r is not checked.",
                self.base_url,
                response.status_code,
                self.model,
            )
        elif self.model not in served:
            raise TeacherError(
                f"{self.base_url} does not serve the model {self.model!r}; it serves: "
                f"{', '.join(served) or '(none)'}. Pass model= one of these, "
                f"or start a server with yours (`vllm serve {self.model}`)."
            )
        with self._lock:
            self._model_checked = True

    # -- the Teacher interface ---------------------------------------------------------------------
    def _complete(self, messages: Messages) -> Reply:
        body = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **self.extra_body,
        }
        response = self._request("POST", "/chat/completions", body)
        url = f"{self.base_url}/chat/completions"
        if response.status_code == 400 and _context_overflow(response.text):
            logger.warning("%s: the conversation does not fit the model's context: %s", url, _snippet(response.text))
            return self._reply("", None, malformed=True)
        if response.status_code == 404:
            raise TeacherError(
                f"POST {url} answered 404 ({_snippet(response.text)}): check that base_url ends with the API "
                f"root (e.g. http://localhost:8000/v1) and that {self.model!r} is served."
            )
        if response.status_code >= 400:
            raise TeacherError(f"POST {url} answered HTTP {response.status_code}: {_snippet(response.text)}")
        try:
            data = response.json()
        except ValueError:
            data = None
        try:
            text = data["choices"][0]["message"]["content"] or ""  # type: ignore[index]
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (KeyError, IndexError, TypeError) as error:
            logger.warning(
                "%s: malformed answer (%r), recorded as an empty reply: %s", url, error, _snippet(response.text)
            )
            return self._reply("", data, malformed=True)
        return self._reply(text, data)

    def _reply(self, text: str, data: Any, malformed: bool = False) -> Reply:
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        prompt_tokens, completion_tokens = (
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        with self._lock:
            self.requests += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.malformed += int(malformed)
        return Reply(text, prompt_tokens, completion_tokens)

    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        """One reply per conversation, in order; requests run ``concurrency`` at a time."""
        conversations = list(conversations)
        if not conversations:
            return []
        self._check_model()
        if len(conversations) == 1 or self.concurrency == 1:
            return [self._complete(messages) for messages in conversations]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-teacher")
            pool = self._pool
        return list(pool.map(self._complete, conversations))

    def close(self) -> None:
        with self._lock:
            pool, client, self._pool, self._client = self._pool, self._client, None, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()


class TransformersTeacher(Teacher):
    """A local ``transformers`` causal LM as a teacher (a Hub name, a folder, or a loaded model + tokenizer).

    Generation is :class:`sec_rl.web.policies.ModelAgent`'s (batched, left-padded, over the chat template),
    so a model answers the same whether it teaches or is evaluated; its token counts fill the replies.

    Args:
        model: a Hub name or local path (loaded with ``AutoModelForCausalLM``), or a loaded model.
        tokenizer: required with a loaded model; loaded from ``model`` otherwise.
        temperature: 0.0 (greedy) by default, see :class:`OpenAITeacher` for why.
        top_p: nucleus sampling, with ``temperature`` > 0.
        max_new_tokens: length limit of one turn.
        batch_size: conversations per ``generate`` call.
        dtype: passed to ``from_pretrained`` when loading.
        device: where to move the model (default: where it is, CPU after loading).
        num_parameters: N for FLOPs; default the model's count without input embeddings, as
            :mod:`sec_rl.pipeline.compute` counts every stage.
        name: recorded in traces (default: the model's name or path).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        tokenizer: Any = None,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        batch_size: int = 16,
        dtype: Any = "auto",
        device: str | None = None,
        num_parameters: int | None = None,
        name: str | None = None,
    ):
        from sec_rl.pipeline.compute import count_parameters
        from sec_rl.web.policies import ModelAgent

        if isinstance(model, str | os.PathLike):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from sec_rl.models import resolve_model

            name = name or str(model)
            model = resolve_model(str(model))  # a packaged-model name (smollm2-135m) -> its folder
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
        elif tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer: TransformersTeacher(model, tokenizer).")
        if device is not None:
            model = model.to(device)
        model.eval()
        self.agent = ModelAgent(
            model,
            tokenizer,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.num_parameters = num_parameters if num_parameters is not None else count_parameters(model, True)

    @property
    def model(self) -> Any:
        return self.agent.model

    @property
    def tokenizer(self) -> Any:
        return self.agent.tokenizer

    def generate(self, conversations: Sequence[Messages]) -> list[Reply]:
        """Batched generation; ``prompt_tokens`` without padding, ``completion_tokens`` up to the first EOS."""
        return self.agent.generate(list(conversations))
