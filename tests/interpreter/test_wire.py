"""The hand-written Jupyter wire (interpreter/wire.py) against jupyter_client's own Session, both ways, and
its refusal of tampered or malformed frames."""

from __future__ import annotations

import json

import pytest
from jupyter_client.session import Session

from interpreter.wire import DELIMITER, Wire

KEY = b"0123456789abcdef" * 4


class _Socket:
    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes]) -> None:
        self.sent.append(frames)


def test_jupyter_client_accepts_what_the_wire_sends():
    sock = _Socket()
    msg = Wire(KEY).send(sock, "execute_request", {"code": "print(1)"})
    frames = sock.sent[0]
    assert frames[0] == DELIMITER
    parsed = Session(key=KEY, signature_scheme="hmac-sha256").deserialize(frames[1:])
    assert parsed["header"]["msg_id"] == msg["header"]["msg_id"]
    assert parsed["header"]["version"] == "5.3"
    assert parsed["msg_type"] == "execute_request"
    assert parsed["content"] == {"code": "print(1)"}


def test_the_wire_parses_what_jupyter_client_sends():
    session = Session(key=KEY, signature_scheme="hmac-sha256")
    reply = session.msg("execute_reply", {"status": "ok"}, parent={"msg_id": "abc"})
    frames = session.serialize(reply, ident=[b"kernel"])
    parsed = Wire(KEY).parse(frames)
    assert parsed["msg_type"] == "execute_reply"
    assert parsed["parent_header"]["msg_id"] == "abc"
    assert parsed["content"] == {"status": "ok"}


def _frames() -> list[bytes]:
    wire = Wire(KEY)
    return wire.frames(wire.msg("stream", {"name": "stdout", "text": "hi"}))


def test_a_wrong_key_or_changed_content_is_refused():
    with pytest.raises(ValueError, match="bad signature"):
        Wire(b"another key").parse(_frames())
    frames = _frames()
    frames[-1] = json.dumps({"name": "stdout", "text": "forged"}).encode()
    with pytest.raises(ValueError, match="bad signature"):
        Wire(KEY).parse(frames)


@pytest.mark.parametrize("cut", [lambda f: f[:-1], lambda f: f[1:], lambda f: []])
def test_truncated_or_undelimited_frames_are_refused(cut):
    with pytest.raises(ValueError):
        Wire(KEY).parse(cut(_frames()))


def test_undecodable_json_is_refused_even_when_signed():
    wire = Wire(KEY)
    parts = [b"{not json", b"{}", b"{}", b"{}"]
    with pytest.raises(ValueError):
        wire.parse([DELIMITER, wire._sign(parts), *parts])
