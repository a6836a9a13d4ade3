"""`--push-to-hub REPO`: upload a run folder's verified dialogues as a `datasets` dataset. Only when asked.

The data is loaded with the same one line the README gives users
(`datasets.load_dataset("json", data_files="DIR/dialogues.jsonl", split="train")`) and pushed with
`push_to_hub` (a private dataset unless the repository exists already; the token comes from
`huggingface-cli login` or $HF_TOKEN, as the hub library expects).

What it deliberately does not do: push rejected or removed items, or anything without the flag.
"""

from __future__ import annotations

from pathlib import Path

from data_pipeline.runfolder import DIALOGUES_FILE


def load_dataset_from_folder(folder: str | Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(Path(folder) / DIALOGUES_FILE), split="train")


def push_to_hub(folder: str | Path, repo: str) -> None:
    dataset = load_dataset_from_folder(folder)
    try:
        dataset.push_to_hub(repo, private=True)
    except Exception as exc:  # network, auth: one line, the data stays on disk
        first = str(exc).strip().splitlines()
        raise ValueError(
            f"could not push to the hub repository {repo}: {first[0] if first else type(exc).__name__}"
        ) from None
