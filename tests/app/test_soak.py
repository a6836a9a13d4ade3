"""The soak benchmark's short version (benchmarks/soak.py): 12 API users at once x 3 messages, each running
code in the docker sandbox, against one `python -m app`; then a kill -9 mid-execution and a restart.

Checked: every reply correct (each user's own numbers, from its own kernel), the app's memory bounded, no
container or session folder left after a clean stop, and every orphan of the killed app removed by the
restart. The numbers (p50/p95 latency, peak memory) are printed, not asserted: the machine is shared.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks.soak import soak
from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# The app's own process tree (server, gradio, the loop threads; kernels live in containers). Generous: the
# point is that 36 executions do not grow it without bound, not a tight number on a shared machine.
MAX_PEAK_RSS_MB = 3000
MAX_GROWTH_MB = 400


def test_twelve_users_three_messages_each_then_kill_and_restart():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("docker")
    except SandboxUnavailable as exc:
        require(False, f"docker sandbox unavailable: {exc}")
    # A short folder of its own (not pytest's tmp_path): session folders hold IPC sockets, whose paths are
    # limited to ~100 bytes.
    work = Path(tempfile.mkdtemp(prefix="acsoak-"))
    try:
        report = soak(users=12, messages=3, sandbox="docker", work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report.lines()))
    assert report.errors == []
    assert len(report.latencies_s) == 12 * 3
    assert report.peak_rss_mb < MAX_PEAK_RSS_MB
    assert report.rss_after_mb - report.rss_before_mb < MAX_GROWTH_MB
    assert report.stop_status == 0
    assert report.left_containers == [] and report.left_dirs == []
    containers, folders = report.orphans_before_restart
    assert containers > 0 and folders > 0, (
        "the kill left nothing behind: the crash did not happen mid-execution"
    )
    assert report.orphans_after_restart == (0, 0)
