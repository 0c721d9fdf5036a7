"""Bad input to `multitype tune`: one line, exit 2, nothing written or lost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.tuning.conftest import BASELINE_TUNE, tune_configs


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_study_started_under_another_space_is_refused(tune_project, tmp_path: Path, cli) -> None:
    root, configs = tune_project
    assert cli("tune", "baseline", "--trials", "1", "--root", root, "--config-dir", configs).exit_code == 0
    before = _snapshot(root)
    other = tune_configs(tmp_path / "other", baseline={**BASELINE_TUNE, "space": {"C": {"loguniform": [0.1, 10.0]}}})
    line = _one_line_error(cli("tune", "baseline", "--root", root, "--config-dir", other))
    assert "study 'logreg-baseline'" in line and "another search space" in line
    assert "--study NEW" in line and "runs/tune/logreg-baseline" in line
    assert _snapshot(root) == before
    # a new name starts a new study beside it
    fresh = cli("tune", "baseline", "--trials", "1", "--study", "c-only", "--root", root, "--config-dir", other)
    assert fresh.exit_code == 0, fresh.stderr
    assert (root / "results/tuning/c-only.csv").is_file() and (root / "runs/tune/c-only/study.db").is_file()


@pytest.mark.parametrize("args, words", [
    (["tune", "baseline", "--trials", "0"], "--trials must be at least 1"),
    (["tune", "baseline", "--parallel", "0"], "--parallel must be at least 1"),
    (["tune", "baseline", "--timeout", "soon"], "--timeout 'soon' is not a duration"),
    (["tune", "baseline", "--study", "../x"], "--study '../x'"),
    (["tune", "baseline", "--model-name", "forest"], "unknown baseline model(s) 'forest'"),
    (["tune", "transformer", "--model-name", "no-such-model"], "model 'no-such-model' is not a local folder"),
])
def test_bad_options(tune_project, cli, args: list[str], words: str) -> None:
    root, configs = tune_project
    before = _snapshot(root)
    assert words in _one_line_error(cli(*args, "--root", root, "--config-dir", configs))
    assert _snapshot(root) == before and not (root / "runs").exists()


@pytest.mark.parametrize("kind, file", [("baseline", "models_baseline.yaml"), ("transformer", "models_transformer.yaml")])
def test_no_tune_block_says_what_to_add(tune_project, tmp_path: Path, cli, kind: str, file: str) -> None:
    root, _ = tune_project
    configs = tune_configs(tmp_path / "plain", baseline=None, transformer=None)
    line = _one_line_error(cli("tune", kind, "--root", root, "--config-dir", configs))
    assert f"{file} has no 'tune:' block; add e.g. tune:" in line and "space:" in line
    assert not (root / "runs").exists()


def test_no_val_split_is_refused_before_any_trial(tune_project, cli) -> None:
    root, configs = tune_project
    (root / "data/processed/val_4class.csv").unlink()
    line = _one_line_error(cli("tune", "baseline", "--root", root, "--config-dir", configs))
    assert "val_4class.csv is missing" in line and "never on test" in line
    assert not (root / "runs").exists()
