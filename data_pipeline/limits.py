"""Spending and pacing for paid model calls: per-model prices, a cost budget, and request/token rate limits.

- `Prices`: USD per million prompt and completion tokens per model, from a JSON file (default:
  data_pipeline/prices.json; `--prices FILE` for your own). A model missing from the file costs 0 and, when
  `--max-cost` is set, is refused before any work starts (an unpriced model would make the budget a lie).
- `Budget`: the USD spent by this run folder (the ledger DIR/usage.jsonl, one line per paid call, survives
  restarts) against `--max-cost`. When reached, `exhausted` turns true and the generator stops cleanly:
  no new call starts; items in flight are left unfinished and redone (from the cache) on the next run.
- `RateLimiter`: sliding one-minute windows for requests (`--rpm`) and tokens (`--tpm`); a call waits
  for room before it is sent. Token use is estimated up front (prompt characters / 4 + the reply limit)
  and corrected with the server's count when the call ends.

What it deliberately does not do: retry (the OpenAI backend's RetryPolicy does) or cache (data_pipeline.cache).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from interpreter.jsonl import JsonlAppender, read_jsonl

DEFAULT_PRICES = Path(__file__).parent / "prices.json"
USAGE_FILE = "usage.jsonl"


class RunStopped(RuntimeError):
    """Raised instead of starting a model call once the run is stopping (Ctrl-C, SIGTERM, the budget)."""


class BudgetExhausted(RunStopped):
    """Raised instead of starting a model call once --max-cost is reached."""


class Prices:
    def __init__(self, table: dict[str, dict[str, float]], source: str = ""):
        self.table = table
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> Prices:
        path = Path(path) if path is not None else DEFAULT_PRICES
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"prices file {path} does not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"prices file {path} is not valid JSON: {exc}") from None
        table = data.get("models") if isinstance(data, dict) else None
        if not isinstance(table, dict):
            raise ValueError(
                f'prices file {path} needs {{"models": {{NAME: {{"input": USD, "output": USD}}}}}}'
            )
        for name, row in table.items():
            if not (
                isinstance(row, dict)
                and all(isinstance(row.get(k), int | float) for k in ("input", "output"))
            ):
                raise ValueError(
                    f"prices file {path}: model {name!r} needs numeric input and output (USD per 1M)"
                )
        return cls(table, str(path))

    def knows(self, model: str) -> bool:
        return model in self.table

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        row = self.table.get(model)
        if row is None:
            return 0.0
        return (prompt_tokens * row["input"] + completion_tokens * row["output"]) / 1e6


class Budget:
    """USD spent by the run folder so far (ledger on disk) against an optional limit."""

    def __init__(self, folder: str | Path, max_cost: float | None):
        self.path = Path(folder) / USAGE_FILE
        self.max_cost = max_cost
        self._lock = threading.Lock()
        self.spent = (
            sum(float(row.get("cost_usd", 0.0)) for row in read_jsonl(self.path))
            if self.path.exists()
            else 0.0
        )
        self.spent_before = self.spent
        self._ledger = JsonlAppender(self.path)

    @property
    def exhausted(self) -> bool:
        return self.max_cost is not None and self.spent >= self.max_cost

    def check(self) -> None:
        if self.exhausted:
            raise BudgetExhausted(f"cost limit ${self.max_cost:.2f} reached (${self.spent:.2f} spent)")

    def record(self, model: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        with self._lock:
            self.spent += cost
            self._ledger.append(
                {
                    "time": round(time.time(), 3),
                    "model": model,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "cost_usd": round(cost, 8),
                }
            )

    def close(self) -> None:
        self._ledger.close()


class RateLimiter:
    """Requests and tokens per rolling minute; `None` means unlimited. Thread-safe."""

    WINDOW_S = 60.0

    def __init__(
        self, rpm: int | None = None, tpm: int | None = None, clock=time.monotonic, sleep=time.sleep
    ):
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        self._requests: deque[float] = deque()
        self._tokens: deque[list] = deque()  # [time, tokens] (mutable: corrected after the call)
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= self.WINDOW_S:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= self.WINDOW_S:
            self._tokens.popleft()

    def acquire(self, estimated_tokens: int = 0) -> list | None:
        """Wait until one more request (of about `estimated_tokens`) fits; returns a handle for `settle`."""
        if self.rpm is None and self.tpm is None:
            return None
        while True:
            with self._lock:
                now = self._clock()
                self._trim(now)
                waits = []
                if self.rpm is not None and len(self._requests) >= self.rpm:
                    waits.append(self._requests[0] + self.WINDOW_S - now)
                if self.tpm is not None and self._tokens:
                    used = sum(t for _, t in self._tokens)
                    if used + estimated_tokens > self.tpm:
                        waits.append(self._tokens[0][0] + self.WINDOW_S - now)
                if not waits:
                    self._requests.append(now)
                    entry = [now, estimated_tokens]
                    self._tokens.append(entry)
                    return entry
                wait = max(0.01, min(waits))
            self._sleep(wait)

    def settle(self, handle: list | None, actual_tokens: int) -> None:
        if handle is not None:
            with self._lock:
                handle[1] = actual_tokens
