"""Who is calling: the session, the signed-in user and the client of each request, checked by every handler.

Gradio's `api_visibility="private"` only hides a handler from the API listing; it stays callable by its
index through the queue. So no handler may rely on being hidden: each one turns its `gr.Request` into a
`Caller` here first, which refuses a call without a session, and (with --auth) a call without a signed-in
user. The chat registry then refuses a session id that another user's chat already holds
(`app.chat.ChatSessions.get`). Passwords come from `--auth-file` or $AUTOCODER_AUTH rather than argv,
where every user of the host can read them in the process list.

What this module deliberately does not do: check passwords (Gradio's login does, with the pairs given to
`launch`) or know about chats (see `app.chat`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

AUTH_ENV = "AUTOCODER_AUTH"


class AccessDenied(PermissionError):
    """This request may not use the chat it asks for; the message says why in one line."""


@dataclass(frozen=True)
class Auth:
    user: str
    password: str


def parse_auth(value: str) -> Auth:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth wants USER:PASSWORD (both non-empty, joined by ':')")
    return Auth(user, password)


def read_auth_file(path: str | os.PathLike) -> list[Auth]:
    """USER:PASSWORD pairs, one a line (blank lines and # comments skipped). Raises ValueError in one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--auth-file {path}: {exc.strerror or exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            pairs.append(parse_auth(line))
        except argparse.ArgumentTypeError:
            raise ValueError(f"--auth-file {path}:{number}: wants USER:PASSWORD") from None
    if not pairs:
        raise ValueError(f"--auth-file {path}: no USER:PASSWORD line")
    users = [p.user for p in pairs]
    if len(set(users)) != len(users):
        raise ValueError(f"--auth-file {path}: a user name appears twice")
    return pairs


def session_key(session_hash: str) -> str:
    """A folder-safe key for a browser session. The client chooses its session_hash and the key names host
    folders (downloads, exports), so it is hashed: "../../x" must never become a path."""
    return hashlib.sha256(session_hash.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Caller:
    key: str  # session_key of the request's session hash
    user: str | None  # the signed-in user (None without --auth)
    client: str  # what the per-client session cap counts: the user when signed in, else the address


def caller_of(request, auth_required: bool) -> Caller:
    """The checked identity of one request (a `gr.Request`); AccessDenied when it has none to check."""
    if request is None:
        raise AccessDenied("this handler needs a request from the chat page or gradio_client")
    session_hash = getattr(request, "session_hash", None)
    if not isinstance(session_hash, str) or not session_hash:
        raise AccessDenied("this call carries no session; use the chat page or gradio_client")
    user = getattr(request, "username", None) or None
    if auth_required and user is None:
        raise AccessDenied("sign in first")
    client = getattr(request, "client", None)
    address = getattr(client, "host", None) or "unknown"
    return Caller(key=session_key(session_hash), user=user, client=f"user {user}" if user else address)
