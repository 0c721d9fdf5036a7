"""CPU fine-tuning speed: our loop vs Hugging Face Trainer, same model, data, batch size, length, epochs.

    .venv/bin/python benchmarks/transformer_cpu.py [--max-samples 256] [--epochs 1] [--max-length 512]

Three runs of the packaged all-MiniLM-L6-v2 on the same stratified subset of the
BBC News 4-class train split (prepared with ``multitype prepare`` in a temp
root), evaluated on the same val split:

* ours      ``multitype.transformer.train.train_transformer`` (dynamic padding,
            length-grouped batches, precision auto, compile auto);
* ours_compiled  the same with ``compile: true`` (the encoder layers under
            ``torch.compile``; its compile time counts as training time);
* trainer_a HF Trainer as ``run_classification.py`` sets it up by default:
            texts padded to max length, fp32, random sampler;
* trainer_b HF Trainer at its best: dynamic padding (DataCollatorWithPadding),
            ``train_sampling_strategy="group_by_length"``, bf16 where the CPU
            has native bf16 (else fp32: emulated bf16 is many times slower).

All three use the same learning rate, warm-up, weight decay, seed and batch
size; tokenisation and model loading are outside the timed part. samples/s =
training examples x epochs / training wall time. The headline ratios compare
training steps only (our loop's samples/s without its per-epoch validation and
checkpoint writing, which the Trainer runs here do not do); the
``*_end_to_end`` ratios include them. On a shared machine, whose load moves
wall time 2-3x, the ``*_cpu_time`` ratios compare the CPU seconds (all threads
of the process) of the training steps alone: less sensitive to the other jobs.
The machine block records the CPU model and the flags that decide the speed
(avx2, avx512f, avx512_bf16, amx_bf16) and the load average before and after.
Results go to ``benchmarks/results/transformer_cpu.json``. Never run by ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from multitype.transformer.runtime import cpu_supports_bf16

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def prepare_root(root: Path, config_dir: Path) -> None:
    """Default configs + ``multitype prepare`` (embedded BBC News, 4 classes) into ``root``."""
    run = [sys.executable, "-m", "multitype"]
    subprocess.run([*run, "init", "--config-dir", str(config_dir), "--force"], check=True, capture_output=True)
    subprocess.run([*run, "prepare", "--root", str(root), "--config-dir", str(config_dir)], check=True,
                   capture_output=True)


def cpu_kind() -> dict[str, Any]:
    """The CPU model and the instruction-set flags that decide the speed (Linux /proc/cpuinfo)."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return {"cpu_model": model, "cpu_flags": {flag: flag in flags for flag in wanted}}


def run_ours(root: Path, config_dir: Path, args: argparse.Namespace, compile_: bool | str = "auto") -> dict[str, Any]:
    from multitype.project import open_project
    from multitype.transformer.train import train_transformer

    from multitype.transformer import train as loop

    project = open_project(str(root), str(config_dir), "train transformer")
    cpu = [0.0]
    train_epoch = loop._train_epoch

    def timed_epoch(run: Any) -> None:  # CPU seconds of the training steps (no evaluation, no loading)
        started_cpu = time.process_time()
        try:
            train_epoch(run)
        finally:
            cpu[0] += time.process_time() - started_cpu

    params = project.configs.transformer.params_for(
        "minilm", num_epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
        max_length=args.max_length, max_train_samples=args.max_samples, warmup_ratio=0.1, precision="auto",
        early_stopping_patience=None, seed=args.seed, compile=compile_)
    started = time.perf_counter()
    loop._train_epoch = timed_epoch
    try:
        record = train_transformer(project, params, resume="never")
    finally:
        loop._train_epoch = train_epoch
    wall = time.perf_counter() - started
    return {"samples_per_s": record["train_samples"] / record["training_seconds"],
            "samples_per_s_compute_only": record["train_samples_per_s"],
            "training_seconds": record["training_seconds"], "wall_seconds_incl_load_and_final_eval": wall,
            "training_cpu_seconds": round(cpu[0], 1), "samples_per_cpu_s": record["train_samples"] / cpu[0],
            "val_macro_f1": record["splits"]["val"]["macro_f1"], "val_accuracy": record["splits"]["val"]["accuracy"],
            "precision": record["precision"], "compiled": record["compiled"]}


def run_trainer(root: Path, args: argparse.Namespace, best: bool) -> dict[str, Any]:
    """HF Trainer: ``best=False`` is run_classification.py's default set-up, ``best=True`` its fastest."""
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator, set_seed)

    from multitype.data.dataset import load_labels, load_split
    from multitype.evaluate import classification_metrics
    from multitype.storage import Storage
    from multitype.transformer.batches import stratified_subset
    from multitype.transformer.models import packaged_minilm
    from multitype.transformer.runtime import cpu_supports_bf16

    storage = Storage(str(root))
    labels = load_labels(storage)
    texts, ids = load_split(storage, "train", labels)
    keep = stratified_subset(ids, args.max_samples, args.seed)
    texts, ids = [texts[i] for i in keep], [ids[i] for i in keep]
    val_texts, val_ids = load_split(storage, "val", labels)
    path = str(packaged_minilm())
    tokenizer = AutoTokenizer.from_pretrained(path)
    padding = False if best else "max_length"  # run_classification.py: pad_to_max_length=True by default

    def encode(batch_texts: list[str], batch_ids: list[int]) -> list[dict[str, Any]]:
        enc = tokenizer(batch_texts, truncation=True, max_length=args.max_length, padding=padding)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": batch_ids[i]}
                for i in range(len(batch_texts))]

    train_set, val_set = encode(texts, ids), encode(val_texts, val_ids)
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    bf16 = best and cpu_supports_bf16()
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=2 * args.batch_size,
            num_train_epochs=args.epochs, learning_rate=args.learning_rate, warmup_steps=0.1, weight_decay=0.01,
            seed=args.seed, use_cpu=True, bf16=bf16, report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, train_sampling_strategy="group_by_length" if best else "random")
        collator = DataCollatorWithPadding(tokenizer) if best else default_data_collator
        trainer = Trainer(model=model, args=targs, train_dataset=train_set, data_collator=collator)
        started, started_cpu = time.perf_counter(), time.process_time()
        out_metrics = trainer.train().metrics
        seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        preds = trainer.predict(val_set).predictions.argmax(-1)
    scores = classification_metrics(val_ids, preds, labels)
    return {"samples_per_s": len(train_set) * args.epochs / seconds,
            "trainer_train_samples_per_second": out_metrics.get("train_samples_per_second"),
            "training_seconds": seconds, "training_cpu_seconds": round(cpu, 1),
            "samples_per_cpu_s": len(train_set) * args.epochs / cpu, "val_macro_f1": scores["macro_f1"], "val_accuracy": scores["accuracy"],
            "precision": "bf16" if bf16 else "fp32", "padding": "dynamic" if best else "max_length",
            "sampler": "group_by_length" if best else "random"}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Speed-ups of our loop: training steps only (like for like: the Trainer runs neither evaluation nor
    checkpoints here) and end to end (ours including its per-epoch validation and checkpoint writing)."""
    out = {}
    for ours in ("ours", "ours_compiled"):
        if ours not in results:
            continue
        for other in ("trainer_a", "trainer_b"):
            if other in results:
                theirs = results[other]["samples_per_s"]
                out[f"{ours}_vs_{other}"] = round(results[ours]["samples_per_s_compute_only"] / theirs, 3)
                out[f"{ours}_vs_{other}_end_to_end"] = round(results[ours]["samples_per_s"] / theirs, 3)
                out[f"{ours}_vs_{other}_cpu_time"] = round(results[ours]["samples_per_cpu_s"]
                                                           / results[other]["samples_per_cpu_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-samples", type=int, default=256, help="training examples (stratified subset)")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", choices=["ours", "ours_compiled", "trainer_a", "trainer_b"], action="append")
    parser.add_argument("--output", type=Path, default=RESULTS / "transformer_cpu.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    load_at_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        root, config_dir = Path(tmp) / "root", Path(tmp) / "configs"
        # a cold compile cache, as on a first run: its compile time is part of ours_compiled's training time
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor-cache")
        prepare_root(root, config_dir)
        runs = {"ours": lambda: run_ours(root, config_dir, args),
                "ours_compiled": lambda: run_ours(root, config_dir, args, compile_=True),
                "trainer_a": lambda: run_trainer(root, args, best=False),
                "trainer_b": lambda: run_trainer(root, args, best=True)}
        results = {}
        for name in args.only or list(runs):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = runs[name]()
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "benchmark": "transformer_cpu", "model": "minilm (all-MiniLM-L6-v2, packaged)",
        "data": "BBC News 4-class train split (multitype prepare), stratified subset; val split for macro-F1",
        "settings": vars(args) | {"output": str(args.output)},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "native_bf16": cpu_supports_bf16(), **cpu_kind(), "torch": torch.__version__,
                    "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()},
        "results": results,
        "targets": {"ours_vs_trainer_a": 2.0, "ours_vs_trainer_b": 1.2},
    }
    report.update(ratios(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k.startswith("ours_vs")} or results, indent=2))


if __name__ == "__main__":
    main()
