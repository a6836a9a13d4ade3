"""Latency from the closing <API_RUN_STOP> in the model's stream to the execution's first output: through
the loop alone, and on screen in the chat app.

`python -m benchmarks.execution_latency [--runs 10] [--sandbox local] [--model PATH] [--loop-only]`

1. Loop only (no model, no UI). A backend of the loop's interface streams a fixed reply ending in a
   block running print(6*7); the loop runs it in a real sandboxed session. Measured: from the backend
   handing on the chunk that completes <API_RUN_STOP> to the consumer receiving the first OutputChunk.
   Baseline, interleaved in the same session: a bare `Session.run_block("python", "print(6*7)")` from
   call to first output callback. Goal: the loop adds at most 3 ms (median difference).
2. The page. The chat app runs in this process on the tiny trained model (tests/fixtures/tiny_models.py),
   with its kernels in a real sandbox; headless Chromium (Debian's, through playwright) shows the page.
   The model is asked "print", to which it answers with a block running print(6*7). Clocks, all on this
   machine's wall clock:

   - t_stop:    the backend hands the chunk that completes <API_RUN_STOP> to the loop (a wrapper records it);
   - t_started: the loop yields ExecutionStarted (the loop announces it with its first output, see loop.py);
   - t_chunk:   the loop yields the first OutputChunk (the kernel's "42" came back);
   - t_dom:     the browser's DOM first shows the output (a MutationObserver, performance.timeOrigin + now());
   - t_paint:   the next animation frame after that (the output is painted).

   Goal: t_dom - t_stop <= 25 ms (print(6*7)'s own run time is well under a microsecond, taken as 0; the
   kernel's whole execution time, duration_s, is printed beside it). Baseline, same run, same sandbox:
   the bare kernel's call -> first output, as above; the app's own share is the difference.

Timings on a machine shared with other jobs are noisy: compare the loop with its baseline of the same run,
and use 30 runs for the page (10-run medians moved by 5 ms from one run to the next).

What the page's number rests on (each measured here; undo one and the median grows by 3-10 ms):
- the loop announces an execution with its first output (`announce_wait_s`), and text updates go out at
  most every 50 ms (app.chat.TEXT_INTERVAL_S), so the browser is not busy with old text when output comes;
- an answer's updates name only the outputs they may change (app.ui `chat_outputs`): Gradio builds a new
  component, config and schema included, for every output an update skips, on every update;
- events other than answers have no progress targets (app.page_style.QUIET): the page refreshes the
  loading status of every component that was ever a target on every streamed message, copying its value;
- the chat follows the answer once per frame (app.page_style.PAGE_JS), not with Gradio's autoscroll, which
  laid the page out inside every update.

What it deliberately does not measure: generation speed (see benchmarks.loop_overhead) or kernel start.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

from tests.fixtures.browser import CHROMIUM, CHROMIUM_FLAGS

GOAL_MS = 25.0  # RUN_STOP -> output in the page
LOOP_GOAL_MS = 3.0  # what the loop may add over the bare kernel to the first output


# Records when the output line "42" first appears in an execution message, and the frame after. It reads
# textContent of the code elements, never innerText: innerText lays the page out, and the observer runs on
# every change of a streaming chat (it cost the page about 70 ms of forced layout per message).
WATCH_OUTPUT = """
window.__firstOutput = null;
window.__firstPaint = null;
if (!window.__watching) {
  window.__watching = true;
  const chat = document.querySelector('#chatbot');
  new MutationObserver(() => {
    if (window.__firstOutput !== null) return;
    for (const el of chat.querySelectorAll('.thought code')) {
      if (/(^|\\n)42(\\n|$)/.test(el.textContent)) {
        window.__firstOutput = performance.timeOrigin + performance.now();
        requestAnimationFrame(() => { window.__firstPaint = performance.timeOrigin + performance.now(); });
        return;
      }
    }
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}
"""


class RunStopClock:
    """Wraps a backend; notes the wall-clock time at which the chunk completing RUN_STOP is handed on."""

    def __init__(self, backend):
        from interpreter.protocol import RUN_STOP

        self.backend = backend
        self.token = RUN_STOP
        self.name = backend.name
        self.notice = backend.notice
        self.model_id = getattr(backend, "model_id", "")
        self.times: list[float] = []

    def stream(self, messages, params, cancel=None, stats=None):
        tail = ""  # shorter than the token, so a token found in tail + chunk ends in this chunk
        for chunk in self.backend.stream(messages, params, cancel, stats):
            if self.token in tail + chunk:
                self.times.append(time.time())
            tail = (tail + chunk)[-(len(self.token) - 1) :]
            yield chunk

    def close(self):
        self.backend.close()


class LoopClock:
    """Wraps the app's loop runner; notes when ExecutionStarted and the first OutputChunk are yielded."""

    def __init__(self, run_loop):
        self.run_loop = run_loop
        self.started: list[float] = []
        self.first_chunk: list[float] = []
        self.durations: list[float] = []

    def __call__(self, *args):
        from interpreter.loop import ExecutionFinished, ExecutionStarted, OutputChunk

        seen_chunk: set[str] = set()
        for event in self.run_loop(*args):
            now = time.time()
            if isinstance(event, ExecutionStarted):
                self.started.append(now)
            elif isinstance(event, OutputChunk) and event.exec_id not in seen_chunk:
                seen_chunk.add(event.exec_id)
                self.first_chunk.append(now)
            elif isinstance(event, ExecutionFinished):
                self.durations.append(event.result.duration_s)
            yield event


def bare_kernel_latency(sandbox_name: str, runs: int) -> list[float]:
    """Baseline: Session.run_block("python", "print(6*7)") from call to first output, in ms."""
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    samples = []
    with Session(make_sandbox(sandbox_name)) as session:
        session.run_block("python", "print(0)")  # warm up
        for _ in range(runs):
            first: list[float] = []

            def on_output(stream: str, text: str, first: list[float] = first) -> None:
                if not first:
                    first.append(time.perf_counter())

            started = time.perf_counter()
            session.run_block("python", "print(6*7)", on_output=on_output)
            samples.append((first[0] - started) * 1000)
    return samples


class _ScriptedReplies:
    """A backend of the loop's interface that streams fixed replies in small chunks (no model work, so the
    loop-only measurement sees the loop and the kernel and nothing else). Notes when RUN_STOP is handed on."""

    def __init__(self, replies: list[str], chunk: int = 4):
        from interpreter.protocol import RUN_STOP

        self.replies = replies
        self.chunk = chunk
        self.token = RUN_STOP
        self.stop_times: list[float] = []
        self.calls = 0

    def stream(self, messages, params, cancel=None, stats=None):
        reply = self.replies[self.calls % len(self.replies)]
        self.calls += 1
        for i in range(0, len(reply), self.chunk):
            if self.token in reply[: i + self.chunk] and self.token not in reply[:i]:
                self.stop_times.append(time.perf_counter())  # this chunk completes RUN_STOP
            yield reply[i : i + self.chunk]


def loop_and_bare_kernel_latency(sandbox_name: str, runs: int) -> tuple[list[float], list[float]]:
    """RUN_STOP -> first OutputChunk through `run_loop` (no UI), and the bare kernel's call -> first output,
    interleaved in one session (ms each)."""
    from interpreter.loop import Done, LoopConfig, OutputChunk, run_loop
    from interpreter.protocol import block_text
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from llm.base import GenerationParams

    reply = "Let me run it.\n" + block_text("python", "print(6*7)")
    backend = _ScriptedReplies([reply, "It printed 42."])
    config = LoopConfig(generation=GenerationParams(max_new_tokens=64), max_rounds=1)
    loop_ms, bare_ms = [], []
    with Session(make_sandbox(sandbox_name)) as session:
        session.run_block("python", "print(0)")  # warm up
        for run in range(runs + 1):
            first: float | None = None
            n_stop = len(backend.stop_times)
            for event in run_loop(backend, [{"role": "user", "content": "print"}], session, config):
                if isinstance(event, OutputChunk) and first is None:
                    first = time.perf_counter()
                elif isinstance(event, Done) and (first is None or event.reason != "end_of_turn"):
                    raise RuntimeError(f"the loop did not run the block: {event.reason}")
            assert first is not None
            if run:
                loop_ms.append((first - backend.stop_times[n_stop]) * 1000)
            got: list[float] = []

            def on_output(stream: str, text: str, got: list[float] = got) -> None:
                if not got:
                    got.append(time.perf_counter())

            started = time.perf_counter()
            session.run_block("python", "print(6*7)", on_output=on_output)
            if run:
                bare_ms.append((got[0] - started) * 1000)
    return loop_ms, bare_ms


def _stats(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"median {statistics.median(values):7.1f}  p90 {p90:7.1f}  max {values[-1]:7.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.execution_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=10, help="measured messages (after one warm-up)")
    parser.add_argument("--sandbox", default="local", help="sandbox the kernels run in (default local)")
    parser.add_argument(
        "--model", default=None, help="model folder (default: the tiny test model, built if needed)"
    )
    parser.add_argument(
        "--loop-only", action="store_true", help="measure the loop against the bare kernel only (no browser)"
    )
    args = parser.parse_args(argv)
    # As the app's model load does (llm.hf_loading.load_model_and_tokenizer), before anything here imports
    # torch: building or finding the tiny test model does, and libgomp reads the policy only once.
    from llm.hf_loading import prefer_passive_openmp

    prefer_passive_openmp()

    loop_ms, bare_ms = loop_and_bare_kernel_latency(args.sandbox, max(args.runs, 20))
    loop_share = statistics.median(loop_ms) - statistics.median(bare_ms)
    print(f"\nloop only, {len(loop_ms)} runs, sandbox {args.sandbox} (ms)")
    print(f"  RUN_STOP -> first OutputChunk (loop)       {_stats(loop_ms)}")
    print(f"  baseline: bare kernel, call -> first output {_stats(bare_ms)}")
    verdict = "meets" if loop_share <= LOOP_GOAL_MS else "MISSES"
    print(
        f"  the loop adds {loop_share:.2f} ms over the bare kernel (median difference; ratio "
        f"{statistics.median(loop_ms) / statistics.median(bare_ms):.2f}); goal <= {LOOP_GOAL_MS:.0f} ms "
        f"({verdict} the goal)"
    )
    if args.loop_only:
        return 0
    if not Path(CHROMIUM).exists():
        print(f"error: Debian's Chromium is needed at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 1

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.server import quiet_gradio_environment

    quiet_gradio_environment()
    from app.cli import parse_args
    from app.server import build_app, build_context, launch
    from llm.select import load_backend

    model = args.model
    if model is None:
        from tests.fixtures.tiny_models import cached_tiny_autocoder

        model = str(cached_tiny_autocoder())
    port = free_port()
    app_args = parse_args(
        ["--model", model, "--sandbox", args.sandbox, "--port", str(port), "--warm-kernels", "1"]
    )
    backend = RunStopClock(load_backend(backend="hf", model=model))
    ctx, _ = build_context(app_args, backend=backend)
    loop_clock = LoopClock(ctx.run_loop)
    ctx.run_loop = loop_clock
    demo = build_app(ctx, app_args)
    launch(demo, app_args, block=False)

    from playwright.sync_api import sync_playwright

    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#prompt textarea", timeout=60_000)
            for run in range(args.runs + 1):
                print(f"run {run}/{args.runs}{' (warm-up)' if run == 0 else ''}", file=sys.stderr, flush=True)
                page.click("#clear")
                # Clear restarts the kernel before the page empties: give a loaded machine time for it.
                page.wait_for_function(
                    "() => document.querySelectorAll('#chatbot .thought').length === 0", timeout=180_000
                )
                page.evaluate(WATCH_OUTPUT)
                n_stop, n_chunk = len(backend.times), len(loop_clock.first_chunk)
                page.fill("#prompt textarea", "print")
                page.keyboard.press("Enter")
                page.wait_for_function("() => window.__firstPaint !== null", timeout=60_000)
                deadline = time.monotonic() + 30
                while len(loop_clock.first_chunk) == n_chunk and time.monotonic() < deadline:
                    time.sleep(0.01)
                if len(backend.times) == n_stop or len(loop_clock.first_chunk) == n_chunk:
                    print(
                        "error: the model did not run a block; is this the tiny test model?", file=sys.stderr
                    )
                    return 1
                t_dom, t_paint = page.evaluate("[window.__firstOutput, window.__firstPaint]")
                t_stop = backend.times[n_stop] * 1000
                row = {
                    "stop->started": loop_clock.started[-1] * 1000 - t_stop,
                    "stop->chunk": loop_clock.first_chunk[-1] * 1000 - t_stop,
                    "stop->dom": t_dom - t_stop,
                    "stop->paint": t_paint - t_stop,
                    "chunk->dom": t_dom - loop_clock.first_chunk[-1] * 1000,
                }
                while ctx.chats.any_running() and time.monotonic() < deadline + 60:
                    time.sleep(0.02)
                if run > 0:  # the first message warms caches
                    rows.append(row)
            browser.close()
    finally:
        demo.close()
        ctx.chats.close_all()
        ctx.pool.close()

    baseline = bare_kernel_latency(args.sandbox, args.runs)
    durations = [d * 1000 for d in loop_clock.durations[1:]]
    print(f"\nexecution latency, {args.runs} runs, sandbox {args.sandbox}, model {model} (ms)")
    for key, label in (
        ("stop->started", "RUN_STOP -> ExecutionStarted (loop)   "),
        ("stop->chunk", "RUN_STOP -> first OutputChunk (loop)   "),
        ("stop->dom", "RUN_STOP -> output in the DOM          "),
        ("stop->paint", "RUN_STOP -> output painted (next frame)"),
        ("chunk->dom", "UI share: first OutputChunk -> DOM     "),
    ):
        print(f"  {label} {_stats([r[key] for r in rows])}")
    print(f"  baseline: bare kernel, call -> first output {_stats(baseline)}")
    print(
        f"  the code's whole execution (duration_s)      {_stats(durations)}  (own run time of print(6*7): ~0)"
    )
    app_share = statistics.median([r["stop->dom"] for r in rows]) - statistics.median(baseline)
    print(f"  app + loop share over the bare kernel: {app_share:.1f} ms (median difference)")
    median = statistics.median([r["stop->dom"] for r in rows])
    verdict = "meets" if median <= GOAL_MS else "MISSES"
    print(
        f"\nRUN_STOP -> first output on screen: median {median:.1f} ms; goal {GOAL_MS:.0f} ms; "
        f"ratio {median / GOAL_MS:.2f} ({verdict} the goal)"
    )
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
