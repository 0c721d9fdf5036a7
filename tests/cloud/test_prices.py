"""The price catalog: the runbook's table, the docs' EC2 types checked against AWS's own instance data,
peaks with sources, spot estimates that say so, and the user copy that ``cost refresh`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multitype.cloud import catalog as sm_catalog
from multitype.cloud import prices
from multitype.errors import AwsError

RUNBOOK = {"ml.p3.2xlarge": (3.06, 0.90), "ml.p3.8xlarge": (12.24, 3.67), "ml.g5.xlarge": (1.01, 0.30),
           "ml.g5.2xlarge": (1.21, 0.36)}
DOCS_EC2 = ("t3.medium", "m5.large", "c5.xlarge", "r5.large", "g4dn.xlarge", "p3.2xlarge", "p4d.24xlarge",
            "g5.xlarge", "g5.12xlarge")


@pytest.fixture(autouse=True)
def _no_user_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(prices.ENV_FILE, raising=False)


def test_package_catalog_is_versioned_and_dated() -> None:
    cat = prices.load_catalog()
    raw = json.loads(prices.package_catalog_path().read_text())
    assert cat.path == str(prices.package_catalog_path())
    assert (cat.version, cat.date, cat.region) == (raw["version"], raw["date"], "us-east-1")
    assert "us-east-1 public list prices" in cat.source
    assert {"runbook", "aws-sagemaker-pricing", "aws-ec2-pricing", "spot-ratio"} <= set(cat.sources)
    for name in cat.names():  # every price names a source the header lists
        assert raw["instances"][name]["price_source"] in cat.sources


def test_runbook_sagemaker_table() -> None:
    cat = prices.load_catalog()
    for name, (on_demand, spot) in RUNBOOK.items():
        spec = cat.instance(name)
        assert (spec.on_demand_usd_hour, spec.spot_usd_hour) == (on_demand, spot)
        assert cat.price(name, spot=False) == on_demand and cat.price(name, spot=True) == spot
        assert spec.price_source == "runbook" and spec.service == "sagemaker"
    assert cat.instance("ml.p3.8xlarge").gpus == 4 and cat.instance("ml.p3.8xlarge").gpu_model == "V100"


def test_docs_ec2_types_and_services() -> None:
    cat = prices.load_catalog()
    assert set(DOCS_EC2) <= set(cat.names("ec2"))
    assert all(n.startswith("ml.") for n in cat.names("sagemaker"))
    assert {"ml.m5.xlarge"} <= set(cat.names("sagemaker"))  # the baselines' default instance
    assert set(cat.names()) == set(cat.names("ec2")) | set(cat.names("sagemaker"))
    spec = cat.instance("g5.12xlarge")
    assert (spec.vcpu, spec.memory_gib, spec.gpus, spec.gpu_model, spec.on_demand_usd_hour) == \
        (48, 192, 4, "A10G", 5.672)
    assert spec.spot_usd_hour is None and cat.price("g5.12xlarge", spot=True) is None  # never invented
    assert cat.instance("nope.large") is None and cat.price("nope.large", spot=False) is None


def test_sagemaker_names_are_training_instance_types() -> None:
    known = set(sm_catalog.training_instance_types())  # botocore's model of the SageMaker API
    assert set(prices.load_catalog().names("sagemaker")) <= known


def test_specs_match_aws_describe_instance_types(aws_env) -> None:
    """vCPUs, memory and GPUs agree with EC2 DescribeInstanceTypes (moto serves AWS's own data)."""
    from multitype.cloud import aws
    from multitype.config import AwsConfig

    cat = prices.load_catalog()
    ec2 = aws.client("ec2", AwsConfig())
    names = [n.removeprefix("ml.") for n in cat.names()]
    answered = {}
    for name in sorted(set(names)):
        try:
            [info] = ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
        except Exception:  # noqa: BLE001 - a type moto's copy lacks (p3): skipped below
            continue
        answered[name] = info
    assert len(answered) >= 12, sorted(answered)
    for full in cat.names():
        info = answered.get(full.removeprefix("ml."))
        if info is None:
            continue
        spec = cat.instance(full)
        assert spec.vcpu == info["VCpuInfo"]["DefaultVCpus"], full
        assert spec.memory_gib == info["MemoryInfo"]["SizeInMiB"] / 1024, full
        gpus = info.get("GpuInfo", {}).get("Gpus", [])
        assert spec.gpus == sum(g["Count"] for g in gpus), full
        if gpus:
            assert spec.gpu_model == gpus[0]["Name"], full
            assert spec.gpu_memory_gib == pytest.approx(gpus[0]["MemoryInfo"]["SizeInMiB"] / 1024, abs=0.01), full
        else:
            assert spec.vcpu // 2 * 64 * info["ProcessorInfo"]["SustainedClockSpeedInGhz"] / 1000 == \
                pytest.approx(spec.peak_fp32_tflops), full


def test_peaks_and_their_sources() -> None:
    cat = prices.load_catalog()
    for model, gpu in cat.gpus.items():
        assert gpu["tensor_tflops"] > gpu["fp32_tflops"] > 0 and gpu["source"], model
    g5 = cat.instance("g5.12xlarge")
    assert (g5.peak_tflops, g5.peak_fp32_tflops, g5.bf16) == (4 * 70.0, 4 * 35.0, True)
    assert "A10G" in g5.peak_source
    assert cat.instance("ml.p3.2xlarge").bf16 is False  # V100: fp16 tensor cores only
    m5 = cat.instance("ml.m5.xlarge")  # 4 vCPU = 2 cores x 64 fp32 FLOPs/cycle (AVX-512, 2 FMA) x 3.1 GHz
    assert m5.peak_tflops == m5.peak_fp32_tflops == pytest.approx(2 * 64 * 3.1 / 1000)
    assert m5.gpus == 0 and "FLOPs/cycle" in m5.peak_source


def test_spot_quote_falls_back_to_the_stated_ratio() -> None:
    cat = prices.load_catalog()
    q = cat.quote("ml.m5.xlarge", spot=True)  # no spot figure: 0.23 x 0.30
    assert (q.usd_hour, q.estimated) == (pytest.approx(0.069), True)
    assert "estimate" in q.basis and "0.30" in q.basis
    q = cat.quote("ml.g5.xlarge", spot=True)
    assert (q.usd_hour, q.estimated) == (0.30, False) and "runbook" in q.basis
    assert cat.quote("ml.g5.xlarge", spot=False).usd_hour == 1.01


def test_unknown_type_names_the_nearest() -> None:
    with pytest.raises(AwsError, match=r"^instance type 'g5\.xlarg' is not in the price catalog \(.+\); did you "
                                       r"mean g5\.xlarge"):
        prices.load_catalog().require("g5.xlarg")


def _copy(date: str, version: int = 1, g5: float = 9.99) -> dict:
    data = json.loads(prices.package_catalog_path().read_text())
    data["date"], data["version"] = date, version
    data["instances"]["g5.xlarge"]["on_demand"] = g5
    return data


def test_newer_user_copy_wins_older_loses(tmp_path: Path) -> None:
    user = prices.user_catalog_path()
    assert user == tmp_path / "cache" / "multitype" / "prices.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps(_copy("2099-01-01")))
    cat = prices.load_catalog()
    assert (cat.path, cat.date, cat.price("g5.xlarge", spot=False)) == (str(user), "2099-01-01", 9.99)
    user.write_text(json.dumps(_copy("2000-01-01")))
    cat = prices.load_catalog()
    assert (cat.path, cat.price("g5.xlarge", spot=False)) == (str(prices.package_catalog_path()), 1.006)


def test_broken_user_copy_is_named(tmp_path: Path) -> None:
    user = prices.user_catalog_path()
    user.parent.mkdir(parents=True)
    user.write_text("{not json")
    with pytest.raises(AwsError, match=f"the price catalog {user} cannot be read"):
        prices.load_catalog()
