"""Serving speed: a naive transformers pipeline server against ``multitype serve`` (torch and ONNX int8).

Not a test. In one run, on the same machine and the same model:

1. a model: MiniLM (all-MiniLM-L6-v2) fine-tuned by ``multitype train transformer`` at
   ``max_length`` 128 on a stratified 400-article subset of BBC News' training split (one
   epoch; or ``--model PATH`` with ``--root`` for its test split), then
   ``multitype export onnx --quantize int8``, whose agreement check gives the test
   accuracy of PyTorch, ONNX and ONNX int8 on the whole BBC test split;
2. three servers, each on a free 127.0.0.1 port:

   ``naive`` (the named baseline)
       a FastAPI app whose ``POST /predict`` calls ``transformers.pipeline("text-classification")``
       on the request's text (truncated to 128 tokens), a plain ``def`` endpoint run in FastAPI's
       thread pool: every request is its own model call;
   ``torch``
       ``multitype serve`` (micro-batching, defaults: up to 32 texts, 5 ms wait), PyTorch;
   ``onnx_int8``
       ``multitype serve --backend onnx-int8``: the same, on ONNX Runtime with the int8 model;

3. for each server, a bounded load per concurrency (1, 8, 32): a fixed number of
   single-text requests (BBC test articles) from one asyncio client, after a warm-up.
   The three servers run side by side and the cases are interleaved (every server at
   concurrency 1, then at 8, then at 32), so a change in the machine's load during the
   run falls on all of them; the 1-minute load average is recorded after each case.

Reported per server and concurrency: requests/s, p50/p95/p99 latency, and the ratio of
requests/s to ``naive`` at the same concurrency; the targets (2 CPU cores): ``onnx_int8``
at least 3x ``naive``'s requests/s at concurrency 32, its p99 at most 150 ms at
concurrency 8, and its test accuracy within 0.5 points of PyTorch's. Server and client
share the CPUs. Results: ``benchmarks/results/serve.json``.

Usage::

    .venv/bin/python benchmarks/serve.py            # ~5 min on 2 cores (training ~2 min of it)
    .venv/bin/python benchmarks/serve.py --work /tmp/serve-bench   # keeps the model; a rerun skips training
    .venv/bin/python benchmarks/serve.py --model models/final/minilm --root .
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata as md
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest import REPO, cpu_facts, free_port, launch, load, metric_sum, start, summary

CONCURRENCY = (1, 8, 32)
REQUESTS = {1: 40, 8: 120, 32: 192}
MAX_LENGTH = 128

NAIVE_APP = '''
import os
from fastapi import FastAPI
from transformers import pipeline

classify = pipeline("text-classification", model=os.environ["NAIVE_MODEL"], device="cpu")
app = FastAPI()


@app.get("/ping")
def ping():
    return {"status": "ok"}


@app.post("/predict")
def predict(body: dict):
    result = classify(body["text"], truncation=True, max_length=int(os.environ["NAIVE_MAX_LENGTH"]))[0]
    return {"labels": [result["label"]], "scores": [result["score"]]}
'''


def cli(*args: str) -> None:
    """``multitype ARGS`` in a subprocess (exits on failure)."""
    code = subprocess.run([sys.executable, "-m", "multitype", *args], stdin=subprocess.DEVNULL).returncode
    if code != 0:
        raise SystemExit(f"multitype {' '.join(args)} exited with {code}")


def train(base: Path) -> tuple[Path, Path, Path]:
    """Prepare BBC News (embedded) and fine-tune MiniLM at max_length 128; (root, configs, model folder)."""
    root, configs = base / "root", base / "configs"
    cli("init", "--config-dir", str(configs))
    common = ["--root", str(root), "--config-dir", str(configs)]
    cli("prepare", *common)
    cli("train", "transformer", "--model-name", "minilm", "--max-length", str(MAX_LENGTH), "--num-epochs", "1",
        "--max-train-samples", "400", "--batch-size", "16", "--learning-rate", "3e-4", "--resume", "never", *common)
    return root, configs, root / "models" / "final" / "minilm"


def start_naive(model: Path, log: Path) -> tuple:
    port = free_port()
    app_dir = log.parent / "naive_app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "naive_app.py").write_text(NAIVE_APP, encoding="utf-8")
    command = [sys.executable, "-m", "uvicorn", "naive_app:app", "--app-dir", str(app_dir), "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--log-level", "warning"]
    return launch(command, port, log, {"NAIVE_MODEL": str(model), "NAIVE_MAX_LENGTH": str(MAX_LENGTH)})


def measure(urls: dict[str, str], texts: list[str], warmup: list[str]) -> dict[str, dict[str, dict]]:
    """Each server at each concurrency, interleaved (c=1 for all, then c=8, ...): a drift in the machine's
    load during the run falls on every server alike."""
    runs: dict[str, dict[str, dict]] = {name: {} for name in urls}
    for url in urls.values():
        asyncio.run(load(url, warmup, 8))
    for concurrency in CONCURRENCY:
        for name, url in urls.items():
            before = _model_calls(url) if name != "naive" else None
            latencies, wall, errors = asyncio.run(load(url, texts[:REQUESTS[concurrency]], concurrency))
            r = runs[name][str(concurrency)] = {**summary(latencies, wall, errors),
                                                "load_avg_1m": round(os.getloadavg()[0], 2)}
            if before is not None:  # from /metrics: how the requests were batched, and the model's share
                calls, texts_done, seconds = (a - b for a, b in zip(_model_calls(url), before))
                r.update(model_calls=int(calls), mean_texts_per_call=round(texts_done / calls, 2),
                         mean_call_ms=round(seconds / calls * 1000, 1))
            print(f"{name:>10} c={concurrency:>2}: {r['requests_per_s']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                  f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  load {r['load_avg_1m']}", flush=True)
    return runs


def _model_calls(url: str) -> tuple[float, float, float]:
    """(model calls, texts, seconds in model calls) so far, from a multitype server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return (metric_sum(text, "multitype_batch_size_count"), metric_sum(text, "multitype_batch_size_sum"),
            metric_sum(text, "multitype_batch_duration_seconds_sum"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a transformer model folder (default: MiniLM fine-tuned here)")
    parser.add_argument("--root", help="with --model: the root whose test split the ONNX check uses")
    parser.add_argument("--work", help="keep the trained model (and server logs) in this folder and reuse it on the "
                                       "next run (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8/16/32 requests (figures not meaningful)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()
    if args.quick:
        REQUESTS.update({1: 8, 8: 16, 32: 32})
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()

    with contextlib.ExitStack() as stack:
        base = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-bench-")))
        base.mkdir(parents=True, exist_ok=True)
        if args.model:
            model = Path(args.model).resolve()
            root = Path(args.root or ".").resolve()
            configs = root / "configs"
        elif (base / "root" / "models" / "final" / "minilm").is_dir():
            root, configs, model = base / "root", base / "configs", base / "root" / "models" / "final" / "minilm"
        else:
            root, configs, model = train(base)
        train_s = time.perf_counter() - started
        onnx_dir = model / "onnx"
        if not (onnx_dir / "model.int8.onnx").is_file():
            cli("export", "onnx", "--model", str(model), "--quantize", "int8", "--root", str(root),
                "--config-dir", str(configs), *(["--force"] if onnx_dir.exists() else []))
        agreement = json.loads((onnx_dir / "agreement.json").read_text(encoding="utf-8"))

        import pandas as pd

        test = pd.read_csv(next((root / "data" / "processed").glob("test_*class.csv")))
        texts = test.text.tolist()
        while len(texts) < max(REQUESTS.values()):
            texts += texts
        warmup = texts[-16:]

        # all three stay up (idle ones cost no CPU) so that the cases can be interleaved
        servers = {"naive": lambda: start_naive(model, base / "naive.log"),
                   "torch": lambda: start(model, [], base / "torch.log"),
                   "onnx_int8": lambda: start(model, ["--backend", "onnx-int8"], base / "onnx_int8.log")}
        procs = {}
        try:
            for name, begin in servers.items():
                procs[name] = begin()
            runs = measure({name: url for name, (_, url) in procs.items()}, texts, warmup)
        finally:
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in procs.values():
                proc.wait(timeout=60)

    for name in ("torch", "onnx_int8"):
        for c, r in runs[name].items():
            r["vs_naive"] = round(r["requests_per_s"] / runs["naive"][c]["requests_per_s"], 2)
    accuracy = {"torch": agreement["torch"]["accuracy"], "onnx": agreement["onnx"]["accuracy"],
                "onnx_int8": agreement["onnx-int8"]["accuracy"],
                "onnx_int8_label_agreement": agreement["onnx-int8"]["label_agreement"],
                "onnx_int8_max_prob_diff": agreement["onnx-int8"]["max_prob_diff"],
                "test_texts": agreement["texts"]}
    delta = round((accuracy["onnx_int8"] - accuracy["torch"]) * 100, 2)
    c32, c8 = runs["onnx_int8"]["32"], runs["onnx_int8"]["8"]
    targets = {
        "onnx_int8_vs_naive_at_32": {"target": ">= 3", "measured": c32["vs_naive"], "met": c32["vs_naive"] >= 3},
        "onnx_int8_p99_ms_at_8": {"target": "<= 150", "measured": c8["p99_ms"], "met": c8["p99_ms"] <= 150},
        "onnx_int8_accuracy_delta_points": {"target": "within 0.5", "measured": delta, "met": abs(delta) <= 0.5},
    }
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": str(args.model) if args.model else (
            "minilm (all-MiniLM-L6-v2) fine-tuned 1 epoch on 400 BBC training articles, max_length 128"),
        "load": {"requests": REQUESTS, "quick": args.quick, "warmup": 16, "concurrency": list(CONCURRENCY),
                 "texts": "BBC News test articles, one per request (truncated to 128 tokens by each server)"},
        "servers": {"naive": "FastAPI + transformers pipeline('text-classification') per request (def endpoint, "
                             "thread pool), uvicorn, 1 process",
                    "torch": "multitype serve (micro-batching: 32 texts, 5 ms), PyTorch, 1 process",
                    "onnx_int8": "multitype serve --backend onnx-int8 (same batching), ONNX Runtime, 1 process"},
        "runs": runs,
        "accuracy": accuracy,
        "targets": targets,
        "agreement": agreement,
        "machine": {**cpu_facts(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1m_start": round(load_start, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "versions": {name: md.version(name) for name in ("torch", "transformers", "onnxruntime", "fastapi",
                                                         "uvicorn", "httpx")},
        "seconds": {"model": round(train_s, 1), "total": round(time.perf_counter() - started, 1)},
        "note": "server and client share the CPUs (on the project VM: 2 cores shared with other work)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, t in targets.items():
        print(f"{name}: {t['measured']} (target {t['target']}: {'met' if t['met'] else 'MISSED'})")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
