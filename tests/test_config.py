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


# --- every number has bounds: a bad value names the file and the key -------------------------
BAD_VALUES = [
    ("baseline", "tfidf: {min_df: 0}", "'tfidf.min_df' must be a document count (an integer >= 1)"),
    ("baseline", "tfidf: {min_df: -3}", "'tfidf.min_df' must be a document count"),
    ("baseline", "tfidf: {min_df: 1.5}", "'tfidf.min_df' must be a document count"),
    ("baseline", "tfidf: {min_df: 0.0}", "'tfidf.min_df' must be a document count"),
    ("baseline", "tfidf: {min_df: true}", "'tfidf.min_df' must be a document count"),
    ("baseline", "tfidf: {min_df: two}", "'tfidf.min_df' must be a document count"),
    ("baseline", "tfidf: {max_features: 0}", "'tfidf.max_features' Input should be greater than 0, got 0"),
    ("baseline", "tfidf: {max_features: 1.5}", "'tfidf.max_features' Input should be a valid integer"),
    ("baseline", "tfidf: {n_jobs: 0}", "'tfidf.n_jobs' must be a positive number of processes"),
    ("baseline", "tfidf: {ngram_range: [0, 2]}", "'tfidf.ngram_range' must be [min_n, max_n]"),
    ("baseline", "tfidf: {ngram_range: [2, 1]}", "'tfidf.ngram_range' must be [min_n, max_n]"),
    ("baseline", "models: {logreg: {C: 0}}", "'models.logreg.C' Input should be greater than 0, got 0"),
    ("baseline", "models: {logreg: {C: .inf}}", "'models.logreg.C' Input should be a finite number"),
    ("baseline", "models: {logreg: {max_iter: 0}}", "'models.logreg.max_iter' Input should be greater than 0"),
    ("baseline", "models: {logreg: {max_iter: yes}}", "'models.logreg.max_iter' Input should be a valid integer"),
    ("baseline", "models: {linear_svm: {C: -1}}", "'models.linear_svm.C' Input should be greater than 0, got -1"),
    ("project", "seed: -1", "'seed' Input should be greater than or equal to 0, got -1"),
    ("project", "seed: 4294967296", "'seed' Input should be less than 4294967296"),
    ("project", "seed: 4.5", "'seed' Input should be a valid integer"),
    ("data", "min_chars: 0", "'min_chars' Input should be greater than or equal to 1, got 0"),
    ("data", "min_per_class: 0", "'min_per_class' Input should be greater than or equal to 1, got 0"),
    ("data", "split: {train: 1.2, val: 0.1, test: 0.1}", "'split.train' Input should be less than 1"),
    ("data", "split: {train: 0.9, val: -0.1, test: 0.2}", "'split.val' Input should be greater than or equal to 0"),
    ("data", "split: {train: 0.9, val: 0.1, test: 0}", "'split.test' Input should be greater than 0"),
    ("data", "split: {seed: -5}", "'split.seed' Input should be greater than or equal to 0"),
    ("data", "leakage: {near_duplicate_threshold: 1.5}", "'leakage.near_duplicate_threshold' Input should be less"),
    ("data", "leakage: {near_duplicate_threshold: .nan}", "'leakage.near_duplicate_threshold' Input should be a "
                                                          "finite number"),
    ("transformer", "defaults: {num_epochs: 0}", "'defaults.num_epochs' Input should be greater than 0"),
    ("transformer", "defaults: {learning_rate: 2e5}", "'defaults.learning_rate' Input should be less than or equal "
                                                      "to 1, got 200000.0"),
    ("transformer", "defaults: {learning_rate: 0}", "'defaults.learning_rate' Input should be greater than 0"),
    ("transformer", "defaults: {batch_size: 0}", "'defaults.batch_size' Input should be greater than 0, got 0"),
    ("transformer", "defaults: {batch_size: 2.5}", "'defaults.batch_size' Input should be a valid integer"),
    ("transformer", "defaults: {max_length: 2}", "'defaults.max_length' Input should be greater than or equal to 8"),
    ("transformer", "defaults: {gradient_accumulation_steps: 0}", "'defaults.gradient_accumulation_steps' Input "
                                                                   "should be greater than 0"),
    ("transformer", "defaults: {warmup_ratio: 1}", "'defaults.warmup_ratio' Input should be less than 1"),
    ("transformer", "defaults: {warmup_ratio: -0.1}", "'defaults.warmup_ratio' Input should be greater than or "
                                                      "equal to 0"),
    ("transformer", "defaults: {weight_decay: -0.01}", "'defaults.weight_decay' Input should be greater than or "
                                                       "equal to 0"),
    ("transformer", "defaults: {max_grad_norm: 0}", "'defaults.max_grad_norm' Input should be greater than 0"),
    ("transformer", "defaults: {max_steps: 0}", "'defaults.max_steps' Input should be greater than 0"),
    ("transformer", "defaults: {max_train_samples: -1}", "'defaults.max_train_samples' Input should be greater "
                                                         "than 0"),
    ("transformer", "defaults: {eval_batch_size: 0}", "'defaults.eval_batch_size' Input should be greater than 0"),
    ("transformer", "defaults: {early_stopping_patience: 0}", "'defaults.early_stopping_patience' Input should be "
                                                              "greater than or equal to 1"),
    ("transformer", "defaults: {seed: -1}", "'defaults.seed' Input should be greater than or equal to 0"),
    ("transformer", "defaults: {checkpoint: {every_steps: 0}}", "'defaults.checkpoint.every_steps' Input should be "
                                                                "greater than 0"),
    ("transformer", "defaults: {checkpoint: {every_minutes: -1}}", "'defaults.checkpoint.every_minutes' Input "
                                                                   "should be greater than 0"),
    ("transformer", "defaults: {checkpoint: {keep_last_epochs: 0}}", "'defaults.checkpoint.keep_last_epochs' Input "
                                                                     "should be greater than or equal to 1"),
    ("transformer", "models: {roberta-base: {learning_rate: -1}}", "'models.roberta-base.learning_rate' Input "
                                                                   "should be greater than 0, got -1"),
    ("transformer", "models: {roberta-base: {checkpoint: {every_steps: 0}}}", "'models.roberta-base.checkpoint."
                                                                              "every_steps' Input should be greater"),
    ("transformer", "models: {roberta-base: {checkpoint: {every_step: 5}}}", "unknown key 'models.roberta-base."
                                                                             "checkpoint.every_step'"),
    ("transformer", "models: {roberta-base: 3}", "'models.roberta-base' Input should be a valid dictionary"),
    ("transformer", "run: {batch_size: 0}", "'run.batch_size' Input should be greater than 0, got 0"),
    ("transformer", "run: {checkpoint: {keep_last_epochs: 0}}", "'run.checkpoint.keep_last_epochs' Input should be"),
    ("transformer", "defaults: {checkpoint: {keep: latest}}", "'defaults.checkpoint.keep' Input should be 'all', "
                                                              "'last' or 'none', got 'latest'"),
    ("transformer", "defaults: {compile: maybe}", "'defaults.compile' must be auto, true or false, "
                                                  "got 'maybe'"),
    ("transformer", "models: {minilm: {compile: 1}}", "'models.minilm.compile' must be auto, true or "
                                                      "false, got 1"),
    ("project", "tracking: {mlflow: 3}", "'tracking.mlflow' Input should be a valid boolean"),
    ("project", "tracking: {mlfow: true}", "unknown key 'tracking.mlfow'"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), BAD_VALUES, ids=[f"{k}:{t}" for k, t, _ in BAD_VALUES])
def test_bad_number_names_file_and_key(config_dir: Path, kind: str, text: str, expected: str) -> None:
    name = CONFIG_FILES[kind]
    (config_dir / name).write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_configs(str(config_dir))
    assert f"{config_dir}/{name}: {expected}" in str(exc.value)


@pytest.mark.parametrize(("text", "value"), [
    ("tfidf: {min_df: 1}", 1), ("tfidf: {min_df: 5}", 5), ("tfidf: {min_df: 0.05}", 0.05),
    ("tfidf: {min_df: 1.0}", 1.0),
])
def test_good_min_df_kept_as_written(text: str, value: float) -> None:
    cfg = parse_config("baseline", text, "models_baseline.yaml")
    assert cfg.tfidf.min_df == value and type(cfg.tfidf.min_df) is type(value)  # 1 (a count) is not 1.0 (all)


@pytest.mark.parametrize(("text", "value"), [("", "auto"), ("defaults: {compile: auto}", "auto"),
                                             ("defaults: {compile: true}", True), ("defaults: {compile: false}", False)])
def test_compile_is_auto_true_or_false(text: str, value: object) -> None:
    cfg = parse_config("transformer", text + "\n", "models_transformer.yaml")
    assert cfg.params_for("minilm").compile == value and type(cfg.params_for("minilm").compile) is type(value)


def test_exponent_without_dot_is_a_number() -> None:
    # PyYAML reads `2e-5` (no dot) as a string; it is the learning rate the user meant
    cfg = parse_config("transformer", "defaults: {learning_rate: 2e-5}\n", "models_transformer.yaml")
    assert cfg.defaults.learning_rate == 2e-5


# --- per-model and CLI overrides: merged deeply, errors name the full key ---------------------
def test_per_model_override_is_merged_deeply() -> None:
    text = ("defaults:\n  checkpoint: {every_steps: 200, every_minutes: 7, keep_last_epochs: 3}\n"
            "models:\n  roberta-base: {checkpoint: {every_steps: 100}, learning_rate: 3.0e-5}\n"
            "run: {model_name: roberta-base, checkpoint: {every_minutes: 2}}\n")
    cfg = parse_config("transformer", text, "models_transformer.yaml")
    params = cfg.params_for("roberta-base")
    assert params.checkpoint.model_dump() == {"every_steps": 100, "every_minutes": 7, "keep_last_epochs": 3,
                                              "keep": "last"}
    assert params.learning_rate == 3.0e-5
    assert cfg.params_for("bert-base-uncased").checkpoint.every_steps == 200
    run = cfg.run_params()
    assert run.checkpoint.model_dump() == {"every_steps": 100, "every_minutes": 2, "keep_last_epochs": 3,
                                           "keep": "last"}
    # the file's sections are left as written (the manifest records what the user wrote)
    assert cfg.models["roberta-base"] == {"checkpoint": {"every_steps": 100}, "learning_rate": 3.0e-5}


def test_cli_override_error_names_the_flag(config_dir: Path) -> None:
    configs = load_configs(str(config_dir))
    with pytest.raises(ConfigError) as exc:
        configs.transformer.params_for("minilm", batch_size=0, learning_rate=None)
    assert str(exc.value) == "command line (--batch-size): 'batch_size' Input should be greater than 0, got 0"


@pytest.mark.parametrize("name", ["nope", "base64", "rot13"])
def test_encoding_must_be_a_text_codec(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"data_config.yaml: 'encoding' is not a text encoding Python knows; .* "
                                          rf"got '{name}'"):
        parse_config("data", f"encoding: {name}\n", "data_config.yaml")
    assert parse_config("data", "encoding: latin-1\n", "data_config.yaml").encoding == "latin-1"
