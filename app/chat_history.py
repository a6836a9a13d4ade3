"""Chats that outlive the page: a browser-held chat id, and the server's store of past chats.

The browser keeps one signed id in its localStorage (Gradio's BrowserState, `STORAGE_KEY`). On page load
`ChatHistory.attach` checks it and binds the page's Gradio session to that browser's chat
(`app.chat.ChatSessions.bind`), so a reload shows the same conversation with the same kernel; the kernel
stays until the idle reaper shuts it down. The id is 128 random bits and comes with an HMAC over the
signed-in user and the id (`BrowserIds`): an id that was never issued, or one issued to another user, is
not honoured, and that page gets a fresh id of its own (and so nothing of anyone else's).

With a store (`ChatStore`, unless --no-history), each chat's dialogue record (`interpreter.dialogue`, the
app's export format) is written after every answer to a folder of its own user and browser under a
server-private directory (0700, ours, not a link: checked as the kernels' session base is), one file per
chat, at most `max_chats` of them (the oldest go first). The page lists them to reopen: a reopened chat
shows its conversation on a restarted kernel (its state is gone, and the chat says so), and can re-run its
recorded code (`app.record_view.replay_runner`). A dialogue record from a file (an exported chat, a
data-pipeline item, an evaluation transcript) opens the same way.

What this module deliberately does not do: build the page (`app.history_panel`), turn records into chat
turns (`app.record_view`), or decide who may call (`app.auth.caller_of` does, before anything here).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from app import export
from app.auth import Caller
from app.chat import Chat, ChatSessions
from app.record_view import executed_blocks, record_turns
from app.view import NotePart
from interpreter.dialogue import Dialogue, DialogueError, DialogueWriter, read_dialogues
from interpreter.session import ensure_own_folder

log = logging.getLogger("app")

STORAGE_KEY = "autocoder-chat"  # the browser's localStorage key
DEFAULT_MAX_CHATS = 50
KEY_FILE = ".browser-key"  # the HMAC key (0600), so ids stay valid across restarts
RECORD_SUFFIX = ".jsonl"
_CHAT_ID = re.compile(r"[0-9a-f]{8,32}")  # ids this module makes (uuid hex); names files, so checked
_TITLE_CHARS = 60
SUMMARY_CACHE_SIZE = 10_000  # list entries remembered across all browsers (then forgotten at once)


class HistoryDirError(OSError):
    """The history directory cannot be used safely; the message says why and what to do (one line)."""


def default_history_dir() -> Path:
    """$XDG_DATA_HOME/autocoder/chats, else ~/.local/share/autocoder/chats."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "autocoder" / "chats"


def prepare_private_dir(path: Path) -> None:
    """Create `path` (0700) or check an existing one: a real folder, ours, that no one else may enter
    (chats are private: nobody else may list or read them). Raises HistoryDirError in one line."""
    ensure_own_folder(
        path,
        0o700,
        error=HistoryDirError,
        what="history folder",
        advice="remove it or choose another with --history-dir",
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


class BrowserIds:
    """Issues and checks the ids browsers hold: "<32 hex random>.<HMAC over user and id>"."""

    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def in_folder(cls, folder: Path) -> BrowserIds:
        """The key kept in `folder` (made on first use, 0600), so issued ids survive a restart."""
        path = folder / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                key = f.read()
        except OSError as exc:
            raise HistoryDirError(f"cannot read the key file {path} ({exc.strerror or exc})") from None
        if len(key) < 32:
            raise HistoryDirError(f"key file {path} is damaged: remove it (browsers then get new ids)")
        return cls(key)

    @classmethod
    def ephemeral(cls) -> BrowserIds:
        """A key for this process only (no history): ids live as long as the server."""
        return cls(secrets.token_bytes(32))

    def browser_state_secret(self) -> str:
        """The secret Gradio's BrowserState is given (stable with the key, so a restart keeps the stored
        value readable; it protects nothing: the HMAC does)."""
        return hmac.new(self._key, b"browser-state", hashlib.sha256).hexdigest()[:32]

    def _sign(self, user: str | None, browser: str) -> str:
        message = f"{user or ''}\0{browser}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def issue(self, user: str | None) -> tuple[str, str]:
        """(browser id, the token the browser holds) for a browser of `user`."""
        browser = secrets.token_hex(16)
        return browser, f"{browser}.{self._sign(user, browser)}"

    def verify(self, token: object, user: str | None) -> str | None:
        """The browser id in `token` if this server issued it to `user`, else None."""
        if not isinstance(token, str) or len(token) > 100:
            return None
        browser, _, signature = token.partition(".")
        if not re.fullmatch(r"[0-9a-f]{32}", browser) or not re.fullmatch(r"[0-9a-f]{32}", signature):
            return None
        return browser if hmac.compare_digest(signature, self._sign(user, browser)) else None


@dataclass
class Entry:
    """One past chat as the list shows it."""

    chat_id: str
    title: str  # from the first user message
    saved_at: float  # seconds since the epoch
    messages: int  # user and assistant messages

    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        return f"{self.title} · {when} · {self.messages} messages"


def _title(record: Dialogue) -> str:
    for message in record.messages:
        if message["role"] == "user" and message["content"].strip():
            text = " ".join(message["content"].split())
            return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1] + "…"
    return "(no user message)"


class ChatStore:
    """Past chats on disk: one dialogue record file per chat, in a folder per user and browser."""

    def __init__(self, root: Path, max_chats: int = DEFAULT_MAX_CHATS):
        self.root = Path(root)
        self.max_chats = max_chats
        self._lock = threading.Lock()
        self._summaries: dict[Path, tuple[tuple[int, int], Entry]] = {}  # path -> ((size, mtime), entry)
        prepare_private_dir(self.root)

    def folder(self, user: str | None, browser: str) -> Path:
        # Hashed: user names and ids must never become paths of their own choosing.
        return self.root / (f"user-{_digest('user', user)}" if user else "anonymous") / _digest(browser)

    def _path(self, user: str | None, browser: str, chat_id: str) -> Path:
        if not _CHAT_ID.fullmatch(chat_id):
            raise DialogueError(f"not a chat id: {chat_id!r}")
        return self.folder(user, browser) / f"{chat_id}{RECORD_SUFFIX}"

    def save(self, user: str | None, browser: str, record: dict) -> Path:
        """Write (or replace) the chat's record, validated, then drop the oldest past `max_chats`."""
        dialogue = Dialogue.from_json(record, "chat record")
        path = self._path(user, browser, dialogue.id)
        with self._lock:
            folder = path.parent
            prepare_private_dir(folder.parent)
            prepare_private_dir(folder)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".saving-", suffix=RECORD_SUFFIX)
            os.close(fd)
            try:
                with DialogueWriter(tmp) as writer:  # validated, and on disk before the rename
                    writer.append(dialogue)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._prune(folder, keep=path)
        return path

    def _files(self, folder: Path) -> list[Path]:
        """The record files of a folder, newest first (links and odd names are not ours: skipped)."""
        if not folder.is_dir():
            return []
        files = []
        for path in folder.iterdir():
            name = path.name
            ours = name.endswith(RECORD_SUFFIX) and _CHAT_ID.fullmatch(name[: -len(RECORD_SUFFIX)])
            if ours and path.is_file() and not path.is_symlink():
                files.append(path)
        return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)

    def _prune(self, folder: Path, keep: Path) -> None:
        """Drop the oldest records past `max_chats`; never `keep`, the one just saved."""
        others = [p for p in self._files(folder) if p.name != keep.name]
        for old in others[self.max_chats - 1 :]:
            with contextlib.suppress(OSError):
                old.unlink()

    def entries(self, user: str | None, browser: str) -> list[Entry]:
        """The past chats of this user's browser, newest first; unreadable files are left out (logged).
        A file unchanged since it was last read (same size and mtime) is not parsed again: the list is
        refreshed after every answer, and a chat with plots is megabytes of JSON."""
        found = []
        for path in self._files(self.folder(user, browser)):
            try:
                info = path.stat()
            except OSError:
                continue
            stamp = (info.st_size, info.st_mtime_ns)
            cached = self._summaries.get(path)
            if cached is not None and cached[0] == stamp:
                found.append(cached[1])
                continue
            try:
                record = next(iter(read_dialogues(path)), None)
            except (DialogueError, OSError) as exc:
                log.warning("history: skipping %s: %s", path.name, str(exc).splitlines()[0])
                continue
            if record is None:
                continue
            count = sum(1 for m in record.messages if m["role"] in ("user", "assistant"))
            entry = Entry(path.name[: -len(RECORD_SUFFIX)], _title(record), info.st_mtime, count)
            with self._lock:
                if len(self._summaries) > SUMMARY_CACHE_SIZE:
                    self._summaries.clear()
                self._summaries[path] = (stamp, entry)
            found.append(entry)
        return found

    def load(self, user: str | None, browser: str, chat_id: str) -> Dialogue:
        """The stored record of one chat; DialogueError (one line) when missing or malformed."""
        path = self._path(user, browser, chat_id)
        if not path.is_file() or path.is_symlink():
            raise DialogueError("that chat is not in this browser's history (any more)")
        record = next(iter(read_dialogues(path)), None)
        if record is None:
            raise DialogueError(f"{path.name}: the file holds no record")
        return record


def read_record_file(path: str | Path, number: int = 1) -> tuple[Dialogue, int]:
    """(the `number`-th record of a dialogue JSONL file, how many it has); DialogueError in one line.
    A single JSON object spread over several lines (a pretty-printed record) is read too."""
    path = Path(path)
    try:
        records = list(read_dialogues(path))
    except DialogueError as exc:
        records = _pretty_printed(path, exc)
    except OSError as exc:
        raise DialogueError(f"cannot read the file ({exc.strerror or exc})") from None
    except RecursionError:  # json's parser on a hostile file: "[[[[..."
        raise DialogueError("its JSON is nested too deeply to be a dialogue record") from None
    if not records:
        raise DialogueError("the file holds no dialogue record")
    if not 1 <= number <= len(records):
        raise DialogueError(f"the file has {len(records)} record(s); there is no record {number}")
    return records[number - 1], len(records)


def _pretty_printed(path: Path, first_error: DialogueError) -> list[Dialogue]:
    import json

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError):
        raise first_error from None
    return [Dialogue.from_json(obj, path.name)]


def chat_key(user: str | None, browser: str) -> str:
    """The ChatSessions key of a browser's chat (a folder name too: hashed)."""
    return "b" + _digest("chat", user or "", browser)


class ChatHistory:
    """Binds pages to their browser's chat, saves chats as they change, and reopens past ones."""

    def __init__(
        self, chats: ChatSessions, ids: BrowserIds, store: ChatStore | None, meta: dict | None = None
    ):
        self.chats = chats
        self.ids = ids
        self.store = store
        self.meta = dict(meta or {})  # model, backend, sandbox: written into every record
        self.exec_timeout_s: float | None = None  # --exec-timeout, for re-runs of a record's code
        self._browsers: dict[str, tuple[str | None, str]] = {}  # chat key -> (user, browser id)
        self._replays: dict[str, list[tuple[str, str]]] = {}  # chat key -> blocks to re-run
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ pages

    def attach(self, caller: Caller, token: object) -> tuple[Chat, str, bool]:
        """Bind the caller's page to its browser's chat: (chat, the token to keep, whether a stored chat was
        reopened because the server no longer had it). A token that is not this user's gets a new id."""
        browser = self.ids.verify(token, caller.user)
        if browser is None:
            browser, token = self.ids.issue(caller.user)
        key = chat_key(caller.user, browser)
        had_it = self.chats.peek(key, caller.user) is not None
        self.chats.bind(caller.key, key, caller.user)  # AccessDenied: another user's session
        chat = self.chats.get(caller.key, caller.user, caller.client)
        with self._lock:
            self._browsers[chat.key] = (caller.user, browser)
        chat.on_changed = self._save
        reopened = False
        if not had_it and not chat.turns and self.store is not None:
            latest = self.store.entries(caller.user, browser)[:1]
            if latest:
                with contextlib.suppress(DialogueError):
                    self.reopen(
                        chat, latest[0].chat_id, "Restored from the history (the server had let this chat go)"
                    )
                    reopened = True
        assert isinstance(token, str)
        return chat, token, reopened

    def browser_of(self, chat: Chat) -> tuple[str | None, str] | None:
        with self._lock:
            return self._browsers.get(chat.key)

    # ------------------------------------------------------------------------------------------ records

    def record_of(self, chat: Chat) -> dict:
        return export.dialogue_record(chat.chat_id, chat.dialogue, chat.turns, self.meta)

    def _save(self, chat: Chat) -> None:
        owner = self.browser_of(chat)
        if self.store is None or owner is None or not any(m["role"] == "user" for m in chat.dialogue):
            return  # nothing said yet (a re-run alone adds no message): nothing worth keeping
        self.store.save(owner[0], owner[1], self.record_of(chat))

    def entries(self, chat: Chat) -> list[Entry]:
        owner = self.browser_of(chat)
        if self.store is None or owner is None:
            return []
        return self.store.entries(*owner)

    def new_chat(self, chat: Chat) -> None:
        """Keep the current chat in the history and start an empty one with a fresh kernel."""
        self._save(chat)
        chat.clear()
        with self._lock:
            self._replays.pop(chat.key, None)

    def reopen(self, chat: Chat, chat_id: str, opening: str = "Reopened from the history") -> int:
        """Show a past chat of this browser on a restarted kernel; returns how many blocks it can re-run."""
        owner = self.browser_of(chat)
        if self.store is None or owner is None:
            raise DialogueError("this server keeps no history (--no-history)")
        record = self.store.load(owner[0], owner[1], chat_id)
        if chat.chat_id != chat_id:
            self._save(chat)
        return self._show(chat, record, record.id, opening)

    def open_record(self, chat: Chat, record: Dialogue, source: str) -> int:
        """Show a dialogue record from a file as this chat (a new chat of the history); returns how many
        blocks it can re-run."""
        self._save(chat)
        shown = self._show(chat, record, uuid.uuid4().hex[:12], f"Opened {source} (record id {record.id!r})")
        self._save(chat)
        return shown

    def _show(self, chat: Chat, record: Dialogue, chat_id: str, opening: str) -> int:
        turns = record_turns(record)
        blocks = executed_blocks(record)
        chat.reopen(chat_id, record.messages, turns)
        with self._lock:
            self._replays[chat.key] = blocks
        note = f"{opening}. Its kernel is a fresh one: the variables and imports it made are gone"
        if blocks:
            note += (
                f". Press “Re-run the code” (Chats panel) to run its {len(blocks)} block(s) again in order"
            )
        if turns:
            turns[-1].parts.append(NotePart(note + "."))
        return len(blocks)

    def take_replay(self, chat: Chat) -> list[tuple[str, str]]:
        """The blocks to re-run for this chat (once: the kernel then holds their state): those of a reopened
        chat or record, else, when the idle reaper shut the chat's kernel down, every block it ran."""
        with self._lock:
            blocks = self._replays.pop(chat.key, [])
        if not blocks and chat.kernel_note:  # the next message would start on a fresh kernel
            blocks = executed_blocks(Dialogue(chat.chat_id, chat.dialogue))
        return blocks

    def give_back_replay(self, chat: Chat, blocks: list[tuple[str, str]]) -> None:
        with self._lock:
            self._replays.setdefault(chat.key, blocks)
