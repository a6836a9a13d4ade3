"""`python -m data_pipeline merge SHARD_DIR... --out DIR`: join the run folders of `--shard K/N` runs.

Every shard must have been made with the same configuration apart from the shard (their run.json identities
are compared; a mismatch is a one-line error). Items are joined in item-id order, an id seen twice is kept
once, and de-duplication then runs across all shards (the first by item id kept, as within one run), so the
result does not depend on the order the shards are given in. The merged folder gets its own run.json (the
shared identity, shard "merged") and the usual files, so `stats` works on it.

What it deliberately does not do: delete or change the shard folders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from data_pipeline.cleaning import dedup_folder
from data_pipeline.runfolder import ITEM_FILES, RUN_FILE, RunFolder, RunFolderError


def merge(shards: list[str | Path], out: str | Path) -> int:
    folders = [RunFolder(s) for s in shards]
    identities = []
    for folder in folders:
        identity = folder.identity() if folder.file(RUN_FILE).exists() else None
        if identity is None:
            raise RunFolderError(f"{folder.path} is not a run folder (no {RUN_FILE})")
        identities.append(identity)
    common = {k: v for k, v in identities[0].items() if k != "shard"}
    for folder, identity in zip(folders, identities, strict=True):
        if {k: v for k, v in identity.items() if k != "shard"} != common:
            raise RunFolderError(
                f"{folder.path} was made with a different configuration than {folders[0].path}"
            )
    target = RunFolder(out)
    if any(target.file(name).exists() for name in ITEM_FILES):
        raise RunFolderError(f"--out {target.path} already holds items; merge into a new folder")
    merged_identity = dict(identities[0], shard="merged")  # the same item fingerprint as every shard
    target.claim(merged_identity)
    counts = {}
    for name in ITEM_FILES:
        seen: dict[str, object] = {}
        for folder in folders:
            for dialogue in folder.read(name):
                seen.setdefault(dialogue.id, dialogue)
        with target.writer(name) as writer:
            for item in sorted(seen):
                writer.append(seen[item])
        counts[name] = len(seen)
    duplicates = dedup_folder(target)
    print(
        f"merged {len(folders)} shards into {target.path}: {counts['dialogues.jsonl'] - duplicates} verified "
        f"({duplicates} cross-shard duplicates removed), {counts['rejected.jsonl']} rejected",
        file=sys.stderr,
    )
    return 0
