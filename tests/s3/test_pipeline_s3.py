"""The pipeline on an s3:// root gives the same tree as on a folder, and sync moves it both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path

from multitype import layout
from tests.conftest import make_bbc_subset, write_configs

RUN_ID = re.compile(r"^runs/[^/]+/")
VOLATILE = {"run_id", "started", "finished", "created"}


def run_pipeline(cli, root: str, configs: Path, bbc: Path, texts: Path, output: Path) -> None:
    for args in (("prepare", "--input", bbc), ("train", "baseline"), ("report",),
                 ("predict", "--model", layout.final_model("logreg"), "--input", texts, "--output", output)):
        result = cli(*args, "--root", root, "--config-dir", configs)
        assert result.exit_code == 0, (args, result.stderr)


def normalised(keys: set[str]) -> set[str]:
    return {RUN_ID.sub("runs/<id>/", k) for k in keys}


def stable(obj):
    """A metrics record without run ids and timings."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items()
                if k not in VOLATILE and not k.endswith(("seconds", "per_s", "_s"))}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def test_same_tree_locally_and_in_s3_then_pull_and_push(cli, tmp_path: Path, s3_server) -> None:
    configs = write_configs(tmp_path / "configs")
    bbc = make_bbc_subset(tmp_path / "bbc", per_class=25, seed=3)
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nThe striker scored twice in the cup final.\nShares fell after the profit warning.\n")

    local = tmp_path / "local"
    run_pipeline(cli, str(local), configs, bbc, texts, tmp_path / "local-predictions.csv")
    bucket = s3_server.make_bucket("pipeline")
    remote = f"s3://{bucket}/team/proj"
    run_pipeline(cli, remote, configs, bbc, texts, tmp_path / "s3-predictions.csv")

    local_keys = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    s3_keys = {k[len("team/proj/"):] for k in s3_server.list_keys(bucket, "team/proj/")}
    assert normalised(s3_keys) == normalised(local_keys)
    for key in (layout.RAW_DATA, layout.processed_split("train", 4), layout.LABELS, layout.AUDIT,
                layout.baseline_metrics("logreg"), layout.BASELINE_SUMMARY, layout.REPORT,
                f"{layout.final_model('logreg')}/_COMPLETE"):
        assert key in s3_keys, key

    client = s3_server.client()

    def s3_bytes(key: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=f"team/proj/{key}")["Body"].read()

    for split in layout.SPLITS:  # the same data, byte for byte
        key = layout.processed_split(split, 4)
        assert s3_bytes(key) == (local / key).read_bytes(), key
    for name in layout.BASELINE_NAMES:
        key = layout.baseline_metrics(name)
        assert stable(json.loads(s3_bytes(key))) == stable(json.loads((local / key).read_text())), key
    assert (tmp_path / "s3-predictions.csv").read_text() == (tmp_path / "local-predictions.csv").read_text()

    # an empty machine pulls the S3 root, works on it locally, pushes back only what changed
    fresh = tmp_path / "fresh"
    pulled = cli("sync", "pull", "--local", fresh, "--remote", remote)
    assert pulled.exit_code == 0, pulled.stderr
    assert {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()} - {".multitype/sync-state.json"} \
        == s3_keys
    assert cli("report", "--root", fresh, "--config-dir", configs).exit_code == 0
    pushed = cli("sync", "push", "--local", fresh, "--remote", remote, "--dry-run")
    planned = [line.split(": ", 1)[1] for line in pushed.stdout.splitlines() if line.startswith("(dry run) upload")]
    assert planned and all(k.startswith(("runs/", "results/", "figures/")) for k in planned), planned
    assert layout.processed_split("train", 4) not in planned
