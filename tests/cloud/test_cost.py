"""Estimates against hand-computed figures: FLOPs at the stated utilisation, measured speeds, speeds scaled
from other hardware; the plan (deadline, budget), recommendations, and the CLI's answers to bad input.

The project: 10 train texts of 400 characters (100 tokens at ~4 characters per token, capped at
max_length 64), 2 val and 2 test texts; model minilm (packaged config: 6 layers, hidden 384,
feed-forward 1536, 12 heads, vocabulary 30522, 512 positions); 2 epochs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from multitype.cloud import cost, flops, prices, recommend
from multitype.config import default_yaml
from multitype.errors import ModelError, UserError
from multitype.project import open_project
from tests.conftest import write_configs

# minilm: non-embedding parameters N = 6 x (4 x 384^2 + 2 x 384 x 1536) = 6 x (589,824 + 1,179,648)
N = 10_616_832
# FLOPs per training sample of 64 tokens: 6 N s + 12 L d s^2
F64 = 6 * N * 64 + 12 * 6 * 384 * 64 ** 2          # 4,076,863,488 + 113,246,208
F32 = 6 * N * 32 + 12 * 6 * 384 * 32 ** 2          # 2,038,431,744 + 28,311,552
# samples: 10 train x 2 epochs + evaluation (val after each of 2 epochs and at the end, test once) at 1/3
SAMPLES = 10 * 2 + (2 * (2 + 1) + 2) / 3           # 22.666...
# every job also pays the catalog's stated start-up minutes (image/data download, boot, install, upload)
SM_START, EC2_START = 4 / 60, 6 / 60


def _write(root: Path, train: int = 10, chars: int = 400) -> None:
    folder = root / "data" / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", 2), ("test", 2)):
        with open(folder / f"{split}_2class.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows([("x" * chars, ("a", "b")[i % 2]) for i in range(count)])
    (folder / "labels.json").write_text(json.dumps({"a": 0, "b": 1}))


def _transformer(**defaults: object) -> str:
    data = yaml.safe_load(default_yaml("transformer"))
    data["defaults"].update({"max_length": 64, "num_epochs": 2, "batch_size": 8, **defaults})
    return yaml.safe_dump(data)


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the packaged catalog only
    root = tmp_path / "root"
    _write(root)
    configs = write_configs(tmp_path / "configs", transformer=_transformer())
    return open_project(str(root), str(configs), "cost")


def _metrics(root: Path, **record: object) -> None:
    folder = root / "results" / "transformer"
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"model": "minilm", "train_samples_per_s": 50.0, "device": "NVIDIA A10G", "world_size": 1,
           "precision": "bf16", "params": {"max_length": 64}, "run_id": "r1", **record}
    (folder / "minilm_metrics.json").write_text(json.dumps(rec))


def test_model_shapes_offline() -> None:
    mini = flops.model_shape("minilm")
    assert (mini.layers, mini.hidden, mini.intermediate, mini.heads, mini.vocab) == (6, 384, 1536, 12, 30522)
    assert mini.nonembedding_params == N
    bert = flops.model_shape("bert-base-uncased")  # built-in table, no download
    # 12 x (4 x 768^2 + 2 x 768 x 3072) = 84,934,656; + (30522 + 512) x 768 = 23,834,112
    assert (bert.nonembedding_params, bert.params) == (84_934_656, 84_934_656 + 23_834_112)
    with pytest.raises(ModelError, match="no config.json for model 'someone/unknown-model'"):
        flops.model_shape("someone/unknown-model")


def test_flops_estimate_by_hand(proj) -> None:
    est = cost.estimate(proj, "minilm", "ml.g5.xlarge", spot=True)
    speed = 0.35 * 70e12 / F64                     # 35% of one A10G's 70 TFLOPS
    hours = SAMPLES / speed / 3600 + SM_START
    assert (est.kind, est.measured) == ("estimated", False)
    assert est.startup_hours == SM_START
    assert est.samples_per_s == pytest.approx(speed)
    assert est.hours == pytest.approx(hours)
    assert est.usd == pytest.approx(hours * 0.30)  # runbook spot price of ml.g5.xlarge
    assert est.catalog_date == prices.load_catalog().date
    assert "35% of 70 TFLOPS" in est.basis
    # fp32 uses the CUDA-core peak; on-demand the list price; epochs from the flag
    est = cost.estimate(proj, "minilm", "g5.12xlarge", spot=False, epochs=1)
    samples = 10 * 1 + (2 * (1 + 1) + 2) / 3
    assert est.hours == pytest.approx(samples / (0.35 * 280e12 / F64) / 3600 + EC2_START)
    assert est.usd == pytest.approx(est.hours * 5.672)


def test_cpu_estimate_and_spot_ratio(proj) -> None:
    est = cost.estimate(proj, "minilm", "ml.m5.xlarge", spot=True)
    speed = 0.35 * (2 * 64 * 3.1 / 1000) * 1e12 / F64  # 2 cores x 64 FLOPs/cycle x 3.1 GHz
    assert est.hours == pytest.approx(SAMPLES / speed / 3600 + SM_START)
    assert est.usd_hour == pytest.approx(0.23 * 0.30) and "estimate" in est.price_basis


def test_measured_speed_is_used_on_the_same_hardware(proj) -> None:
    _metrics(proj.storage.local_path())
    est = cost.estimate(proj, "minilm", "ml.g5.xlarge", spot=False)
    assert (est.kind, est.measured, est.samples_per_s) == ("measured", True, 50.0)
    assert est.hours == pytest.approx(SAMPLES / 50 / 3600 + SM_START)
    assert est.usd == pytest.approx((SAMPLES / 50 / 3600 + SM_START) * 1.01)
    assert "measured 50 samples/s on 1 x A10G" in est.basis


def test_measured_speed_scaled_to_other_hardware(proj) -> None:
    _metrics(proj.storage.local_path())
    v100 = cost.estimate(proj, "minilm", "ml.p3.2xlarge", spot=False)
    # the A10G run reached 50 x F64 FLOPs/s of 70 TFLOPS; the V100 has 125
    assert (v100.kind, v100.measured) == ("scaled", False)
    assert v100.samples_per_s == pytest.approx(50 * 125 / 70)
    assert v100.basis.startswith("scaled from 1 x A10G (50 samples/s at max_length 64")
    four = cost.estimate(proj, "minilm", "g5.12xlarge", spot=False)  # 4 A10G: another GPU count
    assert (four.kind, four.samples_per_s) == ("scaled", pytest.approx(50 * 4))


def test_measured_at_another_max_length_is_scaled_by_flops(proj) -> None:
    _metrics(proj.storage.local_path(), params={"max_length": 32})
    est = cost.estimate(proj, "minilm", "ml.g5.xlarge", spot=False)
    assert est.kind == "scaled" and est.samples_per_s == pytest.approx(50 * F32 / F64)


def test_cpu_measurement_is_not_used_and_manifest_gives_the_gpu(proj) -> None:
    root = proj.storage.local_path()
    _metrics(root, device="cpu (2 threads)")
    assert cost.estimate(proj, "minilm", "ml.g5.xlarge", spot=False).kind == "estimated"
    _metrics(root, device=None)  # the run's manifest says which GPU it ran on
    (root / "runs" / "r1").mkdir(parents=True)
    (root / "runs" / "r1" / "manifest.json").write_text(json.dumps({"hardware": {"cuda_devices": ["NVIDIA A10G"]}}))
    assert cost.estimate(proj, "minilm", "ml.g5.xlarge", spot=False).kind == "measured"


def test_benchmark_results_are_read(proj) -> None:
    bench = proj.storage.local_path() / "benchmarks" / "results"
    bench.mkdir(parents=True)
    (bench / "gpu.json").write_text(json.dumps({"runs": {"a": {"params": {"model_name": "minilm", "max_length": 64},
                                                               "train_samples_per_s": 80.0, "precision": "bf16",
                                                               "device": "NVIDIA A10G"}}}))
    est = cost.estimate(proj, "minilm", "g5.xlarge", spot=False)
    assert (est.kind, est.samples_per_s) == ("measured", 80.0) and "gpu.json" in est.basis


def test_parallel_and_multi_instance_launch_estimates(proj) -> None:
    _metrics(proj.storage.local_path())
    par = cost.launch_estimate(proj, "parallel", ["minilm", "bert-base-uncased"], "g5.12xlarge", spot=False)
    bert_speed = 0.35 * 70e12 / (6 * 84_934_656 * 64 + 12 * 12 * 768 * 64 ** 2)  # one A10G each
    hours = max(SAMPLES / 50 / 3600, SAMPLES / bert_speed / 3600) + EC2_START
    assert par.hours == pytest.approx(hours) and par.usd == pytest.approx(hours * 5.672)
    two = cost.launch_estimate(proj, "transformer", ["minilm"], "ml.g5.xlarge", spot=False, count=2)
    # the work is split over 2 instances; each one starts up (and is billed for it)
    assert two.hours == pytest.approx(SAMPLES / 50 / 3600 / 2 + SM_START)
    assert two.usd == pytest.approx((SAMPLES / 50 / 3600 + 2 * SM_START) * 1.01)
    base = cost.launch_estimate(proj, "baseline", [], "ml.m5.xlarge", spot=False, max_run=7200)
    assert (base.hours, base.usd, base.kind) == (2.0, pytest.approx(2 * 0.23), "bound")
    odd = cost.launch_estimate(proj, "transformer", ["someone/unknown-model"], "ml.g5.xlarge", spot=False,
                               max_run=3600)
    assert odd.kind == "bound" and odd.usd == pytest.approx(1.01) and "no estimate" in odd.basis


def test_parse_duration() -> None:
    assert [cost.parse_duration(t) for t in ("4h", "90m", "1h30m", "2d", "3600s", "1.5")] == \
        [4, 1.5, 1.5, 48, 1, 1.5]
    for bad in ("4x", "", "h", "-1h", "0"):
        with pytest.raises(UserError, match="--deadline"):
            cost.parse_duration(bad)


def test_check_budget() -> None:
    cost.check_budget(5.0, None, force=False, what="x")
    cost.check_budget(5.0, 5.0, force=False, what="x")
    cost.check_budget(6.0, 5.0, force=True, what="x")
    with pytest.raises(cost.OverBudget, match=r"^the job is estimated at \$6\.00, over the budget of \$5\.00 .*--force"):
        cost.check_budget(6.0, 5.0, force=False, what="the job")
    with pytest.raises(UserError, match="--budget must be above 0 USD, got 0"):
        cost.check_budget(1.0, 0, force=True, what="x")


def test_plan_deadline_and_budget(proj) -> None:
    types = ["ml.m5.xlarge", "ml.g5.xlarge"]
    cpu_hours = SAMPLES / (0.35 * 0.3968e12 / F64) / 3600 + SM_START
    result = cost.plan(proj, ["minilm"], types, spot=False)
    assert [e.instance_type for e in result.rows] == ["ml.g5.xlarge", "ml.m5.xlarge"] or \
        result.rows[0].usd <= result.rows[1].usd
    cheapest = min(result.rows, key=lambda e: e.usd)
    assert result.chosen["minilm"] is cheapest
    tight = cost.plan(proj, ["minilm"], ["ml.m5.xlarge"], spot=False, deadline_hours=cpu_hours / 2)
    with pytest.raises(UserError, match=r"no instance type finishes minilm within 2\.0 min; the closest is ml\.m5\.xlarge "
                                        r"at 4\.0 min"):
        tight.check(None)
    with pytest.raises(cost.OverBudget, match=r"^the cheapest plan \(minilm on "):
        result.check(cheapest.usd / 2)


def test_recommend_fine_tune_by_memory(proj) -> None:
    out = recommend.recommend(proj, "fine-tune", "minilm", service="sagemaker")
    # 16 B x 22,533,888 parameters + activations 6 x (64 x 8 x 384 x (34 + 5 x 12 x 64 / 384)) bytes, x1.2 + 1 GiB
    need = (16 * 22_533_888 + 6 * 64 * 8 * 384 * (34 + 10)) / 2 ** 30 * 1.2 + 1
    assert all(r.need_gib == pytest.approx(need) for r in out)
    assert all(prices.load_catalog().instance(r.instance_type).gpus for r in out) and len(out) == 3
    assert [r.estimate.usd for r in out] == sorted(r.estimate.usd for r in out)
    with pytest.raises(UserError, match="no GPU type in the catalog holds 'bert-large-uncased'"):
        big = yaml.safe_load(_transformer(batch_size=512, max_length=512, precision="fp32"))
        write_configs(Path(proj.storage.root).parent / "big", transformer=yaml.safe_dump(big))
        recommend.recommend(open_project(proj.storage.root, str(Path(proj.storage.root).parent / "big"), "c"),
                            "fine-tune", "bert-large-uncased")


def test_recommend_cpu_tasks(proj) -> None:
    for task in ("preprocess", "baseline", "inference"):
        out = recommend.recommend(proj, task, service="ec2")
        assert out and all(prices.load_catalog().instance(r.instance_type).gpus == 0 for r in out)
        assert [r.usd_hour for r in out] == sorted(r.usd_hour for r in out)
    inf = recommend.recommend(proj, "inference", service="ec2")[0]   # t3.medium: 1 core x 64 x 2.5 GHz
    speed = 0.35 * 0.16e12 / (F64 / 3)
    assert inf.instance_type == "t3.medium" and inf.usd_per_1k == pytest.approx(1000 / speed / 3600 * 0.0416)


# --- the CLI ------------------------------------------------------------------------------------------
def _args(proj, *extra: str) -> list[str]:
    return ["cost", *extra, "--root", proj.storage.root, "--config-dir", str(Path(proj.storage.root).parent / "configs")]


def test_cli_estimate_json_and_table(proj, cli) -> None:
    r = cli(*_args(proj, "estimate", "--instance-types", "ml.g5.xlarge,ml.p3.2xlarge", "--on-demand", "--json"))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["instance_type"]: row for row in doc["rows"]}
    g5_hours = SAMPLES / (0.35 * 70e12 / F64) / 3600 + SM_START
    assert rows["ml.g5.xlarge"]["usd"] == pytest.approx(g5_hours * 1.01)
    assert rows["ml.p3.2xlarge"]["usd"] == pytest.approx((SAMPLES / (0.35 * 125e12 / F64) / 3600 + SM_START) * 3.06)
    assert doc["chosen"] == {"minilm": min(rows, key=lambda n: rows[n]["usd"])}
    assert doc["catalog"]["date"] == prices.load_catalog().date
    r = cli(*_args(proj, "estimate", "--instance-types", "ml.g5.xlarge", "--models", "minilm,bert-base-uncased"))
    assert r.exit_code == 0, r.stderr
    assert "estimated" in r.stdout and f"catalog {prices.load_catalog().date}" in r.stdout
    assert r.stdout.count("*") >= 2 and "total:" in r.stdout


PACKAGED_DATE = json.loads(prices.package_catalog_path().read_text())["date"]


@pytest.mark.parametrize("extra, message", [
    (("--instance-types", "ml.g5.xlarg"), "error: instance type 'ml.g5.xlarg' is not in the price catalog "
                                          f"({PACKAGED_DATE}); did you mean ml.g5.xlarge, ml.g5.2xlarge"),
    (("--budget", "0"), "error: --budget must be above 0 USD, got 0"),
    (("--deadline", "soon"), "error: --deadline 'soon' is not a duration"),
    (("--instance-types", "ml.m5.xlarge,ml.c5.xlarge", "--epochs", "1000", "--deadline", "1m"),
     "error: no instance type finishes minilm within 1.0 min; the closest is ml.c5.xlarge at "),
    (("--instance-types", "ml.g5.xlarge", "--budget", "0.0000001"), "error: the cheapest plan (minilm on ml.g5.xlarge)"),
])
def test_cli_estimate_bad_input(proj, cli, extra, message) -> None:
    r = cli(*_args(proj, "estimate", *extra))
    assert r.exit_code == 2 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_recommend(proj, cli) -> None:
    r = cli(*_args(proj, "recommend", "--task", "fine-tune", "--json"))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc) == 6 and all(d["estimate"]["kind"] == "estimated" for d in doc)
    assert {d["instance_type"].startswith("ml.") for d in doc} == {True, False}  # both services
    r = cli(*_args(proj, "recommend", "--task", "train"))
    assert r.exit_code == 2 and r.stderr.startswith("error: --task must be one of preprocess, baseline")


def _cells(stdout: str) -> list[list[str]]:
    """The body rows of a rich table as lists of stripped cells (a folded cell's continuation lines dropped)."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]
    return [r for r in rows if r[1]]


def test_estimate_on_the_prepared_bbc_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    """The 48-article BBC project (4 classes; 24 train, 12 val, 12 test; max_length 256, 3 epochs), minilm measured
    at 120 samples/s on one A10G: sensible figures, the catalog date, measured vs estimated per row, the
    cheapest row that meets the deadline marked and the late rows named."""
    from tests.cloud.launch_helpers import make_project

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root, configs = make_project(tmp_path, None)
    _metrics(root, train_samples_per_s=120.0, params={"max_length": 256})
    args = ["cost", "estimate", "--models", "minilm,bert-base-uncased", "--instance-types",
            "ml.g5.xlarge,ml.p3.2xlarge,ml.m5.xlarge,g4dn.xlarge", "--on-demand", "--deadline", "5m",
            "--root", str(root), "--config-dir", str(configs)]
    doc = json.loads(cli(*args, "--json").stdout)
    rows = {(r["model"], r["instance_type"]): r for r in doc["rows"]}
    mini = rows[("minilm", "ml.g5.xlarge")]
    assert (mini["kind"], mini["samples_per_s"]) == ("measured", 120.0)
    train = 24 * 3 + (12 * 4 + 12) / 3  # train x epochs + val after each epoch and at the end + test, at 1/3
    assert mini["hours"] == pytest.approx(train / 120 / 3600 + 4 / 60)
    assert mini["usd"] == pytest.approx(mini["hours"] * 1.01)
    assert rows[("minilm", "ml.p3.2xlarge")]["kind"] == "scaled"
    assert rows[("bert-base-uncased", "ml.g5.xlarge")]["kind"] == "estimated"
    late = {k for k, r in rows.items() if r["hours"] > 5 / 60}
    # the CPU rows (~1 sample/s on 2 cores) and EC2 (6 start-up minutes) miss 5 min; the cheapest left is g5
    assert {k[1] for k in late} == {"ml.m5.xlarge", "g4dn.xlarge"}
    assert doc["chosen"] == {"minilm": "ml.g5.xlarge", "bert-base-uncased": "ml.g5.xlarge"}
    for model in ("minilm", "bert-base-uncased"):
        fits = [r for k, r in rows.items() if k[0] == model and k not in late]
        assert doc["chosen"][model] == min(fits, key=lambda r: r["usd"])["instance_type"]

    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"catalog {prices.load_catalog().date} (" in out and "start-up per job" in out
    assert "* = cheapest that meets the deadline" in " ".join(out.split())
    table = _cells(out)
    assert len(table) == 8
    for mark, model, itype, _usd_h, _speed, time, usd, kind, _basis in table:
        r = rows[(model, itype)]
        assert kind == r["kind"] and usd != "$0.0000" and time not in ("0 s", "<1 s")
        assert mark == ("*" if doc["chosen"][model] == itype else "late" if (model, itype) in late else "")
    assert out.strip().splitlines()[-1].startswith("total: ")
