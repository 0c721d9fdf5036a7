"""The report's honesty on the real BBC pipeline: intervals, paired verdicts, error lists, calibration, HTML.

All tests share the session's trained BBC root (``multitype prepare`` + ``train
baseline`` on the embedded data, ~13 s once); each works on a private copy.
Variants of a model are made by changing a few of its stored predictions and
recomputing the record with the project's own metrics code.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from multitype import layout
from multitype.evaluate import TEXT_CHARS, classification_metrics, metrics_record, predictions_block, texts_fingerprint
from multitype.predictor import load_predictor
from tests.bbc_processed import copy_root, trained_root

pytestmark = pytest.mark.slow  # the trained BBC root: ~13 s once a session
INTERVAL = r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]"


@pytest.fixture
def bbc(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src, configs = trained_root(tmp_path_factory)
    return copy_root(src, tmp_path / "root"), configs


def _test_split(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / layout.processed_split("test", 4), dtype=str, keep_default_na=False)


def _read(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / layout.baseline_metrics(name)).read_text())


def _variant(root: Path, source: str, name: str, flips: int) -> dict[str, Any]:
    """``source`` with its first ``flips`` correct test predictions made wrong, saved as baseline ``name``."""
    record = _read(root, source)
    test = _test_split(root)
    y_true = np.asarray(record["predictions"]["y_true"])
    y_pred = np.asarray(record["predictions"]["y_pred"])
    right = np.flatnonzero(y_true == y_pred)[:flips]
    y_pred[right] = (y_pred[right] + 1) % len(record["labels"])
    splits = dict(record["splits"], test=classification_metrics(y_true, y_pred, record["labels"]))
    new = metrics_record(name, "baseline", record["labels"], splits, "variant", 1.0, 1.0,
                         predictions=predictions_block(test["text"].tolist(), y_true, y_pred))
    (root / layout.baseline_metrics(name)).write_text(json.dumps(new))
    return new


def _report(cli, root: Path, configs: Path) -> str:
    res = cli("report", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    return (root / layout.REPORT).read_text()


def test_metrics_files_hold_intervals_and_the_predictions_a_fresh_load_gives(bbc) -> None:
    root, _ = bbc
    test = _test_split(root)
    for name in layout.BASELINE_NAMES:
        record = _read(root, name)
        assert record["schema_version"] == 2
        intervals = record["intervals"]
        assert intervals["resamples"] == 1000 and intervals["confidence"] == 0.95 and intervals["seed"] == 42
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            low, high = intervals[metric]
            assert 0.9 < low < record[metric] <= high <= 1.0, (name, metric)
        block = record["predictions"]
        assert block["texts_sha256"] == texts_fingerprint(test["text"].tolist())
        assert [record["labels"][i] for i in block["y_true"]] == test["label"].tolist()
        labels, scores = load_predictor(root / layout.final_model(name)).predict(test["text"].tolist())
        assert [record["labels"][i] for i in block["y_pred"]] == labels  # what the saved model predicts
        wrong = {i for i, (t, p) in enumerate(zip(block["y_true"], block["y_pred"])) if t != p}
        assert {int(i) for i in block["misclassified_texts"]} == wrong
        if name == "logreg":
            assert np.allclose(block["probabilities"], scores, atol=1e-5) and block["no_probabilities"] is None
        else:
            assert block["probabilities"] is None
            assert block["no_probabilities"] == "LinearSVC gives decision scores, not probabilities"


def test_report_on_bbc_shows_intervals_and_a_tie(bbc, cli) -> None:
    root, configs = bbc
    svm, logreg = _read(root, "linear_svm"), _read(root, "logreg")
    differ = int(np.sum(np.asarray(svm["predictions"]["y_pred"]) != np.asarray(logreg["predictions"]["y_pred"])))
    assert differ <= 2, "the two baselines should differ on at most 2 of the BBC test texts (measured: 2)"
    report = _report(cli, root, configs)
    best, other = ("linear_svm", "logreg") if svm["macro_f1"] >= logreg["macro_f1"] else ("logreg", "linear_svm")
    assert f"**No single best model: `{best}`, `{other}` are statistically tied** at level 0.05" in report
    assert f"- `{other}` tied: {differ} of 177 test texts differ (McNemar p = " in report
    for name, record in (("linear_svm", svm), ("logreg", logreg)):
        low, high = record["intervals"]["accuracy"]
        row = re.search(rf"^\| `{name}` \| baseline \| ({INTERVAL}) \| ({INTERVAL}) \| ({INTERVAL}) \|", report, re.M)
        assert row and row.group(1) == f"{record['accuracy']:.3f} [{low:.3f}, {high:.3f}]", name
    assert "Paired comparisons against" in report and "| tied |" in report
    # calibration: logreg has probabilities, the SVM says why it has no figure
    assert (root / layout.figure_results("calibration_logreg")).is_file()
    assert not (root / layout.figure_results("calibration_linear_svm")).exists()
    assert "| `linear_svm` | n/a | LinearSVC gives decision scores, not probabilities: no calibration figure |" in report
    assert "## Training" not in report  # baselines have no epochs


def test_two_texts_apart_is_a_tie_and_many_is_a_single_best(bbc, cli) -> None:
    root, configs = bbc
    (root / layout.baseline_metrics("linear_svm")).unlink()
    _variant(root, "logreg", "logreg_b", flips=2)
    report = _report(cli, root, configs)
    assert "**No single best model: `logreg`, `logreg_b` are statistically tied** at level 0.05" in report
    assert "- `logreg_b` tied: 2 of 177 test texts differ (McNemar p = 0.50, macro-F1 difference" in report

    (root / layout.baseline_metrics("logreg_b")).unlink()
    _variant(root, "logreg", "logreg_c", flips=20)
    report = _report(cli, root, configs)
    assert "**Best: `logreg`** (test macro-F1" in report and "statistically tied" not in report
    assert re.search(r"^\| `logreg_c` \| 20 of 177 \| 20 \| 0 \| <0\.001 \| .* \| worse \|$", report, re.M)
    assert not (root / layout.errors_csv("logreg_b")).exists()  # the list of a model no longer there is removed


def test_error_csvs_hold_exactly_the_misclassified_rows(bbc, cli) -> None:
    root, configs = bbc
    report = _report(cli, root, configs)
    test = _test_split(root)
    missed = []
    for name in layout.BASELINE_NAMES:
        labels, scores = load_predictor(root / layout.final_model(name)).predict(test["text"].tolist())
        wrong = [i for i, (t, p) in enumerate(zip(test["label"], labels)) if t != p]
        missed.append(set(wrong))
        errors = pd.read_csv(root / layout.errors_csv(name), keep_default_na=False)
        assert list(errors.columns) == ["index", "text", "true_label", "predicted_label", "probability"]
        assert errors["index"].tolist() == wrong and len(wrong) > 0
        assert errors["text"].tolist() == [test["text"][i][:TEXT_CHARS] for i in wrong]
        assert errors["true_label"].tolist() == [test["label"][i] for i in wrong]
        assert errors["predicted_label"].tolist() == [labels[i] for i in wrong]
        if name == "logreg":
            assert errors["probability"].tolist() == pytest.approx([float(scores[i].max()) for i in wrong], abs=1e-4)
        else:
            assert (errors["probability"] == "").all()
        assert f"| `{name}` | {len(wrong)} of 177 | [results/errors/{name}.csv](errors/{name}.csv) |" in report
    both = sorted(set.intersection(*missed))
    assert f"### Test texts every model gets wrong ({len(both)})" in report
    for i in both:
        assert re.search(rf"^\| {i} \| {test['label'][i]} \|", report, re.M)
    assert "label noise" in report and "### Most confused class pairs (all models)" in report


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.sources.append(found.get("src") or "")
        if tag in ("script", "link", "iframe") or (tag != "a" and "href" in found):
            self.external.append(tag)


def test_html_report_is_self_contained(bbc, cli) -> None:
    root, configs = bbc
    markdown = _report(cli, root, configs)
    page = (root / layout.REPORT_HTML).read_text()
    images = _Images()
    images.feed(page)
    assert len(images.sources) == len(re.findall(r"!\[[^\]]*\]\(", markdown)) >= 6
    assert not images.external
    for src in images.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page and "statistically tied" in page
    [manifest] = [json.loads(p.read_text()) for p in root.glob("runs/*/manifest.json")
                  if json.loads(p.read_text())["command"] == "report"]
    assert layout.REPORT_HTML in manifest["outputs"] and layout.errors_csv("logreg") in manifest["outputs"]
    assert manifest["tied"] and manifest["single_best"] is False


def test_single_model_without_probabilities(bbc, cli) -> None:
    root, configs = bbc
    (root / layout.baseline_metrics("logreg")).unlink()
    report = _report(cli, root, configs)
    assert "One model, `linear_svm` (test macro-F1" in report and "nothing to compare it with" in report
    assert "Paired comparisons" not in report and "every model gets wrong" not in report
    assert re.search(rf"^\| `linear_svm` \| baseline \| {INTERVAL} \|", report, re.M)
    assert "LinearSVC gives decision scores, not probabilities: no calibration figure" in report
    assert not list((root / layout.FIGURES_RESULTS).glob("calibration_*"))
    assert (root / layout.errors_csv("linear_svm")).is_file()


def test_metrics_file_of_the_older_schema(bbc, cli) -> None:
    root, configs = bbc
    old = _read(root, "logreg")
    for key in ("schema_version", "intervals", "predictions"):
        del old[key]
    (root / layout.baseline_metrics("logreg")).write_text(json.dumps(old))
    (root / layout.ERRORS).mkdir(parents=True)
    (root / layout.errors_csv("logreg")).write_text("index,text\n0,stale\n")
    report = _report(cli, root, configs)
    assert re.search(rf"^\| `logreg` \| baseline \| {INTERVAL} \|", report, re.M)  # from its confusion matrix
    assert ("- `logreg` intervals: computed at report time from the confusion matrix: its metrics file predates "
            "intervals (schema 1).") in report
    assert ("not compared: no per-text predictions in the metrics file of `logreg` (schema 1; retrain it to "
            "compare)") in report
    assert "**Best:" not in report and "statistically tied" not in report
    assert "| `logreg` | 3 of 177 | n/a: no per-text predictions in its metrics file |" in report
    assert "| `logreg` | n/a | no per-text predictions in its metrics file (schema 1): no calibration figure |" in report
    assert not (root / layout.errors_csv("logreg")).exists()  # the stale list went with the predictions


def test_bad_alpha_is_one_error_line(bbc, cli, tmp_path: Path) -> None:
    root, configs = bbc
    bad = tmp_path / "configs"
    bad.mkdir()
    for f in configs.iterdir():
        (bad / f.name).write_text(f.read_text())
    with open(bad / "project.yaml", "a") as fh:
        fh.write("report: {alpha: 0.7}\n")
    res = cli("report", "--root", root, "--config-dir", bad)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: ") and "project.yaml" in res.stderr and "report.alpha" in res.stderr
    assert not (root / layout.REPORT).exists()
