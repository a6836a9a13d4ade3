"""Build the docker sandbox image: `python -m interpreter image build [--offline] [--tag TAG]`.

The image's Dockerfile, package list and entry script live beside this module, in
`interpreter/sandboxes/image/`. Its tag is `autocoder-sandbox:<hash of that folder>` (plus `:latest`), so a
build is skipped when an image for the current files exists, and the docker sandbox always asks for the
image that matches the code.

Two ways to get the Debian bookworm base (bookworm ships Python 3.11):
- online: `debian:bookworm-slim` pulled from the registry;
- offline (`--offline`, or automatically when no container registry answers within 3 s): a minimal rootfs
  made with `debootstrap` from the Debian mirror apt uses on this host, turned into an image with
  `docker import`. Only the Debian mirror and PyPI are needed, so air-gapped users with a mirror and CI
  get the same image.

pip inside the build runs in a clean environment with binary wheels only; the host's CA bundle is passed
in so TLS-intercepting proxies work. What this module deliberately does not do: run containers (see
`interpreter.sandboxes.docker`) or push images anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

IMAGE_DIR = Path(__file__).resolve().parent / "image"
IMAGE_REPO = "autocoder-sandbox"
BASE_REPO = "autocoder-sandbox-base"
ONLINE_BASE = "debian:bookworm-slim"

# What debootstrap puts into the offline base. One place: these also feed the base image's tag.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")  # bookworm: python3 is 3.11
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the image's Python is, for the host's wheel downloads (interpreter.packages): bookworm's python3.11
# on glibc 2.36, on the host's own architecture (the daemon runs our containers natively).
IMAGE_PYTHON_VERSION = "3.11"
IMAGE_GLIBC = (2, 36)
REGISTRY_PROBE_URL = "https://registry-1.docker.io/v2/"
REGISTRY_PROBE_TIMEOUT_S = 3.0

HOST_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def image_hash() -> str:
    """Hash of every file that goes into the image (names and contents), 12 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tag(repo: str = IMAGE_REPO) -> str:
    """The tag of the image that matches the current Dockerfile and package list."""
    return f"{repo}:{image_hash()}"


def base_tag(repo: str = BASE_REPO) -> str:
    spec = f"{DEBIAN_SUITE}|{','.join(DEBIAN_PACKAGES)}|minbase"
    return f"{repo}:{DEBIAN_SUITE}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def image_exists(tag: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return done.returncode == 0


def registry_reachable(url: str = REGISTRY_PROBE_URL, timeout_s: float = REGISTRY_PROBE_TIMEOUT_S) -> bool:
    """True when the container registry answers at all (a 401 is an answer)."""
    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses here (first `URIs:`/`deb` line naming a debian archive), else the default."""
    candidates = [
        *sorted((apt_dir / "sources.list.d").glob("*.sources")),
        *sorted((apt_dir / "sources.list.d").glob("*.list")),
        apt_dir / "sources.list",
    ]
    for path in candidates:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            uris = words[1:] if words[0] == "URIs:" else _deb_line_uri(words) if words[0] == "deb" else []
            for uri in uris:
                if uri.startswith("http") and uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def _deb_line_uri(words: list[str]) -> list[str]:
    """The URI of a one-line `deb [options] uri suite ...` entry (options may span several words)."""
    rest = words[1:]
    if rest and rest[0].startswith("["):
        while rest and not rest[0].endswith("]"):
            rest = rest[1:]
        rest = rest[1:]
    return rest[:1]


def host_ca_bundle() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), *HOST_CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _run(argv: list[str], log: Log, *, stdin=None, env: dict | None = None) -> None:
    """Run a build step, streaming its output as progress; raise with the tail of the output on failure."""
    log("$ " + " ".join(argv))
    proc = subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        errors="replace",
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        if line:
            log("  " + line[:200])
    if proc.wait() != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def build_offline_base(log: Log = _print, *, repo: str = BASE_REPO) -> str:
    """debootstrap a minimal bookworm rootfs and `docker import` it; skipped when the base already exists."""
    tag = base_tag(repo)
    if image_exists(tag):
        log(f"base {tag} exists, reusing it")
        return tag
    if shutil.which("debootstrap") is None:
        raise RuntimeError("offline build needs debootstrap: apt-get install debootstrap (or build online)")
    if os.geteuid() != 0:
        raise RuntimeError("offline build needs root for debootstrap: run it with sudo")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="autocoder-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        started = time.monotonic()
        log(f"debootstrap {DEBIAN_SUITE} from {mirror} (about a minute)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(DEBIAN_PACKAGES),
                DEBIAN_SUITE,
                str(rootfs),
                mirror,
            ],
            log,
        )
        # Drop what an image does not need: apt lists and caches, docs (keeps the import small and fast).
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        log(f"docker import as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["docker", "import", "-", tag], log, stdin=tar.stdout)
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar.wait()
        log(f"base ready in {time.monotonic() - started:.0f} s")
    return tag


def build_image(
    offline: bool | None = None,
    tag: str | None = None,
    log: Log = _print,
    *,
    repo: str = IMAGE_REPO,
    base_repo: str = BASE_REPO,
) -> str:
    """Build the sandbox image unless the image for the current files exists; return its tag.

    offline=None decides by probing the registry (3 s); True never pulls; False always pulls the base.
    `tag` adds one more tag besides `<repo>:<hash>` and `<repo>:latest` (repo: autocoder-sandbox; tests
    use other repositories so they never touch the image sessions use).
    """
    if shutil.which("docker") is None:
        raise RuntimeError("docker CLI not found: install docker.io (apt-get install docker.io)")
    target = image_tag(repo)
    extra_tags = [f"{repo}:latest", *([tag] if tag else [])]
    if image_exists(target):
        log(f"{target} is up to date")
        _tag(target, extra_tags, log)
        return target
    if offline is None:
        offline = not registry_reachable()
        log("no container registry reachable: building offline" if offline else "registry reachable")
    base = build_offline_base(log, repo=base_repo) if offline else ONLINE_BASE
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autocoder-image-") as tmp:
        context = Path(tmp)
        for path in IMAGE_DIR.iterdir():
            if path.is_file():
                shutil.copy2(path, context / path.name)
        ca = host_ca_bundle()
        (context / "host-ca.crt").write_bytes(ca.read_bytes() if ca else b"")
        argv = ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", target]
        if offline:
            argv.append("--pull=false")
        # The classic builder prints each step; BuildKit's fancy output would hide progress in a pipe.
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        log(f"building {target} from {base} (a few minutes: pip installs numpy, pandas, scipy, ...)")
        _run([*argv, str(context)], log, env=env)
    _tag(target, extra_tags, log)
    _prune_old(repo, keep={target, *extra_tags}, log=log)
    log(f"built {target} in {time.monotonic() - started:.0f} s")
    return target


def _prune_old(repo: str, keep: set[str], log: Log) -> None:
    """Remove images of earlier Dockerfile versions (600 MB each); ones still used by a container stay."""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repo], capture_output=True, text=True
    )
    for old in listed.stdout.split():
        if old not in keep and old.startswith(f"{repo}:"):
            done = subprocess.run(["docker", "rmi", old], capture_output=True, text=True)
            if done.returncode == 0:
                log(f"removed the outdated image {old}")


def _tag(source: str, tags: list[str], log: Log) -> None:
    for extra in tags:
        subprocess.run(["docker", "tag", source, extra], check=True, capture_output=True)
        log(f"tagged {extra}")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `image build` on the interpreter CLI."""
    image = subparsers.add_parser("image", help="build the docker sandbox image")
    _add_build(image.add_subparsers(dest="image_command", required=True))
    return image


def _add_build(actions: argparse._SubParsersAction) -> None:
    build = actions.add_parser("build", help="build the sandbox image (skipped when it is up to date)")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        dest="offline",
        action="store_const",
        const=True,
        default=None,
        help="never pull: debootstrap the base from the Debian mirror (default: when no registry answers)",
    )
    mode.add_argument(
        "--online", dest="offline", action="store_const", const=False, help="pull the base image"
    )
    build.add_argument("--tag", default=None, help="an extra tag for the built image")
    build.set_defaults(func=_cli_build)


def _cli_build(args: argparse.Namespace) -> int:
    try:
        tag = build_image(offline=args.offline, tag=args.tag)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m interpreter.sandboxes.docker_image build ...`, the same as
    `python -m interpreter image build ...`."""
    parser = argparse.ArgumentParser(prog="python -m interpreter.sandboxes.docker_image")
    _add_build(parser.add_subparsers(dest="image_command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
