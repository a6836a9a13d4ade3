"""The openai backend against a real local HTTP server speaking the OpenAI streaming wire format."""

import threading
import time

import pytest

from interpreter.protocol import RUN_START, RUN_STOP
from llm.base import BackendError, GenerationParams, StreamStats
from llm.openai_backend import OpenAIBackend

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


def test_cancel_during_a_slow_stream_returns_promptly(openai_server):
    openai_server.reply = ["tick "] * 200
    openai_server.delay_s = 0.05
    cancel = threading.Event()
    stats = StreamStats()
    got = []
    start = time.monotonic()
    for piece in backend(openai_server).stream(
        [{"role": "user", "content": "x"}], GenerationParams(), cancel, stats
    ):
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
