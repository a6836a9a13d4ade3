"""Backend for any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI) over its HTTP API.

Two modes:
- chat (default): /v1/chat/completions with the messages; the server applies the chat template.
- completions (`completions=True`): /v1/completions with a prompt rendered here by the chat template of a
  tokenizer the user names (`tokenizer=`, a folder or hub id), for servers whose chat endpoint would
  strip special tokens such as <API_RUN_STOP>. A completions server may write the tokenizer's end-of-turn
  (eos) token as text (llama.cpp with --special, or a GGUF whose eos differs from the template's
  turn end); that text ends the reply here, as the token itself would, and is not part of it.

Stop strings are matched here, on the streamed text, and the stream is closed as soon as one appears
(closing the connection makes vLLM and llama.cpp abort the request). They are not sent to the server by
default because servers drop the matched stop string from the output, and the interpreter needs it.
`extra_body` passes server-specific options through (for vLLM: {"skip_special_tokens": false}); when it
asks for `include_stop_str_in_output` the stops are sent to the server too.

Transient failures are retried (`RetryPolicy`): 429, 408 and 5xx answers, timeouts, refused and dropped
connections, and a stream that ends before the reply does. The wait doubles from `base_delay_s` up to
`max_delay_s`, with jitter so that many concurrent clients do not retry in lockstep; a server's
Retry-After (seconds or an HTTP date; OpenAI's retry-after-ms too) replaces it, capped at `max_delay_s`.
A cancel is never followed by a retry, and a cancel during a wait returns at once. A stream that drops
after some text was already streamed is requested again and the repeated beginning is checked and
skipped: exact for greedy decoding; a sampled retry that says something else is a one-line error, never
a reply spliced from two different answers.

Errors become one-line `BackendError`s: connection refused, a rejected key (401), an unknown model (404),
and a failure that outlasted the retries (saying how many were made). The start-up model check does not
retry a refused connection: a wrong --base-url should say so at once.
Deliberately not here: tokenization of chat mode (the server's).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from llm.base import Backend, BackendError, GenerationParams, StreamStats
from llm.decoding import StopMatcher

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_REQUEST_TIMEOUT_S = 600.0  # one request, and the longest silence between two streamed chunks
DEFAULT_MAX_RETRIES = 5
DEFAULT_BASE_DELAY_S = 0.5
DEFAULT_MAX_DELAY_S = 30.0
RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx
# Reading on after `[DONE]` to the body's end (a server sends none, and ends it at once): at most this
# many events, and this long (see `_keepalive_stream_class`).
AFTER_DONE_EVENTS = 4
AFTER_DONE_WAIT_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: up to `max_retries` more attempts (0: none)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    max_delay_s: float = DEFAULT_MAX_DELAY_S

    def __post_init__(self):
        if self.max_retries < 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"retry settings must not be negative: {self}")

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `retry` (0-based): exponential, capped, with "equal jitter"."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**retry)
        # Half fixed, half random: never retries at once, and concurrent clients spread out.
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def retry_after_s(headers, now: float | None = None) -> float | None:
    """The server's requested wait in seconds (retry-after-ms, or Retry-After in seconds or as an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unparseable: fall back to our own backoff
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Retryable(Exception):
    """A failure worth another attempt; `message` is the one line shown if the retries run out."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class _Progress:
    """What one `stream` call has received so far, kept across retries."""

    def __init__(self) -> None:
        self.received = ""  # text taken from the server (and fed to the stop matcher)


class _EndText:
    """Ends the reply at an end-of-turn text (completions mode), holding back what may be its beginning.

    The end text itself is never emitted; text after it is dropped (the turn is over). A held-back tail
    that turns out not to be the end text is emitted by `flush` when the reply ends another way.
    """

    def __init__(self, end: str | None):
        self.end = end or ""
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text to emit, ended)."""
        if not self.end:
            return text, False
        window = self.held + text
        at = window.find(self.end)
        if at >= 0:
            self.held = ""
            return window[:at], True
        # Keep the longest tail that could still grow into the end text.
        keep = next(
            (
                n
                for n in range(min(len(self.end) - 1, len(window)), 0, -1)
                if self.end.startswith(window[-n:])
            ),
            0,
        )
        self.held = window[len(window) - keep :]
        return window[: len(window) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


@functools.cache
def _keepalive_stream_class(openai):
    """The client's Stream, reading the body to its end once `[DONE]` arrives.

    Why: the client stops reading at `[DONE]` and closes the response there, before the HTTP/1.1 body's end
    marker (its last, empty chunk), and a response closed before its end cannot give its connection back
    to the pool: every streamed call opened a new connection, one TCP handshake each against a local server
    and a TLS one too against a hosted API. A server sends nothing after `[DONE]` but that marker, at once;
    one that sends events anyway has them read (at most `AFTER_DONE_EVENTS`) and ignored, and one that keeps
    the body open has it closed after `AFTER_DONE_WAIT_S`: either way its connection is closed, as before."""

    class KeepaliveStream(openai.Stream[object]):
        def _iter_events(self):
            events = super()._iter_events()
            for event in events:
                if event.data.startswith("[DONE]"):
                    guard = threading.Timer(AFTER_DONE_WAIT_S, _hang_up, (self.response,))
                    guard.daemon = True
                    guard.start()
                    try:
                        for _ in itertools.islice(events, AFTER_DONE_EVENTS):
                            pass
                    except Exception:  # noqa: BLE001 - hung up by the guard: the reply is complete anyway
                        pass
                    finally:
                        guard.cancel()
                yield event

    return KeepaliveStream


def _hang_up(response) -> None:
    """Wake a read blocked on `response` from another thread: closing does not interrupt a `recv` in
    progress, a socket shutdown does (the reading thread then closes the response itself)."""
    network_stream = response.extensions.get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if sock is None:
        response.close()
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        tokenizer: str | None = None,
        completions: bool = False,
        extra_body: dict | None = None,
        timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ):
        import openai

        self._openai = openai
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers want any string
        self.completions = completions
        self.extra_body = dict(extra_body or {})
        self.notice = ""
        # The client's own retries are off: ours (see RetryPolicy) know about cancels and log each wait.
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key, timeout=timeout_s, max_retries=0
        )
        self.model = self._check_model(model)
        self.tokenizer = None
        if completions:
            if not tokenizer:
                raise BackendError(
                    "completions mode renders prompts locally: pass --tokenizer (folder or hub id)"
                )
            self.tokenizer = self._load_tokenizer(tokenizer)

    # -- setup --------------------------------------------------------------------------------------

    def _error(self, exc: Exception, model: str | None = None) -> BackendError:
        """One line that says what went wrong with the server and what to do."""
        o = self._openai
        model = model or getattr(self, "model", None)
        if isinstance(exc, o.APITimeoutError):
            return BackendError(f"the server at {self.base_url} did not answer in time; is it overloaded?")
        if isinstance(exc, o.APIConnectionError):
            return BackendError(
                f"cannot connect to {self.base_url}: is the server running? (check --base-url)"
            )
        if isinstance(exc, o.AuthenticationError):
            return BackendError(
                f"the server at {self.base_url} rejected the API key (401); pass --api-key or set OPENAI_API_KEY"
            )
        if isinstance(exc, o.PermissionDeniedError):
            return BackendError(
                f"the server at {self.base_url} refused access (403): {_first_line(exc.message)}"
            )
        if isinstance(exc, o.NotFoundError):
            return BackendError(
                f"model {model!r} not found at {self.base_url} (404); check --model, and that --base-url ends in /v1"
            )
        if isinstance(exc, o.APIStatusError):
            return BackendError(
                f"the server at {self.base_url} answered {exc.status_code}: {_first_line(exc.message)}"
            )
        return BackendError(f"request to {self.base_url} failed: {type(exc).__name__}: {_first_line(exc)}")

    def _check_model(self, model: str | None) -> str:
        """The model to use: `model` when the server serves it, else the server's first (when none named)."""
        served = None
        for retry in range(self.retry.max_retries + 1):
            try:
                served = [m.id for m in self.client.models.list()]
                break
            except self._openai.NotFoundError:
                break  # the server has no model list; trust the name given
            except self._openai.APIStatusError as exc:
                # A busy or restarting server (429, 5xx) is waited for; any other answer is final.
                if not self._retryable_status(exc.status_code) or retry == self.retry.max_retries:
                    raise self._error(exc, model) from exc
                wait = retry_after_s(exc.response.headers)
                time.sleep(
                    min(wait, self.retry.max_delay_s) if wait is not None else self.retry.backoff_s(retry)
                )
            except self._openai.OpenAIError as exc:
                raise self._error(exc, model) from exc
        if model is None:
            if not served:
                raise BackendError(f"the server at {self.base_url} lists no models; pass --model NAME")
            return served[0]
        if served is not None and model not in served:
            shown = ", ".join(served[:5]) + (", ..." if len(served) > 5 else "")
            raise BackendError(
                f"model {model!r} is not served at {self.base_url} (it serves: {shown}); check --model"
            )
        return model

    @staticmethod
    def _load_tokenizer(name: str):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the tokenizer {name!r}: {_first_line(exc)}") from exc
        if not tokenizer.chat_template:
            raise BackendError(f"the tokenizer {name!r} has no chat template; completions mode needs one")
        return tokenizer

    def render_prompt(self, messages: list[dict]) -> str:
        """The completions-mode prompt: the chat template's text, ready for the assistant's reply."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        bos = self.tokenizer.bos_token
        # Servers add BOS themselves when they tokenize a completion prompt; don't send a second one.
        if bos and text.startswith(bos):
            text = text[len(bos) :]
        return text

    # -- generation ---------------------------------------------------------------------------------

    def _request(self, messages: list[dict], params: GenerationParams):
        common = {
            "model": self.model,
            "stream": True,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream_options": {"include_usage": True},
        }
        if params.stop and self.extra_body.get("include_stop_str_in_output"):
            common["stop"] = list(params.stop)
        if self.completions:
            path, body = "/completions", {"prompt": self.render_prompt(messages), **common}
        else:
            path, body = "/chat/completions", {"messages": messages, **common}
        # The client's plain `post`, not `chat.completions.create`: create walks the whole request through
        # its typed-parameter transform (a third of the pipeline's CPU per call, messages grow with the
        # dialogue). The stream is read as plain dicts (`cast_to=object`): the same server-sent-event
        # parsing, error events and exception types, without a pydantic model per chunk.
        return self.client.post(
            path,
            body={**body, **self.extra_body},
            cast_to=object,
            stream=True,
            stream_cls=_keepalive_stream_class(self._openai),
        )

    @staticmethod
    def _delta(chunk: dict, completions: bool) -> tuple[str, str | None]:
        """The text and finish reason of one streamed chunk (a JSON object as the server sent it)."""
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not choices or not isinstance(choices[0], dict):
            return "", None
        choice = choices[0]
        if completions:
            text = choice.get("text")
        else:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
        return text if isinstance(text, str) else "", choice.get("finish_reason")

    @staticmethod
    def _retryable_status(status: int) -> bool:
        return status in RETRYABLE_STATUS or status >= 500

    def _classify(self, exc: Exception) -> Exception:
        """A `_Retryable` for a transient failure, else the one-line BackendError to raise."""
        o = self._openai
        if isinstance(exc, o.APIConnectionError):  # refused, reset, or timed out (APITimeoutError)
            return _Retryable(str(self._error(exc)))
        if isinstance(exc, o.APIStatusError) and self._retryable_status(exc.status_code):
            return _Retryable(str(self._error(exc)), retry_after_s(exc.response.headers))
        if isinstance(exc, o.OpenAIError):
            return self._error(exc)
        return exc

    def stream(
        self,
        messages: list[dict],
        params: GenerationParams,
        cancel: threading.Event | None = None,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        stats = stats if stats is not None else StreamStats()
        stats.generated_tokens = 0
        stats.stop_reason = ""
        stats.retries = 0
        matcher = StopMatcher(params.stop)
        # Only completions mode sees the raw text after the template; a chat endpoint ends turns itself.
        end_text = _EndText(self.tokenizer.eos_token if self.tokenizer is not None else None)
        progress = _Progress()
        retries = 0
        while True:
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "cancelled"
                return
            try:
                yield from self._attempt(messages, params, cancel, stats, matcher, end_text, progress)
                return
            except _Retryable as failure:
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                if retries >= self.retry.max_retries:
                    made = f"after {retries} retries" if retries else "(retries are off)"
                    raise BackendError(f"{failure.message}; gave up {made}") from None
                if failure.retry_after is not None:
                    wait = min(failure.retry_after, self.retry.max_delay_s)
                else:
                    wait = self.retry.backoff_s(retries)
                retries += 1
                stats.retries = retries
                log.warning(
                    "%s; retry %d of %d in %.1f s", failure.message, retries, self.retry.max_retries, wait
                )
                if cancel is not None:
                    if cancel.wait(wait):  # a cancel during the wait returns at once
                        stats.stop_reason = "cancelled"
                        return
                else:
                    time.sleep(wait)

    def _attempt(
        self,
        messages: list[dict],
        params: GenerationParams,
        cancel: threading.Event | None,
        stats: StreamStats,
        matcher: StopMatcher,
        end_text: _EndText,
        progress: _Progress,
    ) -> Iterator[str]:
        """One request. Raises `_Retryable` for a transient failure; returns when the reply is complete."""
        try:
            response = self._open(messages, params, cancel)
        except self._openai.OpenAIError as exc:
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "cancelled"
                return
            raise self._classify(exc) from exc
        if response is None:  # cancelled while the server had not answered yet
            stats.stop_reason = "cancelled"
            return
        # A retried request repeats what the dropped one already streamed: check it and skip it.
        replay, replayed = progress.received, 0
        finished = threading.Event()
        ended = False
        unsubscribe = None
        if cancel is not None:
            # Closing the response from another thread unblocks a read that waits on a slow server.
            if callable(
                getattr(cancel, "subscribe", None)
            ):  # a cancel that calls back (interpreter.loop.Cancel)
                unsubscribe = cancel.subscribe(response.close)
            else:
                watcher = threading.Thread(
                    target=self._close_on_cancel, args=(response, cancel, finished), daemon=True
                )
                watcher.start()
        try:
            for chunk in response:
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                usage = chunk.get("usage") if isinstance(chunk, dict) else None
                if isinstance(usage, dict):
                    stats.prompt_tokens = usage.get("prompt_tokens") or 0
                    # the server's prefix cache is not visible here
                    stats.prefill_tokens = stats.prompt_tokens
                    stats.generated_tokens = usage.get("completion_tokens") or stats.generated_tokens
                delta, finish = self._delta(chunk, self.completions)
                if delta and replayed < len(replay):
                    expected = replay[replayed : replayed + len(delta)]
                    if not delta.startswith(expected):
                        raise BackendError(
                            f"the connection to {self.base_url} dropped mid-reply and the retried reply differs "
                            "from what was already streamed (sampling?); ask again"
                        )
                    replayed += len(expected)
                    delta = delta[len(expected) :]
                if delta:
                    progress.received += delta
                    stats.generated_tokens += 1
                    text, stopped = matcher.feed(delta)
                    text, ended_turn = end_text.feed(text)
                    if stopped and not ended_turn:
                        text += end_text.flush()  # the stop string ends the text: nothing held is the end
                    if text:
                        yield text
                    if ended_turn:
                        stats.stop_reason = "end_of_turn"
                        return
                    if stopped:
                        stats.stop_reason = "stop"
                        return
                if finish:
                    ended = True
                    stats.stop_reason = {"length": "max_tokens", "stop": "end_of_turn"}.get(finish, finish)
        except BackendError:
            raise
        except Exception as exc:
            # httpx raises on a read from a response closed by the cancel watcher
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "cancelled"
                return
            o = self._openai
            if isinstance(exc, o.APIConnectionError) and not isinstance(exc, o.APITimeoutError):
                # the client reports a reset while reading an open stream as a connection error
                raise _Retryable(f"the connection to {self.base_url} dropped mid-reply") from exc
            classified = self._classify(exc)
            if classified is exc:
                raise
            raise classified from exc
        finally:
            finished.set()
            if unsubscribe is not None:
                unsubscribe()
            response.close()
        if cancel is not None and cancel.is_set():
            stats.stop_reason = "cancelled"
            return
        if not ended:
            # A server that dies mid-reply may close the connection cleanly: the stream just stops.
            raise _Retryable(f"the server at {self.base_url} closed the stream before the reply ended")
        if replayed < len(replay):
            raise BackendError(
                f"the connection to {self.base_url} dropped mid-reply and the retried reply is shorter than "
                "what was already streamed; ask again"
            )
        held = end_text.flush()  # the reply ended: a held-back tail was text after all
        if held:
            yield held

    def _open(self, messages: list[dict], params: GenerationParams, cancel: threading.Event | None):
        """The streaming response, or None when `cancel` is set before the server answers.

        A busy server (a full vLLM queue) can take minutes to send its first bytes, and the client cannot
        abort a request it is still opening: it is opened in a helper thread, which is left to finish, and
        to close the late response, when a cancel comes first.
        """
        if cancel is None:
            return self._request(messages, params)
        outcome: dict = {}
        lock = threading.Lock()
        answered = threading.Event()

        def open_request() -> None:
            try:
                response = self._request(messages, params)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                response, outcome["error"] = None, exc
            with lock:
                if outcome.get("abandoned"):
                    if response is not None:
                        response.close()  # nobody will read it; the server sees the hang-up
                    return
                outcome["response"] = response
                answered.set()

        threading.Thread(target=open_request, name="openai-request", daemon=True).start()
        # A cancel that calls back wakes this wait at once; a plain Event is checked every 50 ms.
        subscribe = getattr(cancel, "subscribe", None)
        unsubscribe = subscribe(answered.set) if callable(subscribe) else None
        try:
            while not answered.wait(None if unsubscribe else 0.05):
                if cancel.is_set():
                    break
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if cancel.is_set():
            with lock:
                if "response" not in outcome and "error" not in outcome:
                    outcome["abandoned"] = True
                    return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]

    @staticmethod
    def _close_on_cancel(response, cancel: threading.Event, finished: threading.Event) -> None:
        while not finished.is_set():
            if cancel.wait(0.05):
                response.close()
                return

    def close(self) -> None:
        self.client.close()
