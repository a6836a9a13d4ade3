"""`python -m training render`: what each record trains on, token by token, before paying for a run.

On a terminal the text of every token is printed coloured by its role (system, user, execution,
assistant), trained tokens bold/underlined and masked ones dim; `--json` prints one JSON list per record
of {"token", "id", "label" (-100 where masked), "role"}. The tokenizer, chat template and rendering are
those `sft` would use for the same flags.

What it deliberately does not do: train, or load the model's weights.
"""

from __future__ import annotations

import json
import sys

from training.encode import IGNORE_INDEX, EncodeOptions, Encoder

_COLOURS = {"system": "35", "user": "34", "execution": "33", "assistant": "32"}


def token_rows(tokenizer, encoded) -> list[dict]:
    texts = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    return [
        {"token": tokenizer.convert_tokens_to_string([t]), "id": i, "label": lab, "role": role}
        for t, i, lab, role in zip(texts, encoded.input_ids, encoded.labels, encoded.roles, strict=True)
    ]


def coloured(rows: list[dict]) -> str:
    parts = []
    for row in rows:
        style = _COLOURS.get(row["role"], "0")
        style += ";1;4" if row["label"] != IGNORE_INDEX else ";2"
        parts.append(f"\x1b[{style}m{row['token']}\x1b[0m")
    return "".join(parts)


def render_records(tokenizer, dialogues, options: EncodeOptions, eot_ids, as_json: bool, stream=None) -> None:
    stream = stream or sys.stdout
    encoder = Encoder(tokenizer, options, eot_ids)
    for dialogue in dialogues:
        encoded = encoder.encode(dialogue.messages, with_roles=True)
        if not encoded.kept:
            print(f"# {dialogue.id}: {encoded.status}: {encoded.note}", file=sys.stderr)
            if as_json:
                print("[]", file=stream)
            continue
        rows = token_rows(tokenizer, encoded)
        if as_json:
            print(json.dumps(rows, ensure_ascii=False), file=stream)
        else:
            trained = sum(1 for r in rows if r["label"] != IGNORE_INDEX)
            note = f", {encoded.turns_cut} assistant turns cut" if encoded.turns_cut else ""
            print(f"# {dialogue.id}: {len(rows)} tokens, {trained} trained{note}", file=stream)
            print(
                coloured(rows)
                if stream.isatty()
                else "".join(f"[{r['token']}]" if r["label"] != IGNORE_INDEX else r["token"] for r in rows),
                file=stream,
            )
