"""One dialogue -> training token ids and labels, rendered exactly as the chat renders it at inference.

Rendering is the inference path itself: `interpreter.protocol.render_dialogue(messages, style,
system_prompt, execution_role)` (what `interpreter.loop` does before every generation), then the
tokenizer's chat template through `tokenizer.apply_chat_template(..., tokenize=True, return_dict=False)`
(what `llm.hf.HFBackend.prompt_ids` does, with add_generation_prompt=True). The training sequence is the
whole rendered dialogue; for every assistant turn k the ids the chat would feed the model before that turn
(the first k messages rendered with add_generation_prompt=True) must be a token prefix of it. That is
checked for every record: a template or tokenizer for which it fails would teach the model continuations
of prompts it never sees, so such records are dropped and counted ("inconsistent"), never trained on.

Labels: the ids of assistant turns from the end of their generation prompt through their end-of-turn token
(execution tokens included); everything else (system, user and execution turns, role headers, the text
after an end-of-turn token) is -100. The end of a turn is found with the template itself (the dialogue
up to and including the turn, rendered) and the end-of-turn ids (the tokenizer's eos and the model's
generation_config eos), so any template works, {% generation %} blocks or not.

Too long (over `max_length`): "truncate" keeps the dialogue up to the last assistant turn that ends
within the limit (cut at a turn boundary), "drop" drops it; a dialogue whose first assistant turn does not
fit is dropped either way. Every outcome is a `status` the caller counts.

What it deliberately does not do: read files (`training.data`), pad or pack (`training.batching`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from interpreter.protocol import render_dialogue

IGNORE_INDEX = -100  # label of a token not trained on (transformers' loss ignores it)

STATUS_OK = "ok"
STATUS_TRUNCATED = "truncated"  # later turns cut off to fit max_length
STATUS_TOO_LONG = "too_long"  # dropped: over max_length (overflow "drop", or not even one turn fits)
STATUS_NO_ASSISTANT = "no_assistant"  # dropped: nothing to train on
STATUS_INCONSISTENT = "inconsistent"  # dropped: an inference prompt is not a prefix of the training ids
STATUS_TEMPLATE_ERROR = "template_error"  # dropped: the chat template rejected the dialogue
KEPT = (STATUS_OK, STATUS_TRUNCATED)


@dataclass
class EncodeOptions:
    style: str = "tokens"  # interpreter.protocol.RENDER_STYLES
    system_prompt: str | None = None
    execution_role: str = "user"
    max_length: int = 5120
    overflow: str = "truncate"  # "truncate" | "drop"


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    status: str
    turns_cut: int = 0  # assistant turns removed by truncation
    note: str = ""  # why a record was dropped (one line)
    roles: list[str] = field(default_factory=list)  # per token, with_roles=True only

    @property
    def kept(self) -> bool:
        return self.status in KEPT


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Encoder:
    """Encodes dialogues for one tokenizer (with its chat template) and one set of render options."""

    def __init__(self, tokenizer, options: EncodeOptions, end_of_turn_ids: Iterable[int] = ()):
        self.tokenizer = tokenizer
        self.options = options
        self.eot_ids = {int(i) for i in end_of_turn_ids}
        if tokenizer.eos_token_id is not None:
            self.eot_ids.add(int(tokenizer.eos_token_id))

    def model_messages(self, messages: list[dict]) -> list[dict]:
        """The messages the model sees (execution turns rendered), exactly as the chat's loop renders them."""
        o = self.options
        return render_dialogue(messages, o.style, o.system_prompt, o.execution_role)

    def _ids(self, messages: list[dict], add_generation_prompt: bool) -> list[int]:
        return self._batch_ids([messages], add_generation_prompt)[0]

    def _batch_ids(self, conversations: list[list[dict]], add_generation_prompt: bool) -> list[list[int]]:
        # The call llm.hf.HFBackend.prompt_ids makes, for several conversations at once (the template is
        # rendered per conversation and the strings tokenized in one batch: the same ids, less overhead).
        out = self.tokenizer.apply_chat_template(
            conversations, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
        if hasattr(out, "tolist"):
            out = out.tolist()
        if len(conversations) == 1 and out and not isinstance(out[0], list):
            out = [out]
        return [[int(i) for i in ids] for ids in out]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """What the chat feeds the model before the next assistant turn of `messages` (a DESIGN.md dialogue)."""
        return self._ids(self.model_messages(messages), True)

    def encode(self, messages: list[dict], with_roles: bool = False) -> Encoded:
        rendered = self.model_messages(messages)
        # render_dialogue maps messages 1:1, after a system prompt it may put first.
        origin = ["system"] * (len(rendered) - len(messages)) + [m["role"] for m in messages]
        turns = [i for i, m in enumerate(rendered) if m["role"] == "assistant"]
        if not turns:
            return Encoded([], [], STATUS_NO_ASSISTANT, note="no assistant turn to train on")
        try:
            prompts = self._batch_ids([rendered[:k] for k in turns], True)
            full, *upto = self._batch_ids([rendered] + [rendered[: k + 1] for k in turns], False)
            spans = []
            for k, prompt, through in zip(turns, prompts, upto, strict=True):
                if full[: len(prompt)] != prompt:
                    at = common_prefix_len(full, prompt)
                    return Encoded(
                        [],
                        [],
                        STATUS_INCONSISTENT,
                        note=f"message {k}: the inference prompt differs from the training ids at token {at}",
                    )
                end = common_prefix_len(full, through)
                ends = [i for i in range(len(prompt), end) if full[i] in self.eot_ids]
                spans.append((len(prompt), ends[-1] + 1 if ends else end))
        except Exception as exc:  # jinja's own errors ("roles must alternate", raise_exception)
            text = str(exc).strip()
            return Encoded([], [], STATUS_TEMPLATE_ERROR, note=text.splitlines()[0] if text else repr(exc))

        status, cut = STATUS_OK, 0
        limit = self.options.max_length
        if spans[-1][1] > limit:
            fitting = [s for s in spans if s[1] <= limit]
            if self.options.overflow == "drop" or not fitting:
                return Encoded([], [], STATUS_TOO_LONG, note=f"{spans[-1][1]} tokens > max length {limit}")
            status, cut = STATUS_TRUNCATED, len(spans) - len(fitting)
            spans = fitting
        length = spans[-1][1]
        input_ids = full[:length]
        labels = [IGNORE_INDEX] * length
        for start, end in spans:
            labels[start:end] = input_ids[start:end]
        roles: list[str] = []
        if with_roles:
            starts = [0] + [
                common_prefix_len(full, self._ids(rendered[:i], False)) for i in range(1, len(rendered))
            ]
            starts.append(len(full))
            for i, role in enumerate(origin):
                roles += [role] * max(0, min(starts[i + 1], length) - min(starts[i], length))
            roles += [origin[-1]] * (length - len(roles))
        return Encoded(input_ids, labels, status, cut, roles=roles)
