"""Length-grouped batches (deterministic, resumable, sharded), dynamic padding, subsets, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from multitype.transformer.batches import (LengthGroupedBatches, TokenizedSplit, collate, eval_batches,
                                           stratified_subset)
from multitype.transformer.train import _class_weights

LENGTHS = np.random.default_rng(0).integers(5, 200, size=203)


def test_every_example_once_per_epoch_and_the_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3, mega_batches=5)
    batches = sampler.epoch_batches(0)
    assert len(batches) == sampler.num_batches == 26
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
    again = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3, mega_batches=5).epoch_batches(0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other_epoch = sampler.epoch_batches(1)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other_epoch))
    assert LENGTHS[batches[0]].max() == LENGTHS.max()  # the longest batch comes first


def test_length_grouping_cuts_padding() -> None:
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3, mega_batches=5)
    padded = sum(len(b) * LENGTHS[b].max() for b in sampler.epoch_batches(0))
    rng = np.random.default_rng(0)
    random_batches = np.array_split(rng.permutation(len(LENGTHS)), 26)
    padded_random = sum(len(b) * LENGTHS[b].max() for b in random_batches)
    assert padded < 0.75 * padded_random


def test_resume_is_a_slice_of_the_same_plan() -> None:
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3)
    plan = sampler.rank_batches(2)
    resumed = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3).rank_batches(2)[11:]
    assert all(np.array_equal(a, b) for a, b in zip(plan[11:], resumed, strict=True))


def test_processes_get_disjoint_shards_of_equal_length() -> None:
    shards = [LengthGroupedBatches(LENGTHS, batch_size=8, seed=3, num_replicas=3, rank=r).rank_batches(0)
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 9  # 26 batches -> 27 with one repeated
    seen = np.concatenate([b for s in shards for b in s])
    assert set(seen.tolist()) == set(range(len(LENGTHS)))
    single = LengthGroupedBatches(LENGTHS, batch_size=8, seed=3).epoch_batches(0)
    assert np.array_equal(shards[1][2], single[2 * 3 + 1])  # iteration i of rank r is global batch i*R + r


def test_collate_pads_to_the_longest_in_the_batch() -> None:
    split = TokenizedSplit([[101, 5, 102], [101, 5, 6, 7, 102], [101, 102]], [0, 1, 2])
    batch = collate(split, [0, 1, 2], pad_id=0)
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["input_ids"][2].tolist() == [101, 102, 0, 0, 0]
    assert batch["labels"].tolist() == [0, 1, 2]
    assert collate(split, [0, 2], pad_id=0, multiple_of=8)["input_ids"].shape == (2, 8)
    order = np.concatenate(eval_batches(split, 2))
    assert sorted(order.tolist()) == [0, 1, 2] and order[0] == 1


def test_stratified_subset_keeps_class_shares() -> None:
    labels = [0] * 60 + [1] * 30 + [2] * 10
    keep = stratified_subset(labels, 20, seed=1)
    assert len(keep) == 20 and keep == sorted(keep)
    assert np.bincount([labels[i] for i in keep]).tolist() == [12, 6, 2]
    assert stratified_subset(labels, 500, seed=1) == list(range(100))
    assert stratified_subset(labels, 20, seed=1) == keep


def test_balanced_class_weights() -> None:
    weights = _class_weights([0] * 6 + [1] * 2, 3, "balanced")
    assert weights == pytest.approx([8 / (2 * 6), 8 / (2 * 2), 1.0])
    assert _class_weights([0, 1], 2, "none").tolist() == [1.0, 1.0]
