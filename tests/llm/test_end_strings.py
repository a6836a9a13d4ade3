"""End strings from a model's generation_config: they end the turn and are never streamed."""

from llm.hf import EndStringMatcher


def run(chunks, ends=("\nUser:",)):
    matcher, out = EndStringMatcher(list(ends)), []
    for chunk in chunks:
        text, ended = matcher.feed(chunk)
        out.append(text)
        if ended:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_an_end_string_split_across_chunks_ends_the_turn_and_is_not_emitted():
    assert run(["Paris.", "\n", "Us", "er", ":", " next"]) == ("Paris.", True)
    assert run(["Paris.\n\nUser: next"]) == ("Paris.\n", True)


def test_held_text_that_turns_out_not_to_be_an_end_string_is_emitted_in_order():
    assert run(["a", "\n", "Us", "ed it"]) == ("a\nUsed it", False)
    assert run(["a\nUse"]) == ("a\nUse", False)  # flushed when the reply runs out


def test_without_end_strings_text_passes_straight_through():
    matcher = EndStringMatcher([])
    assert matcher.feed("\nUser:") == ("\nUser:", False)
