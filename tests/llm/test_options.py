"""llm.options: the shared backend flags, their checks, the API key's sources, and the adapter's arguments."""

from __future__ import annotations

import argparse

import pytest

from llm.openai_backend import DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_S
from llm.options import add_backend_arguments, backend_kwargs, check_backend_args, resolve_api_key


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_build_the_hf_backend_arguments():
    assert backend_kwargs(parse()) == {"backend": "hf", "model": None, "quantize": "auto", "dtype": "auto"}
    assert backend_kwargs(parse("--quantize", "none"))["quantize"] is None


def test_openai_arguments_carry_every_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    key = tmp_path / "key"
    key.write_text("  sk-from-file \n")
    args = parse(
        "--backend", "openai", "--base-url", "http://h:1/v1", "--model", "m", "--api-key-file", str(key),
        "--completions", "--tokenizer", "tok", "--max-retries", "0", "--request-timeout", "7.5",
    )  # fmt: skip
    kwargs = backend_kwargs(args)
    retry = kwargs.pop("retry")
    assert retry.max_retries == 0
    assert kwargs == {
        "backend": "openai",
        "model": "m",
        "base_url": "http://h:1/v1",
        "api_key": "sk-from-file",
        "tokenizer": "tok",
        "completions": True,
        "timeout_s": 7.5,
    }


def test_openai_defaults(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    kwargs = backend_kwargs(parse("--backend", "openai"))
    assert kwargs["retry"].max_retries == DEFAULT_MAX_RETRIES
    assert kwargs["timeout_s"] == DEFAULT_REQUEST_TIMEOUT_S
    assert kwargs["base_url"] is None  # the backend reads $OPENAI_BASE_URL itself


def test_api_key_sources_in_order(tmp_path, monkeypatch):
    key = tmp_path / "key"
    key.write_text("from-file\n")
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert resolve_api_key(parse("--api-key", "from-flag")) == "from-flag"
    assert resolve_api_key(parse("--api-key-file", str(key))) == "from-file"
    assert resolve_api_key(parse()) == "from-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert resolve_api_key(parse()) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "openai"], "--backend openai needs --base-url URL (or OPENAI_BASE_URL)"),
        (["--backend", "openai", "--base-url", "u", "--completions"], "--completions needs --tokenizer"),
        (
            ["--tokenizer", "t", "--max-retries", "1"],
            "--tokenizer/--max-retries only apply to --backend openai",
        ),
        (["--backend", "openai", "--base-url", "u", "--api-key-file", "/no/such"], "cannot read it"),
    ],
)
def test_bad_combinations_are_one_line_errors(argv, message, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError) as err:
        check_backend_args(parse(*argv))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_empty_key_file_is_refused(tmp_path):
    empty = tmp_path / "key"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        check_backend_args(parse("--backend", "openai", "--base-url", "u", "--api-key-file", str(empty)))


def test_flags_can_go_into_an_existing_group():
    parser = argparse.ArgumentParser()
    group = parser.add_argument_group("my model")
    add_backend_arguments(group)
    assert "my model" in parser.format_help() and "--max-retries" in parser.format_help()
