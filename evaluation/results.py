"""results.json and the summary tables: every score printed and stored next to its dataset's name and version.

results.json holds the benchmark, the dataset (name, version, sha256, source), how the samples were made,
the sandbox and time limits, the scores (pass@1 and the unbiased pass@k where every task has k samples),
counts of verdicts, and per task every sample's verdict and why.

What this module deliberately does not do: compute verdicts (evaluation.scoring).
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from evaluation.datasets import Benchmark
from evaluation.execution import NOT_RUN
from evaluation.scoring import ScoreReport

RESULTS_FILE = "results.json"


def scores(benchmark: Benchmark, report: ScoreReport) -> list[dict]:
    rows = []
    for score in benchmark.scores:
        rows.append(
            {
                "name": score.name,
                "dataset": benchmark.info.label,
                **report.pass_at_k(score.parts),
                "tasks": len(report.tasks),
                "samples": sum(len(v) for v in report.tasks.values()),
            }
        )
    return rows


def verdict_counts(report: ScoreReport) -> dict[str, int]:
    return dict(Counter(s.why for v in report.tasks.values() for s in v).most_common())


def results_document(
    benchmark: Benchmark, report: ScoreReport, *, generation: dict | None = None, samples_file: str = ""
) -> dict:
    return {
        "benchmark": benchmark.name,
        "dataset": benchmark.info.to_json(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "samples_file": samples_file,
        "generation": generation,
        "execution": {
            "sandbox": report.sandbox,
            "workers": report.workers,
            "time_limits": asdict(report.time_limits),
            "python": platform.python_version(),
            "duration_s": round(report.duration_s, 2),
        },
        "scores": scores(benchmark, report),
        "verdicts": verdict_counts(report),
        "reference_errors": {
            task: {part: {str(i): why for i, why in errors.items()} for part, errors in parts.items()}
            for task, parts in report.reference_errors.items()
        },
        "tasks": {
            task_id: {
                "n": len(verdicts),
                "correct": {s.name: sum(v.passed_parts(s.parts) for v in verdicts) for s in benchmark.scores},
                "samples": [
                    {
                        "passed": v.passed,
                        "why": v.why,
                        "detail": v.detail,
                        "parts": {
                            name: {"passed": p.passed, "why": p.why, "detail": p.detail}
                            for name, p in v.parts.items()
                            if p.why != NOT_RUN
                        },
                    }
                    for v in verdicts
                ],
            }
            for task_id, verdicts in report.tasks.items()
        },
    }


def write_results(out_dir: Path, document: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ks(rows: list[dict]) -> list[str]:
    return [k for k in ("pass@1", "pass@10", "pass@100") if any(k in r for r in rows)]


def summary_table(document: dict) -> str:
    """Scores with their dataset and version on every line, then the verdict counts."""
    rows = document["scores"]
    ks = _ks(rows)
    head = ["score", "dataset", *ks, "tasks", "samples"]
    body = [
        [r["name"], r["dataset"], *[_pct(r.get(k)) for k in ks], str(r["tasks"]), str(r["samples"])]
        for r in rows
    ]
    lines = _table(head, body)
    verdicts = ", ".join(f"{why} {n}" for why, n in document["verdicts"].items())
    lines.append(f"verdicts: {verdicts}")
    if document["reference_errors"]:
        lines.append(
            f"canonical solution failed its own tests on {len(document['reference_errors'])} tasks: "
            + ", ".join(list(document["reference_errors"])[:8])
        )
    return "\n".join(lines)


def comparison_table(plain: dict, interpreter: dict, max_rounds: int) -> str:
    """Without and with the interpreter, side by side, per score."""
    head = ["score", "dataset", "without interpreter", f"with interpreter ({max_rounds} rounds)", "change"]
    body = []
    for a, b in zip(plain["scores"], interpreter["scores"], strict=True):
        x, y = a.get("pass@1"), b.get("pass@1")
        delta = "-" if x is None or y is None else f"{100 * (y - x):+.1f}"
        body.append([a["name"], a["dataset"], f"pass@1 {_pct(x)}", f"pass@1 {_pct(y)}", delta])
    return "\n".join(_table(head, body))


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    return [fmt(head), "  ".join("-" * w for w in widths), *[fmt(r) for r in body]]
