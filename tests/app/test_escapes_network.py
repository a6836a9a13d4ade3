"""Code in a chat's sandbox cannot reach the app that runs it, nor anything listening on the host, in both
sandboxes: the app binds 127.0.0.1 (as its container does, see the Dockerfile) and kernels have no network.
The model here is scripted, so the code is exactly what an attacker controlling the model would send."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess

import pytest

from tests.app.scripted_model import start_scripted_app
from tests.interpreter.conftest import sandbox_or_skip

pytestmark = pytest.mark.slow


def host_addresses() -> list[str]:
    """Every IPv4 address of this host (loopback, LAN, Docker bridge gateways)."""
    found = {"127.0.0.1"}
    with contextlib.suppress(OSError):
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
        found.update(line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3)
    return sorted(found)


PROBE = """
import json, socket
reached = {}
for address in ADDRESSES:
    probe = socket.socket()
    probe.settimeout(1.0)
    try:
        probe.connect((address, PORT))
        reached[address] = "connected"
    except OSError as exc:
        reached[address] = type(exc).__name__
    finally:
        probe.close()
print(json.dumps(reached))
"""


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param("local", marks=pytest.mark.local_sandbox),
        pytest.param("docker", marks=pytest.mark.docker),
    ],
)
def test_sandboxed_code_cannot_reach_the_app_or_a_host_service(
    sandbox, start_app, openai_server, monkeypatch
):
    from gradio_client import Client

    sandbox_or_skip(sandbox)
    app = start_scripted_app(start_app, openai_server, monkeypatch, "--sandbox", sandbox)
    listener = socket.socket()  # a service on every host address, like a database or the Docker API on TCP
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    addresses = host_addresses()
    with socket.create_connection(("127.0.0.1", app.port), timeout=5):
        pass  # premise: the app answers on the host
    try:
        for port in (app.port, listener.getsockname()[1]):
            code = PROBE.replace("ADDRESSES", repr(addresses)).replace("PORT", str(port))
            reply = Client(app.url, verbose=False).predict("run: " + code, api_name="/chat")
            (execution,) = reply["executions"]
            assert execution["result"]["status"] == "ok", execution
            reached = json.loads(execution["result"]["stdout"].strip().splitlines()[-1])
            assert set(reached) == set(addresses)
            assert "connected" not in reached.values(), (port, reached)
    finally:
        listener.close()
