"""A minimal client for the Docker Engine HTTP API over its unix socket (no `docker` package needed).

Used by the docker sandbox for what must be fast or event-driven: create/start/remove a kernel's
container (the CLI costs ~100 ms of process start per call) and block on `wait` to learn within
milliseconds that a container died. What it deliberately does not do: attach to container streams,
build images, or talk TCP to a remote daemon (the docker CLI is used for one-shot commands and builds).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse

DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerAPIError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"docker API {status}: {message}")
        self.status = status


def socket_path() -> str:
    """The daemon's unix socket: DOCKER_HOST=unix://... when set (the ecosystem's variable), else the default."""
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerAPI:
    """One request per connection: simple, thread-safe, and cheap on a local unix socket."""

    def __init__(self, path: str | None = None):
        self.path = path or socket_path()

    def request(
        self,
        method: str,
        endpoint: str,
        body: dict | None = None,
        *,
        query: dict | None = None,
        timeout: float | None = 30.0,
    ):
        """Send one request; return the decoded JSON body (or None); raise DockerAPIError on HTTP >= 400."""
        if query:
            endpoint += "?" + urllib.parse.urlencode(query)
        conn = _UnixConnection(self.path, timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, endpoint, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise DockerAPIError(response.status, message.strip())
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            return self.request("GET", "/_ping", timeout=timeout) == "OK"
        except (OSError, DockerAPIError, http.client.HTTPException):
            return False

    def image_exists(self, tag: str) -> bool:
        try:
            self.request("GET", f"/images/{urllib.parse.quote(tag, safe='')}/json", timeout=10)
            return True
        except DockerAPIError as exc:
            if exc.status == 404:
                return False
            raise

    def create(self, name: str, config: dict) -> str:
        return self.request("POST", "/containers/create", config, query={"name": name})["Id"]

    def start(self, container_id: str) -> None:
        self.request("POST", f"/containers/{container_id}/start")

    def inspect(self, container_id: str) -> dict | None:
        try:
            return self.request("GET", f"/containers/{container_id}/json", timeout=10)
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def wait(self, container_id: str) -> int | None:
        """Block until the container stops; its exit code (None when it was removed or the daemon went away)."""
        try:
            result = self.request("POST", f"/containers/{container_id}/wait", timeout=None)
        except (DockerAPIError, OSError, http.client.HTTPException):
            return None
        return result.get("StatusCode") if isinstance(result, dict) else None

    def remove(self, container_id: str) -> bool:
        """Force-remove a container and its anonymous volumes; False when it was already gone."""
        try:
            self.request("DELETE", f"/containers/{container_id}", query={"force": "true", "v": "true"})
            return True
        except DockerAPIError as exc:
            if exc.status in (404, 409):  # gone, or removal already in progress
                return False
            raise

    def logs(self, container_id: str, tail: int = 50) -> str:
        """The last lines of a container's stdout and stderr (its main process's, not the code's)."""
        conn = _UnixConnection(self.path, 10)
        query = urllib.parse.urlencode({"stdout": 1, "stderr": 1, "tail": tail})
        try:
            conn.request("GET", f"/containers/{container_id}/logs?{query}")
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            return ""
        # Without a TTY the stream is multiplexed: 8-byte headers (stream, 0, 0, 0, big-endian length).
        chunks, offset = [], 0
        while offset + 8 <= len(data):
            size = int.from_bytes(data[offset + 4 : offset + 8], "big")
            chunks.append(data[offset + 8 : offset + 8 + size])
            offset += 8 + size
        return b"".join(chunks).decode(errors="replace")

    def list_containers(self, label: str) -> list[dict]:
        filters = json.dumps({"label": [label]})
        return self.request("GET", "/containers/json", query={"all": "true", "filters": filters}) or []
