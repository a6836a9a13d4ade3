"""Choose a sandbox by name: "docker", "local", "none", or "auto" (docker if usable, else local).

`auto` never falls back to "none": running model-written code unsandboxed must be asked for by name. When
no sandbox can run, `make_sandbox` raises SandboxUnavailable with one line saying how to enable one.

What it deliberately does not do: build the docker image (`python -m interpreter image build` does) or
start anything; the chosen sandbox only holds configuration until a session launches a kernel.
"""

from __future__ import annotations

from interpreter.sandboxes.base import Limits, Sandbox, SandboxUnavailable

SANDBOX_NAMES = ("auto", "docker", "local", "none")


def _docker(limits: Limits) -> Sandbox:
    try:
        from interpreter.sandboxes.docker import DockerSandbox
    except ImportError as exc:
        raise SandboxUnavailable(f"docker sandbox is not installed in this checkout ({exc})") from exc
    DockerSandbox.check_available()
    return DockerSandbox(limits=limits)


def _local(limits: Limits) -> Sandbox:
    from interpreter.sandboxes.local import LocalSandbox

    LocalSandbox.check_available()
    return LocalSandbox(limits=limits)


def _none(limits: Limits) -> Sandbox:
    from interpreter.sandboxes.none import NoneSandbox

    NoneSandbox.check_available()
    return NoneSandbox(limits=limits)


def make_sandbox(name: str = "auto", limits: Limits | None = None) -> Sandbox:
    """The sandbox called `name`, checked to work here; raises SandboxUnavailable (one line) otherwise."""
    limits = limits or Limits()
    if name == "docker":
        return _docker(limits)
    if name == "local":
        return _local(limits)
    if name == "none":
        return _none(limits)
    if name != "auto":
        raise SandboxUnavailable(f"unknown sandbox {name!r}: choose one of {', '.join(SANDBOX_NAMES)}")
    reasons = []
    for make in (_docker, _local):
        try:
            return make(limits)
        except SandboxUnavailable as exc:
            reasons.append(str(exc))
    raise SandboxUnavailable(
        "no sandbox can run here: "
        + " | ".join(reasons)
        + " (or pass --sandbox none to run unsandboxed, dev only)"
    )
