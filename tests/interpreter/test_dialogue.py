"""The dialogue record: every kind round-trips through writer and reader, re-renders in any style, validates."""

from __future__ import annotations

import json

import pytest

from interpreter.dialogue import (
    SCHEMA_VERSION,
    Dialogue,
    DialogueError,
    DialogueWriter,
    completed_ids,
    execution_message,
    read_dialogues,
    run_from_json,
    run_to_json,
    validate_record,
)
from interpreter.protocol import (
    OUTPUT_START,
    OUTPUT_STOP,
    RUN_START,
    RUN_STOP,
    render_dialogue,
    render_result,
)
from interpreter.results import ExecutionError, ExecutionResult, RunRecord

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _records() -> list[RunRecord]:
    """One RunRecord of every kind a round can hold."""
    return [
        RunRecord(
            "sh",
            "pip install tqdm",
            ExecutionResult("ok", stdout="Successfully installed tqdm\n", duration_s=1.5),
        ),
        RunRecord("python", "print(6 * 7)", ExecutionResult("ok", stdout="42\n", duration_s=0.01)),
        RunRecord(
            "python",
            "import matplotlib.pyplot as plt; plt.plot([1]); 6 * 7",
            ExecutionResult(
                "ok",
                outputs=[
                    {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"}},
                    {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}},
                ],
            ),
        ),
        RunRecord(
            "python",
            "1/0",
            ExecutionResult(
                "error",
                stderr="",
                error=ExecutionError(
                    "ZeroDivisionError", "division by zero", "Traceback...\nZeroDivisionError"
                ),
            ),
        ),
        RunRecord(
            "python",
            "while True: pass",
            ExecutionResult(
                "timeout", message="timed out after 30 s; kernel restarted, state lost", state_lost=True
            ),
        ),
        RunRecord(
            "python", "crash()", ExecutionResult("crashed", message="the kernel died", state_lost=True)
        ),
        RunRecord(
            "python",
            "x = 'a' * 10**12",
            ExecutionResult("memory_limit", stdout="a" * 5000, dropped_chars=123, message="memory limit"),
        ),
        RunRecord(
            "js", "console.log(1)", None, "```js blocks cannot be run here; only python and sh blocks run"
        ),
    ]


def _all_kinds_dialogue(style: str = "demo") -> Dialogue:
    records = _records()
    return Dialogue(
        id="chat-1",
        messages=[
            {"role": "system", "content": "You are AutoCoder."},
            {"role": "user", "content": "Plot something and divide by zero. Ünïcode ✓"},
            {"role": "assistant", "content": f"Sure.\n{RUN_START}```python\nprint(6 * 7)\n```{RUN_STOP}"},
            execution_message(records[:2], style),
            {"role": "assistant", "content": "more"},
            execution_message(records[2:], style),
            # An execution turn as older files have it: rendered text, no runs.
            {"role": "execution", "content": "result.stdout:\n42\nresult.stderr:\nNone"},
            {"role": "assistant", "content": "Done."},
        ],
        meta={"source": "test", "nested": {"a": [1, 2.5, None, True]}},
    )


def test_every_record_kind_round_trips_through_writer_and_reader(tmp_path):
    path = tmp_path / "dialogues.jsonl"
    written = [
        _all_kinds_dialogue("demo"),
        _all_kinds_dialogue("tokens"),
        Dialogue(id="empty", messages=[], meta={}),
        Dialogue(
            id="plain", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
        ),
    ]
    written[1].id = "chat-2"
    with DialogueWriter(path) as writer:
        for dialogue in written:
            writer.append(dialogue)
    read = list(read_dialogues(path))
    assert read == written
    assert all(d.schema == SCHEMA_VERSION for d in read)
    assert json.loads(path.read_text().splitlines()[0])["schema"] == SCHEMA_VERSION
    assert completed_ids(path) == {"chat-1", "chat-2", "empty", "plain"}


def test_every_run_kind_round_trips_through_json():
    for record in _records():
        data = run_to_json(record)
        assert json.loads(json.dumps(data)) == data
        assert run_from_json(data) == record
        validate_record({"id": "x", "messages": [{"role": "execution", "content": "", "runs": [data]}]})
    assert run_to_json(_records()[-1])["status"] == "not_run"


def test_demo_recording_rerenders_in_tokens_style_without_demo_text():
    dialogue = _all_kinds_dialogue("demo")
    recorded = dialogue.messages[3]["content"]
    assert "pip_result.stdout:" in recorded and "result.stdout:" in recorded
    rendered = render_dialogue(dialogue.messages, style="tokens")
    executions = [
        m["content"] for m, src in zip(rendered, dialogue.messages, strict=True) if src["role"] == "execution"
    ]
    for content in executions[:2]:  # the two with runs
        assert content.startswith(OUTPUT_START) and content.endswith(OUTPUT_STOP)
        inside = content[len(OUTPUT_START) : -len(OUTPUT_STOP)]
        assert "result.stdout" not in inside and "result.stderr" not in inside and "None" not in inside
    records = _records()
    assert executions[0] == f"{OUTPUT_START}\n{render_result(records[:2], 'tokens')}\n{OUTPUT_STOP}"
    assert "Successfully installed tqdm" in executions[0] and "42" in executions[0]
    assert "ZeroDivisionError" in executions[1] and "timed out after 30 s" in executions[1]
    # In the style it was recorded in, the runs render to exactly the recorded text.
    demo = render_dialogue(dialogue.messages, style="demo")
    assert demo[3]["content"] == recorded
    # And the other way round: recorded in tokens style, rendered for a released checkpoint.
    tokens_dialogue = _all_kinds_dialogue("tokens")
    assert render_dialogue(tokens_dialogue.messages, style="demo")[3]["content"] == recorded


def test_rerender_uses_the_requested_truncation():
    record = RunRecord("python", "print('x' * 5000)", ExecutionResult("ok", stdout="x" * 5000 + "\n"))
    message = execution_message([record], "tokens", head_chars=10, tail_chars=10)
    assert "characters truncated" in message["content"]
    assert message["runs"][0]["stdout"] == "x" * 5000 + "\n"  # the record keeps everything
    full = render_dialogue([message], style="tokens", head_chars=10_000, tail_chars=10_000)[0]["content"]
    assert "truncated" not in full and "x" * 5000 in full


# What app/export.py wrote before the schema existed: no "schema", no "runs", executions in meta.
OLD_APP_EXPORT = {
    "id": "3f2a9c",
    "messages": [
        {"role": "user", "content": "print 42"},
        {"role": "assistant", "content": f"{RUN_START}```python\nprint(42)\n```{RUN_STOP}"},
        {"role": "execution", "content": "result.stdout:\n42\nresult.stderr:\nNone"},
        {"role": "assistant", "content": "It printed 42."},
    ],
    "meta": {
        "source": "app",
        "exported_at": "2026-11-01T10:00:00Z",
        "model": "Bin12345/AutoCoder_S_6.7B",
        "executions": [
            {
                "exec_id": "a1b2c3d4e5f6",
                "language": "python",
                "code": "print(42)",
                "state": "done",
                "result": ExecutionResult("ok", stdout="42\n").to_json(),
            }
        ],
    },
}


def test_old_app_export_still_loads(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(OLD_APP_EXPORT) + "\n")
    (dialogue,) = read_dialogues(path)
    assert dialogue.id == "3f2a9c" and dialogue.schema == SCHEMA_VERSION
    assert dialogue.messages == OLD_APP_EXPORT["messages"]
    assert dialogue.meta["executions"][0]["code"] == "print(42)"
    tokens = render_dialogue(dialogue.messages, style="tokens")
    assert tokens[2]["content"].startswith(OUTPUT_START)


def _bad(tmp_path, lines: list[str]):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(DialogueError) as info:
        list(read_dialogues(path))
    message = str(info.value)
    assert "\n" not in message
    return path, message


GOOD = json.dumps({"id": "ok", "messages": [{"role": "user", "content": "hi"}], "meta": {}})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "x", "messages": [', "not valid JSON"),
        ('"just a string"', "not a JSON object"),
        ('{"messages": []}', "non-empty string id"),
        ('{"id": "x", "messages": {}}', "messages must be a list, not a dict"),
        ('{"id": "x", "messages": [], "meta": []}', "meta must be an object"),
        ('{"id": "x", "messages": [], "extra": 1}', "unknown field 'extra'"),
        ('{"id": "x", "messages": [], "schema": 99}', "schema 99 is newer than this code reads"),
        ('{"id": "x", "messages": [{"role": "bot", "content": "hi"}]}', "message 0: role must be one of"),
        ('{"id": "x", "messages": [{"role": "user", "content": 3}]}', "message 0: content must be a string"),
        ('{"id": "x", "messages": [{"role": "user", "content": "", "runs": []}]}', "only execution turns"),
        (
            '{"id": "x", "messages": [{"role": "execution", "content": "", "runs": [{"language": "python"}]}]}',
            "message 0 run 0 has no 'code'",
        ),
    ],
)
def test_validator_errors_name_file_and_line(tmp_path, line, expected):
    path, message = _bad(tmp_path, [GOOD, GOOD, line, GOOD])
    assert message.startswith(f"{path}:3: ")
    assert expected in message


def test_run_fields_are_checked(tmp_path):
    run = run_to_json(_records()[1])
    for field, value, expected in [
        ("status", "exploded", "status 'exploded' is not one of"),
        ("duration_s", "fast", "duration_s is a str"),
        ("duration_s", True, "duration_s is a bool"),
        ("outputs", ["png"], "outputs must hold objects"),
        ("error", {"name": 1}, "error must be null or an object"),
        ("state_lost", "yes", "state_lost is a str"),
    ]:
        bad = {**run, field: value}
        line = json.dumps({"id": "x", "messages": [{"role": "execution", "content": "", "runs": [bad]}]})
        _, message = _bad(tmp_path, [line])
        assert expected in message, (field, message)


def test_writer_refuses_an_invalid_record_and_writes_nothing(tmp_path):
    path = tmp_path / "w.jsonl"
    with DialogueWriter(path) as writer:
        writer.append(Dialogue("a", [{"role": "user", "content": "hi"}]))
        with pytest.raises(DialogueError, match=r"record 'b': message 0: role must be"):
            writer.append(Dialogue("b", [{"role": "robot", "content": "hi"}]))
    assert [d.id for d in read_dialogues(path)] == ["a"]


def test_torn_last_record_is_ignored_and_resumed(tmp_path):
    path = tmp_path / "t.jsonl"
    with DialogueWriter(path) as writer:
        writer.append(Dialogue("a", []))
    with open(path, "a") as f:
        f.write(json.dumps(Dialogue("b", [{"role": "user", "content": "long"}]).to_json())[:20])
    assert completed_ids(path) == {"a"}
    with DialogueWriter(path) as writer:
        writer.append(Dialogue("b", []))
    assert [d.id for d in read_dialogues(path)] == ["a", "b"]


def test_dialogue_and_protocol_are_leaves_without_the_kernel():
    # Training and the pipeline import these to read and render dialogues; they must not pull in the
    # kernel's wire, zmq, the sandboxes or a model backend (DESIGN.md's import rules).
    import subprocess
    import sys

    code = (
        "import sys, interpreter.dialogue, interpreter.protocol, interpreter.jsonl, interpreter.results\n"
        "bad = [m for m in sys.modules if m in ('interpreter.kernel', 'interpreter.session', 'zmq', 'llm')"
        " or m.startswith(('interpreter.sandboxes', 'llm.', 'app'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
