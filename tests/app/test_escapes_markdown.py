"""app.safe_markdown: no tag and no image survives outside code, code stays as written, and the places where
a Markdown renderer could see code differently (escaped backticks, spans across lines or table cells) fall
on the escaped side. The browser-level check is test_escapes_html.py."""

from __future__ import annotations

from app.safe_markdown import sanitize_markdown, sanitize_messages

REMOTE = "http://203.0.113.9/x.png"


def test_raw_html_and_images_outside_code_become_text():
    text = f'see <img src="{REMOTE}"> and ![alt]({REMOTE}) or ![ref][r]\n\n<script>alert(1)</script>\n[r]: {REMOTE}'
    safe = sanitize_markdown(text)
    assert "<" not in safe and "![" not in safe.replace("\\![", "")
    assert "&lt;img" in safe and "\\![alt]" in safe and "\\![ref]" in safe


def test_code_blocks_and_single_line_spans_stay_as_written():
    code = '```python\nprint("<b>![x](y)</b>")\n```\n'
    tilde = '~~~\n<img src="x">\n~~~\n'
    assert sanitize_markdown(code) == code and sanitize_markdown(tilde) == tilde
    assert sanitize_markdown("use the `<div>` tag") == "use the `<div>` tag"
    assert sanitize_markdown("a ``<b>`` span") == "a ``<b>`` span"
    longer = "````\n```\n<i>still code</i>\n````\nafter <b>"
    assert sanitize_markdown(longer) == "````\n```\n<i>still code</i>\n````\nafter &lt;b>"
    assert sanitize_markdown("```\nunclosed <b>") == "```\nunclosed <b>"  # code to the end, as CommonMark


def test_where_renderers_could_disagree_the_text_is_escaped():
    assert "<img" not in sanitize_markdown("\\`<img src=x>`")  # an escaped backtick opens no span
    assert "<img" not in sanitize_markdown("`a\n> <img src=x>`")  # a span across lines
    assert "<img" not in sanitize_markdown("| `a | <img src=x>` |")  # a table cell split inside a span
    assert "<img" not in sanitize_markdown("``` a`b\n<img src=x>\n```")  # not a fence: info has a backtick


def test_messages_keep_files_and_lose_markup_in_titles():
    messages = [
        {"role": "user", "content": "<b>hi</b>"},
        {"role": "assistant", "content": {"path": "/tmp/plot.png"}},
        {"role": "assistant", "content": "x", "metadata": {"title": "✓ Ran <img src=x>", "status": "done"}},
    ]
    safe = sanitize_messages(messages)
    assert safe[0]["content"] == "&lt;b>hi&lt;/b>"
    assert safe[1] == messages[1]
    assert safe[2]["metadata"] == {"title": "✓ Ran img src=x", "status": "done"}
    assert messages[0]["content"] == "<b>hi</b>"  # the input is not changed
