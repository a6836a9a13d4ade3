"""Token-by-token text assembly for streaming: incremental detokenization and stop-string search.

Incremental decoding re-decodes a short window of recent tokens (the prefix/read offset scheme used by
text-generation-inference) so multi-byte characters and SentencePiece's leading spaces come out right
without re-decoding the whole reply every step. Special tokens are kept in the text.

Deliberately not here: sampling and anything model-specific.
"""

from __future__ import annotations


class IncrementalDecoder:
    """Turns token ids, pushed one at a time, into text deltas whose concatenation equals decode(all)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        # An incomplete UTF-8 sequence decodes to U+FFFD: wait for the bytes that complete it.
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return delta
        return ""


class StopMatcher:
    """Finds the earliest stop string in streamed text; the stop string itself is kept in the output."""

    def __init__(self, stops: list[str]):
        self._stops = [s for s in stops if s]
        self._keep = max((len(s) for s in self._stops), default=0)
        self._tail = ""  # end of the text seen so far, long enough to catch a stop split across deltas

    def feed(self, delta: str) -> tuple[str, bool]:
        """Return (text to emit, stopped). When a stop string completes, text ends right after it."""
        if not self._stops:
            return delta, False
        window = self._tail + delta
        ends = [window.find(s) + len(s) for s in self._stops if s in window]
        if ends:
            cut = min(ends) - len(self._tail)
            return delta[: max(cut, 0)], True
        self._tail = window[-(self._keep - 1) :] if self._keep > 1 else ""
        return delta, False
