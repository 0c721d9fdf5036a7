"""Tokenised splits, length-grouped batches with a resumable position, dynamic padding.

Texts are tokenised once (fast tokenizer, batched, truncated, not padded) and
kept in memory as lists of token ids. Each epoch's batch order is a pure
function of ``(seed, epoch)``: shuffle, cut into mega-batches of
``mega_batches`` batches, sort each by length, cut into batches, shuffle the
batch order. So a run resumed at ``(epoch, batch)`` gets the same batches as an
uninterrupted run without reading the skipped ones, and padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch


@dataclass
class TokenizedSplit:
    """Token ids and class ids of one split (no padding)."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def subset(self, indices: Sequence[int]) -> "TokenizedSplit":
        return TokenizedSplit([self.input_ids[i] for i in indices], [self.labels[i] for i in indices])


def tokenize(tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int,
             chunk: int = 1000) -> TokenizedSplit:
    """Tokenise ``texts`` in batched calls of the fast tokenizer, truncating to ``max_length``."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(list(texts[start:start + chunk]), truncation=True, max_length=max_length,
                        padding=False, return_attention_mask=False, return_token_type_ids=False)
        ids.extend(enc["input_ids"])
    return TokenizedSplit(ids, list(labels))


def stratified_subset(labels: Sequence[int], size: int, seed: int) -> list[int]:
    """Indices of a class-stratified random subset of ``size`` examples (sorted)."""
    if size >= len(labels):
        return list(range(len(labels)))
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        keep, _ = train_test_split(index, train_size=size, stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify: a plain random subset
        keep = np.random.default_rng(seed).choice(index, size=size, replace=False)
    return sorted(int(i) for i in keep)


class LengthGroupedBatches:
    """Deterministic, resumable, length-grouped batches of example indices.

    Parameters
    ----------
    lengths : array of int
        Token count of every example.
    batch_size : int
        Examples per batch (per process).
    seed : int
        With the epoch number, fixes the order of every epoch.
    mega_batches : int, default=50
        Batches per sorting window: larger means less padding, less randomness.
    num_replicas, rank : int, default=1, 0
        Data-parallel processes: iteration ``i`` gives process ``r`` batch
        ``i * num_replicas + r``; the epoch is padded with its first batches
        so every process gets the same number.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mega_batches: int = 50,
                 num_replicas: int = 1, rank: int = 0) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batches = mega_batches
        self.num_replicas = num_replicas
        self.rank = rank

    @property
    def num_batches(self) -> int:
        """Batches (iterations) per epoch for each process."""
        total = -(-len(self.lengths) // self.batch_size)
        return -(-total // self.num_replicas)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Every batch of ``epoch`` over all processes, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        window = self.batch_size * self.mega_batches
        batches: list[np.ndarray] = []
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        # the longest batch first: an out-of-memory error shows in the first step, not hours later
        longest = max(range(len(batches)), key=lambda i: int(self.lengths[batches[i]].max()))
        batches[0], batches[longest] = batches[longest], batches[0]
        short = self.num_batches * self.num_replicas - len(batches)
        return batches + [batches[i % len(batches)] for i in range(short)]

    def rank_batches(self, epoch: int) -> list[np.ndarray]:
        """This process's batches of ``epoch``, in order; resume by slicing from the saved iteration."""
        batches = self.epoch_batches(epoch)
        return [batches[i * self.num_replicas + self.rank] for i in range(self.num_batches)]


def collate(split: TokenizedSplit, indices: Sequence[int], pad_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest example (rounded up to ``multiple_of``)."""
    rows = [split.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    width = -(-width // multiple_of) * multiple_of
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, :len(row)] = 1
    labels = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def eval_batches(split: TokenizedSplit, batch_size: int) -> list[np.ndarray]:
    """Batches for inference: sorted by length (least padding), order restored by the caller."""
    order = np.argsort(-split.lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
