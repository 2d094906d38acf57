"""Teachers: an OpenAI-compatible endpoint (against a local stand-in server) and a local transformers model.

The endpoint cannot exist here (no vLLM, no network), so :class:`FakeOpenAIServer` stands in for
``vllm serve``: a real HTTP server on localhost (stdlib ``http.server`` in a thread) speaking the same
protocol (``GET /v1/models``, ``POST /v1/chat/completions`` with ``usage``). It can be told to fail a number
of requests (503, 429), to answer malformed bodies, or to require an API key; it records how many requests
were in flight at once. The teacher under test is the real client code, over real sockets.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sec_rl.pipeline.teachers import OpenAITeacher, Reply, TeacherError, TransformersTeacher


def goal_action(goal: str) -> str:
    """The server's fixed answer for a goal: one thought and one action."""
    return f'I must {goal}.\nclick("{sum(map(ord, goal)) % 97}")'


def count_words(text: str) -> int:
    return len(text.split())


def conversation(goal: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a web agent. Answer with a thought and one action."},
        {"role": "user", "content": f"Goal: {goal}\nPage: <button id=1>OK</button>"},
    ]


class FakeOpenAIServer:
    """A stand-in for ``vllm serve`` (see the module docstring).

    Token counts are words: prompt tokens over every message's content, completion tokens over the answer.
    """

    def __init__(self, models: tuple[str, ...] = ("teacher-70b",), api_key: str | None = None, delay: float = 0.0):
        self.models, self.api_key, self.delay = list(models), api_key, delay
        self.failures: list[int | tuple[int, str]] = []  # HTTP statuses (and messages) for the next chat requests
        self.canned: list[str] = []  # raw bodies (HTTP 200) to answer the next chat requests with
        self.chat_requests = self.model_requests = 0
        self.in_flight = self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def leave(self) -> None:
                """The request stops counting as in flight: before its answer is written, since the client may send
                its next request (on a new connection, another thread) as soon as it has read it."""
                if getattr(self, "counted", False):
                    with server.lock:
                        server.in_flight -= 1
                    self.counted = False

            def send(self, status: int, payload: Any, raw: str | None = None) -> None:
                self.leave()
                data = (raw if raw is not None else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self.send(401, {"error": {"message": "Unauthorized", "type": "invalid_api_key"}})
                return False

            def do_GET(self) -> None:
                if not self.authorised():
                    return
                if self.path != "/v1/models":
                    return self.send(404, {"error": {"message": f"no route {self.path}"}})
                with server.lock:
                    server.model_requests += 1
                self.send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.authorised():
                    return
                if self.path != "/v1/chat/completions":
                    return self.send(404, {"error": {"message": f"no route {self.path}"}})
                with server.lock:
                    server.chat_requests += 1
                    server.bodies.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    self.counted = True
                    failure = server.failures.pop(0) if server.failures else None
                    canned = server.canned.pop(0) if server.canned and failure is None else None
                try:
                    time.sleep(server.delay)
                    if failure is not None:
                        status, message = failure if isinstance(failure, tuple) else (failure, f"simulated {failure}")
                        return self.send(status, {"error": {"message": message}})
                    if canned is not None:
                        return self.send(200, None, raw=canned)
                    if body["model"] not in server.models:
                        return self.send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
                    goal = body["messages"][-1]["content"].split("\n")[0].removeprefix("Goal: ")
                    text = goal_action(goal)
                    prompt = sum(count_words(m["content"]) for m in body["messages"])
                    self.send(
                        200,
                        {
                            "id": "cmpl-1",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                            "usage": {
                                "prompt_tokens": prompt,
                                "completion_tokens": count_words(text),
                                "total_tokens": prompt + count_words(text),
                            },
                        },
                    )
                finally:
                    self.leave()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeOpenAIServer(models=("teacher-70b", "teacher-8b"))
    yield fake
    fake.close()


def make_teacher(server: FakeOpenAIServer, **kwargs: Any) -> OpenAITeacher:
    options = {"model": "teacher-70b", "backoff": 0.01, "max_backoff": 0.05, "timeout": 10.0} | kwargs
    return OpenAITeacher(server.url, **options)


GOALS = ["book a flight", "click the OK button", "enter the date", "select the red item", "search for cats"]


def test_replies_and_token_counts(server):
    with make_teacher(server, concurrency=3, num_parameters=70_000_000_000, extra_body={"top_p": 0.9}) as teacher:
        replies = teacher.generate([conversation(g) for g in GOALS])
        assert teacher.act_batch([conversation(GOALS[0])]) == [goal_action(GOALS[0])]
    assert teacher.name == "teacher-70b" and teacher.num_parameters == 70_000_000_000
    expected_prompt = [sum(count_words(m["content"]) for m in conversation(g)) for g in GOALS]
    assert replies == [
        Reply(goal_action(g), p, count_words(goal_action(g))) for g, p in zip(GOALS, expected_prompt, strict=True)
    ]
    assert teacher.requests == len(GOALS) + 1
    assert teacher.prompt_tokens == sum(expected_prompt) + expected_prompt[0]
    assert teacher.completion_tokens == sum(r.completion_tokens for r in replies) + replies[0].completion_tokens
    # the request carries the decoding settings; the model list was fetched once, lazily
    body = server.bodies[0]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 512 and body["top_p"] == 0.9
    assert server.model_requests == 1
    assert teacher.generate([]) == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_requests_overlap_up_to_concurrency(concurrency):
    fake = FakeOpenAIServer(delay=0.15)
    try:
        with make_teacher(fake, concurrency=concurrency) as teacher:
            replies = teacher.generate([conversation(f"goal {i}") for i in range(8)])
        assert [r.text for r in replies] == [goal_action(f"goal {i}") for i in range(8)]  # order kept
        assert fake.max_in_flight == concurrency
    finally:
        fake.close()


@pytest.mark.parametrize("status", [503, 429])
def test_transient_failures_are_retried(server, status):
    server.failures = [status] * 3
    with make_teacher(server, max_retries=3) as teacher:
        replies = teacher.generate([conversation("book a flight")])
    assert replies[0].text == goal_action("book a flight")
    assert server.chat_requests == 4  # three failures, then the answer


def test_retries_exhausted_name_the_status(server):
    server.failures = [503] * 10
    with make_teacher(server, max_retries=2) as teacher, pytest.raises(TeacherError) as error:
        teacher.generate([conversation("book a flight")])
    assert "HTTP 503 after 3 attempts" in str(error.value) and "simulated 503" in str(error.value)
    assert server.chat_requests == 3


def test_endpoint_down_says_how_to_start_a_server():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    teacher = OpenAITeacher(url, "meta-llama/Llama-3.3-70B-Instruct", max_retries=2, backoff=0.01)
    with pytest.raises(TeacherError) as error:
        teacher.generate([conversation("book a flight")])
    message = str(error.value)
    assert f"cannot reach the OpenAI-compatible endpoint {url}" in message
    assert "vllm serve meta-llama/Llama-3.3-70B-Instruct" in message and "3 attempts" in message


def test_wrong_model_lists_the_served_models(server):
    with make_teacher(server, model="gpt-5") as teacher, pytest.raises(TeacherError) as error:
        teacher.generate([conversation("book a flight")])
    message = str(error.value)
    assert "does not serve the model 'gpt-5'" in message and "teacher-70b, teacher-8b" in message
    assert server.chat_requests == 0  # found out before sending any conversation


def test_unauthorised_says_the_key_is_wrong(monkeypatch):
    fake = FakeOpenAIServer(api_key="s3cret")
    try:
        with make_teacher(fake, api_key="wrong") as teacher, pytest.raises(TeacherError) as error:
            teacher.generate([conversation("book a flight")])
        assert "refused the API key (HTTP 401" in str(error.value) and "OPENAI_API_KEY" in str(error.value)
        assert fake.chat_requests == 0  # a refusal is not retried
        monkeypatch.setenv("OPENAI_API_KEY", "s3cret")  # the default key comes from the environment
        with make_teacher(fake) as teacher:
            assert teacher.act_batch([conversation("book a flight")]) == [goal_action("book a flight")]
    finally:
        fake.close()


def test_malformed_answers_become_empty_replies(server, caplog):
    server.canned = [
        json.dumps({"id": "x", "usage": {"prompt_tokens": 7, "completion_tokens": 0}}),  # no choices
        "<html>Bad Gateway</html>",  # not JSON
    ]
    with caplog.at_level(logging.WARNING), make_teacher(server, concurrency=1) as teacher:
        replies = teacher.generate([conversation(g) for g in GOALS[:3]])
    assert replies[0] == Reply("", 7, 0) and replies[1] == Reply("", 0, 0)
    assert replies[2].text == goal_action(GOALS[2])
    assert teacher.malformed == 2 and teacher.requests == 3
    assert sum("malformed answer" in record.message for record in caplog.records) == 2


def test_context_overflow_is_an_empty_reply_other_400s_raise(server, caplog):
    overflow = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
    server.failures = [(400, overflow)]
    with caplog.at_level(logging.WARNING), make_teacher(server, concurrency=1) as teacher:
        replies = teacher.generate([conversation("book a flight"), conversation("enter the date")])
        assert replies[0] == Reply("", 0, 0) and replies[1].text == goal_action("enter the date")
        assert teacher.malformed == 1 and "does not fit the model's context" in caplog.text
        server.failures = [(400, "unknown field 'frobnicate'")]  # a request the server will never accept
        with pytest.raises(TeacherError, match="HTTP 400: .*unknown field 'frobnicate'"):
            teacher.generate([conversation("book a flight")])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="http://localhost:8000/v1"):
        OpenAITeacher("localhost:8000", "m")
    with pytest.raises(ValueError, match="concurrency"):
        OpenAITeacher("http://localhost:8000/v1", "m", concurrency=0)


# -- a local transformers model ----------------------------------------------------------------------
def test_transformers_teacher_counts_tokens_as_the_tokenizer(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # a freshly initialised tiny model repeats one token whatever the prompt; larger weights make its greedy
    # outputs differ per prompt, so some rows of a batch can stop early while others go on
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    goals = ["add 1 and 2", "book", "click the second button on the page please", "x", "12+7=", "Q: 5-2"]
    conversations = [conversation(g) for g in goals]
    prompts = [
        tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True)["input_ids"] for m in conversations
    ]

    def alone(ids: list[int]) -> list[int]:  # one prompt, no padding: the tokens the model generates
        with torch.no_grad():
            return model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()

    # a second end-of-turn token that some rows generate and others do not (found, not assumed)
    outputs = [alone(ids) for ids in prompts]
    counts = {t: sum(t in out for out in outputs) for out in outputs for t in out[1:-1]}
    stop = next(t for t, n in counts.items() if 0 < n < len(goals) // 2 + 1)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    outputs = [alone(ids) for ids in prompts]
    assert any(len(out) < 12 for out in outputs) and any(len(out) == 12 for out in outputs)

    teacher = TransformersTeacher(model, tokenizer, max_new_tokens=12, batch_size=len(goals), name="tiny")
    assert teacher.num_parameters == model.num_parameters(exclude_embeddings=True) > 0
    replies = teacher.generate(conversations)
    for ids, out, reply in zip(prompts, outputs, replies, strict=True):
        assert reply.prompt_tokens == len(ids)  # the batch's left padding is not counted
        assert reply.completion_tokens == len(out)  # up to and including the stop token, not the padding after it
        assert reply.text == tokenizer.decode(out, skip_special_tokens=True)


def test_transformers_teacher_from_a_path_or_a_loaded_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    teacher = TransformersTeacher(tiny_model_dir, max_new_tokens=4)
    assert teacher.name == tiny_model_dir
    assert teacher.num_parameters == teacher.model.num_parameters(exclude_embeddings=True)
    replies = teacher.generate([conversation("book"), conversation("click the second button")])
    assert [r.completion_tokens for r in replies] == [4, 4]  # this untrained model never ends its turn
    assert teacher.act_batch([conversation("book")]) == [replies[0].text]
    with pytest.raises(ValueError, match="needs its tokenizer"):
        TransformersTeacher(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    other = TransformersTeacher(teacher.model, teacher.tokenizer, name="tiny", num_parameters=123)
    assert (other.name, other.num_parameters) == ("tiny", 123)
