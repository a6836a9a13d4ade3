"""Listing past chats (the Chats panel, refreshed after every answer), cached against uncached in one run.

Run: `python -m benchmarks.chat_history [--chats 50] [--kb 500] [--repeats 5]`.

A browser's history of `--chats` chats (the default bound), each a dialogue record with a plot of `--kb`
KB as base64 in its execution (as a chat with plots has), is listed by `app.chat_history.ChatStore.entries`:
baseline, a fresh store each time (every file parsed, as without the cache); then the same store again
(files unchanged since the last listing are not parsed). Also the time to save one chat (validated, fsynced,
renamed, pruned). Prints the median seconds of each and the ratio to the baseline.

What it deliberately does not measure: Gradio's round trip to the browser.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path


def _median_s(work, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _record(chat_id: str, kb: int) -> dict:
    from interpreter.dialogue import Dialogue, execution_message
    from interpreter.protocol import block_text
    from interpreter.results import ExecutionResult, RunRecord

    image = base64.b64encode(os.urandom(kb * 768)).decode()  # base64 makes it kb KB
    plot = {"output_type": "display_data", "data": {"image/png": image}, "metadata": {}}
    result = ExecutionResult("ok", outputs=[plot], duration_s=0.2)
    messages = [
        {"role": "user", "content": f"plot something for chat {chat_id}"},
        {"role": "assistant", "content": f"Here.\n{block_text('python', 'plot()')}"},
        execution_message([RunRecord("python", "plot()", result)]),
        {"role": "assistant", "content": "Done."},
    ]
    return Dialogue(chat_id, messages, {"source": "app"}).to_json()


def measure(chats: int, kb: int, repeats: int) -> dict[str, float]:
    from app.chat_history import ChatStore

    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        root = Path(tmp) / "chats"
        store = ChatStore(root, max_chats=chats)
        browser = "b" * 32
        for i in range(chats):
            store.save(None, browser, _record(f"{i:012x}", kb))
        assert len(store.entries(None, browser)) == chats
        uncached = _median_s(lambda: ChatStore(root, max_chats=chats).entries(None, browser), repeats)
        cached = _median_s(lambda: store.entries(None, browser), repeats)
        one = _record(f"{chats:012x}", kb)
        save = _median_s(lambda: store.save(None, browser, one), repeats)
    return {"uncached_s": uncached, "cached_s": cached, "save_s": save}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat_history", description=__doc__)
    parser.add_argument("--chats", type=int, default=50, help="chats in the history (default 50)")
    parser.add_argument("--kb", type=int, default=500, help="KB of plot per chat (default 500)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median counts")
    args = parser.parse_args(argv)
    found = measure(args.chats, args.kb, args.repeats)
    print(f"history of {args.chats} chats, {args.kb} KB each")
    print(f"list, every file parsed (baseline): {found['uncached_s'] * 1000:8.1f} ms")
    cached = found["cached_s"]
    print(
        f"list, unchanged files cached:       {cached * 1000:8.1f} ms  ({found['uncached_s'] / cached:.0f}x faster)"
    )
    print(f"save one chat:                      {found['save_s'] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
