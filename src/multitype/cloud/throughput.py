"""Training speeds this project measured: samples/s per model, GPU model and GPU count.

Read from the root's ``results/transformer/*_metrics.json`` (``model``,
``train_samples_per_s``, ``device`` as torch names it, ``world_size``,
``params.max_length``, ``precision``; the run's ``runs/<run-id>/manifest.json``
``hardware.cuda_devices`` where the record lacks ``device``) and, for a local
root, from ``benchmarks/results/*.json`` (any object in them with
``train_samples_per_s``, ``device`` and a model name). A speed measured on a
CPU is not used: the CPU of the machine it ran on is not an instance type the
catalog knows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from multitype import layout
from multitype.storage import Storage

BENCHMARK_RESULTS = "benchmarks/results"


@dataclass(frozen=True)
class Measurement:
    """One measured training speed."""

    model: str
    samples_per_s: float
    gpu_model: str
    gpus: int
    max_length: int | None
    precision: str | None
    where: str


def gpu_model_of(device: str, known: list[str]) -> str | None:
    """The catalog GPU model in a torch device name (``NVIDIA A10G`` -> ``A10G``), or None (a CPU, an unknown GPU)."""
    for model in sorted(known, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(model)}(?![0-9])", device, flags=re.IGNORECASE):
            return model
    return None


def _from_record(rec: dict[str, Any], device: str | None, where: str, known: list[str]) -> Measurement | None:
    params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
    model = rec.get("model") if isinstance(rec.get("model"), str) else params.get("model_name")
    speed = rec.get("train_samples_per_s")
    if not model or not isinstance(speed, (int, float)) or speed <= 0 or not device:
        return None
    gpu = gpu_model_of(str(device), known)
    if gpu is None:
        return None
    count = re.match(r"\s*(\d+)\s*x\s", str(device))
    gpus = int(rec.get("world_size") or (count.group(1) if count else 1))
    max_length = params.get("max_length", rec.get("max_length"))
    return Measurement(str(model), float(speed), gpu, max(gpus, 1),
                       int(max_length) if max_length else None, rec.get("precision"), where)


def _walk(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value)


def measurements(storage: Storage, known_gpus: list[str]) -> list[Measurement]:
    """Every usable GPU speed measured under this root (metrics files, then local benchmark results)."""
    found: list[Measurement] = []
    folder = "results/transformer"
    names = storage.listdir(folder) if storage.isdir(folder) else []
    for name in sorted(names):
        base = name.rstrip("/").rsplit("/", 1)[-1]
        if not base.endswith("_metrics.json"):
            continue
        key = f"{folder}/{base}"
        try:
            rec = storage.read_json(key)
        except (OSError, ValueError):
            continue
        device = rec.get("device")
        if not device and rec.get("run_id"):
            device = _manifest_device(storage, str(rec["run_id"]))
        m = _from_record(rec, device, storage.url(key), known_gpus)
        if m is not None:
            found.append(m)
    if not storage.remote:
        bench = storage.local_path() / BENCHMARK_RESULTS
        for path in sorted(bench.glob("*.json")) if bench.is_dir() else []:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for rec in _walk(doc):
                m = _from_record(rec, rec.get("device"), str(path), known_gpus)
                if m is not None:
                    found.append(m)
    return found


def _manifest_device(storage: Storage, run_id: str) -> str | None:
    key = layout.manifest(run_id)
    try:
        devices = storage.read_json(key).get("hardware", {}).get("cuda_devices") or []
    except (OSError, ValueError, AttributeError):
        return None
    return f"{len(devices)} x {devices[0]}" if devices else None
