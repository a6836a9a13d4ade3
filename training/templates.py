"""The chat templates shipped for the base models, and where a config's `chat_template` value points.

`deepseek_coder` (AutoCoder 33B, AutoCoder_S_6.7B) and `codeqwen` (AutoCoder_QW_7B) reproduce the released
checkpoints' prompt format; both mark assistant content with {% generation %} blocks so transformers'
`return_assistant_tokens_mask` (and TRL's assistant-only loss) work with them too. The template chosen for
training is saved with the trained model (chat_template.jinja), so the chat and the evaluation prompt the
model exactly as it was trained.

What it deliberately does not do: decide what is trained on (`training.encode` does, for any template).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"
SHIPPED = {path.stem: path for path in sorted(TEMPLATE_DIR.glob("*.jinja"))}


def load_chat_template(name_or_path: str) -> str:
    """The template text for a shipped name (see SHIPPED) or a .jinja file path; ValueError (one line) else."""
    if name_or_path in SHIPPED:
        return SHIPPED[name_or_path].read_text(encoding="utf-8")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ValueError(
        f"chat template {name_or_path!r} is neither a shipped one ({', '.join(SHIPPED)}) nor a file"
    )
