"""Config files: defaults load, every problem is named with its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from multitype.config import CONFIG_FILES, default_yaml, load_configs, parse_config
from multitype.errors import ConfigError


def test_repo_configs_are_valid() -> None:
    configs = load_configs(str(Path(__file__).parents[1] / "configs"))
    assert configs.data.split.train == 0.8
    assert configs.baseline.tfidf.ngram_range == (1, 2)
    assert configs.transformer.defaults.model_name == "minilm"
    run = configs.transformer.run_params()
    assert run.model_name == "minilm" and run.max_length <= 256


@pytest.mark.parametrize("kind", list(CONFIG_FILES))
def test_defaults_round_trip(kind: str) -> None:
    parse_config(kind, default_yaml(kind), CONFIG_FILES[kind])


def test_unknown_key_named_with_file(config_dir: Path) -> None:
    (config_dir / "data_config.yaml").write_text("split: {train: 0.8, val: 0.1, test: 0.1, sed: 1}\n")
    with pytest.raises(ConfigError) as exc:
        load_configs(str(config_dir))
    assert "data_config.yaml" in str(exc.value) and "split.sed" in str(exc.value)


def test_all_problems_reported_at_once(config_dir: Path) -> None:
    (config_dir / "models_baseline.yaml").write_text("models: {logreg: {C: -1}}\ntfidf: {min_dff: 2}\n")
    (config_dir / "project.yaml").write_text("seed: forty-two\n")
    with pytest.raises(ConfigError) as exc:
        load_configs(str(config_dir))
    msg = str(exc.value)
    assert "models.logreg.C" in msg and "tfidf.min_dff" in msg and "project.yaml" in msg and "seed" in msg


def test_missing_file_says_how_to_fix(config_dir: Path) -> None:
    (config_dir / "project.yaml").unlink()
    with pytest.raises(ConfigError, match=r"project.yaml: file not found \(run 'multitype init'"):
        load_configs(str(config_dir))


def test_bad_yaml_names_line(config_dir: Path) -> None:
    (config_dir / "project.yaml").write_text("name: x\nseed: [1,\n")
    with pytest.raises(ConfigError, match=r"project.yaml line \d+: not valid YAML"):
        load_configs(str(config_dir))


def test_split_must_sum_to_one(config_dir: Path) -> None:
    (config_dir / "data_config.yaml").write_text("split: {train: 0.8, val: 0.3, test: 0.1}\n")
    with pytest.raises(ConfigError, match="sum to 1.0"):
        load_configs(str(config_dir))


def test_per_model_override_validated(config_dir: Path) -> None:
    (config_dir / "models_transformer.yaml").write_text("models:\n  roberta-base: {batch_sise: 8}\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_configs(str(config_dir))


def test_cli_overrides_win_and_are_validated(config_dir: Path) -> None:
    configs = load_configs(str(config_dir))
    params = configs.transformer.params_for("minilm", batch_size=4, learning_rate=None)
    assert params.batch_size == 4 and params.learning_rate == configs.transformer.defaults.learning_rate
    with pytest.raises(ConfigError, match="batch_size"):
        configs.transformer.params_for("minilm", batch_size=0)
