"""The execution tokens: added as special tokens, rows initialised to the mean by id, resize only when needed."""

from __future__ import annotations

import pytest

from interpreter.protocol import SPECIAL_TOKENS
from tests.training.tiny_base import EOT, cached_tiny_base
from training.tokens import RESIZE_MULTIPLE, prepare_tokens

pytestmark = pytest.mark.model  # builds (or loads) the tiny base model


def _load(padded: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = cached_tiny_base(padded=padded)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _rows(model):
    return (
        model.get_input_embeddings().weight.detach().clone(),
        model.get_output_embeddings().weight.detach().clone(),
    )


def test_padded_rows_take_the_new_tokens_without_resize():
    import torch

    model, tok = _load(padded=True)
    before_inp, before_out = _rows(model)
    old_vocab = len(tok)
    assert before_inp.shape[0] >= old_vocab + len(SPECIAL_TOKENS)  # like deepseek-coder's 32,256 rows
    added = prepare_tokens(model, tok, EOT)
    assert added.resized_to is None and added.old_vocab == old_vocab
    assert model.get_input_embeddings().weight.shape == before_inp.shape
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert sorted(ids) == added.new_ids == list(range(old_vocab, old_vocab + 4))
    assert all(t in tok.all_special_tokens for t in SPECIAL_TOKENS)
    assert tok.tokenize(SPECIAL_TOKENS[0] + "x")[0] == SPECIAL_TOKENS[0]  # never split
    after_inp, after_out = _rows(model)
    for before, after in ((before_inp, after_inp), (before_out, after_out)):
        mean = before[:old_vocab].mean(dim=0)  # the trained rows only, never the padded ones
        assert not torch.allclose(mean, before[: before.shape[0]].mean(dim=0))
        for i in ids:
            assert torch.allclose(after[i], mean, atol=1e-6)
        untouched = [i for i in range(before.shape[0]) if i not in ids]
        assert torch.equal(after[untouched], before[untouched])
    assert added.deviation < 1e-6
    assert added.token_ids[EOT] == tok.convert_tokens_to_ids(EOT)  # already there: not new


def test_a_full_matrix_is_resized_to_a_multiple_of_64():
    import torch

    model, tok = _load(padded=False)
    before_inp, before_out = _rows(model)
    old_vocab = len(tok)
    assert before_inp.shape[0] == old_vocab
    added = prepare_tokens(model, tok, "<|im_end|>")  # a template end-of-turn the tokenizer lacks
    assert len(added.new_ids) == len(SPECIAL_TOKENS) + 1
    rows = model.get_input_embeddings().weight.shape[0]
    assert added.resized_to == rows and rows % RESIZE_MULTIPLE == 0 and rows >= len(tok) > old_vocab
    assert model.get_output_embeddings().weight.shape[0] == rows and model.config.vocab_size == rows
    after_inp, after_out = _rows(model)
    for before, after in ((before_inp, after_inp), (before_out, after_out)):
        assert torch.equal(after[:old_vocab], before)
        for i in added.new_ids:
            assert torch.allclose(after[i], before.mean(dim=0), atol=1e-6)


def test_tokens_come_only_from_the_protocol():
    from pathlib import Path

    for path in Path(__file__).parents[2].joinpath("training").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for token in SPECIAL_TOKENS:
            assert token not in text, f"{path} spells {token}"


@pytest.mark.parametrize("name", ["autocoder_s_6.7b", "autocoder_33b", "autocoder_qw_7b"])
def test_paper_configs(name):
    import json
    from pathlib import Path

    from training.config import CONFIG_DIR, load_config_file

    values = load_config_file(str(CONFIG_DIR / f"{name}.yaml"))
    assert values["micro_batch"] == 8 and values["grad_accum"] == 4 and values["lr"] == 5e-5
    assert values["max_length"] == 5120 and values["epochs"] == 2 and values["dtype"] == "bf16"
    ds = json.loads(Path(values["deepspeed"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] == "auto"
    assert values["chat_template"] in ("deepseek_coder", "codeqwen")
