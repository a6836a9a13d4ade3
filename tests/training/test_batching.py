"""Padding and packing: packed rows keep dialogues apart (same logits as alone) and waste less."""

from __future__ import annotations

import pytest

from tests.training.tiny_base import cached_tiny_base
from training.batching import PackedCollator, PadCollator, non_padding_share, pack, packed_rows
from training.encode import IGNORE_INDEX

pytestmark = pytest.mark.model  # builds (or loads) the tiny base model


def test_pack_fits_every_sequence_once():
    lengths = [50, 10, 30, 70, 20, 90, 5, 40]
    bins = pack(lengths, 100)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 100 for b in bins)
    assert len(bins) == 4  # 315 tokens need at least 4 rows of 100


def test_packed_row_gives_each_dialogue_its_own_logits():
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cached_tiny_base(), attn_implementation="sdpa").eval()
    torch.manual_seed(0)
    seqs = [torch.randint(5, 300, (n,)).tolist() for n in (17, 9, 12)]
    labels = [s[:] for s in seqs]
    rows = packed_rows(seqs, labels, max_length=64)
    assert len(rows["input_ids"]) == 1 and rows["lengths"] == [[17, 12, 9]]
    batch = PackedCollator(pad_id=1)(
        [{k: v[0] for k, v in rows.items()}, {"input_ids": seqs[1], "labels": labels[1], "lengths": [9]}]
    )
    assert "attention_mask" not in batch and batch["position_ids"][0].tolist()[:18] == [*range(17), 0]
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        at = 0
        for seq in (seqs[0], seqs[2], seqs[1]):
            alone = model(input_ids=torch.tensor([seq])).logits[0]
            assert torch.allclose(packed[0, at : at + len(seq)], alone, atol=1e-4)
            at += len(seq)
        # Without the collator's use_cache=False the packing would be ignored: the test can fail.
        cached = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        assert not torch.allclose(cached[0, 17:29], packed[0, 17:29], atol=1e-2)
    # A dialogue's first token is never the target of the previous one.
    assert batch["labels"][0, 17].item() == IGNORE_INDEX and batch["labels"][0, 29].item() == IGNORE_INDEX


def test_pad_collator_and_share():
    batch = PadCollator(pad_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert non_padding_share([3, 1], 2) == 4 / 6
    assert non_padding_share([3, 3, 3], 1) == 1.0
