"""The `aiev` YAML config: read, checked and turned into dataclasses; every problem is one line.

    seeds: PATH                # as `generate --seeds`: JSONL/Parquet file or folder, or a datasets hub id
    seed_field: seed
    round_size: 2000           # verified items per round (the paper's)
    max_rounds: 10
    max_generation_passes: 3   # a round short of round_size after dedup/rejections takes more seeds, this often
    split: {test_share: 0.1, seed: 0}              # 1:9 test:train, shuffled with this seed
    comparison: strictly_better                    # the paper's rule; or not_worse
    teacher: {base_url: URL, model: NAME, api_key_file: PATH}   # else $OPENAI_API_KEY
    generation: [--concurrency, "32", ...]         # more `data_pipeline generate` flags, verbatim
    student:
      base: MODEL              # folder or hub id the first student is trained from
      dtype: auto              # in-process (hf backend) loading, for scoring and self-learning
      quantize: none
      server: null             # or {base_url, model, api_key_file}: an OpenAI-compatible server (vLLM) that
                               # serves the latest student for self-learning generation
    training:
      config: training/configs/autocoder_s_6.7b.yaml   # optional; `settings` override its keys
      settings: {max_steps: 200}                       # any SFTConfig key
      start_from: base         # base: each round trains the base on all train items so far; last: the last student
      launcher: null           # null: in-process; else a command prefix run with `--config ROUND_YAML`,
                               # e.g. "deepspeed --num_gpus 8 -m training sft" or "sbatch --wait train.sbatch"
    evaluation: {with_interpreter: false, max_new_tokens: 1024, sandbox: local, concurrency: 4}

Relative paths are taken from the config file's folder. What it deliberately does not do: run anything, or
decide which keys a finished step depends on (data_pipeline.aiev.rounds does).
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

COMPARISONS = ("strictly_better", "not_worse")
START_FROM = ("base", "last")
DEFAULT_ROUND_SIZE = 2000  # the paper: every 2,000 verified items
DEFAULT_TEST_SHARE = 0.1  # the paper: the new data split 1:9 into test and train


class ConfigError(ValueError):
    """A bad aiev config; the message is one line naming the key."""


@dataclass
class Split:
    test_share: float = DEFAULT_TEST_SHARE
    seed: int = 0


@dataclass
class Endpoint:
    base_url: str = ""
    model: str = ""
    api_key_file: str | None = None


@dataclass
class Student:
    base: str = ""
    dtype: str = "auto"
    quantize: str = "none"
    server: Endpoint | None = None


@dataclass
class Training:
    config: str | None = None
    settings: dict = field(default_factory=dict)
    start_from: str = "base"
    launcher: str | None = None


@dataclass
class Evaluation:
    # The paper compares pass@1 of plain answers (greedy, one sample); the interpreter loop is a choice.
    with_interpreter: bool = False
    max_new_tokens: int = 1024
    sandbox: str = "local"
    concurrency: int = 4


@dataclass
class AievConfig:
    seeds: str = ""
    seed_field: str = "seed"
    round_size: int = DEFAULT_ROUND_SIZE
    max_rounds: int = 10
    max_generation_passes: int = 3
    split: Split = field(default_factory=Split)
    comparison: str = "strictly_better"
    teacher: Endpoint = field(default_factory=Endpoint)
    generation: list[str] = field(default_factory=list)
    student: Student = field(default_factory=Student)
    training: Training = field(default_factory=Training)
    evaluation: Evaluation = field(default_factory=Evaluation)

    def section(self, name: str):
        value = getattr(self, name)
        return asdict(value) if hasattr(value, "__dataclass_fields__") else value


_NESTED = {
    "split": Split,
    "teacher": Endpoint,
    "student": Student,
    "training": Training,
    "evaluation": Evaluation,
}


def _typed(where: str, value, kind):
    """`value` checked against the dataclass field's type (YAML already gives numbers and booleans)."""
    kind = str(kind)
    if value is None and "None" in kind:
        return None
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),
        "list[str]": isinstance(value, list) and all(isinstance(v, str | int | float) for v in value),
        "str": isinstance(value, str),
    }
    base = kind.replace(" | None", "")
    if base not in ok:
        raise AssertionError(f"unhandled config type {kind}")
    if not ok[base]:
        raise ConfigError(f"{where}: {value!r} is not a {base}")
    if base == "float":
        return float(value)
    if base == "list[str]":
        return [str(v) for v in value]
    return value


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'}: expected a mapping of keys to values")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{where + '.' if where else ''}{unknown[0]}: unknown key (known: {', '.join(known)})"
        )
    values = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        nested = _NESTED.get(name) if cls is AievConfig else (Endpoint if name == "server" else None)
        if nested is not None and value is not None:
            values[name] = _build(nested, value, key)
        else:
            values[name] = _typed(key, value, known[name].type)
    return cls(**values)


def _resolve(path: str | None, folder: Path) -> str | None:
    """A path relative to the config file's folder, when such a file exists there (hub ids stay as given)."""
    if not path:
        return path
    path = str(Path(path).expanduser()) if path.startswith("~") else path
    if Path(path).is_absolute():
        return path
    candidate = folder / path
    return str(candidate) if candidate.exists() else path


def validate(config: AievConfig) -> AievConfig:
    if not config.seeds:
        raise ConfigError("seeds: missing (a seed file or folder, or a datasets hub id)")
    if config.round_size < 1:
        raise ConfigError(f"round_size: must be at least 1, got {config.round_size}")
    if config.max_rounds < 1 or config.max_generation_passes < 1:
        raise ConfigError("max_rounds and max_generation_passes must be at least 1")
    if not 0.0 < config.split.test_share < 1.0:
        raise ConfigError(f"split.test_share: must be between 0 and 1, got {config.split.test_share}")
    if config.comparison not in COMPARISONS:
        raise ConfigError(f"comparison: must be one of {', '.join(COMPARISONS)}, got {config.comparison!r}")
    if not config.teacher.base_url:
        raise ConfigError(
            "teacher.base_url: missing (an OpenAI-compatible server, e.g. https://api.openai.com/v1)"
        )
    if not config.student.base:
        raise ConfigError("student.base: missing (a model folder or hub id to train the student from)")
    if config.student.server is not None and not config.student.server.base_url:
        raise ConfigError("student.server.base_url: missing")
    if config.training.start_from not in START_FROM:
        raise ConfigError(f"training.start_from: must be one of {', '.join(START_FROM)}")
    if config.training.launcher is not None:
        try:
            if not shlex.split(config.training.launcher):
                raise ValueError
        except ValueError:
            raise ConfigError(f"training.launcher: not a command: {config.training.launcher!r}") from None
    reserved = {"base", "data", "out", "resume"} & set(config.training.settings)
    if reserved:
        raise ConfigError(f"training.settings.{sorted(reserved)[0]}: set by aiev for each round; remove it")
    from training.config import FIELDS

    unknown = sorted(set(config.training.settings) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"training.settings.{unknown[0]}: not a training key (see python -m training sft --help)"
        )
    if config.evaluation.max_new_tokens < 1 or config.evaluation.concurrency < 1:
        raise ConfigError("evaluation.max_new_tokens and evaluation.concurrency must be at least 1")
    owned = {"--seeds", "--seeds-from-source", "--out", "--teacher-base-url", "--teacher-model", "--stage"}
    clash = sorted(owned & {a.split("=", 1)[0] for a in config.generation})
    if clash:
        raise ConfigError(f"generation: {clash[0]} is set by aiev for each round; remove it")
    _check_generation_flags(config.generation)
    return config


def _check_generation_flags(flags: list[str]) -> None:
    """The generator's own parser judges the extra flags now, not rounds later (argparse's line, reworded)."""
    import contextlib
    import io

    from data_pipeline.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(["generate", "--seeds", "-", "--out", "-", *flags])
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        why = lines[-1].split("error: ", 1)[-1] if lines else "not accepted"
        raise ConfigError(f"generation: {why}") from None


def load_config(path: str | Path) -> AievConfig:
    """The config in `path`, checked (ConfigError with one line otherwise)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p}: not valid YAML: {first}") from None
    try:
        config = _build(AievConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    folder = p.resolve().parent
    config.seeds = _resolve(config.seeds, folder) or ""
    config.student.base = _resolve(config.student.base, folder) or ""
    config.training.config = _resolve(config.training.config, folder)
    config.teacher.api_key_file = _resolve(config.teacher.api_key_file, folder)
    try:
        return validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
