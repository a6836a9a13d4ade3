"""One persistent Jupyter kernel per session, run inside a sandbox: execute -> structured result.

(Skeleton: the data types below are the contract; KernelSession is being implemented.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# Execution statuses, one place.
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_TIMEOUT = "timeout"
STATUS_CRASHED = "crashed"
STATUS_MEMORY = "memory_limit"

# Called with ("stdout" | "stderr", text) as output arrives, so a UI can stream it.
OutputCallback = Callable[[str, str], None]


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
