"""A disk cache of model calls, so a rerun or a resumed run pays for no call twice.

The key is a SHA-256 of the model name, the rendered messages, the generation parameters and the run's
sampling seed (`call_key`); the value is the reply text as the pipeline used it plus the usage the server
reported. The store is one SQLite file (WAL journal): each `put` is its own committed transaction, so a
kill -9 at any moment leaves every finished call in the cache and no half-written one. Threads share one
connection behind a lock (calls are few and small next to a model call).

What it deliberately does not do: decide what is worth caching (the caller never stores a reply cut short
by a cancel) or expire entries (a cache belongs to one run folder; delete the file to start over).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_FILE = "calls.sqlite"


@dataclass
class CachedCall:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""


def call_key(model: str, messages: list[dict], params: dict, seed: int | None) -> str:
    payload = json.dumps(
        {"model": model, "messages": messages, "params": params, "seed": seed},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class CallCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"the model-call cache {self.path} is unreadable ({exc}); delete it") from exc
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedCall | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return CachedCall(**json.loads(row[0]))

    def put(self, key: str, call: CachedCall) -> None:
        value = json.dumps(asdict(call), ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", (key, value))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
