"""Add AutoCoder's four execution tokens (and the template's end-of-turn token) and give them embeddings.

- The tokens come from `interpreter.protocol.SPECIAL_TOKENS` (the only place that spells them) and are
  added as special tokens, so the tokenizer never splits them and the chat keeps them in its stream.
- The rows of the new ids in the input embedding AND the output embedding (deepseek-coder does not tie
  them) are set to the mean of the rows of the tokens the tokenizer had before: a neutral start that
  does not disturb the existing distribution (Hewitt's "mean init"). Rows are addressed by the tokens'
  explicit ids, never "the last N rows".
- The matrices are resized (to a multiple of 64, for tensor-core friendly shapes) only when a new id does
  not fit: deepseek-coder's embedding has 32,256 rows for 32,022 tokenizer entries, so its new tokens
  land in padded, never-trained rows with no resize, and those rows are not part of the mean.
- Under DeepSpeed ZeRO-3 the parameters are partitioned across ranks; they are gathered for the update
  with `deepspeed.zero.GatheredParameters(..., modifier_rank=0)`, which broadcasts rank 0's edit.

What it deliberately does not do: load or save models, or choose a chat template.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from interpreter.protocol import SPECIAL_TOKENS

RESIZE_MULTIPLE = 64


@dataclass
class AddedTokens:
    token_ids: dict[str, int]  # every token this run needs, by text, with its id
    new_ids: list[int]  # ids that did not exist before (their rows were initialised)
    old_vocab: int  # tokenizer entries before (rows [0, old_vocab) are the trained ones)
    resized_to: int | None  # new embedding rows, or None when no resize was needed
    deviation: float = 0.0  # largest |new row - mean| read back after initialisation (0.0: it took)


def add_tokens(tokenizer, end_of_turn: str | None = None) -> tuple[dict[str, int], list[int], int]:
    """Add the execution tokens (and `end_of_turn`) to `tokenizer` as special tokens.

    Returns (id of every needed token, the ids that are new, the tokenizer's size before)."""
    old_vocab = len(tokenizer)
    wanted = list(SPECIAL_TOKENS) + ([end_of_turn] if end_of_turn else [])
    vocab = tokenizer.get_vocab()
    missing = [t for t in wanted if t not in vocab]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in wanted}
    new = sorted(ids[t] for t in missing)
    return ids, new, old_vocab


def _zero3_enabled() -> bool:
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:
        return False
    return bool(is_deepspeed_zero3_enabled())


def _gathered(params):
    """All of `params` materialised on every rank; rank 0's changes are kept (ZeRO-3), else a no-op."""
    if _zero3_enabled():
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
    return contextlib.nullcontext()


def embedding_rows(model) -> int:
    weight = model.get_input_embeddings().weight
    # Under ZeRO-3 the local tensor is an empty shard; the full shape is kept in ds_shape.
    shape = getattr(weight, "ds_shape", None) or weight.shape
    return int(shape[0])


def init_new_rows(model, new_ids: list[int], old_vocab: int) -> float:
    """Set rows `new_ids` of the input and output embeddings to the mean of rows [0, old_vocab).

    Returns the largest difference between a new row and its mean read back after the update (0.0 when it
    took; under ZeRO-3 read from the re-gathered partitions, so it checks the broadcast too)."""
    import torch

    if not new_ids:
        return 0.0
    inp = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    out = out_layer.weight if out_layer is not None else None
    params = [inp] if out is None or out is inp else [inp, out]
    index = torch.tensor(new_ids, dtype=torch.long)
    means = []
    with _gathered(params), torch.no_grad():
        for weight in params:
            mean = weight[: min(old_vocab, weight.shape[0])].float().mean(dim=0)
            weight[index.to(weight.device)] = mean.to(weight.dtype).to(weight.device)
            means.append(mean.to(weight.dtype))
    deviation = 0.0
    with _gathered(params), torch.no_grad():
        for weight, mean in zip(params, means, strict=True):
            rows = weight[index.to(weight.device)].float()
            deviation = max(deviation, float((rows - mean.float().to(rows.device)).abs().max()))
    return deviation


def prepare_tokens(model, tokenizer, end_of_turn: str | None = None) -> AddedTokens:
    """Add the tokens to `tokenizer`, resize `model` only if a new id does not fit, initialise new rows."""
    ids, new, old_vocab = add_tokens(tokenizer, end_of_turn)
    rows = embedding_rows(model)
    resized = None
    if max(ids.values()) >= rows:
        target = math.ceil(len(tokenizer) / RESIZE_MULTIPLE) * RESIZE_MULTIPLE
        # mean_resizing=False: the rows we need are set below, by id, from the trained rows only.
        model.resize_token_embeddings(target, mean_resizing=False)
        resized = embedding_rows(model)
    deviation = init_new_rows(model, new, old_vocab)
    return AddedTokens(ids, new, old_vocab, resized, deviation)
