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
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest import REPO, articles, build_minilm, load, metric_sum, start, summary

CONFIGS = {"batch1": ["--max-batch-size", "1", "--max-wait-ms", "0"],
           "microbatch": ["--max-batch-size", "32", "--max-wait-ms", "5"]}


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
            runs[name] = {"server_args": extra, **summary(latencies, wall, errors), "model_calls": int(calls),
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
