"""What a dialogue trains on: exact masks per role, the shipped templates' formats, truncation, and the
train/inference consistency (the ids the chat feeds the model equal the training ids of that prefix)."""

from __future__ import annotations

import pytest

from interpreter.protocol import OUTPUT_START, OUTPUT_STOP, RENDER_STYLES, render_dialogue
from tests.training.tiny_base import EOT, cached_tiny_base, run_json, taught_dialogue
from training.encode import (
    IGNORE_INDEX,
    STATUS_INCONSISTENT,
    STATUS_NO_ASSISTANT,
    STATUS_OK,
    STATUS_TOO_LONG,
    STATUS_TRUNCATED,
    EncodeOptions,
    Encoder,
)
from training.templates import load_chat_template
from training.tokens import add_tokens

pytestmark = pytest.mark.model  # builds (or loads) the tiny base model


@pytest.fixture(scope="module")
def base_path():
    return cached_tiny_base()


def _tokenizer(base_path, template: str = "deepseek_coder", end_of_turn: str = EOT):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    tok.chat_template = load_chat_template(template)
    add_tokens(tok, end_of_turn)
    tok.eos_token = end_of_turn
    return tok


def _dialogue() -> list[dict]:
    return [
        {"role": "system", "content": "You run code."},
        {"role": "user", "content": "print"},
        {
            "role": "assistant",
            "content": "I will compute it.\n<API_RUN_START>```python\nprint(6*7)\n```<API_RUN_STOP>",
        },
        {
            "role": "execution",
            "content": "result.stdout:\n42\nresult.stderr:\nNone",
            "runs": [run_json("print(6*7)", "42\n")],
        },
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello!"},
    ]


def test_deepseek_template_matches_the_released_format(base_path):
    tok = _tokenizer(base_path)
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "r"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|begin|>S\nHuman: q\nAssistant: a<|EOT|>\nHuman: r\nAssistant:"
    # A reply streamed after "Assistant:" starts with its space; re-rendered it is not doubled.
    again = tok.apply_chat_template([*messages[:2], {"role": "assistant", "content": " a"}], tokenize=False)
    assert again == "<|begin|>S\nHuman: q\nAssistant: a<|EOT|>\n"


def test_codeqwen_template_matches_chatml(base_path):
    tok = _tokenizer(base_path, "codeqwen", "<|im_end|>")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
        "<|im_start|>assistant\na<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("template,eot", [("deepseek_coder", EOT), ("codeqwen", "<|im_end|>")])
def test_mask_per_role_is_exact(base_path, template, eot):
    tok = _tokenizer(base_path, template, eot)
    dialogue = _dialogue()
    encoded = Encoder(tok, EncodeOptions(style="tokens")).encode(dialogue, with_roles=True)
    assert encoded.status == STATUS_OK
    ids, labels, roles = encoded.input_ids, encoded.labels, encoded.roles
    assert len(ids) == len(labels) == len(roles)
    eot_id = tok.convert_tokens_to_ids(eot)
    # Each assistant turn is trained on exactly: its content's tokens (execution tokens included) + end of turn.
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    assert all(labels[i] == ids[i] for i in trained)
    runs, run = [], []
    for i in trained:
        if run and i != run[-1] + 1:
            runs.append(run)
            run = []
        run.append(i)
    runs.append(run)
    assistant = [m["content"] for m in dialogue if m["role"] == "assistant"]
    assert len(runs) == len(assistant)
    for span, content in zip(runs, assistant, strict=True):
        text = tok.decode([ids[i] for i in span], skip_special_tokens=False)
        assert text.strip(" ") == content + eot
        assert ids[span[-1]] == eot_id
        assert {roles[i] for i in span} == {"assistant"}
    # Everything of the other roles is masked, the execution output and its tokens too.
    for role in ("system", "user", "execution"):
        positions = [i for i, r in enumerate(roles) if r == role]
        assert positions, role
        assert all(labels[i] == IGNORE_INDEX for i in positions), role
    execution_text = tok.decode(
        [ids[i] for i, r in enumerate(roles) if r == "execution"], skip_special_tokens=False
    )
    assert OUTPUT_START in execution_text and OUTPUT_STOP in execution_text and "42" in execution_text
    assert "result.stdout" not in execution_text  # rendered from the runs, not the demo-style content
    for token in ("<API_RUN_START>", "<API_RUN_STOP>"):
        tid = tok.convert_tokens_to_ids(token)
        assert tid in [ids[i] for i in trained]
    for token in (OUTPUT_START, OUTPUT_STOP):
        tid = tok.convert_tokens_to_ids(token)
        assert all(labels[i] == IGNORE_INDEX for i, t in enumerate(ids) if t == tid)


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("template,eot", [("deepseek_coder", EOT), ("codeqwen", "<|im_end|>")])
def test_inference_prompt_equals_training_prefix(base_path, style, template, eot):
    """The chat (llm.hf.HFBackend.prompt_ids on interpreter.protocol.render_dialogue, as the loop calls
    them) feeds the model exactly the training ids before every assistant turn."""
    from transformers import AutoModelForCausalLM

    from llm.hf import HFBackend

    tok = _tokenizer(base_path, template, eot)
    backend = HFBackend(AutoModelForCausalLM.from_pretrained(base_path), tok)
    dialogue = _dialogue()
    system = None if template == "deepseek_coder" else "Be brief."
    encoded = Encoder(tok, EncodeOptions(style=style, system_prompt=system)).encode(dialogue[1:])
    assert encoded.status == STATUS_OK
    checked = 0
    for k, message in enumerate(dialogue[1:]):
        if message["role"] != "assistant":
            continue
        prompt = backend.prompt_ids(render_dialogue(dialogue[1 : 1 + k], style, system, "user"))
        assert encoded.input_ids[: len(prompt)] == prompt
        assert encoded.labels[len(prompt) - 1] == IGNORE_INDEX  # the prompt itself is never trained on
        assert encoded.labels[len(prompt)] != IGNORE_INDEX  # the reply starts right after it
        checked += 1
    assert checked == 3


def test_a_template_that_is_not_prefix_stable_is_caught(base_path):
    tok = _tokenizer(base_path)
    # A generation prompt ending in a space the reply's first word would have merged with.
    tok.chat_template = tok.chat_template.replace(
        "{{- 'Assistant:' -}}\n{%- endif -%}", "{{- 'Assistant: ' -}}\n{%- endif -%}"
    )
    assert tok.apply_chat_template(
        [{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True
    ).endswith("Assistant: ")
    encoded = Encoder(tok, EncodeOptions()).encode(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "will"}]
    )
    assert encoded.status == STATUS_INCONSISTENT and "message 1" in encoded.note


def test_too_long_dialogues_are_cut_at_turn_boundaries_or_dropped(base_path):
    tok = _tokenizer(base_path)
    dialogue = _dialogue()
    whole = Encoder(tok, EncodeOptions()).encode(dialogue)
    first_end = max(i for i, t in enumerate(whole.input_ids) if t == tok.convert_tokens_to_ids(EOT)) - 1
    # A limit that the whole dialogue exceeds but its first two exchanges fit.
    eots = [i for i, t in enumerate(whole.input_ids) if t == tok.convert_tokens_to_ids(EOT)]
    limit = eots[1] + 1
    assert limit < len(whole.input_ids) and first_end > 0
    cut = Encoder(tok, EncodeOptions(max_length=limit)).encode(dialogue)
    assert cut.status == STATUS_TRUNCATED and cut.turns_cut == 1
    assert cut.input_ids == whole.input_ids[:limit] and cut.labels == whole.labels[:limit]
    assert cut.input_ids[-1] == tok.convert_tokens_to_ids(EOT)
    dropped = Encoder(tok, EncodeOptions(max_length=limit, overflow="drop")).encode(dialogue)
    assert dropped.status == STATUS_TOO_LONG
    tiny = Encoder(tok, EncodeOptions(max_length=eots[0])).encode(dialogue)
    assert tiny.status == STATUS_TOO_LONG
    none = Encoder(tok, EncodeOptions()).encode([{"role": "user", "content": "q"}])
    assert none.status == STATUS_NO_ASSISTANT


def test_taught_dialogue_renders_its_execution_from_runs(base_path):
    tok = _tokenizer(base_path)
    encoded = Encoder(tok, EncodeOptions(style="demo")).encode(taught_dialogue(), with_roles=True)
    text = tok.decode(encoded.input_ids, skip_special_tokens=False)
    assert "result.stdout:\n42" in text and OUTPUT_START not in text


@pytest.mark.parametrize("template,eot", [("deepseek_coder", EOT), ("codeqwen", "<|im_end|>")])
def test_generation_blocks_mark_what_is_trained(base_path, template, eot):
    """The shipped templates' {% generation %} blocks (transformers' assistant masks, TRL's assistant-only
    loss) mark exactly the tokens this package trains on."""
    tok = _tokenizer(base_path, template, eot)
    dialogue = _dialogue()
    encoded = Encoder(tok, EncodeOptions(style="tokens")).encode(dialogue)
    rendered = render_dialogue(dialogue, "tokens")
    out = tok.apply_chat_template(
        rendered, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = out["assistant_masks"][: len(encoded.input_ids)]
    assert out["input_ids"][: len(encoded.input_ids)] == encoded.input_ids
    assert mask == [int(label != IGNORE_INDEX) for label in encoded.labels]
