"""The one small interface every model backend implements: stream text for a list of messages.

Messages are role/content dicts already rendered for the model (system/user/assistant only: the
interpreter's renderer turns `execution` turns into whatever the model was trained on). Backends keep
special tokens in the stream (AutoCoder's execution tokens must survive) and stop at any stop string
or at the model's own end-of-turn token, taken from its tokenizer, never from a hard-coded list.

This package imports nothing else of the project's.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field


class BackendError(RuntimeError):
    """A backend cannot do what was asked; the message is one line that says what to do."""


DEFAULT_MAX_NEW_TOKENS = 1024  # per generation round; as in AutoCoder's evaluation


@dataclass
class GenerationParams:
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stop: list[str] = field(default_factory=list)  # generation ends right after any of these appears


@dataclass
class StreamStats:
    """Filled in by a backend during `stream`, for benchmarks and logs."""

    prompt_tokens: int = 0  # the OpenAI backend: the server's count (usage), from the last attempt
    # prompt tokens actually computed (less than prompt_tokens when a cache was reused)
    prefill_tokens: int = 0
    generated_tokens: int = 0  # the OpenAI backend: the server's completion_tokens when it reports usage
    # Why the stream ended: "end_of_turn" | "stop" (a stop string) | "max_tokens" | "cancelled"; "" if unknown.
    stop_reason: str = ""
    retries: int = 0  # requests made again after a transient failure (the OpenAI backend)


class Backend(ABC):
    name: str = "abstract"
    # Shown to the user (e.g. "small stand-in model, not AutoCoder"); empty for a real AutoCoder model.
    notice: str = ""
    # False for a model never trained on AutoCoder's execution tokens (the stand-in): callers then run its
    # fenced python blocks instead of waiting for tokens it will never write.
    speaks_execution_tokens: bool = True

    @abstractmethod
    def stream(
        self,
        messages: list[dict],
        params: GenerationParams,
        cancel: threading.Event | None = None,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        """Yield text chunks of the assistant's reply, special tokens kept; stop early when `cancel` is set."""

    def close(self) -> None:  # noqa: B027 (an optional hook, deliberately empty)
        """Free what the backend holds (GPU memory, HTTP connections)."""
