"""One agent's model, as the pipeline calls it: cache first, then budget, rate limits and a call slot.

`ModelClient` wraps any `llm` backend and has the same `stream(messages, params, cancel, stats)` method, so
the interpreter loop drives the programmer through it unchanged and the questioner calls it directly. Per
call it
  1. looks the call up in the disk cache (data_pipeline.cache; key: model, messages, parameters, the run's
     seed) and replays a hit without touching the model or the budget;
  2. otherwise checks the cost budget (BudgetExhausted stops the run cleanly), waits for the rate limiter
     and for a free model-call slot (the bound on concurrent model calls, separate from the bound on
     sandbox executions), streams the reply through, and
  3. stores the reply as the caller used it: when the loop stops reading at a closed code block, what was
     read up to there is the reply (a replay then stops at the same place); a reply cut short by the run's
     stop event is never stored.
Usage (prompt and completion tokens; estimated from characters when the server reports none) is added to
the caller's `Usage` for the item's meta, and to the run's ledger when the call was paid for.

What it deliberately does not do: retry (the OpenAI backend's RetryPolicy), render chat templates (the
backend), or know about items.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from data_pipeline.cache import CachedCall, CallCache, call_key
from data_pipeline.limits import Budget, BudgetExhausted, Prices, RateLimiter, RunStopped


@dataclass
class ModelUsage:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        return data


@dataclass
class Usage:
    """Tokens and estimated cost per model for one item (the cost of making it, cached or not)."""

    models: dict[str, ModelUsage] = field(default_factory=dict)
    # An item's analysis may be asked for while its programmer's call runs (item._Attempts.analyse_ahead).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, model: str, prompt: int, completion: int, cost: float, cached: bool) -> None:
        with self._lock:
            row = self.models.setdefault(model, ModelUsage())
            row.calls += 1
            row.cached_calls += int(cached)
            row.prompt_tokens += prompt
            row.completion_tokens += completion
            row.cost_usd += cost

    def to_json(self) -> dict:
        return {name: row.to_json() for name, row in sorted(self.models.items())}

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.models.values())

    @property
    def tokens(self) -> int:
        return sum(r.prompt_tokens + r.completion_tokens for r in self.models.values())


def _params_json(params) -> dict:
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    return dict(vars(params)) if params is not None else {}


def estimate_tokens(messages: list[dict]) -> int:
    """A rough count (4 characters a token) for servers that report no usage, and for the rate limiter."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)


class ModelClient:
    """See the module docstring. Thread-safe; one per (role, model), sharing cache, budget and slots."""

    def __init__(
        self,
        backend,
        model: str,
        *,
        prices: Prices,
        budget: Budget,
        cache: CallCache | None = None,
        limiter: RateLimiter | None = None,
        call_slots: threading.Semaphore | None = None,
        seed: int | None = None,
        stop_event: threading.Event | None = None,
    ):
        self.backend = backend
        self.model = model
        self.prices = prices
        self.budget = budget
        self.cache = cache
        self.limiter = limiter or RateLimiter()
        self.call_slots = call_slots or threading.Semaphore(1 << 30)
        self.seed = seed
        self.stop_event = stop_event or threading.Event()
        self.speaks_execution_tokens = getattr(backend, "speaks_execution_tokens", True)
        self._local = threading.local()

    # The caller sets the Usage its item accumulates into (thread-local: one item per thread at a time).
    def bind_usage(self, usage: Usage | None) -> None:
        self._local.usage = usage

    def _account(self, prompt: int, completion: int, cached: bool) -> None:
        cost = self.prices.cost(self.model, prompt, completion)
        usage = getattr(self._local, "usage", None)
        if usage is not None:
            usage.add(self.model, prompt, completion, cost, cached)
        if not cached:
            self.budget.record(self.model, prompt, completion, cost)

    def complete(self, messages: list[dict], params, cancel: threading.Event | None = None) -> str:
        """The whole reply as one string (the questioner's calls)."""
        return "".join(self.stream(messages, params, cancel))

    def stream(
        self, messages: list[dict], params, cancel: threading.Event | None = None, stats=None
    ) -> Iterator[str]:
        key = (
            call_key(self.model, messages, _params_json(params), self.seed) if self.cache is not None else ""
        )
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            if stats is not None:
                stats.prompt_tokens = stats.prefill_tokens = hit.prompt_tokens
                stats.generated_tokens = hit.completion_tokens
                stats.stop_reason = hit.stop_reason
            self._account(hit.prompt_tokens, hit.completion_tokens, cached=True)
            if hit.text:
                yield hit.text
            return
        yield from self._call(key, messages, params, cancel, stats)

    def _call(self, key, messages, params, cancel, stats) -> Iterator[str]:
        if self.stop_event.is_set():
            raise RunStopped("the run is stopping")
        try:
            self.budget.check()
        except BudgetExhausted:
            self.stop_event.set()  # every item in flight stops now, not after its next paid call
            raise
        estimate = estimate_tokens(messages) + int(getattr(params, "max_new_tokens", 0) or 0)
        handle = self.limiter.acquire(estimate)
        from llm.base import StreamStats  # the stats object the backends fill in

        own = StreamStats()
        received: list[str] = []
        outcome = "error"  # "finished" | "consumer stopped" | "error"
        with self.call_slots:
            inner = self.backend.stream(messages, params, cancel, own)
            try:
                for chunk in inner:
                    received.append(chunk)
                    yield chunk
                outcome = "finished"
            except GeneratorExit:
                # The consumer stopped reading (the loop found a closed block): what was read is the reply.
                outcome = "consumer stopped"
                raise
            finally:
                close = getattr(inner, "close", None)
                if close is not None:
                    close()
                self._settle(key, messages, handle, own, "".join(received), outcome, stats)

    def _settle(self, key, messages, handle, own, text: str, outcome: str, stats) -> None:
        prompt = own.prompt_tokens or estimate_tokens(messages)
        completion = own.generated_tokens or (max(1, len(text) // 4) if text else 0)
        self.limiter.settle(handle, prompt + completion)
        if outcome != "error" or text:
            self._account(prompt, completion, cached=False)  # paid for, whatever came of it
        if stats is not None:
            stats.prompt_tokens = stats.prefill_tokens = prompt
            stats.generated_tokens = completion
            stats.stop_reason = own.stop_reason
        cut_short = self.stop_event.is_set() or (outcome == "finished" and own.stop_reason == "cancelled")
        if self.cache is not None and outcome != "error" and not cut_short:
            self.cache.put(key, CachedCall(text, prompt, completion, own.stop_reason))
