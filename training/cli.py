"""`python -m training sft|render|merge`: argument parsing and one-line errors; the work is elsewhere.

    python -m training sft --config training/configs/autocoder_s_6.7b.yaml --data DIALOGUES.jsonl --out DIR
    python -m training render --base MODEL --data PATH [--limit N] [--json]
    python -m training merge --adapter DIR --out MERGED [--base MODEL]

Every key of a config file is also a flag of `sft` (`--max-length`, `--micro-batch`, `--lora`...);
flags win. Multi-process runs start this same command under `deepspeed`, `torchrun`,
`accelerate launch` or `srun` (training/slurm/sft.sbatch); see training/README.md.
"""

from __future__ import annotations

import argparse
import sys

from training.config import ConfigError, add_sft_arguments, config_from_args

# The SFT keys that decide what a record trains on: the flags `render` shares with `sft`.
RENDER_KEYS = (
    "base",
    "data",
    "data_split",
    "limit",
    "chat_template",
    "end_of_turn",
    "render_style",
    "system_prompt",
    "execution_role",
    "max_length",
    "overflow",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description="Fine-tune AutoCoder on dialogue records."
    )
    # The deepspeed launcher passes --local_rank=N before the sub-command; the rank comes from the
    # environment (LOCAL_RANK) anyway, so the value is accepted and ignored.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    sft = sub.add_parser("sft", help="supervised fine-tuning (full, ZeRO-3, LoRA or QLoRA)")
    add_sft_arguments(sft)
    render = sub.add_parser("render", help="show what each record trains on (tokens, labels, roles)")
    add_sft_arguments(render, only=RENDER_KEYS)
    render.add_argument(
        "--json", action="store_true", help="one JSON list per record: token, id, label, role"
    )
    merge = sub.add_parser("merge", help="merge a LoRA/QLoRA adapter into its base: a full model folder")
    merge.add_argument("--adapter", required=True, help="output folder of a --lora/--qlora run")
    merge.add_argument("--out", required=True, help="folder for the merged model")
    merge.add_argument("--base", help="base model (default: the one the adapter was trained on)")
    merge.add_argument(
        "--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"), help="merged weights dtype"
    )
    return parser


def _render(args) -> None:
    from transformers import GenerationConfig

    from training.data import load_dialogues
    from training.encode import EncodeOptions
    from training.sft import TrainingError, load_tokenizer
    from training.show import render_records
    from training.tokens import add_tokens

    config = config_from_args(args, validate=False)
    if not config.base or not config.data:
        raise ConfigError("render needs --base MODEL and --data PATH")
    tokenizer = load_tokenizer(config)
    add_tokens(tokenizer, config.end_of_turn)
    if config.end_of_turn:
        tokenizer.eos_token = config.end_of_turn
    eot = set()
    try:
        eos = GenerationConfig.from_pretrained(config.base).eos_token_id
        eot = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    except (OSError, ValueError):
        pass  # no generation_config.json: the tokenizer's eos is the end of turn
    if tokenizer.eos_token_id is None:
        raise TrainingError(f"{config.base}: the tokenizer has no eos token; pass --end-of-turn TOKEN")
    options = EncodeOptions(
        config.render_style, config.system_prompt, config.execution_role, config.max_length, config.overflow
    )
    dialogues = load_dialogues(config.data, config.data_split, config.limit)
    render_records(tokenizer, dialogues, options, eot, args.json)


def main(argv: list[str] | None = None) -> int:
    from training.data import DataError

    args = build_parser().parse_args(argv)
    try:
        from training.sft import TrainingError

        if args.command == "sft":
            from training.sft import run_sft

            run_sft(config_from_args(args))
        elif args.command == "render":
            _render(args)
        else:
            from training.merge import merge_adapter

            merge_adapter(args.adapter, args.out, args.base, args.dtype)
    except (ConfigError, DataError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        return 130
    return 0
