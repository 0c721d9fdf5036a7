"""Benchmark: ``multitype prepare`` on 120,000, 480,000 and 1,000,000 generated documents.

Run with ``.venv/bin/python benchmarks/prepare.py`` (never part of
``make test``). Documents come from ``benchmarks/baselines.py``'s generator
(BBC News sentences recombined, 40-200 words, 4 classes, seeded), plus planted
leaks so that the audit has something to find: 1% of the documents get a copy
with one to three words deleted, replaced or repeated (a near-duplicate) and
0.5% an exact copy. Each size is written as JSON Lines and prepared by the real
CLI in a child process (``python -m multitype prepare``), whose wall time, CPU
time (its own and its reaped workers', from ``wait4``) and peak memory (max RSS
of it and of its largest worker, from GNU ``time``'s ``%M``) are recorded with the findings of its
``audit.json``: pairs found, the search method and its parameters.

* ``baseline_exact_120k``: the named baseline, ``prepare`` as it is on ``main``
  before this change (``git archive`` of ``git merge-base HEAD main``: exact
  near-duplicate search, one thread) on the 120,000 documents; measured in the
  same run.
* ``ours_120k``, ``ours_480k``, ``ours_1m``: ``prepare`` from this tree with the
  default ``leakage.method: auto`` (MinHash LSH at these sizes), all cores.
* ``recall_120k``: the near-duplicate search alone, in this process, on the
  120,000 documents' distinct texts: exact (prefix filtering) against LSH,
  both from this tree: seconds of each, pairs, recall of LSH (pairs at or above
  the threshold that LSH also finds / those the exact search finds) and false
  pairs (LSH pairs the exact search does not report: must be 0).

Targets (issue 14): t(1M) / t(120k) <= 10 (linear is 8.3), 1M in <= 5 min on
2 cores, peak memory <= 8 GB, recall >= 0.99. ``load_avg`` before and after each
run says how much other work shared the CPUs. Results go to
``benchmarks/results/prepare.json``; ``--sizes`` runs other sizes (the targets
are then assessed only where the sizes match).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from baselines import device_info, synthetic_corpus  # noqa: E402

OUT = Path(__file__).parent / "results" / "prepare.json"
REPO = Path(__file__).resolve().parent.parent
SIZES = (120_000, 480_000, 1_000_000)
TARGET_RATIO, TARGET_SECONDS, TARGET_GB, TARGET_RECALL = 10.0, 300.0, 8.0, 0.99
NEAR_SHARE, EXACT_SHARE = 0.01, 0.005


# --- data --------------------------------------------------------------------------------
def corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` generated documents, plus planted near-duplicates (1%) and exact copies (0.5%), shuffled."""
    texts, labels = synthetic_corpus(n, seed)
    rng = np.random.default_rng(seed + 1)
    out_t, out_l = list(texts), list(labels)
    for k in rng.choice(n, int(n * NEAR_SHARE), replace=False):
        words = texts[k].split()
        for _ in range(int(rng.integers(1, 4))):
            op, p = int(rng.integers(0, 3)), int(rng.integers(0, len(words)))
            if op == 0 and len(words) > 5:
                del words[p]
            elif op == 1:
                words[p] = words[int(rng.integers(0, len(words)))]
            else:
                words.insert(p, words[int(rng.integers(0, len(words)))])
        out_t.append(" ".join(words))
        out_l.append(labels[k])
    for k in rng.choice(n, int(n * EXACT_SHARE), replace=False):
        out_t.append(texts[k])
        out_l.append(labels[k])
    order = rng.permutation(len(out_t))
    return [out_t[i] for i in order], [out_l[i] for i in order]


def write_jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for text, label in zip(texts, labels):
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


# --- runs --------------------------------------------------------------------------------
def cpu_flags() -> list[str]:
    try:
        flags = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return []
    wanted = ("sse4_2", "avx", "avx2", "fma", "bmi2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_int8")
    have = set(flags.group(1).split()) if flags else set()
    return [f for f in wanted if f in have]


def run_prepare(src: Path, source: Path, root: Path, configs: Path) -> dict[str, Any]:
    """``python -m multitype prepare`` from ``src`` in a child process: wall, CPU, peak memory, audit findings."""
    env = {**os.environ, "PYTHONPATH": str(src), "MULTITYPE_PROGRESS_INTERVAL": "30"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    command = [sys.executable, "-m", "multitype", "prepare", "--input", str(source), "--root", str(root),
               "--config-dir", str(configs)]
    # A child forked from this (large) process starts with its RSS counted in ru_maxrss; GNU time forks
    # prepare from a small process, so its %M is prepare's own peak (and its reaped workers').
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        command = [str(gnu_time), "-f", "multitype-bench maxrss_kb=%M", *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    maxrss_kb = None
    for line in proc.stdout:  # progress lines, shown as they come
        if line.startswith("multitype-bench maxrss_kb="):
            maxrss_kb = int(line.split("=", 1)[1])
            continue
        if not line.startswith(("┃", "│", "┏", "┗", "┡", "└", "┌", "├")):
            print("    " + line.rstrip(), flush=True)
        tail = (tail + [line])[-40:]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"prepare failed ({proc.returncode}):\n{''.join(tail)}")
    audit = json.loads((root / "data/processed/audit.json").read_text(encoding="utf-8"))
    near = audit["near_duplicates"]
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_gb": round((maxrss_kb or usage.ru_maxrss) / 2**20, 2),  # KiB on Linux
            "peak_rss_from": "GNU time %M" if maxrss_kb else "wait4 ru_maxrss (includes this process's RSS at fork)",
            "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "records_read": audit["records_read"], "near_duplicate_pairs": near["pairs"],
            "exact_duplicate_groups": audit["exact_duplicates"]["groups"],
            "search": near.get("search", {"method": "exact (single-threaded prefix filtering)"}),
            "cross_split": {k: audit["cross_split"][k] for k in ("exact_duplicates", "near_duplicates")}}


def recall(texts: list[str], labels: list[str], threshold: float) -> dict[str, Any]:
    """Exact search against LSH on the same distinct texts (this tree, this process)."""
    from multitype.data import audit as leakage
    from multitype.data import neardup

    records = [{"text": t, "label": y} for t, y in zip(texts, labels)]
    n_workers = neardup.workers(-1)
    out: dict[str, Any] = {"threshold": threshold, "workers": n_workers}
    found = {}
    for method in ("exact", "lsh"):
        start, cpu = time.perf_counter(), time.process_time()
        result = leakage.run_audit(records, threshold, method=method, n_workers=n_workers)
        found[method] = set(zip(result.near_i.tolist(), result.near_j.tolist()))
        out[method] = {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1),
                       "pairs": len(found[method]), "distinct_texts": len(result.members),
                       **({"candidates": result.search["candidates"]} if method == "lsh" else {})}
        print(f"    {method}: {out[method]}", flush=True)
    exact, lsh = found["exact"], found["lsh"]
    out["recall"] = round(len(exact & lsh) / max(1, len(exact)), 5)
    out["missed_pairs"] = len(exact - lsh)
    out["false_pairs"] = len(lsh - exact)
    out["speedup_exact_over_lsh"] = round(out["exact"]["wall_s"] / max(out["lsh"]["wall_s"], 1e-9), 2)
    return out


def branch_point_src(tmp: Path) -> tuple[Path, str]:
    """The ``src`` tree of ``git merge-base HEAD main`` (main without this branch's changes)."""
    commit = subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True,
                            check=True).stdout.strip()
    out = tmp / "baseline"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src", commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="generated documents per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the branch-point prepare")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.time()
    device = {**device_info(), "cpu_flags": cpu_flags()}

    from multitype.config import CONFIG_FILES

    figures: dict[str, Any] = {}
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="multitype-bench-prepare-") as tmp_name:
        tmp = Path(tmp_name)
        configs = tmp / "configs"
        configs.mkdir()
        for name in CONFIG_FILES.values():  # empty: each tree's own defaults (the baseline lacks the new keys)
            (configs / name).write_text("", encoding="utf-8")
        threshold = 0.9
        sources: dict[int, Path] = {}
        first = min(args.sizes)
        for n in sorted(args.sizes):
            print(f"generating {n:,} documents (+{NEAR_SHARE:.0%} near-duplicates, +{EXACT_SHARE:.1%} exact "
                  "copies) ...", flush=True)
            texts, labels = corpus(n, args.seed)
            sources[n] = tmp / f"docs_{n}.jsonl"
            write_jsonl(sources[n], texts, labels)
            data[str(n)] = {"documents": len(texts), "jsonl_mb": round(sources[n].stat().st_size / 2**20, 1)}
            if n == first:
                print(f"recall_{n // 1000}k: exact search vs LSH on the distinct texts ...", flush=True)
                figures[f"recall_{n // 1000}k"] = recall(texts, labels, threshold)
            del texts, labels

        baseline_commit = None
        if not args.skip_baseline:
            src, baseline_commit = branch_point_src(tmp)
            name = f"baseline_exact_{first // 1000}k"
            print(f"{name}: prepare at {baseline_commit[:10]} (merge-base with main) ...", flush=True)
            figures[name] = run_prepare(src, sources[first], tmp / f"root_baseline_{first}", configs)
            print(f"  {figures[name]}", flush=True)
        for n in sorted(args.sizes):
            name = f"ours_{n // 1000}k" if n < 1_000_000 else f"ours_{n // 1_000_000}m"
            print(f"{name}: prepare (leakage.method: auto) ...", flush=True)
            figures[name] = run_prepare(REPO / "src", sources[n], tmp / f"root_{n}", configs)
            print(f"  {figures[name]}", flush=True)

    ours = {n: figures[f"ours_{n // 1000}k" if n < 1_000_000 else f"ours_{n // 1_000_000}m"] for n in args.sizes}
    ratios: dict[str, Any] = {}
    small, large = min(args.sizes), max(args.sizes)
    ratios[f"time_{large}_over_{small}"] = round(ours[large]["wall_s"] / ours[small]["wall_s"], 2)
    ratios[f"cpu_{large}_over_{small}"] = round(ours[large]["cpu_s"] / ours[small]["cpu_s"], 2)
    ratios["linear_would_be"] = round(data[str(large)]["documents"] / data[str(small)]["documents"], 2)
    base = figures.get(f"baseline_exact_{small // 1000}k")
    if base:
        ratios[f"ours_vs_baseline_{small // 1000}k_wall"] = round(ours[small]["wall_s"] / base["wall_s"], 3)
        ratios[f"ours_vs_baseline_{small // 1000}k_cpu"] = round(ours[small]["cpu_s"] / base["cpu_s"], 3)
    rec = figures[f"recall_{small // 1000}k"]
    standard = small == 120_000 and large == 1_000_000
    targets = {
        "time_ratio_1m_over_120k": {"target": f"<= {TARGET_RATIO:g}", "measured": ratios[f"time_{large}_over_{small}"],
                                    "met": ratios[f"time_{large}_over_{small}"] <= TARGET_RATIO if standard else None},
        "seconds_1m": {"target": f"<= {TARGET_SECONDS:g} s on 2 cores", "measured": ours[large]["wall_s"],
                       "met": ours[large]["wall_s"] <= TARGET_SECONDS if large == 1_000_000 else None},
        "peak_memory_1m_gb": {"target": f"<= {TARGET_GB:g}", "measured": ours[large]["peak_rss_gb"],
                              "met": ours[large]["peak_rss_gb"] <= TARGET_GB if large == 1_000_000 else None},
        "recall_120k": {"target": f">= {TARGET_RECALL}", "measured": rec["recall"], "false_pairs": rec["false_pairs"],
                        "met": rec["recall"] >= TARGET_RECALL and rec["false_pairs"] == 0},
    }
    result = {
        "benchmark": "multitype prepare on generated documents; named baseline: prepare at the merge-base with "
                     "main (exact near-duplicate search, one thread)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_seconds": round(time.time() - started, 1),
        "command": " ".join(["benchmarks/prepare.py", *(sys.argv[1:] if argv is None else argv)]),
        "device": device,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {name: importlib.metadata.version(name) for name in ("multitype", "scikit-learn", "scipy",
                                                                          "numpy")},
        "baseline_commit": baseline_commit,
        "data": {"sizes": data, "seed": args.seed, "classes": 4, "words_per_doc": "40-200",
                 "planted": f"{NEAR_SHARE:.0%} near-duplicates (1-3 words deleted, replaced or repeated), "
                            f"{EXACT_SHARE:.1%} exact copies",
                 "source": "benchmarks/baselines.py synthetic_corpus: BBC News sentences recombined"},
        "figures": figures,
        "ratios": ratios,
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets.values() if t["met"] is not None),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"ratios": ratios, "targets": targets}, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
