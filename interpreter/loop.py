"""Generate -> detect -> execute -> feed back, as a stream of typed events.

(Skeleton: the event types are the contract; `run_loop` is being implemented.)
"""

from __future__ import annotations

from dataclasses import dataclass

from interpreter.kernel import ExecutionResult


@dataclass
class TextDelta:
    text: str  # assistant text, special tokens included


@dataclass
class ExecutionStarted:
    exec_id: str
    language: str  # "python" | "sh"
    code: str


@dataclass
class OutputChunk:
    exec_id: str
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass
class ExecutionFinished:
    exec_id: str
    result: ExecutionResult


@dataclass
class RoundFinished:
    round: int  # 1-based count of generation rounds done


@dataclass
class Notice:
    message: str  # e.g. a malformed block the loop told the model about


@dataclass
class Done:
    messages: list[dict]  # the whole dialogue in DESIGN.md's format, execution turns included
    reason: str  # "end_of_turn" | "max_rounds" | "cancelled" | "max_tokens"


@dataclass
class ErrorEvent:
    message: str  # one line


Event = TextDelta | ExecutionStarted | OutputChunk | ExecutionFinished | RoundFinished | Notice | Done | ErrorEvent
