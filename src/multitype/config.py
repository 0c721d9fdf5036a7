"""The four YAML config files, each validated by a pydantic model.

Unknown keys are errors (``extra="forbid"``) and every problem in a file is
reported at once, naming the file and the dotted key, so a typo costs one run.
Every number has the bounds the code that uses it needs (as scikit-learn's
``_parameter_constraints`` do), so a bad value fails here, with the key, and
not later inside scikit-learn or torch: numbers are strict (``true`` or ``"3"``
is not a number), finite (no ``.inf``/``.nan``), and counts are integers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from multitype.errors import ConfigError
from multitype.tuning.space import TuneConfig

CONFIG_FILES = {
    "project": "project.yaml",
    "data": "data_config.yaml",
    "baseline": "models_baseline.yaml",
    "transformer": "models_transformer.yaml",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``2e-5`` without a dot as a string: take it as the number it spells."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# Strict numbers: YAML's `true`, `"3"` or `2.5` is not a count; an integer is a fine float.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), BeforeValidator(_yaml_float)]
# numpy's legacy seeding and scikit-learn's random_state take 0 <= seed < 2**32
Seed = Annotated[int, Strict(), Field(ge=0, lt=2**32)]


def _compile_mode(value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError("must be auto, true or false")


CompileMode = Annotated[Literal["auto"] | bool, BeforeValidator(_compile_mode)]


# --- project.yaml -------------------------------------------------------------
class StorageConfig(_Strict):
    root: str = "."
    remote: str | None = None
    endpoint_url: str | None = None


class SageMakerConfig(_Strict):
    """Defaults of ``multitype sagemaker launch`` (each has a flag that overrides it)."""

    instance_type: str = "ml.g5.xlarge"
    instance_count: Int = Field(1, ge=1, le=64)
    spot: bool = True
    max_run: Int = Field(43200, ge=1, le=28 * 24 * 3600)   # seconds; SageMaker's cap is 28 days
    max_wait: Int = Field(86400, ge=1, le=28 * 24 * 3600)  # seconds; spot only, >= max_run
    volume_gb: Int = Field(50, ge=1, le=16384)
    image_uri: str | None = None      # null: the AWS PyTorch training image from the SageMaker SDK's catalog


class Ec2Config(_Strict):
    """Defaults of ``multitype ec2 launch``."""

    instance_type: str = "g5.xlarge"
    spot: bool = True
    max_price: Float | None = Field(None, gt=0)
    ami: str | None = None
    volume_gb: Int = Field(100, ge=8, le=16384)
    key_name: str | None = None
    subnet: str | None = None
    security_groups: list[str] = Field(default_factory=list)


class AutoscaleConfig(_Strict):
    """Defaults of ``multitype autoscale`` (each has a flag that overrides it)."""

    model: str | None = None          # s3://... or a model folder under the S3 root (models/final/<name>)
    instance_type: str = "c5.xlarge"
    min_size: Int = Field(1, ge=0)
    max_size: Int = Field(5, ge=1)
    desired: Int = Field(2, ge=0)
    target_cpu: Float = Field(60.0, gt=0, le=100)
    spot_share: Float = Field(0.0, ge=0, le=1)
    cooldown: Int = Field(300, ge=0)   # the policy's EstimatedInstanceWarmup and the group's DefaultCooldown
    health_check_grace: Int = Field(300, ge=0)
    subnets: list[str] = Field(default_factory=list)          # empty: aws.ec2.subnet
    security_groups: list[str] = Field(default_factory=list)  # empty: aws.ec2.security_groups
    schedules: list[str] = Field(default_factory=list)        # "CRON=DESIRED", e.g. "0 8 * * MON-FRI=4"
    volume_gb: Int = Field(100, ge=8, le=16384)
    ami: str | None = None


class AwsConfig(_Strict):
    region: str = "us-east-1"
    profile: str | None = None
    sagemaker_role: str | None = None
    ec2_instance_profile: str | None = None
    budget_usd: Float | None = Field(None, gt=0)  # launches whose estimate exceeds it are refused unless --force
    tags: dict[str, str] = Field(default_factory=dict)  # added to every job and instance (besides the project's own)
    sagemaker: SageMakerConfig = Field(default_factory=SageMakerConfig)
    ec2: Ec2Config = Field(default_factory=Ec2Config)
    autoscale: AutoscaleConfig = Field(default_factory=AutoscaleConfig)


class ReportConfig(_Strict):
    """How the report weighs test scores (``multitype.stats``)."""

    alpha: Float = Field(0.05, gt=0, lt=0.5)         # significance level of the paired tests against the best model
    confidence: Float = Field(0.95, ge=0.5, lt=1)    # of the bootstrap intervals on each test metric
    resamples: Int = Field(1000, ge=1000, le=100_000)  # bootstrap resamples (seeded with `seed`)


class TrackingConfig(_Strict):
    """MLflow experiment tracking (``pip install 'multitype[tracking]'``); off by default."""

    mlflow: bool = False
    # null: a local store under the root (runs/mlflow/); http(s)://host:port; or a SageMaker managed
    # MLflow tracking server ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)
    uri: str | None = None
    experiment: str | None = None     # null: the project's name


class ProjectConfig(_Strict):
    name: str = "nlp-multitype"
    seed: Seed = 42
    storage: StorageConfig = Field(default_factory=StorageConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


# --- data_config.yaml ---------------------------------------------------------
class SplitConfig(_Strict):
    train: Float = Field(0.8, gt=0, lt=1)
    val: Float = Field(0.1, ge=0, lt=1)
    test: Float = Field(0.1, gt=0, lt=1)
    seed: Seed = 42

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitConfig":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1.0, got {total:g}")
        return self


class LshConfig(_Strict):
    """MinHash LSH of the fast near-duplicate search (multitype.data.neardup)."""

    num_perm: Int = Field(160, ge=8, le=1024)
    bands: Int = Field(32, ge=1)
    # words in more than this share of the texts are left out of the MinHash sets
    max_df: Float = Field(0.05, gt=0, le=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _bands_divide(self) -> "LshConfig":
        if self.bands > self.num_perm or self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm}) into bands of equal "
                             "size, e.g. num_perm: 160 with bands: 32 (5 values each)")
        return self


class LeakageConfig(_Strict):
    policy: Literal["drop", "warn", "fail"] = "drop"
    near_duplicate_threshold: Float = Field(0.9, gt=0, le=1)
    # exact: all pairs by prefix filtering; lsh: MinHash candidates, each verified exactly;
    # auto: exact below auto_lsh_from distinct texts, lsh from there on
    method: Literal["auto", "exact", "lsh"] = "auto"
    auto_lsh_from: Int = Field(20_000, ge=0)
    lsh: LshConfig = Field(default_factory=LshConfig)


class DataConfig(_Strict):
    input: str | None = None
    format: Literal["auto", "json", "jsonl", "csv", "parquet", "folder"] = "auto"
    text_field: str = "text"
    label_field: str = "label"
    labels: list[str] | None = None
    # codec of input files without a byte-order mark (null = UTF-8), e.g. latin-1, cp1252
    encoding: str | None = None
    min_chars: Int = Field(1, ge=1)
    empty_texts: Literal["drop", "error"] = "drop"
    min_per_class: Int = Field(10, ge=1)
    # threads and processes prepare uses (joblib convention: -1 = all cores); results do not depend on it
    n_jobs: Int = -1
    split: SplitConfig = Field(default_factory=SplitConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)

    @field_validator("n_jobs")
    @classmethod
    def _jobs(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be a positive number of workers or negative (-1 = all cores), not 0")
        return v

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            b"a".decode(v)  # LookupError for unknown names and for bytes-to-bytes codecs (base64, ...)
        except LookupError:
            raise ValueError("is not a text encoding Python knows; use a name such as latin-1, cp1252, "
                             "utf-16 or shift_jis") from None
        except UnicodeError:
            pass  # a real codec that needs more than one byte
        return v


# --- models_baseline.yaml -----------------------------------------------------
class TfidfConfig(_Strict):
    ngram_range: tuple[Int, Int] = (1, 2)
    # scikit-learn's convention: an integer is a document count, a float a proportion of documents
    min_df: int | float = 2
    max_features: Int | None = Field(None, gt=0)
    sublinear_tf: bool = True
    # worker processes that tokenise (joblib convention: -1 = all cores); results do not depend on it
    n_jobs: Int = -1

    @field_validator("min_df", mode="before")
    @classmethod
    def _min_df(cls, v: Any) -> int | float:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        if isinstance(v, float) and 0 < v <= 1:
            return v
        raise ValueError("must be a document count (an integer >= 1) or a proportion of the documents "
                         "(a number > 0 and <= 1.0)")

    @field_validator("n_jobs")
    @classmethod
    def _jobs(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be a positive number of processes or negative (-1 = all cores), not 0")
        return v

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < v[0]:
            raise ValueError(f"must be [min_n, max_n] with 1 <= min_n <= max_n, got {list(v)}")
        return v


class LogregConfig(_Strict):
    C: Float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = None
    max_iter: Int = Field(2000, gt=0)
    # newton-cg: same optimum as lbfgs, 3-5x faster on sparse TF-IDF (benchmarks/baselines.py)
    solver: Literal["newton-cg", "lbfgs", "sag", "saga"] = "newton-cg"


class LinearSvmConfig(_Strict):
    C: Float = Field(1.0, gt=0)
    class_weight: Literal["balanced"] | None = None


class BaselineModels(_Strict):
    logreg: LogregConfig = Field(default_factory=LogregConfig)
    linear_svm: LinearSvmConfig = Field(default_factory=LinearSvmConfig)


# what `multitype tune baseline` may search: the classifier's own keys, then the shared TF-IDF ones
BASELINE_TUNABLE = {"C": "models", "class_weight": "models", "max_iter": "models",
                    "ngram_range": "tfidf", "min_df": "tfidf", "max_features": "tfidf", "sublinear_tf": "tfidf"}


class BaselineConfig(_Strict):
    tfidf: TfidfConfig = Field(default_factory=TfidfConfig)
    models: BaselineModels = Field(default_factory=BaselineModels)
    # null: `multitype tune baseline` needs one; see multitype.tuning.space for the forms
    tune: TuneConfig | None = None

    @model_validator(mode="after")
    def _check_tune(self) -> "BaselineConfig":
        if self.tune is None:
            return self
        problems = []
        for name, dist in self.tune.distributions().items():
            section = BASELINE_TUNABLE.get(name)
            if section is None:
                problems.append(f"'tune.space.{name}' is not a baseline parameter; tunable: "
                                f"{', '.join(BASELINE_TUNABLE)}")
                continue
            for value in dist.values_to_check():
                try:
                    if section == "tfidf":
                        TfidfConfig.model_validate({**self.tfidf.model_dump(), name: value})
                    else:
                        owners = [m for m in (LogregConfig, LinearSvmConfig) if name in m.model_fields]
                        for owner in owners:
                            owner.model_validate({name: value})
                except ValidationError as exc:
                    problems.append(f"'tune.space.{name}' value {value!r}: {_first_msg(exc)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# --- models_transformer.yaml --------------------------------------------------
class CheckpointConfig(_Strict):
    every_steps: Int | None = Field(200, gt=0)
    every_minutes: Float | None = Field(10, gt=0)
    keep_last_epochs: Int = Field(2, ge=1)
    # after a run finishes: all = every checkpoint keeps its resume state; last = only the newest
    # resumable one does (older epochs keep their weights, step checkpoints go); none = only the final
    # model stays. In every mode <slug>-best becomes a pointer to models/final/<slug>.
    keep: Literal["all", "last", "none"] = "last"


class TransformerParams(_Strict):
    """Hyperparameters for one fine-tuning run (the runbook's names)."""

    model_name: str = "minilm"
    num_epochs: Float = Field(3, gt=0)
    # AdamW's peak rate: above 1 is a typo (2e5 for 2e-5), not a setting
    learning_rate: Float = Field(2.0e-5, gt=0, le=1)
    batch_size: Int = Field(16, gt=0)
    # a tokenizer needs room for its special tokens ([CLS] text [SEP])
    max_length: Int = Field(256, ge=8)
    gradient_accumulation_steps: Int = Field(1, gt=0)
    warmup_ratio: Float = Field(0.1, ge=0, lt=1)
    weight_decay: Float = Field(0.01, ge=0, lt=1)
    max_grad_norm: Float = Field(1.0, gt=0)
    max_steps: Int | None = Field(None, gt=0)
    max_train_samples: Int | None = Field(None, gt=0)
    eval_batch_size: Int | None = Field(None, gt=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    # torch.compile the encoder layers: auto = where measured to pay (see transformer/compiling.py)
    compile: CompileMode = "auto"
    class_weights: Literal["none", "balanced"] = "none"
    early_stopping_patience: Int | None = Field(2, ge=1)
    metric: Literal["macro_f1", "accuracy", "weighted_f1"] = "macro_f1"
    seed: Seed | None = None
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)


class TransformerConfig(_Strict):
    defaults: TransformerParams = Field(default_factory=TransformerParams)
    # per-model overrides of defaults, merged deeply (a nested `checkpoint:` keeps the other keys)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # what `multitype run` fine-tunes: overrides on top of defaults + models[...]
    run: dict[str, Any] = Field(default_factory=lambda: {"model_name": "minilm"})
    # null: `multitype tune transformer` needs one; see multitype.tuning.space for the forms
    tune: TuneConfig | None = None

    @field_validator("tune")
    @classmethod
    def _check_tune(cls, v: TuneConfig | None, info: ValidationInfo) -> TuneConfig | None:
        if v is None:
            return v
        base = _base(info)
        problems = []
        for name, dist in v.distributions().items():
            if name not in TRANSFORMER_TUNABLE:
                problems.append(f"'tune.space.{name}' is not a fine-tuning parameter; tunable: "
                                f"{', '.join(TRANSFORMER_TUNABLE)}")
                continue
            for value in dist.values_to_check():
                try:
                    TransformerParams.model_validate({**base, name: value})
                except ValidationError as exc:
                    problems.append(f"'tune.space.{name}' value {value!r}: {_first_msg(exc)}")
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("models", "run", mode="before")
    @classmethod
    def _sections(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name == "models" and isinstance(v, dict):
            return {name: {} if section is None else section for name, section in v.items()}
        return v

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: dict[str, dict[str, Any]], info: ValidationInfo) -> dict[str, dict[str, Any]]:
        # errors come back under ('models', <name>, <key>...), so messages name the full key
        base = _base(info)
        _PARAMS_BY_NAME.validate_python({name: deep_merge(base, section) for name, section in v.items()})
        return v

    @field_validator("run")
    @classmethod
    def _check_run(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        TransformerParams.model_validate(deep_merge(_base(info), v))
        return v

    def run_params(self) -> TransformerParams:
        """The parameters ``multitype run`` trains with."""
        overrides = dict(self.run)
        name = overrides.pop("model_name", None)
        return self.params_for(name, _source="models_transformer.yaml 'run'", **overrides)

    def params_for(self, model_name: str | None = None, _source: str = "command line",
                   **overrides: Any) -> TransformerParams:
        """Defaults, then the per-model section, then non-None overrides (CLI flags), merged deeply.

        Raises
        ------
        ConfigError
            An override out of bounds; the message names the key (the file's
            own values were checked when it was loaded).
        """
        name = model_name or self.defaults.model_name
        merged = deep_merge(self.defaults.model_dump(), self.models.get(name) or {})
        merged = deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
        merged["model_name"] = name
        try:
            return TransformerParams.model_validate(merged)
        except ValidationError as exc:
            flags = ", ".join(f"--{str(e['loc'][0]).replace('_', '-')}" for e in exc.errors()
                              if e["loc"] and e["loc"][0] in overrides)
            where = f"{_source} ({flags})" if flags and _source == "command line" else _source
            raise ConfigError(_format_errors(where, exc)) from None


_PARAMS_BY_NAME = TypeAdapter(dict[str, TransformerParams])
# what `multitype tune transformer` may search: every top-level parameter but the model, seed and checkpoints
TRANSFORMER_TUNABLE = tuple(name for name in TransformerParams.model_fields
                            if name not in {"model_name", "seed", "checkpoint", "metric"})


def _first_msg(exc: ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())


def _base(info: ValidationInfo) -> dict[str, Any]:
    """The validated ``defaults`` as a dict (the stock defaults where they failed: reported already)."""
    defaults = info.data.get("defaults")
    return (defaults if isinstance(defaults, TransformerParams) else TransformerParams()).model_dump()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into mappings both hold.

    >>> deep_merge({"checkpoint": {"every_steps": 200, "keep_last_epochs": 2}}, {"checkpoint": {"every_steps": 5}})
    {'checkpoint': {'every_steps': 5, 'keep_last_epochs': 2}}
    """
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --- loading ------------------------------------------------------------------
MODELS: dict[str, type[_Strict]] = {
    "project": ProjectConfig,
    "data": DataConfig,
    "baseline": BaselineConfig,
    "transformer": TransformerConfig,
}


@dataclass
class Configs:
    """The four configs in force, plus where they came from."""

    project: ProjectConfig = field(default_factory=ProjectConfig)
    data: DataConfig = field(default_factory=DataConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key).model_dump(mode="json") for key in MODELS}


def _format_errors(filename: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if err["type"] == "extra_forbidden":
            parts.append(f"{filename}: unknown key '{loc}' (remove it or check its spelling)")
        elif err["type"] == "missing":
            parts.append(f"{filename}: missing key '{loc}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if msg.startswith("'"):
                # a validator that names its own keys ('tune.space.x' ...): one problem per key, under loc
                for one in msg.split("; '"):
                    key = one.lstrip("'")
                    full = key if not loc or key.startswith(f"{loc}.") else f"{loc}.{key}"
                    parts.append(f"{filename}: '{full}")
                continue
            value = err.get("input")
            shown = "" if isinstance(value, (dict, list)) else f", got {value!r}"
            parts.append(f"{filename}: '{loc}' {msg}{shown}" if loc else f"{filename}: {msg}")
    return "; ".join(parts)


def parse_config(kind: str, text: str, filename: str) -> _Strict:
    """Validate one config file's text; raise ``ConfigError`` naming file and keys."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{filename}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{filename}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(filename, exc)) from None


def load_configs(config_dir: str, storage_options: dict[str, Any] | None = None) -> Configs:
    """Read and validate the four files in ``config_dir`` (local folder or URL).

    Every file must exist: a missing one is a ``ConfigError`` that says to run
    ``multitype init``. All files are checked before the first error is raised,
    so the message lists every problem.
    """
    import fsspec

    fs, base = fsspec.core.url_to_fs(config_dir, **(storage_options or {}))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for kind, name in CONFIG_FILES.items():
        path = f"{base.rstrip('/')}/{name}"
        shown = f"{config_dir.rstrip('/')}/{name}"
        if not fs.exists(path):
            problems.append(f"{shown}: file not found (run 'multitype init' to write the default configs)")
            continue
        try:
            values[kind] = parse_config(kind, fs.cat_file(path).decode("utf-8"), shown)
        except ConfigError as exc:
            problems.append(str(exc))
        except UnicodeDecodeError:
            problems.append(f"{shown}: not UTF-8 text")
    if problems:
        raise ConfigError("; ".join(problems))
    return Configs(**values, source=config_dir)


def default_yaml(kind: str) -> str:
    """The default contents of one config file, as YAML."""
    model = MODELS[kind]()
    data = model.model_dump(mode="json")
    if kind == "transformer":
        data["models"] = {"bert-base-uncased": {}, "roberta-base": {}}
    header = f"# {CONFIG_FILES[kind]}: multitype defaults; see README for every key.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
