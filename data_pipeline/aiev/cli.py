"""The `aiev` and `aiev-report` subcommands of `python -m data_pipeline` (registered by data_pipeline.cli).

    python -m data_pipeline aiev --config aiev.yaml --run DIR     (rerun the same command to continue)
    python -m data_pipeline aiev-report DIR [--plot PNG] [--json]

Bad input (config, run folder made with another config) is one line on stderr and exit status 2, as for
`generate`; a step that cannot finish (generation incomplete, training failed) is one line and status 1.
What it deliberately does not do: any of the work (data_pipeline.aiev.rounds, .report).
"""

from __future__ import annotations

import sys


def add_aiev_parsers(commands) -> None:
    p = commands.add_parser(
        "aiev",
        help="AIEV-Instruct's rounds: generate, train the student, compare pass@1, switch to self-learning",
        description="Run AIEV-Instruct round after round as one resumable state machine in --run DIR: every "
        "round generates round_size verified items, splits them 1:9, trains the student on all train items so "
        "far, scores teacher and student pass@1 on the test split and switches to self-learning once the "
        "student is strictly better. Rerun the same command to continue after any stop.",
    )
    p.add_argument(
        "--config", required=True, metavar="FILE", help="the YAML config (data_pipeline/aiev.example.yaml)"
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run folder (created; holds state.json)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=cmd_aiev)

    r = commands.add_parser("aiev-report", help="per-round table and pass@1 plot of an aiev run folder")
    r.add_argument("dir", metavar="DIR", help="an aiev run folder")
    r.add_argument("--plot", metavar="PNG", help="where the pass@1 plot goes (default DIR/aiev_pass1.png)")
    r.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    r.set_defaults(func=cmd_report)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cmd_aiev(args) -> int:
    from data_pipeline.aiev.config import load_config
    from data_pipeline.aiev.rounds import AievError, Rounds
    from training.sft import TrainingError

    config = load_config(args.config)  # ConfigError: a ValueError, one line and status 2 (data_pipeline.cli)
    try:
        return Rounds(config, args.run, progress=args.progress).run()
    except (AievError, TrainingError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 1


def cmd_report(args) -> int:
    from data_pipeline.aiev.report import print_report

    return print_report(args.dir, plot_path=args.plot, as_json=args.json)
