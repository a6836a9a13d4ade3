"""The hf backend on the tiny trained model: streaming, stops, end of turn, cancel, KV-cache reuse."""

import threading

import pytest

from interpreter.protocol import RUN_START, RUN_STOP
from llm.base import GenerationParams, StreamStats
from llm.select import load_backend
from tests.fixtures.tiny_models import EOT, SCENARIOS

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend(tiny_autocoder_path):
    return load_backend("hf", str(tiny_autocoder_path))


@pytest.fixture(scope="module")
def backend_no_cache(tiny_autocoder_path):
    return load_backend("hf", str(tiny_autocoder_path), reuse_cache=False)


def run(backend, messages, **params):
    stats = StreamStats()
    chunks = list(backend.stream(messages, GenerationParams(**params), stats=stats))
    return chunks, stats


def test_streams_token_by_token_keeping_special_tokens_and_stops_at_run_stop(backend):
    sc = SCENARIOS["print"]
    chunks, stats = run(backend, [{"role": "user", "content": sc.prompt}], stop=[RUN_STOP])
    assert "".join(chunks) == sc.reply
    assert len(chunks) > 5  # streamed, not delivered in one piece
    assert RUN_START in chunks and chunks[-1] == RUN_STOP  # special tokens arrive whole, as text
    assert stats.stop_reason == "stop"
    assert stats.generated_tokens == len(chunks)


def test_without_the_stop_string_it_runs_on_to_end_of_turn_which_is_not_emitted(backend):
    sc = SCENARIOS["print"]
    text = "".join(run(backend, [{"role": "user", "content": sc.prompt}])[0])
    assert text == sc.reply  # the model ends its turn right after the block
    assert EOT not in text


def test_end_of_turn_comes_from_the_tokenizer(backend):
    chunks, stats = run(backend, [{"role": "user", "content": "hello"}], stop=[RUN_STOP])
    assert "".join(chunks) == SCENARIOS["hello"].reply
    assert stats.stop_reason == "end_of_turn"
    assert EOT not in "".join(chunks)


def test_multi_token_stop_string_cuts_right_after_it(backend):
    sc = SCENARIOS["plot"]
    text = "".join(run(backend, [{"role": "user", "content": sc.prompt}], stop=["plt.plot"])[0])
    assert text == sc.reply[: sc.reply.index("plt.plot") + len("plt.plot")]


def test_max_new_tokens(backend):
    chunks, stats = run(backend, [{"role": "user", "content": "plot"}], max_new_tokens=4)
    assert stats.generated_tokens == 4 and stats.stop_reason == "max_tokens"
    assert SCENARIOS["plot"].reply.startswith("".join(chunks))


def test_cancel_stops_between_tokens(backend):
    cancel = threading.Event()
    stats = StreamStats()
    got = []
    for piece in backend.stream([{"role": "user", "content": "plot"}], GenerationParams(), cancel, stats):
        got.append(piece)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3 and stats.stop_reason == "cancelled"


def test_sampling_runs_with_temperature_and_top_p(backend):
    import torch

    hello = [{"role": "user", "content": "hello"}]
    script = SCENARIOS["hello"].reply
    torch.manual_seed(0)
    chunks, stats = run(backend, hello, temperature=0.7, top_p=0.9)
    # The tiny model is confident enough that moderate sampling still yields its script.
    assert "".join(chunks) == script

    def replies(**params) -> list[str]:
        out = []
        for seed in range(4):
            torch.manual_seed(seed)
            out.append("".join(run(backend, hello, max_new_tokens=12, **params)[0]))
        return out

    # A very high temperature flattens the distribution: the replies leave the script (fails if ignored).
    hot = replies(temperature=50.0, top_p=1.0)
    assert all(not script.startswith(r) for r in hot), hot
    assert len(set(hot)) > 1, hot  # and they are sampled, not one fixed wrong answer
    # The same temperature with a tiny top_p keeps only the most likely token: greedy decoding, the script
    # again (fails if top_p is ignored).
    greedy = replies(temperature=0.0)
    assert all(g and script.startswith(g) for g in greedy), greedy
    assert replies(temperature=50.0, top_p=1e-9) == greedy


def rounds(backend, scenario, result_text):
    """Two rounds as the loop drives them: reply with a block, then the answer after the result."""
    messages = [{"role": "user", "content": scenario.prompt}]
    first, s1 = run(backend, messages, stop=[RUN_STOP])
    messages += [{"role": "assistant", "content": "".join(first)}, {"role": "user", "content": result_text}]
    second, s2 = run(backend, messages, stop=[RUN_STOP])
    return "".join(first), "".join(second), s1, s2


@pytest.mark.parametrize("name", ["print", "plot", "sleep"])
def test_cache_reuse_gives_identical_replies_with_less_prefill(backend, backend_no_cache, name):
    sc = SCENARIOS[name]
    result = f"result.stdout:\n{sc.output}\nresult.stderr:\nNone"
    a1, a2, s1, s2 = rounds(backend, sc, result)
    b1, b2, t1, t2 = rounds(backend_no_cache, sc, result)
    assert (a1, a2) == (b1, b2) == (sc.reply, sc.final)
    assert s2.prompt_tokens == t2.prompt_tokens
    assert t2.prefill_tokens == t2.prompt_tokens  # without reuse: the whole dialogue again
    # With reuse only the tokens after the cached reply are computed (the stop token, the result, the
    # template's markers): far fewer than the whole dialogue.
    assert s2.prefill_tokens < s2.prompt_tokens - s1.prompt_tokens
    assert s2.prefill_tokens <= t2.prompt_tokens - s1.prompt_tokens - s1.generated_tokens + 1


def test_cache_survives_an_unrelated_chat_and_a_shared_prefix(backend):
    # A second, different chat reuses only the shared template prefix, and still answers correctly.
    run(backend, [{"role": "user", "content": "print"}], stop=[RUN_STOP])
    chunks, stats = run(backend, [{"role": "user", "content": "hello"}])
    assert "".join(chunks) == SCENARIOS["hello"].reply
    assert 0 < stats.prefill_tokens < stats.prompt_tokens


def test_identical_prompt_still_prefills_one_token(backend):
    messages = [{"role": "user", "content": "hello"}]
    run(backend, messages)
    chunks, stats = run(backend, messages)
    assert "".join(chunks) == SCENARIOS["hello"].reply
    assert stats.prefill_tokens == 1


def test_abandoned_stream_leaves_a_usable_cache(backend, backend_no_cache):
    gen = backend.stream([{"role": "user", "content": "plot"}], GenerationParams())
    next(gen)
    next(gen)
    gen.close()  # the consumer walked away mid-reply
    sc = SCENARIOS["sleep"]
    assert "".join(run(backend, [{"role": "user", "content": sc.prompt}], stop=[RUN_STOP])[0]) == sc.reply


def test_a_dialogue_the_template_rejects_is_a_one_line_error(tiny_autocoder_path, tmp_path):
    import shutil

    from llm.base import BackendError

    folder = tmp_path / "strict"
    shutil.copytree(tiny_autocoder_path, folder)
    # A template that, like many real ones, insists on alternating roles.
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    strict = load_backend("hf", str(folder))
    with pytest.raises(BackendError, match="rejected the dialogue: Conversation roles must alternate") as err:
        list(
            strict.stream(
                [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], GenerationParams()
            )
        )
    assert "\n" not in str(err.value)
