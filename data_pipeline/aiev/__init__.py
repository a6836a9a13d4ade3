"""AIEV-Instruct's rounds as one resumable command: `python -m data_pipeline aiev --config F --run DIR`.

Every `round_size` verified items the new data is split 1:9 (test:train, seeded), the student is trained on
all train items so far, teacher and student are scored by pass@1 on the round's test split, and when the
student is strictly better the teaching stage ends: from then on the student plays questioner and
programmer itself (the self-learning stage). Modules:

    config   the YAML config, validated into dataclasses (one-line errors)
    state    the run folder's state machine: each step's status and result, written atomically
    rounds   the steps of one round (generate, split, train, score teacher/student, decide) and the loop
    scoring  an item -> an evaluation.Problem; pass@1 with a Wilson interval
    report   `aiev-report DIR`: the per-round table and the PNG of the two pass@1 curves
    cli      the two subcommands' parsers

What this package deliberately does not do: generate items (data_pipeline.generate), train
(training.sft) or run tests (evaluation.score_problems); it calls them.
"""
