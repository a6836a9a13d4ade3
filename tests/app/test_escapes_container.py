"""The app's container keeps the app off every network a sandbox or another container could use.

The image cannot be built here (no registry for its base), so this checks the configuration the image
runs with; test_escapes_network.py checks the behaviour it relies on (an app on 127.0.0.1 and network-less
sandboxes: code in a kernel reaches neither the app nor a host service).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def entrypoint() -> list[str]:
    line = next(x for x in DOCKERFILE.read_text().splitlines() if x.startswith("ENTRYPOINT"))
    return json.loads(line[len("ENTRYPOINT") :])


def documented_run() -> list[str]:
    """The `docker run` command of the Dockerfile's header comment, as argv."""
    text = DOCKERFILE.read_text()
    start = text.index("#   docker run")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.lstrip("#").strip().rstrip("\\"))
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(" ".join(lines))


def test_the_image_binds_loopback_in_the_hosts_network_namespace():
    argv = entrypoint()
    assert argv[:4] == ["tini", "--", "python", "-m"] and "app" in argv
    assert "--host" not in argv  # the app's default, 127.0.0.1
    run = documented_run()
    assert "--network" in run and run[run.index("--network") + 1] == "host"
    assert not any(re.match(r"^(0\.0\.0\.0:)?\d+:\d+$", arg) for arg in run)  # nothing published to all
    assert "--auth" not in run and "--auth-file" in run  # no password in argv


def test_the_docker_socket_caveat_is_stated():
    text = DOCKERFILE.read_text()
    assert "The Docker socket is root on the host" in text
