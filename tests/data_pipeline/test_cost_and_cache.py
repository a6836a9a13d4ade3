"""Paying for calls: the disk cache, the cost budget's clean stop, and the rate limiter."""

from __future__ import annotations

import json
import threading

import pytest

from data_pipeline.cache import CachedCall, CallCache, call_key
from data_pipeline.cli import main
from data_pipeline.limits import RateLimiter
from tests.data_pipeline.conftest import generate_args, read_records, write_seeds


def test_cache_survives_reopening_and_keys_on_everything(tmp_path):
    messages = [{"role": "user", "content": "hi"}]
    key = call_key("m", messages, {"temperature": 0.0}, 0)
    assert key != call_key("m2", messages, {"temperature": 0.0}, 0)
    assert key != call_key("m", messages, {"temperature": 0.5}, 0)
    assert key != call_key("m", messages, {"temperature": 0.0}, 1)
    assert key != call_key("m", [{"role": "user", "content": "hi!"}], {"temperature": 0.0}, 0)
    cache = CallCache(tmp_path / "c.sqlite")
    cache.put(key, CachedCall("hello", 3, 1, "end_of_turn"))
    cache.close()
    again = CallCache(tmp_path / "c.sqlite")
    assert again.get(key) == CachedCall("hello", 3, 1, "end_of_turn")
    assert again.get("missing") is None


def test_rate_limiter_waits_for_the_window():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(rpm=2, tpm=1000, clock=lambda: now[0], sleep=sleep)
    limiter.acquire(100)
    limiter.acquire(100)
    limiter.acquire(100)  # a third request in the same minute waits for the first to leave the window
    assert sum(slept) == pytest.approx(60.0)
    handle = limiter.acquire(950)  # 100 + 950 > 1000 tokens in the window: waits again
    assert sum(slept) == pytest.approx(120.0)
    limiter.settle(handle, 10)  # the server's real count replaces the estimate
    limiter.acquire(900)
    assert sum(slept) == pytest.approx(120.0)


def test_rate_limiter_is_shared_by_threads():
    limiter = RateLimiter(rpm=5)
    done = []
    threads = [threading.Thread(target=lambda: done.append(limiter.acquire())) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(done) == 5 and len(limiter._requests) == 5


@pytest.mark.local_sandbox
def test_max_cost_stops_cleanly_and_a_rerun_continues_without_paying_twice(
    tmp_path, teacher, local_sandbox_ok, capsys
):
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("ok", "bug", "ok", "bug", "ok", "ok"))
    prices = tmp_path / "prices.json"
    # 7 prompt tokens per call as the test server reports; the estimate is used when a stream is cut off.
    prices.write_text(json.dumps({"models": {"teacher-model": {"input": 1000.0, "output": 1000.0}}}))
    out = tmp_path / "out"
    teacher.requests.clear()
    args = generate_args(seeds, out, teacher, "--prices", str(prices), "--concurrency", "1")
    assert main([*args, "--max-cost", "0.5"]) == 3
    err = capsys.readouterr().err
    assert "cost limit $0.50 reached" in err and "--max-cost" in err
    ledger = read_records(out / "usage.jsonl")
    first_done = len(read_records(out / "dialogues.jsonl"))
    assert 1 <= first_done < 6 and sum(r["cost_usd"] for r in ledger) >= 0.5
    sent_before = [json.dumps(r["messages"]) for r in teacher.requests if r["path"].endswith("completions")]
    assert main([*args, "--max-cost", "1000"]) == 0
    assert len(read_records(out / "dialogues.jsonl")) == 6
    sent = [json.dumps(r["messages"]) for r in teacher.requests if r["path"].endswith("completions")]
    assert len(sent) == len(set(sent)), "a call paid for in the first run was paid for again"
    assert len(sent) > len(sent_before)


@pytest.mark.local_sandbox
def test_no_cache_writes_no_cache(tmp_path, teacher, local_sandbox_ok):
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("ok",))
    assert main(generate_args(seeds, tmp_path / "out", teacher, "--no-cache")) == 0
    assert not (tmp_path / "out" / "calls.sqlite").exists()
    assert len(read_records(tmp_path / "out" / "dialogues.jsonl")) == 1
