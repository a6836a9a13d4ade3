"""Incremental detokenization and stop-string matching, on the tiny model's real byte-level tokenizer."""

import pytest
from transformers import AutoTokenizer

from interpreter.protocol import RUN_START, RUN_STOP
from llm.decoding import IncrementalDecoder, StopMatcher


@pytest.fixture(scope="module")
def tokenizer(tiny_autocoder_path):
    return AutoTokenizer.from_pretrained(tiny_autocoder_path)


@pytest.mark.parametrize(
    "text",
    [
        f"Sure.\n{RUN_START}```python\nprint('héllo wörld 🙂 ✓')\n```{RUN_STOP}",
        "日本語のテキスト and mixed  spacing\n\n\ttabs",
        "🙂🙂🙂",
    ],
)
def test_deltas_concatenate_to_the_full_decode_without_broken_characters(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids]
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=False) == text
    assert not any("\ufffd" in d for d in deltas)  # a half character is held back, never emitted
    assert len([d for d in deltas if d]) > 1  # it does stream


def test_stop_split_across_deltas_is_cut_right_after_it():
    m = StopMatcher([RUN_STOP])
    out = []
    for piece in ["code\n```" + RUN_STOP[:5], RUN_STOP[5:9], RUN_STOP[9:] + "trailing", " more"]:
        text, stopped = m.feed(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "code\n```" + RUN_STOP
    assert stopped


def test_earliest_of_several_stops_wins():
    text, stopped = StopMatcher(["END", "b"]).feed("a b END")
    assert (text, stopped) == ("a b", True)


def test_no_stops_passes_everything_through():
    m = StopMatcher([])
    assert m.feed("anything " + RUN_STOP) == ("anything " + RUN_STOP, False)


def test_text_that_only_resembles_a_stop_is_emitted():
    m = StopMatcher([RUN_STOP])
    # RUN_START begins like RUN_STOP; it is passed through, never mistaken for it.
    assert m.feed(RUN_START[:-3]) == (RUN_START[:-3], False)
    assert m.feed(RUN_START[-3:] + " x") == (RUN_START[-3:] + " x", False)
