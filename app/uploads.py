"""What the chat says about uploaded files: a short description for people, and the line the model is told.

An upload lands in the kernel's workdir at once (app.files), but the model only learns of it with the next
user message: `model_note` is one line put before that message in the dialogue the model sees (and so in
every export), e.g. "[Files uploaded to the working directory: data.csv (1.2 kB)]". The chat shows the same
files in the user's turn (app.view).

What this module deliberately does not do: copy files (app.files does) or decide when the model is told
(app.chat keeps the uploads not yet told and hands them to the next message).
"""

from __future__ import annotations

_UNITS = ("kB", "MB", "GB", "TB")


def human_size(size: int) -> str:
    """Bytes in SI units with one decimal: 950 B, 1.2 kB, 3.4 MB."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1000
        if value < 999.95 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def describe(name: str, size: int) -> str:
    """ "data.csv (1.2 kB)"; a name with control characters (a newline would start a line of its own in the
    model's prompt) is written as Python's repr of it."""
    shown = name if name.isprintable() else repr(name)
    return f"{shown} ({human_size(size)})"


def model_note(descriptions: list[str]) -> str:
    """The line the model sees before the next user message ("" when nothing was uploaded)."""
    if not descriptions:
        return ""
    return f"[Files uploaded to the working directory: {', '.join(descriptions)}]"


def with_note(message: str, descriptions: list[str]) -> str:
    """The user message as the model sees it: the uploads' line, a blank line, then the message."""
    note = model_note(descriptions)
    return f"{note}\n\n{message}" if note else message
