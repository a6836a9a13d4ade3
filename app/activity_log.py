"""The chat's activity in the app's log: one line per execution and one per answered message.

`logged(run_loop)` wraps the app's loop runner and passes every event through unchanged, logging

    kernel <session id>: execution ok in 0.12 s
    kernel <session id>: message answered (end_of_turn) in 3.4 s: 2 rounds, 1 execution

at INFO on the "app" logger (the loop sees the chat's kernel session, not the chat, so lines name the
kernel's session id). Nothing of the conversation itself (no prompt, code or output) goes to the
log: it may be private, and the chat already shows it. What this module does not do: configure logging
(app.__main__) or log HTTP requests (those loggers are set to WARNING there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from interpreter.loop import Done, ExecutionFinished, RoundFinished

log = logging.getLogger("app")


def logged(run_loop: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """`run_loop(backend, dialogue, session, ...)` whose executions and end are logged, one line each."""

    def run(backend, dialogue, session, *args, **kwargs) -> Iterator:
        who = getattr(session, "id", "") or "?"
        start = time.monotonic()
        rounds = executions = 0
        for event in run_loop(backend, dialogue, session, *args, **kwargs):
            if isinstance(event, ExecutionFinished):
                executions += 1
                result = event.result
                log.info("kernel %s: execution %s in %.2f s", who, result.status, result.duration_s)
            elif isinstance(event, RoundFinished):
                rounds = event.round
            elif isinstance(event, Done):
                log.info(
                    "kernel %s: message answered (%s) in %.1f s: %d round%s, %d execution%s",
                    who,
                    event.reason,
                    time.monotonic() - start,
                    rounds,
                    "" if rounds == 1 else "s",
                    executions,
                    "" if executions == 1 else "s",
                )
            yield event

    return run
