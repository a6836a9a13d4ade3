"""Applying decontamination and de-duplication to the pipeline's items (the algorithms live elsewhere).

- `problem_and_solution(record)`: the texts of an item that are compared: its problem (first user turn)
  and its final solution (the python code of its last executed attempt).
- `Decontaminator`: loads the benchmark references once (before any paid work) and checks each verified
  item as it is made, returning the removal (nearest benchmark task and score) or None
  (data_pipeline.decontaminate does the search).
- `dedup_folder(folder)`: exact and near-duplicate removal over a run folder's verified items, the first
  by item id kept (data_pipeline.dedup does the MinHash work); removed records go to removed.jsonl
  before dialogues.jsonl is replaced, so a kill between the two is finished by the next call.

What it deliberately does not do: decide thresholds (the algorithms' defaults, the paper's) or write
anything but the run folder's files.
"""

from __future__ import annotations

from data_pipeline.runfolder import DIALOGUES_FILE, REMOVED_FILE, RunFolder
from interpreter.dialogue import Dialogue


def final_solution(messages: list[dict]) -> str:
    """The python code of the last execution turn that ran python."""
    for message in reversed(messages):
        if message["role"] == "execution":
            code = [r["code"] for r in message.get("runs") or [] if r.get("language") == "python"]
            if code:
                return "\n\n".join(code)
    return ""


def problem_and_solution(record: dict | Dialogue) -> dict[str, str]:
    messages = record.messages if isinstance(record, Dialogue) else record["messages"]
    problem = next((m["content"] for m in messages if m["role"] == "user"), "")
    return {"problem": problem, "solution": final_solution(messages)}


class Decontaminator:
    def __init__(self, mbpp_plus_file=None, ds1000_file=None):
        from data_pipeline.decontaminate import load_references

        self.references = load_references(mbpp_plus_file=mbpp_plus_file, ds1000_file=ds1000_file)

    def check(self, record: dict) -> dict | None:
        """The removal for a contaminated item ({"by", "task_id", "benchmark", "field", "score"}), else None."""
        from data_pipeline.decontaminate import decontaminate

        report = decontaminate([record], problem_and_solution, references=self.references, workers=1)
        if not report.removed:
            return None
        removal = report.removed[0]
        return {
            "by": "decontamination",
            "task_id": removal.task_id,
            "benchmark": removal.benchmark,
            "reference": removal.reference_kind,
            "field": removal.field,
            "score": removal.score,
        }


def _dedup_text(dialogue: Dialogue) -> str:
    texts = problem_and_solution(dialogue)
    return texts["problem"] + "\n" + texts["solution"]


def dedup_folder(folder: RunFolder) -> int:
    """Remove duplicates among the folder's verified items; returns how many were removed now."""
    from data_pipeline.dedup import deduplicate

    removed_ids = {d.id for d in folder.read(REMOVED_FILE)}
    dialogues = folder.read(DIALOGUES_FILE)
    pending = [d for d in dialogues if d.id not in removed_ids]  # a previous pass stopped before replacing
    report = deduplicate(pending, _dedup_text, key=lambda d: d.id, id_of=lambda d: d.id)
    duplicates = {dup.item_id: dup for dup in report.exact_removed + report.near_removed}
    if duplicates:
        with folder.writer(REMOVED_FILE) as writer:
            for dialogue in pending:
                dup = duplicates.get(dialogue.id)
                if dup is not None:
                    meta = dict(dialogue.meta)
                    meta["removed"] = {
                        "by": "dedup",
                        "duplicate_of": dup.kept_id,
                        "similarity": dup.similarity,
                        "exact": dup.similarity == 1.0 and dup in report.exact_removed,
                    }
                    writer.append(Dialogue(dialogue.id, dialogue.messages, meta, dialogue.schema))
    if duplicates or len(pending) != len(dialogues):
        folder.replace_dialogues([d for d in pending if d.id not in duplicates])
    return len(duplicates)
