"""``multitype report``: summaries rebuilt from metrics files, valid PNGs, report.md with working links."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from multitype import layout
from multitype.evaluate import SUMMARY_COLUMNS
from tests.bbc_processed import copy_root, trained_root

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def root(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A private copy of the trained BBC root, plus a transformer result in the shared schema."""
    src, configs = trained_root(tmp_path_factory)
    root = copy_root(src, tmp_path / "root")
    record = json.loads((root / layout.baseline_metrics("logreg")).read_text())
    record.update(model="org/tiny-bert", kind="transformer", accuracy=0.9, macro_f1=0.89, run_id="r-transformer")
    target = root / layout.transformer_metrics(layout.model_slug("org/tiny-bert"))
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(record))
    return root, configs


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200


@pytest.mark.slow  # the trained BBC root: ~13 s once a session
def test_report_files(root: tuple[Path, Path], cli) -> None:
    root, configs = root
    (root / layout.BASELINE_SUMMARY).unlink()  # rebuilt from the metrics files
    res = cli("report", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    assert "results/report.md" in res.stderr

    baseline = pd.read_csv(root / layout.BASELINE_SUMMARY)
    transformer = pd.read_csv(root / layout.TRANSFORMER_SUMMARY)
    assert list(baseline.columns) == SUMMARY_COLUMNS == list(transformer.columns)
    assert baseline["model"].tolist() == ["linear_svm", "logreg"]
    assert transformer["model"].tolist() == ["org/tiny-bert"] and transformer["accuracy"].tolist() == [0.9]

    figures = root / layout.FIGURES_RESULTS
    assert sorted(p.name for p in figures.iterdir()) == [
        "calibration_logreg.png", "calibration_org__tiny-bert.png",  # the SVM gives no probabilities
        "confusion_linear_svm.png", "confusion_logreg.png", "confusion_org__tiny-bert.png", "model_comparison.png"]
    for png in figures.iterdir():
        _assert_png(png)

    report = (root / layout.REPORT).read_text()
    for model in ("linear_svm", "logreg", "org/tiny-bert"):
        assert re.search(rf"^\| `{re.escape(model)}` \|", report, re.M), model
    logreg = json.loads((root / layout.baseline_metrics("logreg")).read_text())
    low, high = logreg["intervals"]["accuracy"]
    assert f"| {logreg['accuracy']:.3f} [{low:.3f}, {high:.3f}] |" in report
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert "../figures/results/model_comparison.png" in links
    assert "../figures/data/class_balance.png" in links  # data figures from prepare
    for link in links:  # relative to results/, and every target exists
        assert (root / "results" / link).resolve().is_file(), link
    assert "## Data" in report and "exact duplicates:" in report and "| train |" in report

    [manifest] = [json.loads(p.read_text()) for p in root.glob("runs/*/manifest.json")
                  if json.loads(p.read_text())["command"] == "report"]
    assert layout.REPORT in manifest["outputs"] and layout.figure_results("model_comparison") in manifest["outputs"]
    assert layout.baseline_metrics("logreg") in manifest["inputs"] and layout.AUDIT in manifest["inputs"]


@pytest.mark.slow  # the trained BBC root: ~13 s once a session
def test_report_is_rebuilt_when_results_change(root: tuple[Path, Path], cli) -> None:
    root, configs = root
    assert cli("report", "--root", root, "--config-dir", configs).exit_code == 0
    (root / layout.baseline_metrics("linear_svm")).unlink()
    assert cli("report", "--root", root, "--config-dir", configs).exit_code == 0
    assert pd.read_csv(root / layout.BASELINE_SUMMARY)["model"].tolist() == ["logreg"]
    assert "`linear_svm`" not in (root / layout.REPORT).read_text()


@pytest.mark.slow  # the trained BBC root: ~13 s once a session
def test_report_without_data_audit(tmp_path: Path, root: tuple[Path, Path], cli) -> None:
    src, configs = root
    bare = tmp_path / "bare"
    for key in (layout.baseline_metrics("logreg"),):
        (bare / key).parent.mkdir(parents=True, exist_ok=True)
        (bare / key).write_bytes((src / key).read_bytes())
    assert cli("report", "--root", bare, "--config-dir", configs).exit_code == 0
    report = (bare / layout.REPORT).read_text()
    assert "## Data" not in report and "`logreg`" in report
    assert not (bare / layout.TRANSFORMER_SUMMARY).exists()
    _assert_png(bare / layout.figure_results("confusion_logreg"))


def test_no_results_says_train_first(tmp_path: Path, config_dir: Path, cli) -> None:
    res = cli("report", "--root", tmp_path / "empty", "--config-dir", config_dir)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: no results under") and "multitype train baseline" in res.stderr
    assert not (tmp_path / "empty" / layout.REPORT).exists()
