"""Batches for the Trainer: padding, or packing several dialogues into one row with their own positions.

- `PadCollator`: right-pads a micro-batch to its longest sequence (attention_mask 0, labels -100).
- `pack(lengths, max_length)`: groups sequences into rows of at most `max_length` tokens (best-fit
  decreasing); `PackedCollator` concatenates each group and restarts `position_ids` at 0 for every
  dialogue, and gives no attention_mask. transformers then builds a block-diagonal causal mask from the
  position ids (masking_utils.find_packed_sequence_indices, used by the sdpa, eager and flex attention
  paths; flash-attention reads the same boundaries), so no token attends across dialogues. The pad
  tail of a row gets positions of its own, so it is a separate "sequence" too. transformers only looks
  at the position ids when no KV cache is passed, and models make one by default (use_cache, even in
  training), so packed batches carry use_cache=False. A test checks that the logits of a packed row
  equal those of its dialogues run alone.
- `non_padding_share`: the share of real tokens among all tokens the model computes, for the log and
  the benchmark (with and without packing).

What it deliberately does not do: tokenize (`training.encode`) or shuffle (the Trainer's sampler does).
"""

from __future__ import annotations

import bisect

from training.encode import IGNORE_INDEX

# Attention implementations that honour per-sequence position ids in a packed row.
PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


def _padded(features: list[dict], pad_id: int):
    """input_ids (padded with pad_id) and labels (padded with IGNORE_INDEX) as (rows, width) tensors, and
    each row's unpadded size."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    n = len(features)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    sizes = []
    for row, f in enumerate(features):
        size = len(f["input_ids"])
        input_ids[row, :size] = torch.as_tensor(f["input_ids"])
        labels[row, :size] = torch.as_tensor(f["labels"])
        sizes.append(size)
    return input_ids, labels, sizes


class PadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        input_ids, labels, sizes = _padded(features, self.pad_id)
        attention = torch.zeros_like(input_ids)
        for row, size in enumerate(sizes):
            attention[row, :size] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class PackedCollator:
    """Rows that are each several dialogues: features carry `input_ids`, `labels` and `lengths`."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        input_ids, labels, sizes = _padded(features, self.pad_id)
        width = input_ids.shape[1]
        positions = torch.zeros_like(input_ids)
        for row, (f, size) in enumerate(zip(features, sizes, strict=True)):
            at = 0
            for length in [*f["lengths"], width - size]:
                positions[row, at : at + length] = torch.arange(length)
                at += length
        # No cache: with one, transformers ignores the packing in the position ids (a causal mask across
        # the whole row).
        return {"input_ids": input_ids, "position_ids": positions, "labels": labels, "use_cache": False}


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Indices of sequences grouped into bins of at most `max_length` tokens (best-fit decreasing).

    Deterministic; each bin keeps its sequences in decreasing length order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        size = lengths[i]
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, b = free.pop(at)
            bins[b].append(i)
            bisect.insort(free, (room - size, b))
        else:
            bins.append([i])
            bisect.insort(free, (max_length - size, len(bins) - 1))
    return bins


def packed_rows(input_ids: list[list[int]], labels: list[list[int]], max_length: int) -> dict[str, list]:
    """Columns of a packed dataset: input_ids, labels and the lengths of the dialogues in each row."""
    rows: dict[str, list] = {"input_ids": [], "labels": [], "lengths": []}
    for group in pack([len(ids) for ids in input_ids], max_length):
        ids: list[int] = []
        lab: list[int] = []
        for i in group:
            ids += input_ids[i]
            # A dialogue's first token is never a target of the one before it (the model shifts labels).
            lab += [IGNORE_INDEX] + labels[i][1:]
        rows["input_ids"].append(ids)
        rows["labels"].append(lab)
        rows["lengths"].append([len(input_ids[i]) for i in group])
    return rows


def non_padding_share(lengths: list[int], batch_size: int, seed: int = 0) -> float:
    """Real tokens / computed tokens over micro-batches of a seeded shuffle (as the Trainer draws them)."""
    import random

    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    real = computed = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        real += sum(batch)
        computed += max(batch) * len(batch)
    return real / computed if computed else 1.0
