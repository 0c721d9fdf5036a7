"""`multitype tune baseline` on an S3 root (SeaweedFS): the study is a journal synced to runs/tune/<study>/."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from multitype.project import open_project
from multitype.storage import Storage
from multitype.tuning.space import suggest
from multitype.tuning.study import JOURNAL, open_store, open_study


def test_a_study_on_s3_resumes_from_its_journal(s3_server, tune_project, tmp_path: Path, cli) -> None:
    local, configs = tune_project
    bucket = s3_server.make_bucket("tune")
    root = f"s3://{bucket}/proj"
    storage = Storage(root, endpoint_url=s3_server.endpoint_url)
    for path in sorted((local / "data/processed").iterdir()):
        storage.put_file(path, f"data/processed/{path.name}")

    first = cli("tune", "baseline", "--trials", "2", "--root", root, "--config-dir", configs)
    assert first.exit_code == 0, first.stderr
    keys = s3_server.list_keys(bucket, "proj/")
    for key in (f"runs/tune/logreg-baseline/{JOURNAL}", "results/tuning/logreg-baseline.csv",
                "results/tuning/logreg-baseline.json", "results/baseline/logreg-t1_metrics.json"):
        assert f"proj/{key}" in keys, key
    # the best trial's model stays in the bucket, the other trial's is removed
    best = storage.read_json("results/tuning/logreg-baseline.json")["best"]["slug"]
    assert {key.split("/")[3] for key in keys if key.startswith("proj/models/final/")} == {best}

    # a tune killed during trial 2: the journal on S3 holds a RUNNING trial with its params drawn
    project = open_project(root, str(configs), "tune baseline")
    tune_cfg = project.configs.baseline.tune
    store = open_store(project.storage, "logreg-baseline")
    study = open_study(store, tune_cfg, "baseline", "logreg", project.configs.project.seed)
    killed = study.ask()
    drawn = suggest(killed, tune_cfg.distributions())
    killed.set_user_attr("slug", "logreg-t2")
    store.push()

    # a new process (a fresh local copy of the journal) continues trial 2 under its number, then runs trial 3
    second = cli("tune", "baseline", "--trials", "4", "--root", root, "--config-dir", configs)
    assert second.exit_code == 0, second.stderr
    assert "continuing trial logreg-t2" in second.stderr
    assert "trial logreg-t0 (" not in second.stderr and "trial logreg-t1 (" not in second.stderr  # not run again
    rows = list(csv.DictReader(io.StringIO(storage.read_text("results/tuning/logreg-baseline.csv"))))
    assert [(r["number"], r["slug"], r["state"]) for r in rows] == [
        ("0", "logreg-t0", "COMPLETE"), ("1", "logreg-t1", "COMPLETE"), ("2", "logreg-t2", "COMPLETE"),
        ("3", "logreg-t3", "COMPLETE")]
    assert float(rows[2]["params_C"]) == drawn["C"]
    doc = json.loads(storage.read_text("results/tuning/logreg-baseline.json"))
    assert doc["trials"]["total"] == 4 and doc["best"]["test_metrics"] is not None
    record = storage.read_json(f"results/baseline/{doc['best']['slug']}_metrics.json")
    assert "test" in record["splits"]
    # the journal on S3 is the whole study: a third run finds nothing to do
    third = cli("tune", "baseline", "--trials", "4", "--root", root, "--config-dir", configs)
    assert third.exit_code == 0 and "trial logreg-t4" not in third.stderr and "evaluating" not in third.stderr
