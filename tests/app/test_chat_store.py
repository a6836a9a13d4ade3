"""The chat history's pieces without a server: the store on disk (bounds, permissions, malformed files),
the browser ids (unguessable, bound to their user), a record turned into chat turns, and a page bound to
its browser's chat across a reload (real kernels in the local sandbox)."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from app.auth import Caller
from app.chat import ChatSessions, Settings
from app.chat_history import (
    BrowserIds,
    ChatHistory,
    ChatStore,
    HistoryDirError,
    chat_key,
    read_record_file,
)
from app.record_view import executed_blocks, record_turns, replay_runner
from app.view import BlockPart, ExecPart, NotePart, TextPart
from interpreter.dialogue import Dialogue, DialogueError, execution_message
from interpreter.protocol import RUN_START, RUN_STOP, block_text
from interpreter.results import ExecutionError, ExecutionResult, RunRecord
from tests.conftest import require


def record(chat_id: str, question: str = "compute", answers: int = 1) -> dict:
    messages = []
    for i in range(answers):
        messages += [
            {"role": "user", "content": f"{question} {i}"},
            {"role": "assistant", "content": f"Sure.\n{block_text('python', f'print({i})')}"},
            execution_message([RunRecord("python", f"print({i})", ExecutionResult("ok", stdout=f"{i}\n"))]),
            {"role": "assistant", "content": "done."},
        ]
    return Dialogue(chat_id, messages, {"source": "app"}).to_json()


def test_store_keeps_the_newest_chats_in_a_private_folder(tmp_path):
    store = ChatStore(tmp_path / "history", max_chats=3)
    ids = [f"{i:012x}" for i in range(5)]
    for i, chat_id in enumerate(ids):
        path = store.save("ann", "b" * 32, record(chat_id, f"question {i}"))
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))  # distinct, ordered times
    store.save("ann", "b" * 32, record(ids[4], "question 4"))  # saving again refreshes, never duplicates
    entries = store.entries("ann", "b" * 32)
    assert [e.chat_id for e in entries] == [ids[4], ids[3], ids[2]]  # bounded: the two oldest are gone
    assert entries[0].title == "question 4 0" and entries[0].messages == 3
    folder = store.folder("ann", "b" * 32)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.jsonl" for i in ids[2:])
    for path in (store.root, folder.parent, folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert "ann" not in str(folder)  # names and ids never become paths of their own
    assert store.load("ann", "b" * 32, ids[3]).messages[0]["content"] == "question 3 0"


def test_store_refuses_a_folder_of_another_owner_a_link_and_widens_nothing(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    ChatStore(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(HistoryDirError, match="not a plain folder"):
        ChatStore(tmp_path / "link")
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        os.chown(foreign, 12345, 12345)
        with pytest.raises(HistoryDirError, match="belongs to uid 12345"):
            ChatStore(foreign)


def test_store_skips_malformed_files_and_names_the_problem_in_one_line(tmp_path, caplog):
    store = ChatStore(tmp_path / "h")
    store.save(None, "c" * 32, record("aaaaaaaaaaaa"))
    folder = store.folder(None, "c" * 32)
    (folder / "bbbbbbbbbbbb.jsonl").write_text(
        '{"id": "x", "messages": [{"role": "robot", "content": ""}]}\n'
    )
    (folder / "cccccccccccc.jsonl").write_text("not json\n")
    (folder / "../../escape.jsonl").write_text(json.dumps(record("dddddddddddd")) + "\n")
    assert [e.chat_id for e in store.entries(None, "c" * 32)] == ["aaaaaaaaaaaa"]
    assert "role must be one of" in caplog.text
    with pytest.raises(DialogueError, match="role must be one of"):
        store.load(None, "c" * 32, "bbbbbbbbbbbb")
    with pytest.raises(DialogueError, match="not a chat id"):
        store.load(None, "c" * 32, "../../escape")
    with pytest.raises(DialogueError, match="not a chat id"):  # `$` alone would let a newline through
        store.load(None, "c" * 32, "aaaaaaaaaaaa\n")
    with pytest.raises(DialogueError, match="messages must be a list"):
        store.save(None, "c" * 32, {"id": "eeeeeeeeeeee", "messages": "invalid"})
    assert not (folder / "eeeeeeeeeeee.jsonl").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".saving-")] == []


def test_browser_ids_are_unguessable_and_bound_to_their_user():
    ids = BrowserIds.ephemeral()
    browser, token = ids.issue("ann")
    assert len(browser) == 32 and ids.verify(token, "ann") == browser
    assert ids.verify(token, "bob") is None  # another user's id
    assert ids.verify(token, None) is None
    forged = browser + "." + "0" * 32
    assert ids.verify(forged, "ann") is None  # an id this server never signed
    assert BrowserIds.ephemeral().verify(token, "ann") is None  # another server's key
    for junk in (None, 5, "", "x" * 500, {"id": browser}, token + "0"):
        assert ids.verify(junk, "ann") is None
    assert ids.issue("ann")[0] != browser


def test_browser_key_survives_a_restart_and_is_private(tmp_path):
    folder = tmp_path / "h"
    ChatStore(folder)
    first = BrowserIds.in_folder(folder)
    _, token = first.issue(None)
    assert BrowserIds.in_folder(folder).verify(token, None) is not None
    assert stat.S_IMODE((folder / ".browser-key").stat().st_mode) == 0o600


def test_read_record_file_reports_the_validators_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(record("aaaaaaaaaaaa")) + "\n" + '{"id": 3, "messages": []}\n')
    with pytest.raises(DialogueError, match=r"bad.jsonl:2: the record needs a non-empty string id"):
        read_record_file(bad)
    two = tmp_path / "two.jsonl"
    two.write_text(json.dumps(record("aaaaaaaaaaaa")) + "\n" + json.dumps(record("bbbbbbbbbbbb")) + "\n")
    assert read_record_file(two, 2)[0].id == "bbbbbbbbbbbb" and read_record_file(two)[1] == 2
    with pytest.raises(DialogueError, match="no record 3"):
        read_record_file(two, 3)
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(record("cccccccccccc"), indent=2))
    assert read_record_file(pretty)[0].id == "cccccccccccc"
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"id": "x", "messages": [], "meta": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}\n")
    with pytest.raises(DialogueError, match="nested too deeply"):
        read_record_file(deep)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DialogueError, match="no dialogue record"):
        read_record_file(tmp_path / "empty.jsonl")


def test_record_turns_show_prose_executions_and_results():
    failing = ExecutionResult(
        "error", stderr="", error=ExecutionError("ZeroDivisionError", "division by zero", "Traceback ...")
    )
    image = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "divide"},
        {"role": "assistant", "content": f"Trying.\n{RUN_START}```python\nprint(1/0)\n```{RUN_STOP}"},
        execution_message([RunRecord("python", "print(1/0)", failing)]),
        {"role": "assistant", "content": f"{RUN_START}```python\nshow()\n```{RUN_STOP}"},
        execution_message([RunRecord("python", "show()", ExecutionResult("ok", outputs=[image]))]),
        {"role": "assistant", "content": "It fails."},
    ]
    dialogue = Dialogue("item-1", messages, {"stage": "generate"})
    (turn,) = record_turns(dialogue)
    assert turn.user == "divide" and turn.dialogue_start == 1
    kinds = [type(p).__name__ for p in turn.parts]
    assert kinds == ["TextPart", "BlockPart", "ExecPart", "BlockPart", "ExecPart", "TextPart"]
    blocks = [p for p in turn.parts if isinstance(p, BlockPart)]
    assert all(b.ran for b in blocks)  # shown by their execution messages, not twice
    error, shown = [p for p in turn.parts if isinstance(p, ExecPart)]
    assert error.result.error.name == "ZeroDivisionError" and error.state == "finished"
    assert shown.result.outputs == [image]
    assert [p.prose().strip() for p in turn.parts if type(p) is TextPart] == ["Trying.", "It fails."]
    assert executed_blocks(dialogue) == [("python", "print(1/0)"), ("python", "show()")]


def test_an_old_app_export_without_runs_still_loads():
    messages = [
        {"role": "user", "content": "print"},
        {"role": "assistant", "content": f"{RUN_START}```python\nprint(6*7)\n```{RUN_STOP}"},
        {"role": "execution", "content": "result.stdout:\n42\nresult.stderr:\nNone"},
        {"role": "assistant", "content": "42"},
    ]
    meta = {
        "source": "app",
        "executions": [
            {"exec_id": "e1", "language": "python", "code": "print(6*7)", "state": "finished",
             "result": ExecutionResult("ok", stdout="42\n").to_json()}
        ],
    }  # fmt: skip
    (turn,) = record_turns(Dialogue("old", messages, meta))
    (part,) = [p for p in turn.parts if isinstance(p, ExecPart)]
    assert part.code == "print(6*7)" and part.result.stdout == "42\n"
    assert executed_blocks(Dialogue("old", messages, meta)) == [("python", "print(6*7)")]


def local_kernel():
    """Starts a real kernel in the local (bubblewrap) sandbox, as the app does."""
    from interpreter.sandboxes.base import Limits, SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    try:
        sandbox = make_sandbox("local", Limits())
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    return lambda: Session(sandbox)


@pytest.mark.slow
@pytest.mark.local_sandbox
def test_a_reload_finds_the_chat_and_kernel_and_another_users_id_gets_nothing(tmp_path):
    chats = ChatSessions(local_kernel(), max_sessions=4, max_per_client=1)
    store = ChatStore(tmp_path / "h")
    history = ChatHistory(chats, BrowserIds.in_folder(store.root), store)
    ann = Caller(key="s" * 32, user="ann", client="user ann")
    try:
        chat, token, _ = history.attach(ann, None)
        chat.kernel().run_block("python", "x = 5")
        blocks = [("python", "print(x * 2)")]
        turn = list(chat.run("replay", Settings(), replay_runner(blocks)))[-1]
        assert turn.executions()[0].result.stdout == "10\n"
        assert store.entries("ann", token.split(".")[0]) == []  # no user message yet: nothing to keep

        # A reload: a new Gradio session presenting the same token gets the same chat and kernel.
        chats.release(ann.key, "ann")
        assert chat.kernel_started, "the page going away must not close the kernel"
        reload = Caller(key="t" * 32, user="ann", client="user ann")
        again, same_token, _ = history.attach(reload, token)
        assert again is chat and same_token == token
        assert again.kernel().run_block("python", "print(x)").stdout == "5\n"

        # bob presents ann's token: he gets a new id and an empty chat of his own, never ann's.
        bob = Caller(key="u" * 32, user="bob", client="user bob")
        his, his_token, _ = history.attach(bob, token)
        assert his is not chat and his_token != token and his.turns == []
        assert chats.peek(chat_key("ann", token.split(".")[0]), "ann") is chat
        # Nor may bob rebind ann's page (her Gradio session) to a chat of his.
        from app.auth import AccessDenied

        with pytest.raises(AccessDenied, match="belongs to another user"):
            history.attach(Caller(key=reload.key, user="bob", client="user bob"), None)
        assert chats.get(reload.key, "ann") is chat
        # The per-client cap still counts ann's kernel: a second chat of hers may not start one.
        other = Caller(key="v" * 32, user="ann", client="user ann")
        second, _, _ = history.attach(other, None)
        from app.chat import SessionLimitError

        with pytest.raises(SessionLimitError, match="You already have 1 chat"):
            second.kernel()
    finally:
        chats.close_all()


@pytest.mark.slow
@pytest.mark.local_sandbox
def test_reopening_a_past_chat_restarts_its_kernel_and_says_so(tmp_path):
    chats = ChatSessions(local_kernel())
    store = ChatStore(tmp_path / "h")
    history = ChatHistory(chats, BrowserIds.in_folder(store.root), store)
    me = Caller(key="s" * 32, user=None, client="127.0.0.1")
    try:
        chat, token, _ = history.attach(me, None)
        first = Dialogue.from_json(record("aaaaaaaaaaaa", "first"))
        history.open_record(chat, first, "a file")
        opened_id = chat.chat_id
        chat.kernel().run_block("python", "y = 1")
        history.new_chat(chat)
        assert chat.turns == [] and chat.chat_id != opened_id
        assert [e.chat_id for e in history.entries(chat)] == [opened_id]
        assert history.reopen(chat, opened_id) == 1
        assert chat.turns[0].user == "first 0"
        notes = [p.text for p in chat.turns[-1].parts if isinstance(p, NotePart)]
        assert any("fresh one" in n and "Re-run the code" in n for n in notes), notes
        assert "NameError" in str(chat.kernel().run_block("python", "y").error)
        with pytest.raises(DialogueError, match="not in this browser's history"):
            history.reopen(chat, "ffffffffffff")
    finally:
        chats.close_all()


def test_a_bad_history_dir_is_one_line_before_the_model_loads(tmp_path):
    import subprocess
    import sys

    from tests.app.conftest import REPO, free_port

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    env = {**os.environ, "OPENAI_API_KEY": "unused", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--port", str(free_port()), "--backend", "openai", "--model", "m",
         "--base-url", "http://127.0.0.1:9/v1", "--history-dir", str(not_a_folder / "chats")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [errors[-1]] and "history folder" in errors[-1] and "--history-dir" in errors[-1]
    assert "Traceback" not in done.stderr and "loading model" not in done.stderr


def test_without_a_store_a_page_still_finds_its_chat_but_nothing_is_kept():
    chats = ChatSessions(lambda: None)
    history = ChatHistory(chats, BrowserIds.ephemeral(), None)
    me = Caller(key="s" * 32, user=None, client="127.0.0.1")
    chat, token, reopened = history.attach(me, None)
    assert not reopened and history.entries(chat) == []
    chats.release(me.key)
    again, _, _ = history.attach(Caller(key="t" * 32, user=None, client="127.0.0.1"), token)
    assert again is chat
    with pytest.raises(DialogueError, match="--no-history"):
        history.reopen(chat, "aaaaaaaaaaaa")


def test_an_evaluation_transcript_without_the_interpreter_shows_its_code():
    messages = [
        {"role": "user", "content": "Complete the function."},
        {"role": "assistant", "content": "Here:\n```python\ndef add(a, b):\n    return a + b\n```"},
    ]
    record = Dialogue("HumanEval/0#0", messages, {"source": "evaluation", "task_id": "HumanEval/0"})
    (turn,) = record_turns(record)
    (block,) = [p for p in turn.parts if isinstance(p, BlockPart)]
    assert block.code == "def add(a, b):\n    return a + b" and not block.ran and block.closed
    assert executed_blocks(record) == []  # nothing ran, so nothing to re-run


def test_the_list_sees_a_chat_saved_again_and_the_benchmark_runs(tmp_path):
    store = ChatStore(tmp_path / "h")
    store.save(None, "d" * 32, record("aaaaaaaaaaaa", "before"))
    assert [e.title for e in store.entries(None, "d" * 32)] == ["before 0"]  # now cached
    store.save(None, "d" * 32, record("aaaaaaaaaaaa", "after", answers=2))
    (entry,) = store.entries(None, "d" * 32)
    assert entry.title == "after 0" and entry.messages == 6

    from benchmarks.chat_history import measure

    found = measure(chats=3, kb=1, repeats=1)
    assert set(found) == {"uncached_s", "cached_s", "save_s"} and all(v > 0 for v in found.values())


def test_after_a_restart_the_browser_finds_its_last_chat_restored(tmp_path):
    store = ChatStore(tmp_path / "h")
    me = Caller(key="s" * 32, user="ann", client="user ann")
    before = ChatHistory(ChatSessions(lambda: None), BrowserIds.in_folder(store.root), store)
    chat, token, _ = before.attach(me, None)
    before.open_record(chat, Dialogue.from_json(record("aaaaaaaaaaaa", "kept")), "a file")
    saved_as = chat.chat_id

    # A new server process: same folder, same key; the page brings the token its browser kept.
    after = ChatHistory(ChatSessions(lambda: None), BrowserIds.in_folder(store.root), ChatStore(store.root))
    again, same, restored = after.attach(Caller(key="t" * 32, user="ann", client="user ann"), token)
    assert restored and same == token and again.chat_id == saved_as
    assert again.turns[0].user == "kept 0"
    notes = [p.text for p in again.turns[-1].parts if isinstance(p, NotePart)]
    assert any(n.startswith("Restored from the history") and "fresh one" in n for n in notes), notes
    # bob with ann's token after the restart: nothing of hers.
    his, _, restored = after.attach(Caller(key="u" * 32, user="bob", client="user bob"), token)
    assert not restored and his.turns == []


def test_after_the_idle_reaper_re_run_offers_every_block_the_chat_ran(tmp_path):
    history = ChatHistory(ChatSessions(lambda: None), BrowserIds.ephemeral(), None)
    chat, _, _ = history.attach(Caller(key="s" * 32, user=None, client="127.0.0.1"), None)
    chat.dialogue = Dialogue.from_json(record("aaaaaaaaaaaa", answers=2)).messages
    assert history.take_replay(chat) == []  # the kernel holds the state: nothing to re-run
    chat.kernel_note = "The previous kernel was shut down (idle): variables and workdir files are gone."
    assert history.take_replay(chat) == [("python", "print(0)"), ("python", "print(1)")]
