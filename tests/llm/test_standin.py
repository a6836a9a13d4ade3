"""The stand-in model: built from the PyPI GGUF package, cached as a plain HF folder, and it streams.

Building takes about a minute the first time (then the cache under $AUTOCODER_CACHE or ~/.cache/autocoder
is reused, as the app would reuse it).
"""

import pytest

from llm.base import GenerationParams, StreamStats
from llm.models import DEFAULT_MODEL
from llm.select import load_backend
from llm.standin import GEMMA_END_OF_TURN

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def standin():
    import torch

    from tests.conftest import require

    require(
        not torch.cuda.is_available(), "with a GPU the default model is AutoCoder itself, not the stand-in"
    )
    return load_backend("hf", None)


def test_default_model_without_gpu_is_the_standin_and_says_so(standin):
    notice = standin.notice
    assert "stand-in" in notice and "not AutoCoder" in notice and "no GPU" in notice
    assert f"--model {DEFAULT_MODEL}" in notice and "--backend openai" in notice
    assert "\n" not in notice


def test_standin_folder_is_a_plain_hf_model_with_gemma_chat_format(standin):
    from pathlib import Path

    folder = Path(standin.model.name_or_path)
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.gguf"))
    assert "quantization_config" not in (folder / "config.json").read_text()
    prompt = standin.tokenizer.decode(
        standin.prompt_ids([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])
    )
    assert prompt == "<bos><start_of_turn>user\nS\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    eot = standin.tokenizer.convert_tokens_to_ids(GEMMA_END_OF_TURN)
    assert eot in standin.model.generation_config.eos_token_id


def test_standin_streams_and_reuses_its_cache(standin):
    messages = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
    stats = StreamStats()
    chunks = list(standin.stream(messages, GenerationParams(max_new_tokens=8), stats=stats))
    assert len(chunks) >= 2 and "".join(chunks).strip()
    assert stats.generated_tokens > 0
    messages += [
        {"role": "assistant", "content": "".join(chunks)},
        {"role": "user", "content": "result.stdout:\n3"},
    ]
    again = StreamStats()
    list(standin.stream(messages, GenerationParams(max_new_tokens=4), stats=again))
    assert again.prefill_tokens < again.prompt_tokens - stats.prompt_tokens


def test_incremental_decoding_matches_a_full_decode_with_gemmas_tokenizer(standin):
    # SentencePiece-style tokenizers drop or add leading spaces when decoding a token on its own.
    from llm.decoding import IncrementalDecoder

    tok = standin.tokenizer
    text = "def add(a, b):\n    return a + b  # café ✓ 🙂\n\n<start_of_turn>model\n  indented"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tok)
    deltas = [decoder.push(i) for i in ids]
    assert "".join(deltas) == tok.decode(ids, skip_special_tokens=False)
    assert not any("\ufffd" in d for d in deltas)
