"""The tune: search space: validated at load (one error per key), sampled by Optuna, sent to SageMaker."""

from __future__ import annotations

import pytest

from multitype.config import parse_config
from multitype.errors import ConfigError
from multitype.tuning.space import sagemaker_ranges, suggest

SPACE = """
tune:
  trials: 3
  space:
    learning_rate: {loguniform: [1.0e-5, 3.0e-4]}
    batch_size: {choice: [16, 32]}
    num_epochs: {int: [2, 5]}
    warmup_ratio: {uniform: [0.0, 0.2]}
"""


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("transformer", "tune: {space: {learning_rate: {normal: [1, 2]}}}",
     "m.yaml: 'tune.space.learning_rate' unknown distribution 'normal'; use exactly one of loguniform, uniform, int, "
     "choice"),
    ("transformer", "tune: {space: {learning_rate: {loguniform: [3.0e-4, 1.0e-5]}}}",
     "m.yaml: 'tune.space.learning_rate' loguniform needs low < high (an empty range)"),
    ("transformer", "tune: {space: {warmup_ratio: {loguniform: [0, 0.2]}}}",
     "m.yaml: 'tune.space.warmup_ratio' loguniform needs low > 0 (a log scale)"),
    ("transformer", "tune: {space: {batch_size: {choice: []}}}",
     "m.yaml: 'tune.space.batch_size' choice needs at least one value (an empty range)"),
    ("transformer", "tune: {space: {batch_size: {choice: [16, 16]}}}", "choice lists a value twice"),
    ("transformer", "tune: {space: {}}", "m.yaml: 'tune.space' is empty; name at least one parameter"),
    ("transformer", "tune: {trials: 0, space: {batch_size: {choice: [16]}}}", "m.yaml: 'tune.trials' Input should be"),
    ("transformer", "tune: {space: {lr: {uniform: [0.1, 0.2]}}}",
     "m.yaml: 'tune.space.lr' is not a fine-tuning parameter; tunable: num_epochs, learning_rate,"),
    ("transformer", "tune: {space: {learning_rate: {uniform: [0.5, 2.0]}}}",
     "m.yaml: 'tune.space.learning_rate' value 2.0: Input should be less than or equal to 1"),
    ("baseline", "tune: {space: {C: {uniform: [0, 1]}}}", "m.yaml: 'tune.space.C' value 0.0: Input should be greater"),
    ("baseline", "tune: {space: {ngram_range: {choice: [[2, 1]]}}}",
     "m.yaml: 'tune.space.ngram_range' value [2, 1]: must be [min_n, max_n]"),
    ("baseline", "tune: {space: {alpha: {uniform: [0.1, 1]}}}",
     "m.yaml: 'tune.space.alpha' is not a baseline parameter; tunable: C, class_weight,"),
])
def test_a_bad_space_is_one_error_per_key_naming_it(kind: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(kind, text, "m.yaml")
    assert message in str(info.value)


def test_two_bad_keys_are_both_reported() -> None:
    # the distributions are checked first, then (once they parse) the names and values against the trainer
    with pytest.raises(ConfigError) as info:
        parse_config("transformer", "tune: {space: {warmup_ratio: {uniform: [1, 0]}, batch_size: {choice: []}}}",
                     "m.yaml")
    assert "'tune.space.warmup_ratio'" in str(info.value) and "'tune.space.batch_size'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("transformer", "tune: {space: {lr: {uniform: [0, 1]}, batch_size: {choice: [0]}}}", "m.yaml")
    assert "'tune.space.lr'" in str(info.value) and "'tune.space.batch_size' value 0" in str(info.value)


def test_one_space_gives_optuna_draws_and_sagemaker_ranges() -> None:
    import optuna

    tune = parse_config("transformer", SPACE, "m.yaml").tune
    trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask()
    drawn = suggest(trial, tune.distributions())
    assert 1e-5 <= drawn["learning_rate"] <= 3e-4 and drawn["batch_size"] in (16, 32)
    assert 2 <= drawn["num_epochs"] <= 5 and isinstance(drawn["num_epochs"], int)
    assert sagemaker_ranges(tune.distributions()) == {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "1e-05", "MaxValue": "0.0003", "ScalingType": "Logarithmic"},
            {"Name": "warmup_ratio", "MinValue": "0.0", "MaxValue": "0.2", "ScalingType": "Linear"}],
        "IntegerParameterRanges": [{"Name": "num_epochs", "MinValue": "2", "MaxValue": "5", "ScalingType": "Linear"}],
        "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["16", "32"]}]}


def test_list_choices_travel_as_json_and_come_back_as_lists() -> None:
    import optuna

    tune = parse_config("baseline", "tune: {space: {ngram_range: {choice: [[1, 1], [1, 2]]}}}", "b.yaml").tune
    drawn = suggest(optuna.create_study().ask(), tune.distributions())
    assert drawn["ngram_range"] in ([1, 1], [1, 2])
    assert sagemaker_ranges(tune.distributions())["CategoricalParameterRanges"] == [
        {"Name": "ngram_range", "Values": ["[1, 1]", "[1, 2]"]}]


def test_the_fingerprint_follows_the_space_not_the_trial_count() -> None:
    a = parse_config("transformer", SPACE, "m.yaml").tune
    b = parse_config("transformer", SPACE.replace("trials: 3", "trials: 30"), "m.yaml").tune
    c = parse_config("transformer", SPACE.replace("[16, 32]", "[16, 64]"), "m.yaml").tune
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
