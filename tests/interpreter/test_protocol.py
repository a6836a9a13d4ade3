"""The token protocol: streaming block detection (property-based), malformed output, result and dialogue rendering."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interpreter.kernel import ExecutionError, ExecutionResult
from interpreter.protocol import (
    OUTPUT_START,
    OUTPUT_STOP,
    PROBLEM_EMPTY,
    PROBLEM_MISSING_FENCE,
    PROBLEM_UNCLOSED,
    PROBLEM_UNKNOWN_LANGUAGE,
    RUN_START,
    RUN_STOP,
    SPECIAL_TOKENS,
    Block,
    BlockDetector,
    Note,
    Opened,
    RunRecord,
    Text,
    block_text,
    detect_blocks,
    normalize_language,
    render_dialogue,
    render_result,
    truncate_middle,
    validate_dialogue,
)

# Fragments that exercise every branch of the scanner when glued together at random.
FRAGMENTS = [
    RUN_START,
    RUN_STOP,
    OUTPUT_START,
    "```",
    "```python\n",
    "```py\n",
    "```sh\n",
    "```bash\n",
    "```js\n",
    "```\n",
    "\n```",
    "python",
    "\n",
    " ",
    "`",
    "<",
    RUN_START[:7],  # a token cut in two
    RUN_START[7:],
    "print(1)",
    "pip install x",
    "x = '```'",
    "hello world",
    "$ ",
]

texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=30).map("".join)


def run_chunks(chunks: list[str], bare_python: bool) -> list:
    detector = BlockDetector(bare_python=bare_python)
    events = []
    for chunk in chunks:
        events += detector.feed(chunk)
    return events + detector.finish()


def merged(events: list) -> list:
    """Adjacent Text events merged: the chunking-independent shape of a detector's output."""
    out: list = []
    for event in events:
        if isinstance(event, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + event.text)
        elif not (isinstance(event, Text) and not event.text):
            out.append(event)
    return out


@st.composite
def text_and_chunks(draw):
    text = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_chunks(), st.booleans())
def test_any_chunking_yields_the_same_events_as_the_whole_text(case, bare_python):
    text, chunks = case
    whole = merged(run_chunks([text], bare_python))
    chunked = merged(run_chunks(chunks, bare_python))
    assert chunked == whole
    # Text events are exact slices: together they are the input, nothing added or lost.
    assert "".join(e.text for e in chunked if isinstance(e, Text)) == text


@settings(max_examples=300)
@given(texts, st.booleans())
def test_one_character_at_a_time_matches_the_whole_text(text, bare_python):
    assert merged(run_chunks(list(text), bare_python)) == merged(run_chunks([text], bare_python))


# Code and prose that cannot contain tokens or fences, to check that blocks round-trip exactly. Code lines
# carry no trailing whitespace and the first and last are not blank (the detector trims exactly those).
code_line = st.text(st.characters(blacklist_characters="`<>\n\r", blacklist_categories=("Cs",)), max_size=20)
codes = (
    st.lists(code_line.map(str.rstrip), min_size=1, max_size=5)
    .filter(lambda lines: lines[0].strip() != "" and lines[-1].strip() != "")
    .map("\n".join)
)
prose = st.text(st.characters(blacklist_characters="`<>", blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300)
@given(st.lists(st.tuples(prose, st.sampled_from(["python", "sh"]), codes), min_size=1, max_size=4), prose)
def test_wrapped_blocks_round_trip(parts, tail):
    text = "".join(p + block_text(lang, code) for p, lang, code in parts) + tail
    blocks = detect_blocks(text)
    assert [(b.language, b.code, b.raw) for b in blocks] == [
        (lang, code, block_text(lang, code)) for _, lang, code in parts
    ]
    assert all(b.runnable and b.wrapped and not b.stop_token_missing for b in blocks)


def test_a_token_split_across_chunks_is_found():
    start_a, start_b, stop_a, stop_b = RUN_START[:7], RUN_START[7:], RUN_STOP[:10], RUN_STOP[10:]
    chunks = [f"Let me run it.\n{start_a}", f"{start_b}```pyt", f"hon\nprint(6*7)\n```{stop_a}", stop_b]
    assert len(start_b) > 1 and len(stop_b) > 1
    events = run_chunks(chunks, False)
    blocks = [e for e in events if isinstance(e, Block)]
    assert blocks == [Block("python", "print(6*7)", block_text("python", "print(6*7)"))]
    # The partial token was held back, then handed on whole: no Text ends in the middle of a token.
    assert all(not e.text.endswith(start_a) for e in events if isinstance(e, Text))


def test_text_after_a_block_comes_after_the_block_event():
    events = run_chunks([block_text("python", "x = 1") + "trailing text"], False)
    kinds = [type(e).__name__ for e in merged(events)]
    assert kinds == ["Opened", "Text", "Block", "Text"]
    assert merged(events)[1].text.endswith(RUN_STOP)


def test_opened_sits_between_the_prose_and_the_opening_token():
    text = "Let me run it.\n" + block_text("python", "x = 1")
    for chunks in ([text], list(text)):
        events = merged(run_chunks(chunks, False))
        assert events[:2] == [Text("Let me run it.\n"), Opened(True)]
        assert events[2].text.startswith(RUN_START)
    bare = "Here:\n```python\nx = 1\n```\nDone."
    events = merged(run_chunks(list(bare), True))
    assert events[:3] == [Text("Here:\n"), Opened(False), Text("```python\nx = 1\n```")]


def test_open_block_reports_language_and_code_so_far_while_streaming():
    detector = BlockDetector()
    seen = []
    for ch in "Hi " + block_text("py", "a = 1\nprint(a)"):
        detector.feed(ch)
        seen.append(detector.open_block())
    assert seen[0] is None and seen[-1] is None  # before the block, and once it closed
    inside = [s for s in seen if s is not None]
    assert inside[0] == ("", "")  # RUN_START only: no fence line yet
    assert ("python", "a = 1") in inside and ("python", "a = 1\nprint(a)") in inside
    # Code never shows a closing fence in progress, and only grows.
    assert all("`" not in code for _, code in inside)
    assert [code for _, code in inside] == sorted((code for _, code in inside), key=len)
    unknown = BlockDetector()
    unknown.feed(RUN_START + "```js\nconsole.log(1)\n")
    assert unknown.open_block() == ("js", "console.log(1)")
    bare = BlockDetector(bare_python=True)
    bare.feed("```python\nx = 1\n``")
    assert bare.open_block() == ("python", "x = 1")


@pytest.mark.parametrize(
    ("tag", "language"),
    [("python", "python"), ("Python", "python"), ("py", "python"), ("python3", "python"), ("sh", "sh"),
     ("bash", "sh"), ("shell", "sh"), ("console", "sh"), ("js", None), ("", None)],
)  # fmt: skip
def test_language_aliases(tag, language):
    assert normalize_language(tag) == language


def test_console_prompts_are_stripped():
    (block,) = detect_blocks(f"{RUN_START}```console\n$ pip install tqdm\n```{RUN_STOP}")
    assert (block.language, block.code) == ("sh", "pip install tqdm")


# -- malformed output: each case of the table in the module docstring --------------------------------------


def events_of(text: str, bare_python: bool = False) -> tuple[list[Block], list[Note]]:
    events = run_chunks([text], bare_python)
    return [e for e in events if isinstance(e, Block)], [e for e in events if isinstance(e, Note)]


def test_unclosed_block_at_end_of_turn_is_not_run_and_explained():
    (block,), notes = events_of(f"Here:\n{RUN_START}```python\nprint(1)\n")
    assert block.problem == PROBLEM_UNCLOSED and not block.runnable
    assert "not closed" in block.note and "not run" in block.note
    assert notes == []


def test_complete_fence_without_stop_token_at_end_of_turn_runs():
    # OpenAI-compatible servers strip the stop string from what they stream.
    (block,), notes = events_of(f"{RUN_START}```python\nprint(1)\n```")
    assert block.runnable and block.stop_token_missing and block.code == "print(1)"
    assert notes == []


def test_missing_opening_fence_is_not_run():
    (block,), _ = events_of(f"{RUN_START}print(1){RUN_STOP}")
    assert block.problem == PROBLEM_MISSING_FENCE
    assert "fence" in block.note


def test_missing_closing_fence_runs_with_a_note():
    (block,), notes = events_of(f"{RUN_START}```python\nprint(1)\n{RUN_STOP}")
    assert block.runnable and block.code == "print(1)"
    assert [n.kind for n in notes] == ["missing_closing_fence"]


def test_duplicate_start_drops_the_unfinished_block():
    (block,), notes = events_of(
        f"{RUN_START}```python\nprint(1)\n{RUN_START}```python\nprint(2)\n```{RUN_STOP}"
    )
    assert block.code == "print(2)"
    assert [n.kind for n in notes] == ["duplicate_start"] and "dropped" in notes[0].message


def test_doubled_start_token_is_ignored():
    (block,), notes = events_of(f"{RUN_START}{RUN_START}```python\nprint(2)\n```{RUN_STOP}")
    assert block.code == "print(2)" and block.runnable
    assert "ignored" in notes[0].message


def test_unknown_language_is_not_run():
    (block,), _ = events_of(f"{RUN_START}```javascript\nconsole.log(1)\n```{RUN_STOP}")
    assert block.problem == PROBLEM_UNKNOWN_LANGUAGE and block.language == "javascript"
    assert "javascript" in block.note and "python" in block.note


def test_empty_code_is_not_run():
    (block,), _ = events_of(f"{RUN_START}```python\n   \n```{RUN_STOP}")
    assert block.problem == PROBLEM_EMPTY


def test_no_language_runs_as_python_with_a_note():
    (block,), notes = events_of(f"{RUN_START}```\nprint(1)\n```{RUN_STOP}")
    assert block.language == "python" and block.runnable
    assert [n.kind for n in notes] == ["no_language"]


def test_stray_stop_token_is_kept_as_text_with_a_note():
    events = run_chunks([f"a{RUN_STOP}b"], False)
    assert "".join(e.text for e in events if isinstance(e, Text)) == f"a{RUN_STOP}b"
    assert [e.kind for e in events if isinstance(e, Note)] == ["stray_stop"]


def test_bare_python_fences_only_in_always_mode():
    text = "Try this:\n```python\nprint(3)\n```\nand ```python inline``` is not a block.\n```js\nx\n```\n"
    assert detect_blocks(text) == []
    (block,) = detect_blocks(text, bare_python=True)
    assert (block.language, block.code, block.wrapped) == ("python", "print(3)", False)


def test_unclosed_bare_fence_is_not_run():
    (block,) = detect_blocks("```python\nprint(3)\n", bare_python=True)
    assert block.problem == PROBLEM_UNCLOSED


def test_feed_after_finish_is_a_clear_error():
    detector = BlockDetector()
    detector.finish()
    with pytest.raises(RuntimeError, match="new detector"):
        detector.feed("x")


# -- rendering ---------------------------------------------------------------------------------------------


@given(st.text(max_size=300), st.integers(0, 50), st.integers(0, 50))
def test_truncation_keeps_head_and_tail(text, head, tail):
    out = truncate_middle(text, head, tail)
    if len(text) <= head + tail:
        assert out == text
    else:
        assert out.startswith(text[:head]) and out.endswith(text[len(text) - tail :])
        assert f"({len(text) - head - tail} characters truncated)" in out
        assert len(out) < head + tail + 60


def test_demo_format_matches_the_original_demo():
    ok = ExecutionResult(status="ok", stdout="42\n")
    assert (
        render_result([RunRecord("python", "print(42)", ok)]) == "result.stdout:\n42\n\nresult.stderr:\nNone"
    )
    empty = ExecutionResult(status="ok")
    pip = ExecutionResult(status="ok", stdout="Successfully installed tqdm\n", stderr="WARNING: root\n")
    text = render_result(
        [RunRecord("sh", "pip install tqdm", pip), RunRecord("python", "import tqdm", empty)]
    )
    assert text == (
        "pip_result.stdout: \nSuccessfully installed tqdm\n\n pip_result.stderr: \nWARNING: root\n\n"
        " result.stdout:\nNone\nresult.stderr:\nNone"
    )


def test_errors_timeouts_and_rich_outputs_reach_the_model():
    err = ExecutionError(
        "ZeroDivisionError", "division by zero", "Traceback ...\nZeroDivisionError: division by zero"
    )
    failed = ExecutionResult(status="error", error=err)
    assert render_result([RunRecord("python", "1/0", failed)]).endswith("ZeroDivisionError: division by zero")
    timeout = ExecutionResult(
        status="timeout", stdout="tick\n", message="timed out after 30 s; kernel restarted"
    )
    assert "timed out after 30 s" in render_result([RunRecord("python", "...", timeout)])
    figure = {"output_type": "display_data", "data": {"text/plain": "<Figure size 640x480 with 1 Axes>"}}
    plot = ExecutionResult(status="ok", outputs=[figure])
    assert "result.stdout:\n<Figure size 640x480 with 1 Axes>" in render_result(
        [RunRecord("python", "...", plot)]
    )


def test_blocks_not_run_tell_the_model_why():
    text = render_result([RunRecord("javascript", "x", None, "```javascript blocks cannot be run here")])
    assert text == "result.stdout:\nNone\nresult.stderr:\n```javascript blocks cannot be run here"


def test_model_sees_truncated_output_per_stream():
    big = ExecutionResult(status="ok", stdout="a" * 5000 + "END", stderr="e" * 10)
    text = render_result([RunRecord("python", "...", big)], head_chars=100, tail_chars=10)
    assert "a" * 100 + "\n...(4893 characters truncated)...\n" + "a" * 7 + "END" in text
    assert text.endswith("e" * 10)


def test_tokens_style_is_plain_output():
    out = ExecutionResult(status="ok", stdout="42\n", stderr="warn\n")
    assert render_result([RunRecord("python", "...", out)], style="tokens") == "42\nwarn"


def test_render_dialogue_for_released_checkpoints_and_for_our_format():
    dialogue = [
        {"role": "user", "content": "print"},
        {"role": "assistant", "content": "Run:\n" + block_text("python", "print(42)")},
        {"role": "execution", "content": "result.stdout:\n42\nresult.stderr:\nNone"},
        {"role": "assistant", "content": "The answer is 42."},
    ]
    demo = render_dialogue(dialogue, "demo")
    assert [m["role"] for m in demo] == ["user", "assistant", "user", "assistant"]
    assert demo[2]["content"] == dialogue[2]["content"] and demo[1] == dialogue[1]
    ours = render_dialogue(dialogue, "tokens", system_prompt="You run code.")
    assert ours[0] == {"role": "system", "content": "You run code."}
    assert ours[3]["content"] == f"{OUTPUT_START}\n{dialogue[2]['content']}\n{OUTPUT_STOP}"
    # Already-wrapped content is not wrapped twice, and "demo" unwraps it.
    rewrapped = render_dialogue([{"role": "execution", "content": ours[3]["content"]}], "tokens")
    assert rewrapped[0]["content"] == ours[3]["content"]
    assert (
        render_dialogue([{"role": "execution", "content": ours[3]["content"]}])[0]["content"]
        == dialogue[2]["content"]
    )
    # A system message of the dialogue's own wins over the configured one; the input is not modified.
    own = [{"role": "system", "content": "mine"}, *dialogue]
    assert render_dialogue(own, system_prompt="default")[0]["content"] == "mine"
    assert dialogue[2]["role"] == "execution"


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ({"role": "user"}, "list"),
        ([{"role": "tool", "content": "x"}], "role must be one of"),
        ([{"role": "user", "content": None}], "content must be a string"),
    ],
)
def test_bad_dialogues_get_one_line_errors(messages, match):
    with pytest.raises(ValueError, match=match):
        validate_dialogue(messages)


def test_bad_render_style_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown render style"):
        render_result([], style="xml")


def test_the_four_tokens_are_distinct_and_spelled_once():
    assert len(set(SPECIAL_TOKENS)) == 4
    assert all(t.startswith("<") and t.endswith(">") and " " not in t for t in SPECIAL_TOKENS)
