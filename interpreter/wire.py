"""The Jupyter wire protocol (v5.3), just what the host's kernel client needs: build, sign + frame, verify +
parse one message.

jupyter_client's Session does the same with date parsing and adapters on every message; this is the hot path
of every round trip (`interpreter.kernel`), so it stays minimal. Parsing never trusts the peer: a frame list
without the delimiter, too few frames, a wrong HMAC-SHA256 signature or bad JSON raise (ValueError), and the
caller skips the message.

What it deliberately does not do: own or poll sockets (it is handed one to send on), decide what a message
means, or support other signature schemes or the stdin channel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

DELIMITER = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.3"


class Wire:
    """One client identity (session id) and connection key: message building, signing and parsing."""

    DELIMITER = DELIMITER

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.session_id = uuid.uuid4().hex

    def msg(self, msg_type: str, content: dict) -> dict:
        header = {
            "msg_id": uuid.uuid4().hex,
            "session": self.session_id,
            "username": "autocoder",
            "date": datetime.now(UTC).isoformat(),
            "msg_type": msg_type,
            "version": PROTOCOL_VERSION,
        }
        return {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "msg_type": msg_type,
        }

    def _sign(self, parts: list[bytes]) -> bytes:
        digest = hmac.new(self.key, digestmod=hashlib.sha256)
        for part in parts:
            digest.update(part)
        return digest.hexdigest().encode()

    def frames(self, msg: dict) -> list[bytes]:
        """The multipart frames of `msg`: delimiter, signature, header, parent header, metadata, content."""
        parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
        return [self.DELIMITER, self._sign(parts), *parts]

    def send(self, sock, msg_or_type: dict | str, content: dict | None = None) -> dict:
        msg = self.msg(msg_or_type, content or {}) if isinstance(msg_or_type, str) else msg_or_type
        sock.send_multipart(self.frames(msg))
        return msg

    def parse(self, frames: list[bytes]) -> dict:
        """Raises ValueError on a malformed or wrongly signed message."""
        start = frames.index(self.DELIMITER) + 1
        if len(frames) < start + 5:
            raise ValueError("truncated message")
        signature, *parts = frames[start : start + 5]
        if not hmac.compare_digest(signature, self._sign(parts)):
            raise ValueError("bad signature")
        header, parent, metadata, content = (json.loads(p.decode("utf-8", errors="replace")) for p in parts)
        return {
            "header": header,
            "parent_header": parent or {},
            "metadata": metadata,
            "content": content,
            "msg_type": header.get("msg_type", ""),
        }
