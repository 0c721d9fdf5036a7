"""One search space for local (Optuna) and SageMaker tuning, as ``tune:`` in the model configs.

The same block drives both ``multitype tune`` and ``multitype sagemaker tune``::

    tune:
      metric: macro_f1
      direction: maximize
      trials: 20
      space:
        learning_rate: {loguniform: [1.0e-5, 3.0e-4]}
        batch_size: {choice: [16, 32]}
        num_epochs: {int: [2, 5]}
        warmup_ratio: {uniform: [0.0, 0.2]}

Each distribution is a one-key mapping. The names are the trainer's own parameters (``TransformerParams``
fields in ``models_transformer.yaml``; ``C``, ``class_weight`` and the ``tfidf`` keys in
``models_baseline.yaml``), and every endpoint and choice is checked against that parameter's bounds when the
file is loaded, so a range the trainer would refuse fails before the first trial.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

Number = Annotated[float, Strict()] | Annotated[int, Strict()]  # a YAML bound: 1.0e-5 or 2, never true or "3"


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def values_to_check(self) -> list[Any]:
        """The values whose validity (for the trainer) stands for the whole distribution."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _range(v: list[Any], kind: str, positive: bool = False) -> list[Any]:
    if len(v) != 2:
        raise ValueError(f"{kind} takes [low, high], got {len(v)} values")
    low, high = v
    if not low < high:
        raise ValueError(f"{kind} needs low < high (an empty range), got [{low}, {high}]")
    if positive and low <= 0:
        raise ValueError(f"{kind} needs low > 0 (a log scale), got {low}")
    return v


class LogUniform(_Dist):
    loguniform: list[Number]

    @model_validator(mode="after")
    def _check(self) -> "LogUniform":
        self.loguniform = [float(x) for x in _range(self.loguniform, "loguniform", positive=True)]
        return self

    def values_to_check(self) -> list[Any]:
        return list(self.loguniform)


class Uniform(_Dist):
    uniform: list[Number]

    @model_validator(mode="after")
    def _check(self) -> "Uniform":
        self.uniform = [float(x) for x in _range(self.uniform, "uniform")]
        return self

    def values_to_check(self) -> list[Any]:
        return list(self.uniform)


class IntRange(_Dist):
    int: list[Annotated[int, Strict()]]  # [low, high], both included
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "IntRange":
        _range(self.int, "int", positive=self.log)
        return self

    def values_to_check(self) -> list[Any]:
        return list(self.int)


class Choice(_Dist):
    choice: list[Any]

    @model_validator(mode="after")
    def _check(self) -> "Choice":
        if not self.choice:
            raise ValueError("choice needs at least one value (an empty range)")
        keys = [json.dumps(c, sort_keys=True) for c in self.choice]
        if len(set(keys)) != len(keys):
            raise ValueError(f"choice lists a value twice: {self.choice}")
        for c in self.choice:
            if not isinstance(c, (str, int, float, bool, list)) or c is None:
                raise ValueError(f"choice values are numbers, strings, booleans or lists, got {c!r}")
        return self

    def values_to_check(self) -> list[Any]:
        return list(self.choice)


Distribution = Union[LogUniform, Uniform, IntRange, Choice]
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


def parse_distribution(raw: Any) -> Distribution:
    """One ``space:`` entry; ``ValueError`` says what forms exist."""
    if not isinstance(raw, dict):
        raise ValueError(f"must be a mapping such as {{loguniform: [1.0e-5, 3.0e-4]}}, got {raw!r}")
    kinds = [k for k in raw if k in DISTRIBUTIONS]
    unknown = [k for k in raw if k not in DISTRIBUTIONS and not (k == "log" and "int" in raw)]
    if unknown or len(kinds) != 1:
        names = ", ".join(repr(k) for k in unknown) or "none"
        raise ValueError(f"unknown distribution {names}; use exactly one of {', '.join(DISTRIBUTIONS)} "
                         "(int also takes log: true)")
    model = {"loguniform": LogUniform, "uniform": Uniform, "int": IntRange, "choice": Choice}[kinds[0]]
    return model.model_validate(raw)


class TuneConfig(BaseModel):
    """The ``tune:`` block of ``models_transformer.yaml`` or ``models_baseline.yaml``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)

    metric: Literal["macro_f1", "accuracy", "weighted_f1"] = "macro_f1"
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: Annotated[int, Strict()] = Field(20, ge=1)
    # median: stop a trial whose val metric after an epoch is below the median of earlier trials at that epoch
    pruner: Literal["median", "hyperband", "none"] = "median"
    space: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parse_space(self) -> "TuneConfig":
        if not self.space:
            raise ValueError("'space' is empty; name at least one parameter to search, "
                             "e.g. learning_rate: {loguniform: [1.0e-5, 3.0e-4]}")
        parsed: dict[str, Distribution] = {}
        problems = []
        for name, raw in self.space.items():
            try:
                parsed[name] = raw if isinstance(raw, _Dist) else parse_distribution(raw)
            except ValueError as exc:
                problems.append(f"'space.{name}' {_message(exc)}")
        if problems:
            raise ValueError("; ".join(problems))
        self.__dict__["space"] = parsed
        return self

    def distributions(self) -> dict[str, Distribution]:
        return dict(self.space)

    def space_spec(self) -> dict[str, dict[str, Any]]:
        """The space as plain data, in a fixed order (what a study is fingerprinted by)."""
        return {name: dist.spec() for name, dist in sorted(self.space.items())}

    def fingerprint(self) -> str:
        """sha256 of the space, metric and direction: a study refuses to continue under another one."""
        body = json.dumps({"space": self.space_spec(), "metric": self.metric, "direction": self.direction},
                          sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def model_dump_spec(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "trials": self.trials,
                "pruner": self.pruner, "space": self.space_spec()}


def _message(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return str(exc).removeprefix("Value error, ")


# --- sampling -----------------------------------------------------------------
def suggest(trial: Any, space: dict[str, Distribution]) -> dict[str, Any]:
    """Draw one value per parameter from an Optuna trial (lists in a choice come back as lists)."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, LogUniform):
            params[name] = trial.suggest_float(name, *dist.loguniform, log=True)
        elif isinstance(dist, Uniform):
            params[name] = trial.suggest_float(name, *dist.uniform)
        elif isinstance(dist, IntRange):
            params[name] = trial.suggest_int(name, *dist.int, log=dist.log)
        else:
            # Optuna's categorical choices must be scalars: lists (an n-gram range) go by their JSON text
            options = [json.dumps(c) if isinstance(c, list) else c for c in dist.choice]
            picked = trial.suggest_categorical(name, options)
            params[name] = json.loads(picked) if any(isinstance(c, list) for c in dist.choice) else picked
    return params


# --- SageMaker ----------------------------------------------------------------
def sagemaker_ranges(space: dict[str, Distribution]) -> dict[str, list[dict[str, Any]]]:
    """``ParameterRanges`` of ``CreateHyperParameterTuningJob`` for the same space.

    SageMaker passes every value to the job as a string: choices are JSON-encoded (``"16"``, ``"[1, 2]"``,
    ``"\\"balanced\\""``), as ``sagemaker launch`` encodes its hyperparameters.
    """
    continuous, integer, categorical = [], [], []
    for name, dist in space.items():
        if isinstance(dist, (LogUniform, Uniform)):
            low, high = dist.loguniform if isinstance(dist, LogUniform) else dist.uniform
            continuous.append({"Name": name, "MinValue": _num(low), "MaxValue": _num(high),
                               "ScalingType": "Logarithmic" if isinstance(dist, LogUniform) else "Linear"})
        elif isinstance(dist, IntRange):
            low, high = dist.int
            integer.append({"Name": name, "MinValue": str(low), "MaxValue": str(high),
                            "ScalingType": "Logarithmic" if dist.log else "Linear"})
        else:
            categorical.append({"Name": name, "Values": [json.dumps(c) for c in dist.choice]})
    return {"ContinuousParameterRanges": continuous, "IntegerParameterRanges": integer,
            "CategoricalParameterRanges": categorical}


def _num(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x}")
    return repr(float(x))
