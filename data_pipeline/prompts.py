"""The agents' prompts: one file per role and step under data_pipeline/prompts/, versioned by file name.

A prompt file is `ROLE_STEP.vN.md` (e.g. `questioner_proposal.v1.md`); `{name}` fields are filled with
`str.format`-style substitution of the named fields only, so code braces in a seed never break a prompt. The
highest version of each prompt is used unless the caller pins one. `PromptSet.versions` (name -> "vN+hash")
is recorded in every item's meta and in the run folder's identity, so editing a prompt file is noticed: the
short content hash changes even when the author forgets to bump the version.

What it deliberately does not do: call a model (see data_pipeline.agents) or decide what an item needs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompts"

# The prompts the pipeline needs: the paper's steps they belong to.
QUESTIONER_PROPOSAL = "questioner_proposal"  # II: seed -> problem (message 1)
PROGRAMMER_SYSTEM = "programmer_system"  # II/III: how the programmer writes (AutoCoder's format)
QUESTIONER_ANALYSIS = "questioner_analysis"  # III: error -> natural-language analysis (message 4)
PROGRAMMER_REVISION = "programmer_revision"  # III: analysis handed to the programmer (message 5's prompt)
PROMPT_NAMES = (QUESTIONER_PROPOSAL, PROGRAMMER_SYSTEM, QUESTIONER_ANALYSIS, PROGRAMMER_REVISION)

_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.md$")
_FIELD = re.compile(r"\{([a-z_]+)\}")


class PromptError(ValueError):
    """A prompt folder that lacks a prompt or has a malformed one; one line."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    text: str

    @property
    def tag(self) -> str:
        """What is recorded: the version and a short hash of the text."""
        return f"v{self.version}+{hashlib.sha256(self.text.encode()).hexdigest()[:8]}"

    @property
    def fields(self) -> set[str]:
        return set(_FIELD.findall(self.text))

    def fill(self, **values: str) -> str:
        """The text with its {fields} replaced; only the named fields, so braces in values stay as they are."""
        missing = self.fields - values.keys()
        if missing:
            raise PromptError(f"prompt {self.name} needs {', '.join(sorted(missing))}")
        return _FIELD.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), self.text)


@dataclass
class PromptSet:
    prompts: dict[str, Prompt] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Prompt:
        return self.prompts[name]

    @property
    def versions(self) -> dict[str, str]:
        return {name: prompt.tag for name, prompt in sorted(self.prompts.items())}


def load_prompts(folder: str | Path | None = None, pins: dict[str, int] | None = None) -> PromptSet:
    """The newest version of every prompt in `folder` (default: the packaged ones), or the pinned one."""
    folder = Path(folder) if folder is not None else PROMPT_DIR
    if not folder.is_dir():
        raise PromptError(f"prompt folder {folder} does not exist")
    found: dict[str, dict[int, Path]] = {}
    for path in folder.iterdir():
        match = _FILE.match(path.name)
        if match:
            found.setdefault(match["name"], {})[int(match["version"])] = path
    prompts = {}
    for name in PROMPT_NAMES:
        versions = found.get(name)
        if not versions:
            raise PromptError(f"prompt folder {folder} has no {name}.vN.md")
        version = (pins or {}).get(name, max(versions))
        if version not in versions:
            raise PromptError(f"prompt {name} has no version {version} in {folder}")
        text = versions[version].read_text(encoding="utf-8").strip()
        if not text:
            raise PromptError(f"prompt file {versions[version]} is empty")
        prompts[name] = Prompt(name, version, text)
    return PromptSet(prompts)
