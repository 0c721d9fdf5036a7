"""``multitype sagemaker tune``: the ``tune:`` search space as a SageMaker automatic model tuning job.

The route through :func:`launch_tuning`, in the order of ``sagemaker launch``
(:mod:`multitype.cloud.sagemaker.launch`), so that bad input costs nothing:

1. the ``tune:`` block of ``models_transformer.yaml`` (metric, direction,
   space), ``--max-jobs`` / ``--max-parallel-jobs``, the settings (role, S3
   root, instance type, image, spot) as ``sagemaker launch`` resolves them;
2. the processed data of the channels is there; credentials answer (not for
   ``--dry-run``);
3. the request is built — the training job definition is the one
   ``CreateTrainingJob`` uses (:func:`request.training_definition`), with
   ``StaticHyperParameters`` and no test channel — and validated against
   botocore's model of ``CreateHyperParameterTuningJob`` plus our own rules;
4. the estimate of ``--max-jobs`` trials against the budget;
5. data, configs and code are pushed, ``CreateHyperParameterTuningJob`` is
   sent once, and the launch is recorded under ``runs/sagemaker-tuning/<name>.json``.

Each trial is a training job running the entry script with the static
hyperparameters plus the searched ones under their ``tune.space`` names
(SageMaker sends them as strings: numbers for continuous and integer ranges,
the JSON text of a choice, see :func:`multitype.tuning.space.sagemaker_ranges`).
A trial reads no test data (its definition has no ``test`` channel), keeps
its checkpoints under its own training job name and writes its results under
:func:`entrypoint.trial_root`; the tuning objective is the trial's val metric
(``METRIC val_<metric>=`` lines, the best epoch's value last).
``multitype sagemaker tune collect`` evaluates the best trial's model on the
test split once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from multitype.cloud import aws as cloud_aws
from multitype.cloud import catalog
from multitype.cloud.records import LaunchRecords
from multitype.cloud.sagemaker import entrypoint, launch, request as req
from multitype.errors import AwsError, ConfigError, DataError, UserError
from multitype.project import Project

NAME_PREFIX = "multitype"  # the training jobs it starts are <name>-<NNN>-<id>: multitype-*, as IAM and `list` expect
NAME_MAX = 32
STAMP = "%y%m%d%H%M"
TUNINGS = LaunchRecords("sagemaker-tuning", "tuning_job", "SageMaker tuning job",
                        "name the tuning job (see 'multitype sagemaker tune status NAME')")
STUDY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass
class TuneOptions:
    """What ``multitype sagemaker tune`` was asked for; None: the project's default."""

    model_name: str | None = None
    study: str | None = None
    max_jobs: int = 20
    max_parallel_jobs: int = 4
    spot: bool | None = None
    max_run: int | None = None
    max_wait: int | None = None
    instance_type: str | None = None
    volume_gb: int | None = None
    image_uri: str | None = None
    role: str | None = None
    remote: str | None = None
    dry_run: bool = False
    budget: float | None = None
    force: bool = False


@dataclass
class TuneResult:
    """What :func:`launch_tuning` did."""

    name: str
    study: str
    request: dict[str, Any]
    console_url: str
    estimate_usd: float | None = None
    uploaded: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def tuning_job_name(slug: str, now: float | None = None) -> str:
    """``multitype-<slug>-<UTC yymmddHHMM>`` within the tuning job name's 32 characters (the slug is cut)."""
    stamp = time.strftime(STAMP, time.gmtime(now))
    room = NAME_MAX - len(NAME_PREFIX) - len(stamp) - 2
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", slug).strip("-")[:room].strip("-") or "job"
    return f"{NAME_PREFIX}-{clean}-{stamp}"


def objective_metric(metric: str) -> str:
    """The metric definition the objective reads: ``val_<metric>`` (trials have no test split)."""
    name = f"val_{metric}"
    if name not in req.METRIC_NAMES:
        raise ConfigError(f"tune.metric {metric!r}: the job prints no METRIC {name}= line to tune on")
    return name


def console_url(region: str, name: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
            f"#/hyper-tuning-jobs/{name}")


def build_tuning_request(*, name: str, definition: dict[str, Any], tune: Any, max_jobs: int,
                         max_parallel_jobs: int, tags: dict[str, str]) -> dict[str, Any]:
    """The ``CreateHyperParameterTuningJob`` parameters (a plain dict).

    Parameters
    ----------
    definition : dict
        From :func:`request.training_definition` (its ``HyperParameters`` become
        ``StaticHyperParameters``).
    tune : TuneConfig
        The ``tune:`` block: metric, direction and space.
    """
    from multitype.tuning.space import sagemaker_ranges

    body = dict(definition)
    static = dict(body.pop("HyperParameters"))
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize" if tune.direction == "maximize" else "Minimize",
                                                 "MetricName": objective_metric(tune.metric)},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": int(max_jobs),
                               "MaxParallelTrainingJobs": int(max_parallel_jobs)},
            "ParameterRanges": sagemaker_ranges(tune.distributions()),
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {**{k: v for k, v in body.items() if k != "AlgorithmSpecification"},
                                  "AlgorithmSpecification": body["AlgorithmSpecification"],
                                  "StaticHyperParameters": static},
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }


def _range_names(request: dict[str, Any]) -> list[str]:
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    return [r["Name"] for kind in ranges.values() for r in kind]


def validate_tuning_request(request: dict[str, Any], root: str) -> None:
    """Check ``request`` as SageMaker would (botocore's service model, patterns, lengths) and as only we know.

    Raises
    ------
    AwsError
        Every problem found, in one line.
    """
    definition = request.get("TrainingJobDefinition") or {}
    errors = req.role_errors(definition.get("RoleArn"))
    errors += req.check_operation("CreateHyperParameterTuningJob", request)
    if errors:
        raise AwsError("; ".join(errors))
    errors = req.definition_errors(definition, root)
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    if limits["MaxParallelTrainingJobs"] > limits["MaxNumberOfTrainingJobs"]:
        errors.append(f"--max-parallel-jobs {limits['MaxParallelTrainingJobs']} is more than --max-jobs "
                      f"{limits['MaxNumberOfTrainingJobs']}; lower it")
    names = _range_names(request)
    static = definition.get("StaticHyperParameters", {})
    both = sorted(set(names) & set(static))
    if both:
        errors.append(f"{', '.join(both)} both searched and static; SageMaker refuses that")
    unknown = sorted(set(names) - set(entrypoint.TUNED))
    if unknown:
        errors.append(f"tune.space {', '.join(unknown)}: the entry script does not take "
                      f"{'it' if len(unknown) == 1 else 'them'}; tunable: {', '.join(entrypoint.TUNED)}")
    if "test" in [c["ChannelName"] for c in definition.get("InputDataConfig", [])]:
        errors.append("a tuning trial must not read the test split: drop the test channel")
    if errors:
        raise AwsError("; ".join(errors))


def _tune_block(project: Project) -> Any:
    tune = project.configs.transformer.tune
    if tune is None:
        raise ConfigError("models_transformer.yaml has no 'tune:' block; add one such as tune: {metric: macro_f1, "
                          "direction: maximize, space: {learning_rate: {loguniform: [1.0e-5, 3.0e-4]}}}")
    return tune


def check_options(opts: TuneOptions) -> None:
    """``--max-jobs``, ``--max-parallel-jobs`` and ``--study`` before anything else (UserError, exit 2)."""
    if opts.max_jobs < 1:
        raise UserError(f"--max-jobs must be at least 1, got {opts.max_jobs}")
    if opts.max_parallel_jobs < 1:
        raise UserError(f"--max-parallel-jobs must be at least 1, got {opts.max_parallel_jobs}")
    if opts.max_parallel_jobs > opts.max_jobs:
        raise UserError(f"--max-parallel-jobs {opts.max_parallel_jobs} is more than --max-jobs {opts.max_jobs}; "
                        "lower it or raise --max-jobs")
    if opts.study is not None and not STUDY_NAME.match(opts.study):
        raise UserError(f"--study {opts.study!r}: use letters, digits, '.', '_' and '-' only")


def _check_val(project: Project) -> None:
    """The objective is the val metric: a val split without rows would leave every trial without one."""
    from multitype import layout
    from multitype.data.dataset import load_labels, load_split

    storage = project.storage
    labels = load_labels(storage)
    texts, _ = load_split(storage, "val", labels)
    if not texts:
        key = layout.processed_split("val", len(labels))
        raise DataError(f"{storage.url(key)} has no rows: a tuning job optimises the val metric and its trials "
                        "never see test data; set split.val above 0 in project.yaml and rerun 'multitype prepare'")


def _guard_budget(project: Project, opts: TuneOptions, model: str, instance_type: str, spot: bool, max_run: int,
                  echo: Callable[[str], None]) -> float | None:
    """``--max-jobs`` x the estimate of one trial (the model's config, the largest num_epochs searched)."""
    from multitype.cloud import cost
    from multitype.cloud.prices import load_catalog
    from multitype.tuning.space import IntRange, LogUniform, Uniform

    budget = opts.budget if opts.budget is not None else project.configs.project.aws.budget_usd
    cost.check_budget(0.0, budget, force=opts.force, what="")
    prices = load_catalog()
    if prices.instance(instance_type) is None:
        cost.check_unpriced(instance_type, budget, force=opts.force, catalog=prices, echo=echo)
        return None
    dist = project.configs.transformer.tune.distributions().get("num_epochs")
    epochs = None
    if isinstance(dist, (IntRange, LogUniform, Uniform)):
        epochs = float(max(dist.values_to_check()))
    elif dist is not None:
        epochs = float(max(dist.choice))
    one = cost.launch_estimate(project, "transformer", [model], instance_type, spot=spot, count=1, epochs=epochs,
                               max_run=max_run, catalog=prices)
    total = one.usd * opts.max_jobs
    echo(f"per trial {cost.describe(one)}")
    echo(f"tuning estimate: {opts.max_jobs} trial(s) x {cost.money(one.usd)} = {cost.money(total)} at most")
    cost.check_budget(total, budget, force=opts.force,
                      what=f"the SageMaker tuning job ({opts.max_jobs} trial(s) on {instance_type})")
    return total


def launch_tuning(project: Project, opts: TuneOptions, config_dir: str = "configs",
                  echo: Callable[[str], None] = print) -> TuneResult:
    """Start the SageMaker tuning job that ``opts`` asks for (see the module docstring).

    Raises
    ------
    ConfigError
        No ``tune:`` block, or a setting out of bounds.
    UserError
        ``--max-jobs`` / ``--max-parallel-jobs`` / ``--study`` not usable.
    AwsError
        A setting, the catalog, credentials, the request or AWS refused it.
    DataError
        The processed data of a channel is missing, or the val split has no rows.
    """
    from multitype import layout
    from multitype.cloud.sagemaker.sourcedir import build_sourcedir
    from multitype.transformer.models import MINILM_ALIAS, resolve_model

    tune = _tune_block(project)
    check_options(opts)
    aws = project.configs.project.aws
    sm = aws.sagemaker
    model = opts.model_name or project.configs.transformer.defaults.model_name
    project.configs.transformer.params_for(model)
    if model != MINILM_ALIAS and resolve_model(model).local:
        raise AwsError(f"model {model!r} is a local folder, which a SageMaker job cannot read; use 'minilm' "
                       "or a Hugging Face hub id")
    study = opts.study or model
    instance_type = catalog.check_instance_type(opts.instance_type or sm.instance_type)
    role = launch.execution_role(opts.role, aws.sagemaker_role)
    root = launch.remote_root(project, opts.remote, "the tuning job")
    image = launch.training_image(opts.image_uri, aws.region, instance_type, sm.image_uri, echo)
    channels = {k: v for k, v in launch.channels(project, root).items() if k != "test"}
    _check_val(project)
    spot = sm.spot if opts.spot is None else opts.spot
    max_run = opts.max_run or sm.max_run
    max_wait = (opts.max_wait or sm.max_wait) if spot else None
    account = None if opts.dry_run else cloud_aws.caller_account(aws)
    local = launch.local_folder(project)
    sourcedir = build_sourcedir(local)
    sourcedir_uri = f"{root}/{sourcedir.key}"
    name = tuning_job_name(layout.model_slug(model))
    definition = req.training_definition(
        image_uri=image.uri, role_arn=role, root=root, region=aws.region, sourcedir_uri=sourcedir_uri,
        task="transformer", hyperparameters={"model-name": model, "resume": "auto", entrypoint.TUNING_JOB: name},
        channels=channels, instance_type=instance_type, instance_count=1, volume_gb=opts.volume_gb or sm.volume_gb,
        spot=spot, max_run=max_run, max_wait=max_wait,
        checkpoint_uri=f"{root}/models/checkpoints/{name}/")
    tags = {"multitype:project": project.configs.project.name[:256], "multitype:task": "tune",
            "multitype:model": model[:256], "multitype:study": study[:256], **aws.tags}
    request = build_tuning_request(name=name, definition=definition, tune=tune, max_jobs=opts.max_jobs,
                                   max_parallel_jobs=opts.max_parallel_jobs, tags=tags)
    validate_tuning_request(request, root)
    result = TuneResult(name, study, request, console_url(aws.region, name))
    # after validation, so a malformed request is named first; before any upload, so a refusal leaves nothing
    result.estimate_usd = _guard_budget(project, opts, model, instance_type, spot, max_run,
                                        (lambda _line: None) if opts.dry_run else echo)
    if opts.dry_run:
        return result
    result.uploaded, uploaded_bytes = launch.push(project, root, config_dir, sourcedir, local)
    client = cloud_aws.client("sagemaker", aws, max_attempts=1)  # a create is not retried blindly
    with cloud_aws.aws_errors(f"start the tuning job {name}", aws):
        client.create_hyper_parameter_tuning_job(**request)
    result.record = TUNINGS.save(project.storage, name, {
        "study": study, "model_name": model, "kind": "transformer", "region": aws.region, "account": account,
        "root": root, "instance_type": instance_type, "spot": spot, "image": image.uri,
        "tune": tune.model_dump_spec(), "fingerprint": tune.fingerprint(), "console_url": result.console_url,
        "request": request})
    echo(f"started tuning job {name} (study {study}: up to {opts.max_jobs} trial(s), {opts.max_parallel_jobs} at a "
         f"time, {instance_type}, {'spot' if spot else 'on-demand'}; objective "
         f"{request['HyperParameterTuningJobConfig']['HyperParameterTuningJobObjective']['Type'].lower()} "
         f"{objective_metric(tune.metric)}): {result.console_url}")
    echo(f"{len(result.uploaded)} file(s) uploaded ({uploaded_bytes / 2**20:.1f} MiB)")
    return result


def record_of(project: Project, name: str) -> dict[str, Any] | None:
    """The launch record of tuning job ``name`` in this root (None: not launched from here)."""
    return TUNINGS.load(project.storage, name)
