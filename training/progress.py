"""One log line per logging step: step, epoch, loss, learning rate, tokens per second and ETA.

A transformers `TrainerCallback` (the Trainer's own tqdm bar and dict printer are turned off in
`training.sft`, so a SLURM log stays readable). Tokens per second come from the Trainer's
`num_input_tokens_seen` (non-padding tokens, summed over all ranks), measured over the time since the last
log line; the ETA extrapolates this run's average step time. Only the main process prints.

What it deliberately does not do: experiment tracking (`--report-to` hands that to transformers).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from transformers import TrainerCallback


class ProgressLog(TrainerCallback):
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._start = 0.0
        self._start_step = 0
        self._last_time = 0.0
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_time = time.monotonic()
        self._start_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen or 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.monotonic()
        tokens = state.num_input_tokens_seen or 0
        rate = (tokens - self._last_tokens) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_tokens = now, tokens
        done = state.global_step - self._start_step
        eta = ""
        if done > 0 and state.max_steps:
            left = (now - self._start) / done * (state.max_steps - state.global_step)
            eta = str(timedelta(seconds=round(left)))
        print(
            f"step {state.global_step}/{state.max_steps} epoch {state.epoch or 0:.2f} "
            f"loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0.0):.3g} "
            f"tokens/s {rate:,.0f} ETA {eta or '?'}",
            file=self.stream,
            flush=True,
        )
