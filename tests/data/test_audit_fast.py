"""The fast near-duplicate search (MinHash LSH, verified exactly) against the exact one; settings; progress."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from multitype.config import load_configs
from multitype.data import audit as leakage
from multitype.data import neardup
from multitype.errors import ConfigError
from multitype.progress import Lines, ticking
from tests.conftest import run_cli_process
from tests.data.conftest import bbc_records, write_jsonl


def pairs(found: leakage.Audit) -> set[tuple[int, int]]:
    return set(zip(found.near_i.tolist(), found.near_j.tolist()))


def planted(seed: int = 0) -> tuple[list[dict[str, str]], set[int]]:
    """BBC articles plus edited copies (1 to 30% of words changed, dropped or added): near-duplicates on both sides
    of the 0.9 threshold, and the row numbers of the copies."""
    rng = np.random.default_rng(seed)
    base = bbc_records(per_class=60)
    rows = list(base)
    copies = set()
    for k in rng.choice(len(base), 120, replace=False):
        words = base[k]["text"].split()
        share = rng.uniform(0.01, 0.3)
        for _ in range(max(1, int(share * len(words)))):
            p = int(rng.integers(0, len(words)))
            op = rng.integers(0, 3)
            if op == 0 and len(words) > 10:
                del words[p]
            elif op == 1:
                words[p] = f"w{rng.integers(0, 10**6)}"
            else:
                words.insert(p, words[int(rng.integers(0, len(words)))])
        copies.add(len(rows))
        rows.append({"text": " ".join(words), "label": base[k]["label"]})
    order = rng.permutation(len(rows))
    return [rows[i] for i in order], {int(np.flatnonzero(order == c)[0]) for c in copies}


def test_lsh_finds_exactly_the_exact_pairs_on_bbc_news():
    records = bbc_records(per_class=10_000)  # all of BBC News, 4 classes: ~100 exact duplicates and near ones
    exact = leakage.run_audit(records, 0.9, method="exact")
    fast = leakage.run_audit(records, 0.9, method="lsh", n_workers=2)
    assert fast.search["method"] == "lsh" and exact.search["method"] == "exact"
    assert len(fast.members) == len(exact.members) < len(records) - 50  # the exact duplicates, by hash
    assert len(pairs(exact)) >= 40
    assert pairs(fast) == pairs(exact)
    assert np.allclose(fast.near_sim, exact.near_sim, atol=1e-5)


def test_lsh_recall_is_one_and_no_false_pair_on_planted_near_duplicates():
    records, copies = planted()
    exact = leakage.run_audit(records, 0.9, method="exact")
    fast = leakage.run_audit(records, 0.9, method="lsh")
    found = pairs(exact)
    planted_found = {p for p in found if p[0] in copies or p[1] in copies}
    assert 30 <= len(planted_found) < 110  # many copies stay above the threshold, some fall below ...
    assert len(found) - len(planted_found) < 60  # ... and the rest are the few natural ones
    assert pairs(fast) == found  # recall 1.0, and nothing that is not a pair
    assert (fast.near_sim >= 0.9 - 1e-6).all()
    assert fast.search["candidates"] >= len(found)


def test_results_do_not_depend_on_the_number_of_workers():
    records, _ = planted(seed=1)
    runs = [leakage.run_audit(records, 0.85, method=m, n_workers=w) for m in ("lsh", "exact") for w in (1, 3)]
    for other in runs[1:]:
        assert pairs(other) == pairs(runs[0])
        assert np.array_equal(other.unit_of, runs[0].unit_of)
    matrix = leakage.tfidf_matrix([r["text"] for r in records], n_jobs=1)
    one, _ = neardup.signatures(matrix, neardup.LshParams(), n_workers=1)
    three, _ = neardup.signatures(matrix, neardup.LshParams(), n_workers=3)
    assert np.array_equal(one, three)
    texts = [f"Text  number {i % 30_000}" for i in range(45_000)]  # enough to go to worker processes
    (keys2, words2), (keys1, words1) = leakage.text_keys(texts, 2), leakage.text_keys(texts, 1)
    assert keys2 == keys1 and np.array_equal(words2, words1) and words1[0] == 3
    assert leakage.text_keys(["A  b\n"], 1)[0] == leakage.text_keys(["a b"], 1)[0]


def test_auto_picks_the_method_by_size():
    records = bbc_records(per_class=5)
    assert leakage.run_audit(records, 0.9, method="auto", auto_lsh_from=21).search["method"] == "exact"
    found = leakage.run_audit(records, 0.9, method="auto", auto_lsh_from=20)
    assert found.search["method"] == "lsh"
    assert found.search["chosen_by"] == "auto: 20 distinct texts >= auto_lsh_from (20)"
    assert found.search["num_perm"] == 160 and found.search["bands"] == 32


@pytest.mark.parametrize(("text", "expected"), [
    ("leakage: {method: fast}", "'leakage.method' Input should be 'auto', 'exact' or 'lsh', got 'fast'"),
    ("leakage: {auto_lsh_from: -1}", "'leakage.auto_lsh_from' Input should be greater than or equal to 0"),
    ("leakage: {lsh: {bands: 30}}", "'leakage.lsh' bands (30) must divide num_perm (160)"),
    ("leakage: {lsh: {num_perm: 4}}", "'leakage.lsh.num_perm' Input should be greater than or equal to 8"),
    ("leakage: {lsh: {max_df: 0}}", "'leakage.lsh.max_df' Input should be greater than 0"),
    ("leakage: {lsh: {band: 16}}", "unknown key 'leakage.lsh.band'"),
    ("n_jobs: 0", "'n_jobs' must be a positive number of workers or negative"),
])
def test_leakage_method_and_lsh_settings_are_validated(config_dir: Path, text: str, expected: str):
    (config_dir / "data_config.yaml").write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_configs(str(config_dir))
    assert f"{config_dir}/data_config.yaml: {expected}" in str(exc.value)


def test_progress_lines_every_interval_with_an_estimate():
    now = [0.0]
    out = io.StringIO()
    tick = Lines("near-duplicates: MinHash", stream=out, every=10, clock=lambda: now[0])
    for done, t in ((100, 1), (250, 10.5), (300, 15), (500, 21), (1000, 30), (1000, 31)):
        now[0] = t
        tick(done, 1000)
    assert out.getvalue().splitlines() == [
        "near-duplicates: MinHash 250/1,000 (25%), 10 s elapsed, about 32 s left",
        "near-duplicates: MinHash 500/1,000 (50%), 21 s elapsed, about 21 s left",
        "near-duplicates: MinHash 1,000/1,000 (100%), 30 s elapsed",
    ]


def test_prepare_prints_progress_lines_when_output_is_a_pipe(tmp_path: Path, config_dir: Path):
    (config_dir / "data_config.yaml").write_text("leakage: {method: lsh}\n", encoding="utf-8")
    records, _ = planted()
    source = write_jsonl(tmp_path / "in.jsonl", records)
    result = run_cli_process("prepare", "--input", source, "--root", tmp_path / "root", "--config-dir", config_dir,
                             env={"MULTITYPE_PROGRESS_INTERVAL": "0"}, timeout=300)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^near-duplicates: TF-IDF, \d+ s elapsed$", result.stderr, re.M)
    for stage in ("near-duplicates: MinHash", "near-duplicates: LSH buckets", "near-duplicates: verifying"):
        assert re.search(rf"^{stage} [\d,]+/[\d,]+ \(\d+%\), \d+ s elapsed", result.stderr, re.M), stage
    assert "\x1b[" not in result.stderr.split("Leakage audit")[0]  # plain lines, no terminal codes
    audit = json.loads((tmp_path / "root/data/processed/audit.json").read_text())
    search = audit["near_duplicates"]["search"]
    assert search["method"] == "lsh" and search["chosen_by"] == "leakage.method: lsh"
    assert search["rows_per_band"] == 5 and search["candidates"] >= audit["near_duplicates"]["pairs"] > 0


def test_work_that_cannot_count_prints_its_elapsed_time():
    out = io.StringIO()
    with ticking(Lines("near-duplicates: TF-IDF", stream=out, every=0), every=0.01):
        time.sleep(0.1)
    lines = out.getvalue().splitlines()
    assert lines and all(re.fullmatch(r"near-duplicates: TF-IDF, \d+ s elapsed", line) for line in lines)
