"""Upload and download of a big file through the app's workdir code, against a plain copy in the same run.

Run: `python -m benchmarks.file_transfer [--mb 50] [--repeats 5]`.

Upload: `app.files.upload_into` (the chat's Upload box) of an N MB file into a workdir. Download:
`app.files.snapshot_for_download` of a workdir holding one N MB file into an empty snapshot folder (what the
Files box does after an answer). Baseline: `shutil.copyfile` of the same file between the same folders (what
any copy costs on this disk). Prints the median seconds of each and the ratio to the baseline.

What it deliberately does not measure: Gradio's own HTTP transfer to and from the browser.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _median_s(work, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(mb: int, repeats: int) -> dict[str, float]:
    from app.files import snapshot_for_download, upload_into

    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        root = Path(tmp)
        source = root / "big.bin"
        with open(source, "wb") as out:
            for _ in range(mb):
                out.write(os.urandom(1024 * 1024))
        work = root / "work"
        work.mkdir()
        results = {}

        results["baseline_copy_s"] = _median_s(lambda: shutil.copyfile(source, work / "copy.bin"), repeats)
        (work / "copy.bin").unlink()
        results["upload_s"] = _median_s(lambda: upload_into(work, source), repeats)

        def download() -> None:
            snapshot = root / "snapshot"
            shutil.rmtree(snapshot, ignore_errors=True)
            copies = snapshot_for_download(work, snapshot)
            if len(copies) != 1:
                raise RuntimeError(f"expected one file in the snapshot, got {copies}")

        results["download_s"] = _median_s(download, repeats)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.file_transfer", description=__doc__)
    parser.add_argument("--mb", type=int, default=50, help="file size in MiB (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each, median kept (default 5)")
    args = parser.parse_args(argv)
    results = measure(args.mb, args.repeats)
    base = results["baseline_copy_s"]
    print(f"{args.mb} MiB file, median of {args.repeats}:")
    print(f"  baseline shutil.copyfile  {base:.3f} s")
    for name in ("upload_s", "download_s"):
        print(f"  {name[:-2]:<25} {results[name]:.3f} s  ({results[name] / base:.2f}x the baseline)")


if __name__ == "__main__":
    main()
