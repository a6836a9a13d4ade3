"""The run folder's state machine: which step of which round is done, with what inputs and results.

    DIR/state.json        {"version", "steps": {"r00.generate": STEP, ...}}, rewritten atomically (write, fsync,
                          rename) at every transition, so a SIGKILL leaves the previous or the next version
    STEP = {"status": "running" | "done", "fingerprint": the step's inputs, "inputs": those inputs,
            "starts": how often it was started, "result": {...} (when done), "elapsed_s", "finished_at"}
    DIR/decisions.jsonl   one line per decision, with its numbers (appended once per round)

A step marked "done" is never run again. A step that was running when the process died is started again
and continues from what it left on disk (the generator's run folder, the training's checkpoints, the
evaluation's samples file), so nothing that finished is redone. A done step whose inputs differ from the
current config's is refused with one line naming the first difference: finished work is never silently
mixed with a new configuration.

What it deliberately does not do: know what the steps are (data_pipeline.aiev.rounds) or run them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from data_pipeline.runfolder import fingerprint, write_atomically

STATE_FILE = "state.json"
DECISIONS_FILE = "decisions.jsonl"
STATE_VERSION = 1
RUNNING, DONE = "running", "done"


class StateError(ValueError):
    """The run folder cannot continue with this config; one line."""


def _difference(old, new, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _difference(old.get(key), new.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')}: {json.dumps(old)} then, {json.dumps(new)} now"


class RunState:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE
        self.data = {"version": STATE_VERSION, "steps": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                if self.data.get("version") != STATE_VERSION or not isinstance(self.data.get("steps"), dict):
                    raise ValueError
            except (OSError, ValueError, UnicodeDecodeError):
                raise StateError(
                    f"{self.path} is unreadable or of another version; use a new --run DIR"
                ) from None
        elif self.folder.exists() and not self.folder.is_dir():
            raise StateError(f"--run {self.folder} is a file, not a folder")

    @property
    def steps(self) -> dict[str, dict]:
        return self.data["steps"]

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode())

    def step(self, name: str) -> dict | None:
        return self.steps.get(name)

    def done(self, name: str) -> bool:
        step = self.steps.get(name)
        return bool(step) and step["status"] == DONE

    def result(self, name: str) -> dict:
        return self.steps[name]["result"]

    def check(self, name: str, inputs: dict) -> None:
        """Refuse (StateError) when `name` finished with other inputs than `inputs`."""
        step = self.steps.get(name)
        if step and step["status"] == DONE and step["fingerprint"] != fingerprint(inputs):
            raise StateError(
                f"step {name} finished with another config ({_difference(step['inputs'], inputs)}); "
                "restore that setting or use a new --run DIR"
            )

    def start(self, name: str, inputs: dict) -> dict:
        """Mark `name` running (again, if a crash interrupted it) and return its record."""
        self.check(name, inputs)
        step = self.steps.get(name) or {"starts": 0}
        step.update(status=RUNNING, fingerprint=fingerprint(inputs), inputs=inputs, starts=step["starts"] + 1)
        step.setdefault("progress", {})
        self.steps[name] = step
        self._save()
        return step

    def progress(self, name: str, **values) -> None:
        """Record how far a running step got (e.g. the seeds a generation pass takes) before doing it."""
        self.steps[name]["progress"].update(values)
        self._save()

    def finish(self, name: str, result: dict, elapsed_s: float) -> None:
        step = self.steps[name]
        step.update(status=DONE, result=result, elapsed_s=round(elapsed_s, 3), finished_at=time.time())
        self._save()
