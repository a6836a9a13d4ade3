"""The openai backend against a real local HTTP server speaking the OpenAI streaming wire format."""

import email.utils
import random
import threading
import time

import pytest

from interpreter.loop import Cancel
from interpreter.protocol import RUN_START, RUN_STOP
from llm.base import BackendError, GenerationParams, StreamStats
from llm.openai_backend import OpenAIBackend, RetryPolicy, retry_after_s
from tests.fixtures.openai_server import Failure

REPLY = f"Let me run it.\n{RUN_START}```python\nprint(6*7)\n```{RUN_STOP}"


def split_everywhere(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def backend(server, **kw) -> OpenAIBackend:
    kw.setdefault("model", "tiny-autocoder")
    kw.setdefault("api_key", server.api_key)
    return OpenAIBackend(base_url=server.base_url, **kw)


def test_chat_streams_the_scripted_reply_and_sends_the_messages(openai_server):
    openai_server.reply = split_everywhere("Hello! I write and run code.", 3)
    stats = StreamStats()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    chunks = list(
        backend(openai_server).stream(messages, GenerationParams(temperature=0.5, top_p=0.9), stats=stats)
    )
    assert chunks == openai_server.reply
    assert stats.stop_reason == "end_of_turn"
    assert stats.prompt_tokens == 7  # from the usage chunk the client asked for
    request = openai_server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["messages"] == messages
    assert request["stream"] is True
    assert (request["temperature"], request["top_p"]) == (0.5, 0.9)
    assert "stop" not in request  # matched client-side, so the stop string stays in the text


def test_streamed_calls_share_one_kept_alive_connection(openai_server):
    # The client stops reading at [DONE]; the backend reads on to the body's end, or every call would open
    # a new connection (a TLS handshake each against a hosted API).
    openai_server.reply = split_everywhere("Hello! I write and run code.", 3)
    client = backend(openai_server)
    for _ in range(3):
        assert "".join(client.stream([{"role": "user", "content": "hi"}], GenerationParams())) == (
            "Hello! I write and run code."
        )
    assert openai_server.connections_opened == 1


def test_a_body_kept_open_after_done_costs_at_most_the_grace_and_a_new_connection(openai_server):
    from llm.openai_backend import AFTER_DONE_WAIT_S

    openai_server.reply = ["Hello", " there."]
    openai_server.failures = [Failure(hold_after_done_s=10)]
    client = backend(openai_server)
    started = time.monotonic()
    assert "".join(client.stream([{"role": "user", "content": "hi"}], GenerationParams())) == "Hello there."
    assert time.monotonic() - started < AFTER_DONE_WAIT_S + 3
    assert "".join(client.stream([{"role": "user", "content": "hi"}], GenerationParams())) == "Hello there."
    assert openai_server.connections_opened == 2  # the held one was closed, not reused


@pytest.mark.parametrize("size", [1, 4, 7])
def test_stops_at_run_stop_split_across_chunks_and_hangs_up(openai_server, size):
    openai_server.reply = split_everywhere(REPLY + "\nthis text comes after the stop" * 5, size)
    openai_server.delay_s = 0.005
    stats = StreamStats()
    text = "".join(
        backend(openai_server).stream(
            [{"role": "user", "content": "print"}], GenerationParams(stop=[RUN_STOP]), stats=stats
        )
    )
    assert text == REPLY
    assert stats.stop_reason == "stop"
    # The client closed the connection instead of reading the rest of the reply.
    assert openai_server.wait_for_disconnects(1)


def test_max_tokens_finish_reason_is_reported(openai_server):
    openai_server.reply = ["a", "b"]
    openai_server.finish_reason = "length"
    stats = StreamStats()
    assert (
        "".join(
            backend(openai_server).stream(
                [{"role": "user", "content": "x"}], GenerationParams(max_new_tokens=2), stats=stats
            )
        )
        == "ab"
    )
    assert stats.stop_reason == "max_tokens"
    assert openai_server.requests[-1]["max_tokens"] == 2


def test_completions_mode_renders_the_chat_template_locally(openai_server, tiny_autocoder_path):
    openai_server.reply = split_everywhere(REPLY, 5)
    b = backend(openai_server, completions=True, tokenizer=str(tiny_autocoder_path))
    messages = [{"role": "user", "content": "print"}]
    text = "".join(b.stream(messages, GenerationParams(stop=[RUN_STOP])))
    assert text == REPLY
    request = openai_server.requests[-1]
    assert request["path"] == "/v1/completions"
    # The template's own text, generation prompt included, minus the BOS the server adds itself.
    assert request["prompt"] == "<|user|>print<|EOT|><|assistant|>"


def test_completions_mode_without_tokenizer_is_a_clear_error(openai_server):
    with pytest.raises(BackendError, match="--tokenizer"):
        backend(openai_server, completions=True)


def test_default_model_is_the_servers_first(openai_server):
    openai_server.models[:] = ["served-a", "served-b"]
    assert backend(openai_server, model=None).model == "served-a"


# Both kinds of cancel: a plain Event (watched) and the loop's Cancel (it calls the backend back).
CANCEL_KINDS = pytest.mark.parametrize("make_cancel", [threading.Event, Cancel], ids=["event", "callback"])


@CANCEL_KINDS
def test_cancel_during_a_slow_stream_returns_promptly(openai_server, make_cancel):
    openai_server.reply = ["tick "] * 200
    openai_server.delay_s = 0.05
    cancel = make_cancel()
    stats = StreamStats()
    got = []
    b = backend(openai_server)
    start = time.monotonic()
    for piece in b.stream([{"role": "user", "content": "x"}], GenerationParams(), cancel, stats):
        got.append(piece)
        if len(got) == 3:
            cancel.set()
    assert time.monotonic() - start < 2.0
    assert len(got) == 3
    assert stats.stop_reason == "cancelled"
    assert openai_server.wait_for_disconnects(1)


def test_wrong_key_is_a_one_line_401_error(openai_server):
    with pytest.raises(BackendError, match=r"rejected the API key \(401\)") as err:
        OpenAIBackend(base_url=openai_server.base_url, api_key="wrong", model="tiny-autocoder")
    assert "\n" not in str(err.value)


def test_unknown_model_is_a_clear_error(openai_server):
    with pytest.raises(BackendError, match="'nope' is not served") as err:
        backend(openai_server, model="nope")
    assert "tiny-autocoder" in str(err.value)


def test_model_removed_after_start_gives_404_error(openai_server):
    b = backend(openai_server)
    openai_server.models[:] = ["other"]
    with pytest.raises(BackendError, match=r"not found .*\(404\)"):
        list(b.stream([{"role": "user", "content": "x"}], GenerationParams()))


def test_connection_refused_is_a_one_line_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match="cannot connect to .* is the server running") as err:
        OpenAIBackend(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key="k")
    assert "\n" not in str(err.value)


def test_api_key_defaults_to_env_then_empty(openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    assert backend(openai_server, api_key=None).api_key == openai_server.api_key
    monkeypatch.delenv("OPENAI_API_KEY")
    openai_server.api_key = "EMPTY"  # what local servers accept
    assert OpenAIBackend(base_url=openai_server.base_url, model="tiny-autocoder").api_key == "EMPTY"


def test_extra_body_is_sent_and_server_side_stops_only_when_it_keeps_them(openai_server):
    openai_server.reply = split_everywhere(REPLY, 6)
    extra = {"skip_special_tokens": False, "include_stop_str_in_output": True}
    b = backend(openai_server, extra_body=extra)
    assert (
        "".join(b.stream([{"role": "user", "content": "print"}], GenerationParams(stop=[RUN_STOP]))) == REPLY
    )
    request = openai_server.requests[-1]
    assert request["skip_special_tokens"] is False and request["include_stop_str_in_output"] is True
    assert request["stop"] == [RUN_STOP]


# -- retries ------------------------------------------------------------------------------------------


def fast_retries(max_retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, base_delay_s=0.01, max_delay_s=10.0)


def ask(b: OpenAIBackend, stats: StreamStats | None = None, cancel=None) -> str:
    return "".join(b.stream([{"role": "user", "content": "x"}], GenerationParams(), cancel, stats))


def test_500_and_429_are_retried_and_the_reply_arrives_once(openai_server):
    openai_server.reply = ["all ", "good"]
    openai_server.failures = [Failure(status=500), Failure(status=429), Failure(status=503)]
    stats = StreamStats()
    assert ask(backend(openai_server, retry=fast_retries()), stats) == "all good"
    assert stats.retries == 3
    assert stats.stop_reason == "end_of_turn"
    assert len(openai_server.requests) == 4  # the model list is a GET, not counted


def test_usage_from_the_server_is_reported(openai_server):
    openai_server.reply = ["a", "b", "c"]
    stats = StreamStats()
    ask(backend(openai_server), stats)
    assert openai_server.requests[-1]["stream_options"] == {"include_usage": True}
    assert (stats.prompt_tokens, stats.generated_tokens) == (7, 3)  # the server's usage chunk


@pytest.mark.parametrize("when", ["seconds", "http-date"])
def test_retry_after_is_honoured(openai_server, when):
    # Our own backoff would wait ~10 ms; the server asks for a second.
    value = "1" if when == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
    openai_server.failures = [Failure(status=429, retry_after=value)]
    assert ask(backend(openai_server, retry=fast_retries())) == "Hello there."
    first, second = openai_server.request_times
    assert second - first >= 0.95


def test_retry_after_parsing():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_backoff_doubles_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_retries=10, base_delay_s=1.0, max_delay_s=5.0)
    rng = random.Random(0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (8, 5.0)]:
        waits = {policy.backoff_s(retry, rng) for _ in range(20)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered


def test_gives_up_after_max_retries_with_one_line(openai_server):
    openai_server.failures = [Failure(status=500)] * 5
    with pytest.raises(BackendError, match=r"answered 500: .*gave up after 2 retries") as err:
        ask(backend(openai_server, retry=fast_retries(2)))
    assert "\n" not in str(err.value)
    assert len(openai_server.requests) == 3


def test_no_retries_when_off(openai_server):
    openai_server.failures = [Failure(status=503)]
    with pytest.raises(BackendError, match=r"503.*retries are off"):
        ask(backend(openai_server, retry=fast_retries(0)))
    assert len(openai_server.requests) == 1


def test_a_cancel_during_the_wait_returns_at_once_and_never_retries(openai_server):
    openai_server.failures = [Failure(status=429, retry_after="8")]
    b = backend(openai_server, retry=fast_retries())
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    stats = StreamStats()
    start = time.monotonic()
    assert ask(b, stats, cancel) == ""
    assert time.monotonic() - start < 2.0
    assert stats.stop_reason == "cancelled"
    assert len(openai_server.requests) == 1


def test_a_cancel_during_a_failing_request_is_not_followed_by_a_retry(openai_server):
    openai_server.failures = [Failure(status=500, stall_s=0.6)]
    b = backend(openai_server, retry=fast_retries())
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    stats = StreamStats()
    assert ask(b, stats, cancel) == ""
    time.sleep(0.8)  # time for the failing answer and a (wrong) retry to arrive
    assert stats.stop_reason == "cancelled"
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize("how", ["drop_after", "close_after"])
def test_a_stream_dropped_mid_reply_is_resumed_without_repeating_text(openai_server, how, caplog):
    openai_server.reply = split_everywhere(REPLY, 4)
    openai_server.failures = [Failure(**{how: 5})]
    stats = StreamStats()
    chunks = list(
        backend(openai_server, retry=fast_retries()).stream(
            [{"role": "user", "content": "print"}], GenerationParams(stop=[RUN_STOP]), stats=stats
        )
    )
    assert "".join(chunks) == REPLY
    assert stats.retries == 1 and stats.stop_reason == "stop"
    why = "dropped mid-reply;" if how == "drop_after" else "closed the stream before the reply ended"
    assert why in caplog.text  # the failure happened mid-stream, after text had arrived


def test_a_retried_reply_that_differs_is_an_error_not_a_splice(openai_server):
    replies = iter([["first ", "answer ", "A"], ["second ", "answer ", "B"]])
    openai_server.reply_for = lambda body: next(replies)
    openai_server.failures = [Failure(drop_after=2)]
    got = []
    with pytest.raises(BackendError, match="retried reply differs"):
        for piece in backend(openai_server, retry=fast_retries()).stream(
            [{"role": "user", "content": "x"}], GenerationParams(temperature=1.0)
        ):
            got.append(piece)
    assert "".join(got) == "first answer "  # what arrived before the drop, nothing of the second reply


def test_a_request_timeout_is_retried(openai_server):
    openai_server.failures = [Failure(stall_s=1.5)]
    stats = StreamStats()
    assert ask(backend(openai_server, retry=fast_retries(), timeout_s=0.5), stats) == "Hello there."
    assert stats.retries == 1


def test_a_server_gone_mid_session_is_retried_then_a_one_line_error(openai_server):
    b = backend(openai_server, retry=fast_retries(1))
    openai_server.stop()
    with pytest.raises(BackendError, match=r"cannot connect .*gave up after 1 retries") as err:
        ask(b)
    assert "\n" not in str(err.value)


def test_the_model_check_waits_for_a_busy_server(openai_server):
    openai_server.failures = [Failure(status=503)]  # only generation requests take failures
    assert backend(openai_server, retry=fast_retries()).model == "tiny-autocoder"


def test_an_error_event_mid_stream_is_a_one_line_error_and_not_retried(openai_server):
    openai_server.reply = split_everywhere(REPLY, 4)
    openai_server.failures = [Failure(error_after=3)]
    b = backend(openai_server, retry=fast_retries())
    got = []
    with pytest.raises(BackendError, match="the prompt is too long") as err:
        for piece in b.stream([{"role": "user", "content": "x"}], GenerationParams()):
            got.append(piece)
    assert "\n" not in str(err.value)
    assert "".join(got) == REPLY[:12]  # what came before the error was streamed as it came
    assert len(openai_server.requests) == 1


@CANCEL_KINDS
def test_a_cancel_while_the_server_has_not_answered_returns_at_once(openai_server, make_cancel):
    openai_server.failures = [Failure(stall_s=3.0)]  # a full queue: no bytes for 3 s
    openai_server.reply, openai_server.delay_s = ["tick "] * 100, 0.02
    b = backend(openai_server, retry=fast_retries())
    cancel = make_cancel()
    threading.Timer(0.3, cancel.set).start()
    stats = StreamStats()
    start = time.monotonic()
    assert ask(b, stats, cancel) == ""
    assert time.monotonic() - start < 2.0  # not the 3 s the server takes
    assert stats.stop_reason == "cancelled" and stats.retries == 0
    # The late answer is closed unread: the server sees the hang-up, and nothing is retried.
    assert openai_server.wait_for_disconnects(1, timeout_s=10)
    assert len(openai_server.requests) == 1
