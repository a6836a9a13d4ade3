"""The result types of running code: what one execution produced, and one block of a round with its result.

A leaf module (it imports nothing of this project) so that the token protocol (`interpreter.protocol`),
the dialogue record (`interpreter.dialogue`) and the training code can use these types without pulling in
the kernel's wire, zmq or the sandboxes.

What it deliberately does not do: run anything (see `interpreter.kernel` and `interpreter.session`) or
render results for a model (see `interpreter.protocol.render_result`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Execution statuses, one place.
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_CRASHED = "crashed"
STATUS_MEMORY = "memory_limit"
EXECUTION_STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT, STATUS_CRASHED, STATUS_MEMORY)
# A block of a round that was not run (a malformed block, the user declined): only in recorded runs.
STATUS_NOT_RUN = "not_run"


@dataclass
class ExecutionError:
    name: str
    value: str
    traceback: str  # ANSI colour codes stripped


@dataclass
class ExecutionResult:
    status: str
    stdout: str = ""
    stderr: str = ""
    # Rich outputs, in order: {"output_type": "execute_result"|"display_data", "data": {mime: value}, "metadata": {...}}
    outputs: list[dict] = field(default_factory=list)
    error: ExecutionError | None = None
    duration_s: float = 0.0
    state_lost: bool = False  # the kernel was restarted: variables and imports are gone
    dropped_chars: int = 0  # output beyond the cap, dropped from the middle
    message: str = ""  # one line for humans, e.g. "timed out after 30 s; kernel restarted, state lost"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ExecutionResult:
        """The inverse of `to_json` (unknown keys are ignored, so older and newer files both load)."""
        error = data.get("error")
        return cls(
            status=data["status"],
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            outputs=list(data.get("outputs") or []),
            error=ExecutionError(error["name"], error["value"], error.get("traceback", ""))
            if error
            else None,
            duration_s=float(data.get("duration_s", 0.0)),
            state_lost=bool(data.get("state_lost", False)),
            dropped_chars=int(data.get("dropped_chars", 0)),
            message=data.get("message", ""),
        )


@dataclass
class RunRecord:
    """One block of a round and what came of it (`result` is None when it was not run)."""

    language: str
    code: str
    result: ExecutionResult | None = None
    note: str = ""  # why it was not run (shown to the model as stderr), or "" when it ran

    def to_json(self) -> dict:
        """The dialogue record's RUN object (see `interpreter.dialogue`): flat, with status "not_run" when
        the block was not run, so a reader needs no knowledge of these classes."""
        result = self.result
        if result is None:
            return {
                "language": self.language,
                "code": self.code,
                "status": STATUS_NOT_RUN,
                "stdout": "",
                "stderr": "",
                "outputs": [],
                "error": None,
                "duration_s": 0.0,
                "note": self.note,
            }
        data = result.to_json()
        return {"language": self.language, "code": self.code, **data, "note": self.note}

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """The inverse of `to_json`."""
        if data["status"] == STATUS_NOT_RUN:
            return cls(data["language"], data["code"], None, data.get("note", ""))
        return cls(data["language"], data["code"], ExecutionResult.from_json(data), data.get("note", ""))
