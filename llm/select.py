"""Pick and build a backend from the CLI's choices: `load_backend(backend=..., model=...)`.

The stand-in policy lives here and only here: when the user names no model (model=None), the default
AutoCoder model is used where it can run; where no GPU is present, or the hub cannot be reached and there
is no local copy, the small stand-in (llm.standin) is loaded instead and `backend.notice` says so. A model
the user names explicitly never falls back: its failure is a one-line BackendError.

Deliberately not here: how models load (llm.hf_loading) or generate (llm.hf, llm.openai_backend).
"""

from __future__ import annotations

import logging

from llm.base import Backend, BackendError
from llm.models import DEFAULT_MODEL, STANDIN_NAME, STANDIN_NOTICE
from llm.openai_backend import DEFAULT_REQUEST_TIMEOUT_S, RetryPolicy

log = logging.getLogger(__name__)

BACKEND_NAMES = ("hf", "openai")


def load_backend(
    backend: str = "hf",
    model: str | None = None,
    *,
    quantize: str | None = "auto",
    dtype: str = "auto",
    base_url: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
    completions: bool = False,
    extra_body: dict | None = None,
    reuse_cache: bool = True,
    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    retry: RetryPolicy | None = None,
) -> Backend:
    """Build the backend. model=None means "the default model, or the stand-in where it cannot run".

    hf: `model` is a hub id or a local folder; `quantize` none|auto|4bit|8bit; `dtype` auto|bf16|fp16|fp32;
    `reuse_cache` keeps the KV cache between rounds.
    openai: `base_url` of the server (…/v1), `api_key` (default $OPENAI_API_KEY, else "EMPTY"), `model` the
    served name (default: the server's first model); `completions=True` uses /v1/completions with the
    prompt rendered by the chat template of `tokenizer` (a folder or hub id), keeping special tokens;
    `extra_body` is sent with every request (for vLLM: {"skip_special_tokens": False} keeps the execution
    tokens in the text); `timeout_s` per request and `retry` (RetryPolicy) for transient failures.
    The command-line flags for all of these, and the adapter from them, are in llm.options.
    """
    if backend == "openai":
        from llm.openai_backend import OpenAIBackend

        return OpenAIBackend(
            base_url=base_url,
            model=model,
            api_key=api_key,
            tokenizer=tokenizer,
            completions=completions,
            extra_body=extra_body,
            timeout_s=timeout_s,
            retry=retry,
        )
    if backend != "hf":
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if model is not None:
        return _load_hf(model, quantize=quantize, dtype=dtype, reuse_cache=reuse_cache)
    return _load_default(quantize=quantize, dtype=dtype, reuse_cache=reuse_cache)


def _load_hf(model: str, *, quantize, dtype, reuse_cache, notice: str = "") -> Backend:
    from llm.hf import HFBackend
    from llm.hf_loading import load_model_and_tokenizer

    lm, tok, _ = load_model_and_tokenizer(model, dtype=dtype, quantize=quantize)
    return HFBackend(lm, tok, reuse_cache=reuse_cache, notice=notice, model_id=model)


def _load_default(*, quantize, dtype, reuse_cache) -> Backend:
    import torch

    from llm.hf_loading import HubUnreachable

    if not torch.cuda.is_available():
        why = "no GPU was found"
    else:
        try:
            return _load_hf(DEFAULT_MODEL, quantize=quantize, dtype=dtype, reuse_cache=reuse_cache)
        except HubUnreachable:
            why = f"the Hugging Face hub cannot be reached and {DEFAULT_MODEL} has no local copy"
    return load_standin(why, reuse_cache=reuse_cache)


def load_standin(why: str, *, reuse_cache: bool = True, cache_root: str | None = None) -> Backend:
    """The stand-in model as an HF backend whose notice explains why and how to use AutoCoder instead."""
    from llm.hf import HFBackend
    from llm.hf_loading import load_model_and_tokenizer
    from llm.standin import apply_dialogue_format, standin_dir

    # Said once, by whoever shows it (the app's log and page, the evaluation's stderr), not here too.
    notice = STANDIN_NOTICE.format(why=why)
    folder = standin_dir(cache_root)
    # fp32 on CPU; quantizing a 270M model buys nothing.
    lm, tok, _ = load_model_and_tokenizer(str(folder), dtype="auto", quantize=None)
    apply_dialogue_format(lm, tok)  # the current dialogue format, whichever recipe built the folder
    backend = HFBackend(lm, tok, reuse_cache=reuse_cache, notice=notice, model_id=STANDIN_NAME)
    backend.speaks_execution_tokens = False
    return backend
