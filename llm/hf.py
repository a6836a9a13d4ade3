"""Local transformers backend: prompt with the chat template, decode token by token, reuse the KV cache.

A hand-written decoding loop (rather than `generate` in a thread) keeps three things simple: stopping at
stop strings and end-of-turn tokens, cancelling between tokens, and keeping the KV cache of one call for
the next. The interpreter loop calls `stream` again after every execution with the same dialogue plus the
result; the cached tokens that still match the new prompt (longest common token prefix) are kept and only
the rest is prefilled, so a round costs the new tokens, not the whole dialogue.

The end-of-turn tokens come from the tokenizer and the model's generation_config, never from a list
here; the end-of-turn token itself is not emitted (it ends the turn, it is not text of it).

A few more of the model's own generation_config settings are honoured, as `generate` would: `stop_strings`
(here they end the turn like an end-of-turn token and are not emitted; a base model such as the stand-in
has no end-of-turn token for a plain-text dialogue), `repetition_penalty` (over the reply being generated
only, not the prompt: a reply should be free to quote the code and output it answers), and
`max_new_tokens` as a cap on the caller's limit. Temperature and top-p always come
from the caller's GenerationParams.

`stream(..., reply_prefix=TEXT)` prefills the start of the reply (rendered with the template's
continue_final_message) and streams TEXT first, as if generated: the stand-in's chat seeds its replies
with the opening of an execution block this way (app.standin_prompt).

Loading (dtype, quantization, device placement) lives in `llm.hf_loading`; this module only generates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from llm.base import Backend, BackendError, GenerationParams, StreamStats
from llm.decoding import IncrementalDecoder, StopMatcher


def end_of_turn_ids(model, tokenizer) -> set[int]:
    """Token ids that end an assistant turn: generation_config's eos ids and the tokenizer's eos."""
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in eos if isinstance(eos, list | tuple) else [eos]:
        if value is not None:
            ids.add(int(value))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # not via **kwargs: those may hand it on to layers that do not expect it


def model_decoding_defaults(model) -> dict:
    """The model's own generation_config settings this backend honours (see the module docstring)."""
    config = getattr(model, "generation_config", None)
    stops = getattr(config, "stop_strings", None) or []
    cap = getattr(config, "max_new_tokens", None)
    return {
        "end_strings": [stops] if isinstance(stops, str) else [s for s in stops if s],
        "repetition_penalty": float(getattr(config, "repetition_penalty", None) or 1.0),
        "max_new_tokens": int(cap) if cap else None,
    }


class EndStringMatcher:
    """Holds back streamed text that may begin an end string; when one completes, the turn ends before it."""

    def __init__(self, ends: list[str]):
        self._ends = [e for e in ends if e]
        self._held = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """Return (text to emit, ended). The end string itself and anything after it are never emitted."""
        if not self._ends:
            return delta, False
        text = self._held + delta
        found = [i for e in self._ends if (i := text.find(e)) >= 0]
        if found:
            self._held = ""
            return text[: min(found)], True
        # Hold the longest tail that is a prefix of some end string; it is emitted once it cannot be one.
        hold = 0
        for end in self._ends:
            for n in range(min(len(end) - 1, len(text)), hold, -1):
                if end.startswith(text[-n:]):
                    hold = n
                    break
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class HFBackend(Backend):
    """Streams from an already loaded transformers causal LM and its tokenizer."""

    name = "hf"

    def __init__(self, model, tokenizer, *, reuse_cache: bool = True, notice: str = "", model_id: str = ""):
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(
                f"model {model_id or '?'} has no chat template; use an instruction-tuned model with one"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.reuse_cache = reuse_cache
        self.notice = notice
        self.model_id = model_id
        self._eot_ids = end_of_turn_ids(model, tokenizer)
        self._defaults = model_decoding_defaults(model)
        # Prefill computes logits for the last position only where the model allows it (most do).
        self._forward_kwargs = {"logits_to_keep": 1} if _accepts(model.forward, "logits_to_keep") else {}
        self._cache_lock = threading.Lock()
        self._cache = None  # (DynamicCache, token ids it holds) of the last finished call, or None

    # -- prompt -------------------------------------------------------------------------------------

    def prompt_ids(self, messages: list[dict], reply_prefix: str = "") -> list[int]:
        """The dialogue rendered by the model's chat template, ready for the assistant's reply (which
        starts with `reply_prefix`, when given, as if the model had written it)."""
        try:
            if reply_prefix:
                text = self.tokenizer.apply_chat_template(
                    [*messages, {"role": "assistant", "content": reply_prefix}],
                    continue_final_message=True,
                    tokenize=False,
                )
                # A template that trims the message drops the prefix's trailing whitespace; put it back.
                stripped = reply_prefix.rstrip()
                text = text[: text.rindex(stripped) + len(stripped)] + reply_prefix[len(stripped) :]
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            else:
                ids = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=False
                )
        except Exception as exc:  # jinja raises its own errors (e.g. "roles must alternate")
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"the chat template rejected the dialogue: {first_line}") from exc
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return [int(i) for i in ids]

    def _single_token_id(self, text: str) -> int | None:
        """The id of `text` when it is exactly one token of the vocabulary (e.g. <API_RUN_STOP>)."""
        tid = self.tokenizer.convert_tokens_to_ids(text)
        if tid is None or tid == self.tokenizer.unk_token_id:
            return None
        return int(tid)

    # -- KV cache -----------------------------------------------------------------------------------

    def _take_cache(self):
        with self._cache_lock:
            entry, self._cache = self._cache, None
        return entry

    def _put_cache(self, cache, ids: list[int]) -> None:
        with self._cache_lock:
            self._cache = (cache, ids)

    def reset_cache(self) -> None:
        with self._cache_lock:
            self._cache = None

    def _prepare_cache(self, prompt: list[int]):
        """A cache holding the longest reusable prefix of `prompt`, and that prefix's length."""
        import torch
        from transformers import DynamicCache

        entry = self._take_cache() if self.reuse_cache else None
        if entry is not None:
            cache, held = entry
            # At least one prompt token must be fed so the model yields logits for the next token.
            keep = min(common_prefix_len(held, prompt), len(prompt) - 1)
            if keep > 0:
                try:
                    with torch.inference_mode():
                        surplus = cache.get_seq_length() - keep
                        if surplus > 0:
                            cache.crop(-surplus)  # transformers 5: a negative count of tokens to drop
                    if cache.get_seq_length() == keep:
                        return cache, keep
                except (ValueError, RuntimeError, NotImplementedError, AttributeError):
                    pass  # some cache layers (e.g. sliding windows past their size) cannot be cropped
        return DynamicCache(config=self.model.config), 0

    # -- generation ---------------------------------------------------------------------------------

    def _penalize(self, logits, reply: list[int]):
        """Logits with the model's repetition penalty applied to the tokens of the reply so far."""
        import torch

        penalty = self._defaults["repetition_penalty"]
        if not reply or penalty == 1.0:
            return logits
        logits = logits.float().clone()
        seen = torch.tensor(sorted(set(reply)), device=logits.device)
        scores = logits[seen]
        # As transformers does: shrink positive logits, push negative ones further down.
        logits[seen] = torch.where(scores > 0, scores / penalty, scores * penalty)
        return logits

    def _next_token(self, logits, params: GenerationParams, reply: list[int] | None = None) -> int:
        import torch

        logits = self._penalize(logits, reply or [])
        if params.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # Keep the smallest head whose mass reaches top_p (always at least the top token).
            drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1))

    def stream(
        self,
        messages: list[dict],
        params: GenerationParams,
        cancel: threading.Event | None = None,
        stats: StreamStats | None = None,
        *,
        reply_prefix: str = "",
    ) -> Iterator[str]:
        """`reply_prefix`: text the reply starts with, prefilled rather than generated and streamed first
        (so a caller sees it as the model's own); a small model seeded this way writes what it starts."""
        import torch

        stats = stats if stats is not None else StreamStats()
        prompt = self.prompt_ids(messages, reply_prefix)
        stop_ids = {tid for s in params.stop if (tid := self._single_token_id(s)) is not None}
        end_ids = self._eot_ids - stop_ids
        limit = params.max_new_tokens
        if self._defaults["max_new_tokens"] is not None:
            limit = min(limit, self._defaults["max_new_tokens"])
        cache, cached = self._prepare_cache(prompt)
        stats.prompt_tokens = len(prompt)
        stats.prefill_tokens = len(prompt) - cached
        stats.generated_tokens = 0
        stats.stop_reason = "max_tokens"

        ids = list(prompt)  # every token the cache will hold once the last one is fed
        feed = prompt[cached:]
        decoder = IncrementalDecoder(self.tokenizer)
        matcher = StopMatcher(params.stop)
        ender = EndStringMatcher(self._defaults["end_strings"])
        device = self.model.device
        healthy = False  # the cache matches ids[:len(cache)]: false while a forward pass is in flight
        if reply_prefix:
            yield reply_prefix
        try:
            for _ in range(limit):
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                healthy = False
                try:
                    with torch.inference_mode():
                        out = self.model(
                            input_ids=torch.tensor([feed], device=device),
                            past_key_values=cache,
                            use_cache=True,
                            **self._forward_kwargs,
                        )
                except torch.OutOfMemoryError as exc:
                    raise BackendError(
                        "out of GPU memory while generating; shorten the chat, use --quantize 4bit "
                        "or --backend openai"
                    ) from exc
                healthy = True
                token = self._next_token(out.logits[0, -1], params, ids[len(prompt) :])
                ids.append(token)
                stats.generated_tokens += 1
                if token in end_ids:
                    stats.stop_reason = "end_of_turn"
                    text, stopped = matcher.feed(ender.flush())  # a held "\nUs" is reply text after all
                    if text:
                        yield text
                    if stopped:
                        stats.stop_reason = "stop"
                    return
                delta, ended = ender.feed(decoder.push(token))
                text, stopped = matcher.feed(delta)
                if text:
                    yield text
                if stopped or token in stop_ids:
                    stats.stop_reason = "stop"
                    return
                if ended:
                    stats.stop_reason = "end_of_turn"
                    return
                feed = [token]
            # Out of tokens: text held back as a possible end string is reply text after all.
            text, stopped = matcher.feed(ender.flush())
            if text:
                yield text
            if stopped:
                stats.stop_reason = "stop"
        finally:
            # The last sampled token was never fed, so the cache holds all ids but that one.
            if healthy and self.reuse_cache:
                self._put_cache(cache, ids[: cache.get_seq_length()])

    def close(self) -> None:
        self.reset_cache()
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
