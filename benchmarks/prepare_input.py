"""Benchmark: peak memory and time of reading a raw input (``sources.read_input``), streamed or whole.

Not part of ``make test``. It generates ``--docs`` documents (default 200,000)
with ``baselines.py``'s generator (news-length texts of 4 classes, seeded),
adds two columns that ``prepare`` does not keep (``id`` and ``source``), and
writes them as JSON Lines, CSV and Parquet (pyarrow, row groups of 20,000 rows).
Each file is then read by ``read_input`` in a fresh Python process, which
reports its peak resident memory (``VmHWM``), its peak after the
imports (``pandas``, ``pyarrow``) and the read's wall time, so the figure is
what reading adds, not a share of a longer run.

``--before REV`` runs the same reads with the package of git revision ``REV``
too (extracted with ``git archive`` into a temp folder), e.g. the commit before
streaming, so both sets of figures come from the same files on the same
machine. Results: ``benchmarks/results/prepare_input.json``.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

CHILD = r"""
import json, sys, time
import pandas, pyarrow.parquet  # imported before the baseline, as prepare has them loaded
from multitype.data import sources
def hwm():  # VmHWM: this process's peak resident set, in KiB (ru_maxrss survives exec from a big parent)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
base = hwm()
start = time.perf_counter()
raw = sources.read_input(sys.argv[1])
seconds = time.perf_counter() - start
peak = hwm()
kept = sum(len(r["text"].encode()) + len(r["label"].encode()) for r in raw.records)
print(json.dumps({"records": len(raw.records), "seconds": round(seconds, 2), "rss_after_imports_mib": round(base / 1024, 1),
                  "peak_rss_mib": round(peak / 1024, 1), "added_by_read_mib": round((peak - base) / 1024, 1),
                  "kept_text_utf8_mib": round(kept / 2**20, 1), "sha256": raw.sha256}))
"""


def write_inputs(folder: Path, docs: int, seed: int) -> dict[str, Path]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from baselines import synthetic_corpus

    texts, labels = synthetic_corpus(docs, seed)
    frame = pd.DataFrame({"id": [f"doc-{i:07d}" for i in range(docs)], "source": "generator",
                          "text": texts, "label": labels})
    paths = {"jsonl": folder / "input.jsonl", "csv": folder / "input.csv", "parquet": folder / "input.parquet"}
    frame.to_json(paths["jsonl"], orient="records", lines=True, force_ascii=False)
    frame.to_csv(paths["csv"], index=False)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), paths["parquet"], row_group_size=20_000)
    return paths


def measure(src: Path, path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, check=True, capture_output=True,
                         text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", help="git revision whose package to measure too (the whole-file reader)")
    parser.add_argument("--out", default=str(HERE / "results" / "prepare_input.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="multitype-bench-input-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths = write_inputs(folder, args.docs, args.seed)
        print(f"generated {args.docs} documents in {time.perf_counter() - started:.0f} s", flush=True)
        sources = {"after": REPO / "src"}
        if args.before:
            old = folder / "before"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            sources = {"before": old / "src", **sources}
        results: dict[str, dict[str, object]] = {}
        for fmt, path in paths.items():
            for which, src in sources.items():
                row = measure(src, path)
                results.setdefault(fmt, {"file_mib": round(path.stat().st_size / 2**20, 1)})[which] = row
                print(f"{fmt:8} {which:6} peak {row['peak_rss_mib']} MiB (+{row['added_by_read_mib']} MiB by the "
                      f"read, {row['kept_text_utf8_mib']} MiB of kept text) in {row['seconds']} s", flush=True)
            if "before" in results[fmt]:
                assert results[fmt]["before"]["sha256"] == results[fmt]["after"]["sha256"]  # type: ignore[index]
    report = {
        "benchmark": "prepare_input", "docs": args.docs, "seed": args.seed, "before_revision": args.before,
        "conditions": {"python": platform.python_version(), "machine": platform.machine(),
                       "cpus": os.cpu_count(), "note": "one fresh process per read; peak = VmHWM of that process"},
        "formats": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
