"""Bare ```sh / ```bash fences (a teacher's installs without AutoCoder's tokens) are blocks the pipeline runs.

The detector finds them only when asked (`bare_sh`, which the data pipeline's loop config sets): the app's
"always" mode still runs bare python fences only. Pure tests of interpreter.protocol; the run in a real
sandbox and the token form in the recorded dialogue are in test_flow.py (scenario "baresh").
"""

from __future__ import annotations

from data_pipeline.item import ItemRunner, ItemSettings
from interpreter.protocol import BlockDetector, detect_blocks
from llm.base import GenerationParams

REPLY = (
    "First the package.\n```bash\npip install -q tomli==2.0.1\n```\n"
    "Then a command.\n```shell\nls -a\n```\n"
    "```sh\n\n```\n"
    "Then the code.\n```python\nimport tomli\nprint(tomli.loads('a = 1'))\n```\nDone."
)


def test_bare_sh_fences_are_blocks_with_the_sh_language():
    blocks = detect_blocks(REPLY, bare_python=True, bare_sh=True)
    assert [(b.language, b.code, b.wrapped, b.problem) for b in blocks] == [
        ("sh", "pip install -q tomli==2.0.1", False, ""),
        ("sh", "ls -a", False, ""),
        ("sh", "", False, "empty"),
        ("python", "import tomli\nprint(tomli.loads('a = 1'))", False, ""),
    ]
    assert blocks[2].note == "the ```sh block was empty; nothing was run"


def test_without_bare_sh_only_python_fences_run():
    blocks = detect_blocks(REPLY, bare_python=True)
    assert [b.language for b in blocks] == ["python"]
    assert detect_blocks(REPLY) == []


def test_any_chunking_finds_the_same_blocks_and_an_open_bare_sh_block_says_its_language():
    whole = detect_blocks(REPLY, bare_python=True, bare_sh=True)
    for size in (1, 2, 3, 7, 50):
        detector = BlockDetector(bare_python=True, bare_sh=True)
        events = []
        for i in range(0, len(REPLY), size):
            events += detector.feed(REPLY[i : i + size])
        events += detector.finish()
        assert [e for e in events if type(e).__name__ == "Block"] == whole, size
    detector = BlockDetector(bare_python=True, bare_sh=True)
    detector.feed("Install:\n```bash\npip install x")
    assert detector.open_block() == ("sh", "pip install x")
    unclosed = [e for e in detector.finish() if type(e).__name__ == "Block"]
    assert unclosed[0].language == "sh" and unclosed[0].problem == "unclosed"
    assert "```sh block was not closed" in unclosed[0].note


def test_the_pipeline_asks_for_bare_sh_fences():
    settings = ItemSettings(questioner_params=GenerationParams(), programmer_params=GenerationParams())
    runner = ItemRunner(None, None, {"programmer_system": _Prompt()}, settings, None, None, {})
    config = runner.loop_config(None)
    assert config.bare_python and config.bare_sh and config.record_bare_as_tokens


class _Prompt:
    text = "You are the programmer."
