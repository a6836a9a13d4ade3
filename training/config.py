"""The SFT settings: one dataclass, loaded from a YAML config and overridden by command-line flags.

Every field of `SFTConfig` is a key of the YAML files in training/configs/ and a flag of
`python -m training sft` (`max_length` <-> `--max-length`); precedence is defaults < --config file < flags.
Unknown keys in a config file and bad values are one-line `ConfigError`s.

What it deliberately does not do: read data or build models (`training.sft`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from interpreter.protocol import RENDER_STYLES

CONFIG_DIR = Path(__file__).parent / "configs"
OVERFLOW_CHOICES = ("truncate", "drop")
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")


class ConfigError(ValueError):
    """A bad config file or flag value; the message is one line."""


def _f(default, help: str, group: str, **extra):
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class SFTConfig:
    # -- model -----------------------------------------------------------------------------------------
    base: str = _f(
        "", "base model: a local folder or a hub id (e.g. deepseek-ai/deepseek-coder-6.7b-base)", "model"
    )
    chat_template: str | None = _f(
        None,
        "shipped template name (deepseek_coder, codeqwen) or a .jinja file; none keeps the base's",
        "model",
    )
    end_of_turn: str | None = _f(
        None, "token that ends an assistant turn in that template (added if the tokenizer lacks it)", "model"
    )
    dtype: str = _f(
        "auto", "weights dtype: auto = bf16 on a GPU, fp32 on CPU", "model", choices=DTYPE_CHOICES
    )
    attn_implementation: str = _f(
        "sdpa", "attention implementation (sdpa, eager, flash_attention_2)", "model"
    )
    gradient_checkpointing: bool = _f(
        False, "recompute activations in the backward pass (less memory)", "model"
    )
    # -- data ------------------------------------------------------------------------------------------
    data: list[str] = field(
        default_factory=list,
        metadata={
            "help": "dialogue JSONL file(s) or folder(s), a datasets folder, or a hub dataset id",
            "group": "data",
        },
    )
    data_split: str = _f("train", "split of a datasets folder or hub dataset", "data")
    limit: int | None = _f(None, "use only the first N records", "data")
    render_style: str = _f(
        "tokens",
        "how execution turns are rendered (as at inference: --render-style of the chat)",
        "data",
        choices=RENDER_STYLES,
    )
    system_prompt: str | None = _f(None, "system prompt for dialogues without one (as the chat's)", "data")
    execution_role: str = _f("user", "role execution turns take in the template (as the chat's)", "data")
    max_length: int = _f(5120, "maximum tokens per training sequence", "data")
    overflow: str = _f(
        "truncate",
        "longer dialogues: cut at the last assistant turn that fits, or drop",
        "data",
        choices=OVERFLOW_CHOICES,
    )
    packing: bool = _f(False, "pack several dialogues per sequence (per-sequence position ids)", "data")
    num_proc: int | None = _f(None, "processes for encoding the data (datasets.map)", "data")
    # -- optimisation ----------------------------------------------------------------------------------
    epochs: float = _f(2.0, "training epochs", "training")
    max_steps: int = _f(-1, "stop after N optimizer steps (overrides --epochs when > 0)", "training")
    lr: float = _f(5e-5, "peak learning rate", "training")
    lr_scheduler: str = _f("cosine", "learning-rate schedule (transformers SchedulerType)", "training")
    warmup: float = _f(
        0.0, "learning-rate warmup: a share of the steps when < 1, else a step count", "training"
    )
    weight_decay: float = _f(0.0, "AdamW weight decay", "training")
    max_grad_norm: float = _f(1.0, "gradient clipping norm", "training")
    micro_batch: int = _f(8, "sequences per device per step", "training")
    grad_accum: int = _f(4, "micro-batches accumulated per optimizer step", "training")
    seed: int = _f(42, "seed for initialisation, shuffling and dropout", "training")
    deepspeed: str | None = _f(
        None, "DeepSpeed JSON (e.g. training/configs/deepspeed_zero3.json)", "training"
    )
    # -- LoRA ------------------------------------------------------------------------------------------
    lora: bool = _f(False, "train LoRA adapters instead of all weights", "lora")
    qlora: bool = _f(False, "LoRA on a 4-bit (nf4) base through bitsandbytes", "lora")
    lora_r: int = _f(16, "LoRA rank", "lora")
    lora_alpha: int = _f(32, "LoRA alpha", "lora")
    lora_dropout: float = _f(0.05, "LoRA dropout", "lora")
    lora_targets: str = _f("all-linear", "modules LoRA wraps (peft target_modules; comma-separated)", "lora")
    # -- output ----------------------------------------------------------------------------------------
    out: str = _f("", "output folder (checkpoints, then the trained model)", "output")
    resume: bool = _f(False, "continue from the last complete checkpoint in --out", "output")
    save_steps: int = _f(500, "save a checkpoint every N steps", "output")
    save_total_limit: int = _f(2, "checkpoints kept", "output")
    logging_steps: int = _f(10, "log loss, lr, tokens/s and ETA every N steps", "output")
    report_to: str = _f(
        "none", "experiment trackers (transformers report_to: none, tensorboard, wandb...)", "output"
    )

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("no base model: pass --base MODEL or a --config that names one")
        if not self.data:
            raise ConfigError("no training data: pass --data PATH")
        if not self.out:
            raise ConfigError("no output folder: pass --out DIR")
        if self.max_length < 16:
            raise ConfigError(f"--max-length {self.max_length} is too small")
        if self.micro_batch < 1 or self.grad_accum < 1:
            raise ConfigError("--micro-batch and --grad-accum must be at least 1")
        if self.lr <= 0:
            raise ConfigError("--lr must be positive")
        if self.qlora:
            self.lora = True
        for name in ("render_style", "overflow", "dtype"):
            choices = SFTConfig.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}")


FIELDS = {f.name: f for f in dataclasses.fields(SFTConfig)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_sft_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per SFTConfig field (grouped; `only` those named), defaulting to "not given" so the config
    file's value shows through."""
    parser.add_argument("--config", help="YAML config (training/configs/*.yaml); flags override its keys")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(SFTConfig):
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        kwargs: dict = {"help": meta["help"], "default": argparse.SUPPRESS, "dest": f.name}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "data":
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = _parser_for(f)
        group.add_argument(_flag(f.name), **kwargs)


def _parser_for(f: dataclasses.Field):
    kind = str(f.type)
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    return str


def _coerce(name: str, value):
    """A YAML value checked against the field's type (YAML already gives numbers and booleans)."""
    f = FIELDS[name]
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"config key {name} cannot be empty")
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind.startswith("list"):
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if kind.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name}: {value!r} is not a valid {kind}") from None


def load_config_file(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file() and (CONFIG_DIR / path).is_file():
        p = CONFIG_DIR / path
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p}: not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config is a mapping of keys to values")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; see python -m training sft --help")
    out = {k: _coerce(k, v) for k, v in data.items()}
    # A DeepSpeed file named relative to the config's folder works from any working directory.
    ds = out.get("deepspeed")
    if ds and not Path(ds).is_absolute() and not Path(ds).exists() and (p.parent / ds).exists():
        out["deepspeed"] = str(p.parent / ds)
    return out


def config_from_args(args: argparse.Namespace, validate: bool = True) -> SFTConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    values.update({k: v for k, v in vars(args).items() if k in FIELDS})
    config = SFTConfig(**values)
    if validate:
        config.validate()
    return config
