"""Backend for any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI) over its HTTP API.

Two modes:
- chat (default): /v1/chat/completions with the messages; the server applies the chat template.
- completions (`completions=True`): /v1/completions with a prompt rendered here by the chat template of a
  tokenizer the user names (`tokenizer=`, a folder or hub id), for servers whose chat endpoint would
  strip special tokens such as <API_RUN_STOP>.

Stop strings are matched here, on the streamed text, and the stream is closed as soon as one appears
(closing the connection makes vLLM and llama.cpp abort the request). They are not sent to the server by
default because servers drop the matched stop string from the output, and the interpreter needs it.
`extra_body` passes server-specific options through (for vLLM: {"skip_special_tokens": false}); when it
asks for `include_stop_str_in_output` the stops are sent to the server too.

Errors become one-line `BackendError`s: connection refused, a rejected key (401), an unknown model (404).
Deliberately not here: retries (a chat user can press Retry) and tokenization of chat mode (the server's).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from llm.base import Backend, BackendError, GenerationParams, StreamStats
from llm.decoding import StopMatcher

DEFAULT_BASE_URL = "https://api.openai.com/v1"


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
        timeout_s: float = 600.0,
    ):
        import openai

        self._openai = openai
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers want any string
        self.completions = completions
        self.extra_body = dict(extra_body or {})
        self.notice = ""
        # No silent retries: a refused connection or a bad key should say so at once.
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
        try:
            served = [m.id for m in self.client.models.list()]
        except self._openai.NotFoundError:
            served = None  # the server has no model list; trust the name given
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
        if self.extra_body:
            common["extra_body"] = self.extra_body
        if self.completions:
            return self.client.completions.create(prompt=self.render_prompt(messages), **common)
        return self.client.chat.completions.create(messages=messages, **common)

    @staticmethod
    def _delta(chunk, completions: bool) -> tuple[str, str | None]:
        if not chunk.choices:
            return "", None
        choice = chunk.choices[0]
        text = choice.text if completions else (choice.delta.content if choice.delta else None)
        return text or "", choice.finish_reason

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
        matcher = StopMatcher(params.stop)
        try:
            response = self._request(messages, params)
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        finished = threading.Event()
        if cancel is not None:
            # Closing the response from another thread unblocks a read that waits on a slow server.
            watcher = threading.Thread(
                target=self._close_on_cancel, args=(response, cancel, finished), daemon=True
            )
            watcher.start()
        try:
            for chunk in response:
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                if getattr(chunk, "usage", None):
                    stats.prompt_tokens = chunk.usage.prompt_tokens or 0
                    stats.prefill_tokens = (
                        stats.prompt_tokens
                    )  # the server's prefix cache is not visible here
                    stats.generated_tokens = chunk.usage.completion_tokens or stats.generated_tokens
                delta, finish = self._delta(chunk, self.completions)
                if delta:
                    stats.generated_tokens += 1
                    text, stopped = matcher.feed(delta)
                    if text:
                        yield text
                    if stopped:
                        stats.stop_reason = "stop"
                        return
                if finish:
                    stats.stop_reason = {"length": "max_tokens", "stop": "end_of_turn"}.get(finish, finish)
        except self._openai.OpenAIError as exc:
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "cancelled"
                return
            raise self._error(exc) from exc
        except Exception:
            # httpx raises on a read from a response closed by the cancel watcher
            if cancel is not None and cancel.is_set():
                stats.stop_reason = "cancelled"
                return
            raise
        finally:
            finished.set()
            response.close()
        if cancel is not None and cancel.is_set():
            stats.stop_reason = "cancelled"

    @staticmethod
    def _close_on_cancel(response, cancel: threading.Event, finished: threading.Event) -> None:
        while not finished.is_set():
            if cancel.wait(0.05):
                response.close()
                return

    def close(self) -> None:
        self.client.close()
