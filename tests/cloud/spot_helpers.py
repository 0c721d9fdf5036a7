"""A tiny model and a processed project on an S3 root, for the spot-watcher and user-data tests.

The model is a 2-layer BERT built from a config (random weights, the packaged
MiniLM tokenizer), saved with ``save_pretrained``: training it is fast enough
that the tests spend their time on what they test (the notice, the checkpoint in
S3, the resume), not on the model.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

from multitype.storage import Storage
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed

MODEL_DIR_NAME = "tiny-bert"
SLUG = "tiny-bert"
# subprocesses train on one torch thread, like the in-process runs (exact comparisons)
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT for 4 labels with MiniLM's tokenizer, saved into ``folder``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from multitype.transformer.models import packaged_minilm

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=4)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def s3_project(tmp_path: Path, s3_server, bucket_prefix: str, **transformer: object) -> tuple[str, Path, Path]:
    """(``s3://bucket/proj`` root with data/processed and configs/ in it, local configs folder, model folder)."""
    local = write_processed(tmp_path / "local")
    configs = write_configs(local / "configs", transformer=transformer_yaml(**transformer))
    root = f"s3://{s3_server.make_bucket(bucket_prefix)}/proj"
    storage = Storage(root, endpoint_url=s3_server.endpoint_url)
    for folder in ("data/processed", "configs"):
        for path in sorted((local / folder).iterdir()):
            storage.put_file(path, f"{folder}/{path.name}")
    return root, configs, tiny_model(tmp_path / MODEL_DIR_NAME)


def complete_steps(s3_server, root: str) -> list[int]:
    """Step numbers of the complete ``-step<N>`` checkpoints under ``root`` (marker present)."""
    bucket, _, prefix = root[len("s3://"):].partition("/")
    keys = s3_server.list_keys(bucket, f"{prefix}/models/checkpoints/{SLUG}-step")
    return sorted(int(k.split(f"{SLUG}-step")[1].split("/")[0]) for k in keys if k.endswith("/_COMPLETE"))


def resume_step(root: str, s3_server) -> int:
    """The global step of the checkpoint that ``--resume auto`` would take from ``root`` (0: none)."""
    from multitype.transformer import checkpoint

    point = checkpoint.find_resume_point(Storage(root, endpoint_url=s3_server.endpoint_url), SLUG, lambda m: None)
    if point is None:
        return 0
    try:
        return int(point.state["global_step"])
    finally:
        point.close()


def read_json(s3_server, root: str, key: str) -> dict:
    bucket, _, prefix = root[len("s3://"):].partition("/")
    body = s3_server.client().get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
    return json.loads(body)


def wait_until(condition: Callable[[], bool], what: str, timeout: float, alive: Callable[[], bool] = lambda: True,
               step: float = 0.05) -> float:
    """Poll ``condition`` (bounded); return when it held (``time.monotonic()``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive(), f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(step)
    return time.monotonic()


@contextlib.contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Yield ``proc``; kill it on the way out if it is still running (a failed assertion leaves no orphan)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
