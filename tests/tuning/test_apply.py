"""``apply_best``: a study's best parameters written into the shipped configs as an override, comments kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from multitype.config import load_configs
from multitype.errors import ConfigError
from multitype.storage import storage_options
from multitype.tuning.apply import apply_best, yaml_float

SHIPPED = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "configs"))


def _changed(before: str, after: str) -> list[tuple[str, str]]:
    """(old, new) for each line that differs; the files must have the same line count."""
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), after
    return [(a, b) for a, b in zip(old, new) if a != b]


def test_transformer_override_keeps_every_other_line(configs: Path) -> None:
    path = configs / "models_transformer.yaml"
    before = path.read_text()
    changes = apply_best(str(configs), "transformer", "minilm",
                         {"learning_rate": 4.1e-05, "batch_size": 32, "warmup_ratio": 0.1})
    # warmup_ratio 0.1 is what minilm has already: no line for it
    assert changes == ["models.minilm.learning_rate: 0.0001 -> 4.1e-05", "models.minilm.batch_size: 16 -> 32"]
    after = path.read_text()
    assert _changed(before, after) == [("  minilm: {learning_rate: 1.0e-4}",
                                        "  minilm: {learning_rate: 4.1e-05, batch_size: 32}")]
    params = load_configs(str(configs)).transformer.params_for("minilm")
    assert (params.learning_rate, params.batch_size, params.warmup_ratio) == (4.1e-05, 32, 0.1)
    # unchanged values: a second apply changes nothing and does not rewrite the file
    mtime = path.stat().st_mtime_ns
    assert apply_best(str(configs), "transformer", "minilm", {"learning_rate": 4.1e-05, "batch_size": 32}) == []
    assert path.stat().st_mtime_ns == mtime and path.read_text() == after


def test_a_model_without_a_section_gets_one_in_its_siblings_style(configs: Path) -> None:
    path = configs / "models_transformer.yaml"
    before = path.read_text()
    changes = apply_best(str(configs), "transformer", "distilroberta-base",
                         {"learning_rate": 1e-05, "num_epochs": 4, "precision": "bf16"})
    assert changes == ["models.distilroberta-base.learning_rate: 2.0e-05 -> 1.0e-05",
                       "models.distilroberta-base.num_epochs: 3.0 -> 4",
                       "models.distilroberta-base.precision: auto -> bf16"]
    after = path.read_text()
    # the new line sits after the last model and before `run:`; nothing else moves
    line = "  distilroberta-base: {learning_rate: 1.0e-05, num_epochs: 4, precision: bf16}\n"
    assert after.replace(line, "") == before
    assert "  roberta-base: {}\n  distilroberta-base:" in after
    # PyYAML (YAML 1.1) reads 1.0e-05 as a number, not as the string it makes of 1e-05
    assert yaml.safe_load(after)["models"]["distilroberta-base"]["learning_rate"] == 1e-05
    assert load_configs(str(configs)).transformer.params_for("distilroberta-base").num_epochs == 4


def test_baseline_parameters_split_between_the_classifier_and_tfidf(configs: Path) -> None:
    path = configs / "models_baseline.yaml"
    before = path.read_text()
    changes = apply_best(str(configs), "baseline", "logreg",
                         {"C": 12.5, "class_weight": "balanced", "ngram_range": [1, 3], "min_df": 1})
    assert changes == ["models.logreg.C: 1.0 -> 12.5", "models.logreg.class_weight: null -> balanced",
                       "tfidf.ngram_range: [1, 2] -> [1, 3]", "tfidf.min_df: 2 -> 1"]
    changed = _changed(before, path.read_text())
    assert [new for _, new in changed] == [
        "tfidf: {ngram_range: [1, 3], min_df: 1, max_features: null, sublinear_tf: true, n_jobs: -1}  "
        "# n_jobs: tokenising processes, -1 = all cores",
        "  logreg: {C: 12.5, class_weight: balanced, max_iter: 2000}  # class_weight: null | balanced"]
    config = load_configs(str(configs)).baseline
    assert config.models.logreg.C == 12.5 and config.models.linear_svm.C == 1.0  # the other classifier keeps its own
    assert config.tfidf.ngram_range == (1, 3) and config.tfidf.min_df == 1


@pytest.mark.parametrize("kind, model, params, message", [
    ("baseline", "linear_svm", {"C": 3.0, "max_iter": 500},
     "tuned parameters not applied ({file} left as it was): {file}: unknown key 'models.linear_svm.max_iter' "
     "(remove it or check its spelling)"),
    ("transformer", "minilm", {"learning_rate": 2.0},
     "tuned parameters not applied ({file} left as it was): {file}: 'models.minilm.learning_rate' "
     "Input should be less than or equal to 1, got 2.0"),
    ("transformer", "minilm", {"seed": 3}, "{file}: 'seed' is not a fine-tuning parameter; tunable: num_epochs,"),
    ("baseline", "logreg", {"solver": "lbfgs"}, "{file}: 'solver' is not a baseline parameter; tunable: C,"),
    ("baseline", "naive_bayes", {"C": 2.0}, "{file}: no baseline 'naive_bayes'; use one of logreg, linear_svm"),
])
def test_bad_parameters_leave_the_file_untouched(configs: Path, kind: str, model: str, params: dict,
                                                 message: str) -> None:
    path = configs / ("models_baseline.yaml" if kind == "baseline" else "models_transformer.yaml")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(ConfigError) as err:
        apply_best(str(configs), kind, model, params)
    assert str(err.value).startswith(message.format(file=path))
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in configs.iterdir()) == sorted(p.name for p in SHIPPED.iterdir())  # no temp left


def test_an_invalid_file_is_refused_not_rewritten(configs: Path) -> None:
    path = configs / "models_transformer.yaml"
    path.write_text(path.read_text().replace("batch_size: 16", "batch_size: -16"))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="'defaults.batch_size' Input should be greater than 0"):
        apply_best(str(configs), "transformer", "minilm", {"learning_rate": 5e-05})
    assert path.read_bytes() == before


def test_floats_are_written_so_both_yaml_readers_take_them() -> None:
    for x in (1e-05, 4.1e-05, 0.0001, 12.5, 3.0, 1e+16, 2.5e-300):
        text = yaml_float(x)
        assert yaml.safe_load(f"v: {text}")["v"] == x, text
    assert (yaml_float(1e-05), yaml_float(4.1e-05), yaml_float(1e16)) == ("1.0e-05", "4.1e-05", "1.0e+16")


def test_s3_config_folder(configs: Path, s3_server) -> None:
    bucket = s3_server.make_bucket("apply")
    client = s3_server.client()
    for path in configs.iterdir():
        client.put_object(Bucket=bucket, Key=f"cfg/{path.name}", Body=path.read_bytes())
    url = f"s3://{bucket}/cfg"
    changes = apply_best(url, "transformer", "minilm", {"learning_rate": 3e-05}, storage_options(url))
    assert changes == ["models.minilm.learning_rate: 0.0001 -> 3.0e-05"]
    text = client.get_object(Bucket=bucket, Key="cfg/models_transformer.yaml")["Body"].read().decode()
    assert "  minilm: {learning_rate: 3.0e-05}\n" in text and text.startswith("# models_transformer.yaml:")
    assert load_configs(url, storage_options(url)).transformer.params_for("minilm").learning_rate == 3e-05
    with pytest.raises(ConfigError):
        apply_best(url, "transformer", "minilm", {"batch_size": 0}, storage_options(url))
    assert client.get_object(Bucket=bucket, Key="cfg/models_transformer.yaml")["Body"].read().decode() == text
