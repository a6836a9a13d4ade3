"""`python -m data_pipeline aiev-report DIR`: one row per round, and a PNG of the two pass@1 curves.

Per round: the stage it generated in, items added (verified), rejected and removed, the test/train split,
teacher and student pass@1 with 95 % Wilson intervals, the decision, and the generation's tokens and cost
(from the items' meta). A round still running shows the steps it has finished. The plot has one line per
model with the intervals as error bars, and marks the round whose decision switched to self-learning.

What it deliberately does not do: compute anything the rounds did not record (it reads DIR/state.json only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data_pipeline.aiev.state import RunState, StateError

PLOT_FILE = "aiev_pass1.png"


def rows(folder: str | Path) -> list[dict]:
    state = RunState(folder)
    if not state.path.exists():
        raise StateError(f"{folder}: no state.json; is it an aiev --run folder?")
    out = []

    def result(r: int, step: str) -> dict:
        name = f"r{r:02d}.{step}"
        return state.result(name) if state.done(name) else {}

    for r in sorted({int(name[1:3]) for name in state.steps}):
        gen, split, decide = result(r, "generate"), result(r, "split"), result(r, "decide")
        row = {
            "round": r,
            "stage": gen.get("stage")
            or state.steps.get(f"r{r:02d}.generate", {}).get("inputs", {}).get("stage"),
            "items_added": gen.get("verified"),
            "rejected": gen.get("rejected"),
            "removed": gen.get("removed"),
            "test": split.get("test"),
            "train": split.get("train"),
            "tokens": gen.get("tokens"),
            "cost_usd": gen.get("cost_usd"),
            "decision": decide.get("stage_after"),
            "why": decide.get("why"),
        }
        for who in ("teacher", "student"):
            score = result(r, f"score_{who}")
            row[who] = {k: score[k] for k in ("pass@1", "passed", "n", "ci95")} if "pass@1" in score else None
        out.append(row)
    return out


def _cell(score: dict | None) -> str:
    if not score:
        return "-"
    low, high = score["ci95"]
    return f"{score['pass@1']:.3f} ({score['passed']}/{score['n']}, {low:.2f}-{high:.2f})"


def table(data: list[dict]) -> str:
    header = ("round", "stage", "items", "rejected", "test/train", "teacher pass@1 (95% CI)",
              "student pass@1 (95% CI)", "decision", "tokens", "cost $")  # fmt: skip
    lines = [
        (
            str(row["round"]),
            row["stage"] or "-",
            "-" if row["items_added"] is None else str(row["items_added"]),
            "-" if row["rejected"] is None else str(row["rejected"]),
            "-" if row["test"] is None else f"{row['test']}/{row['train']}",
            _cell(row["teacher"]),
            _cell(row["student"]),
            row["decision"] or "(running)",
            "-" if row["tokens"] is None else f"{row['tokens']:,}",
            "-" if row["cost_usd"] is None else f"{row['cost_usd']:.4f}",
        )
        for row in data
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*x) for x in lines]
    )


def plot(data: list[dict], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for who, style in (("teacher", "o-"), ("student", "s-")):
        points = [(row["round"], row[who]) for row in data if row[who]]
        if points:
            x = [p[0] for p in points]
            y = [p[1]["pass@1"] for p in points]
            err = [
                [v - p[1]["ci95"][0] for v, p in zip(y, points, strict=True)],
                [p[1]["ci95"][1] - v for v, p in zip(y, points, strict=True)],
            ]
            ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=who)
    for row in data:
        if row["decision"] == "self-learning" and row["stage"] == "teaching":
            ax.axvline(row["round"], color="grey", linestyle="--", label="switch to self-learning")
    ax.set_xlabel("round")
    ax.set_ylabel("pass@1 on the round's test split")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks([row["round"] for row in data])
    ax.legend()
    ax.set_title("AIEV-Instruct: teacher vs student")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_report(folder: str | Path, plot_path: str | Path | None = None, as_json: bool = False) -> int:
    data = rows(folder)
    print(json.dumps(data, indent=2) if as_json else table(data))
    written = plot(data, plot_path or Path(folder) / PLOT_FILE)
    print(f"plot: {written}", file=sys.stderr)
    return 0
