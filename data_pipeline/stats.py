"""`python -m data_pipeline stats DIR`: the table the paper compares datasets with, and two PNG plots.

Rows (from DIR/dialogues.jsonl, rejected.jsonl and removed.jsonl):
    items                       verified items kept (the training set)
    dialogue rounds             assistant turns in the kept items (total and mean per item)
    multi-turn items            share of kept items with more than one user turn (a questioner analysis)
    with execution feedback     share of kept items whose dialogue holds an execution turn after a failed run
    with package installs       share of kept items that installed a package (an sh block that ran)
    mean attempts               programmer attempts per item, over kept and rejected items
    verified rate               verified / (verified + rejected), before decontamination and de-duplication
    rejected                    items not verified after --max-attempts
    removed by decontamination  near-copies of a benchmark task (the paper's 0.9 threshold)
    removed by dedup            exact and near duplicates within the data
    flagged tests_weakened      kept items whose tests shrank between attempts
Plots: attempts.png (histogram of attempts, verified and rejected) and error_types.png (errors seen).

What it deliberately does not do: change any file other than the two PNGs.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from data_pipeline.runfolder import DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE, RunFolder
from data_pipeline.verify import WEAKENED_FLAG
from interpreter.dialogue import Dialogue


def _has_failed_run(dialogue: Dialogue) -> bool:
    for message in dialogue.messages:
        for run in message.get("runs") or []:
            if run.get("status") != "ok" or run.get("error"):
                return True
    return False


def compute_stats(folder: str | Path) -> dict:
    run = RunFolder(folder)
    if not run.path.is_dir():
        raise ValueError(f"{run.path} is not a folder")
    if not any(run.file(name).exists() for name in (DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE)):
        raise ValueError(f"{run.path} holds no {DIALOGUES_FILE}, {REJECTED_FILE} or {REMOVED_FILE}")
    kept, rejected, removed = run.read(DIALOGUES_FILE), run.read(REJECTED_FILE), run.read(REMOVED_FILE)
    n = len(kept)
    rounds = [sum(m["role"] == "assistant" for m in d.messages) for d in kept]
    decontaminated = [d for d in removed if (d.meta.get("removed") or {}).get("by") == "decontamination"]
    deduped = [d for d in removed if (d.meta.get("removed") or {}).get("by") == "dedup"]
    verified_made = n + len(removed)
    attempts = [int(d.meta.get("attempts", 0)) for d in kept + removed + rejected]

    def share(count: int) -> float:
        return round(count / n, 4) if n else 0.0

    return {
        "items": n,
        "dialogue_rounds": sum(rounds),
        "mean_rounds": round(sum(rounds) / n, 3) if n else 0.0,
        "multi_turn_share": share(sum(sum(m["role"] == "user" for m in d.messages) > 1 for d in kept)),
        "execution_feedback_share": share(sum(_has_failed_run(d) for d in kept)),
        "package_install_share": share(sum(bool(d.meta.get("packages_installed")) for d in kept)),
        "mean_attempts": round(sum(attempts) / len(attempts), 3) if attempts else 0.0,
        "verified_rate": round(verified_made / (verified_made + len(rejected)), 4)
        if verified_made + len(rejected)
        else 0.0,
        "rejected": len(rejected),
        "removed_by_decontamination": len(decontaminated),
        "removed_by_dedup": len(deduped),
        "flagged_tests_weakened": sum(WEAKENED_FLAG in (d.meta.get("flags") or []) for d in kept),
        "cost_usd": round(sum(float(d.meta.get("cost_usd", 0.0)) for d in kept + rejected + removed), 4),
        "_attempts": {
            "verified": [int(d.meta.get("attempts", 0)) for d in kept + removed],
            "rejected": [int(d.meta.get("attempts", 0)) for d in rejected],
        },
        "_errors": collections.Counter(
            e for d in kept + rejected + removed for e in d.meta.get("error_types") or []
        ).most_common(),
        "_rejection_reasons": collections.Counter(d.meta.get("reason", "?") for d in rejected).most_common(),
    }


ROWS = (
    ("items", "items"),
    ("dialogue rounds (total)", "dialogue_rounds"),
    ("dialogue rounds (mean per item)", "mean_rounds"),
    ("multi-turn items", "multi_turn_share"),
    ("with execution feedback", "execution_feedback_share"),
    ("with package installs", "package_install_share"),
    ("mean attempts", "mean_attempts"),
    ("verified rate", "verified_rate"),
    ("rejected", "rejected"),
    ("removed by decontamination", "removed_by_decontamination"),
    ("removed by dedup", "removed_by_dedup"),
    ("flagged tests_weakened", "flagged_tests_weakened"),
    ("estimated cost (USD)", "cost_usd"),
)


def format_table(stats: dict) -> str:
    width = max(len(label) for label, _ in ROWS)
    lines = []
    for label, key in ROWS:
        value = stats[key]
        if key.endswith("_share") or key == "verified_rate":
            shown = f"{value:.1%}"
        elif isinstance(value, float):
            shown = f"{value:.3f}".rstrip("0").rstrip(".") if key != "cost_usd" else f"{value:.4f}"
        else:
            shown = str(value)
        lines.append(f"{label:<{width}}  {shown}")
    if stats["_rejection_reasons"]:
        lines.append("rejection reasons:")
        lines += [f"  {count:5d}  {reason}" for reason, count in stats["_rejection_reasons"]]
    return "\n".join(lines)


def write_plots(stats: dict, out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    attempts = stats["_attempts"]
    top = max([1, *attempts["verified"], *attempts["rejected"]])
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [b - 0.5 for b in range(0, top + 2)]
    ax.hist(
        [attempts["verified"], attempts["rejected"]], bins=bins, label=["verified", "rejected"], stacked=True
    )
    ax.set_xlabel("programmer attempts")
    ax.set_ylabel("items")
    ax.set_title("Attempts per item")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "attempts.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    errors = stats["_errors"][:15]
    fig, ax = plt.subplots(figsize=(6, 4))
    if errors:
        names, counts = zip(*errors, strict=True)
        ax.barh(list(reversed(names)), list(reversed(counts)))
    else:
        ax.text(0.5, 0.5, "no errors", ha="center", va="center")
    ax.set_xlabel("items where it occurred")
    ax.set_title("Error types seen")
    fig.tight_layout()
    paths.append(out / "error_types.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def print_stats(folder: str | Path, *, plots: str | Path | None = None, as_json: bool = False) -> int:
    stats = compute_stats(folder)
    paths = write_plots(stats, plots or folder)
    if as_json:
        print(json.dumps({k: v for k, v in stats.items() if not k.startswith("_")}, indent=2))
    else:
        print(format_table(stats))
        print("plots: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
