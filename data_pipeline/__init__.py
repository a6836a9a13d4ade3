"""AIEV-Instruct data pipeline (arXiv 2405.14906): seeds in, execution-verified multi-turn dialogues out.

    python -m data_pipeline generate --seeds PATH --out DIR --teacher-base-url URL --teacher-model NAME
    python -m data_pipeline stats DIR
    python -m data_pipeline merge SHARD_DIR... --out DIR

Modules, one job each:
    item           one item through the paper's steps I-IV (questioner, programmer, the interpreter loop)
    verify         what "verified" means (defined once)
    prompts/       the agents' prompts, one file per role and step, versioned (prompts.py loads them)
    client         an agent's model calls: disk cache, cost budget, rate limits, a bound on calls in flight
    cache, limits  the call cache; prices, budget and rate limiter
    generate       the run: checks before paid work, concurrency, progress, resume, summary
    runfolder      the run folder's files, resume and configuration check
    cleaning       decontamination and de-duplication applied to items (algorithms: decontaminate, dedup)
    seeds          seed loading and extraction from source trees
    stats, merge   the dataset table and plots; joining shards
    hub            --push-to-hub
    slurm/         a SLURM array script, one shard per task

What it deliberately does not do: train (see training/) or run code outside the interpreter's sandboxes.
"""
