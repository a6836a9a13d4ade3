"""--retry-temperature: Retry samples (a temperature above 0) when the Settings panel's temperature is 0."""

from __future__ import annotations

import subprocess
import sys

from app.cli import DEFAULT_RETRY_TEMPERATURE, parse_args
from tests.app.conftest import REPO


def test_retry_temperature_defaults_above_zero_and_takes_a_value():
    assert parse_args([]).retry_temperature == DEFAULT_RETRY_TEMPERATURE > 0
    assert parse_args(["--retry-temperature", "1.2"]).retry_temperature == 1.2
    assert parse_args(["--retry-temperature", "0"]).retry_temperature == 0


def test_bad_retry_temperature_is_one_line_and_status_2():
    for bad in ("-0.5", "warm", "nan"):
        run = subprocess.run(
            [sys.executable, "-m", "app", "--retry-temperature", bad],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 2 and "--retry-temperature" in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
