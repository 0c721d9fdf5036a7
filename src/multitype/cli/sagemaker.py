"""``multitype sagemaker launch|status|logs|stop|list|collect|tune``: training and tuning jobs on Amazon SageMaker
(``prepare``: processing jobs)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from multitype.cli._common import ConfigDirOpt, RootOpt, console, duration, project, split_names
from multitype.cli.train import BatchSizeOpt, LearningRateOpt, MaxLengthOpt, NumEpochsOpt, ResumeOpt

app = typer.Typer(help="Training jobs on Amazon SageMaker (managed spot, checkpoints, metrics).",
                  no_args_is_help=True)


# --- launch -------------------------------------------------------------------------------------
@app.command("launch", context_settings={"allow_extra_args": True})
def launch(
    ctx: typer.Context,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="One transformer (default: models_transformer.yaml's model_name).")] = None,
    models: Annotated[Optional[str], typer.Option("--models", help="Several: --models A B C D, one job with one model per GPU (train parallel); with --baselines: logreg,linear_svm.")] = None,
    baselines: Annotated[bool, typer.Option("--baselines", help="Train the TF-IDF baselines (default instance ml.m5.xlarge, CPU image).")] = False,
    one_job_per_model: Annotated[bool, typer.Option("--one-job-per-model", help="With --models: one job per model instead of one multi-GPU job.")] = False,
    instance_type: Annotated[Optional[str], typer.Option("--instance-type", help="Training instance type (default: aws.sagemaker.instance_type).")] = None,
    instance_count: Annotated[Optional[int], typer.Option("--instance-count", min=1, help="Instances (data-parallel, one transformer only).")] = None,
    spot: Annotated[Optional[bool], typer.Option("--spot/--on-demand", help="Managed spot training (default: aws.sagemaker.spot).")] = None,
    max_run: Annotated[Optional[int], typer.Option("--max-run", min=1, help="MaxRuntimeInSeconds (default: aws.sagemaker.max_run).")] = None,
    max_wait: Annotated[Optional[int], typer.Option("--max-wait", min=1, help="MaxWaitTimeInSeconds, spot only, >= --max-run.")] = None,
    volume_gb: Annotated[Optional[int], typer.Option("--volume-gb", min=1, help="EBS volume per instance, GB.")] = None,
    image_uri: Annotated[Optional[str], typer.Option("--image-uri", help="Training image (default: the AWS PyTorch training image from sagemaker-core's catalog).")] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Execution role ARN (default: SAGEMAKER_ROLE, else aws.sagemaker_role).")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root of the job (default: storage.remote).")] = None,
    num_epochs: NumEpochsOpt = None,
    learning_rate: LearningRateOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    resume: ResumeOpt = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the validated request(s) as JSON; upload and start nothing.")] = False,
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD: refuse to start when the estimate is above it (default: aws.budget_usd).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even when the estimate is above the budget.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the logs until the job ends; exit non-zero if it Failed or Stopped.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Push code, configs and processed data, then start a SageMaker training job."""
    proj = project("sagemaker launch", root, config_dir)
    from multitype.cloud.sagemaker.launch import LaunchOptions, launch as start

    names = [name for value in [models, *ctx.args] if value for name in split_names(value) or []] or None
    if ctx.args and models is None:
        raise typer.BadParameter(f"unexpected argument(s): {' '.join(ctx.args)}")
    opts = LaunchOptions(model_name=model_name, models=names, baselines=baselines,
                         one_job_per_model=one_job_per_model, spot=spot, max_run=max_run, max_wait=max_wait,
                         instance_type=instance_type, instance_count=instance_count, volume_gb=volume_gb,
                         image_uri=image_uri, role=role, remote=remote, num_epochs=num_epochs,
                         learning_rate=learning_rate, batch_size=batch_size, max_length=max_length, resume=resume,
                         dry_run=dry_run, budget=budget, force=force)
    result = start(proj, opts, config_dir=config_dir, echo=lambda line: console.print(line, markup=False, soft_wrap=True))
    if dry_run:
        requests = [job.request for job in result.jobs]
        typer.echo(json.dumps(requests[0] if len(requests) == 1 else requests, indent=2))
        console.print(f"(dry run) nothing uploaded or started; sourcedir {result.sourcedir_bytes / 1024:.0f} KiB")
        return
    for job in result.jobs:
        typer.echo(job.job_name)
    if wait:
        from multitype.cloud.sagemaker import jobs

        code = 0
        for job in result.jobs:  # wait() prints the log lines and how the job ended (FailureReason included)
            final = jobs.wait(proj.configs.project.aws, job.job_name, follow_logs=True,
                              echo=lambda line: typer.echo(line))
            code = code or jobs.exit_code(str(final.get("TrainingJobStatus", "")))
        if code:
            raise typer.Exit(code)


# --- status, logs, stop, list, collect ----------------------------------------------------------
# Commands that take an optional JOB default to the newest job launched from this root (runs/sagemaker/).

JobArg = Annotated[Optional[str], typer.Argument(
    help="Training job name [default: the newest job launched from this root].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]
PollOpt = Annotated[float, typer.Option("--poll-seconds", min=0.0, help="Seconds between polls.")]


def _out() -> Console:
    """stdout for tables (remarks go to stderr); made per call so COLUMNS counts."""
    return Console()


def _job_project(command: str, root: Optional[str], config_dir: str, job: Optional[str]) -> tuple[Any, str]:
    from multitype.cloud.sagemaker.records import latest_job

    proj = project(f"sagemaker {command}", root, config_dir)
    return proj, job or latest_job(proj.storage)


def _echo_out(line: str) -> None:
    """A log or status line on stdout, as it came (no wrapping, markup or emoji codes)."""
    typer.echo(line)


def _note(line: str) -> None:
    """A remark for people on stderr, never wrapped (so it can be grepped)."""
    typer.echo(line, err=True)


@app.command("status")
def job_status(job: JobArg = None, as_json: JsonOpt = False, root: RootOpt = None,
           config_dir: ConfigDirOpt = "configs") -> None:
    """Status, secondary-status transitions, instances, billable vs training time and spot saving, final metrics."""
    from multitype.cloud.sagemaker import jobs

    proj, name = _job_project("status", root, config_dir, job)
    info = jobs.summary(jobs.describe(proj.configs.project.aws, name))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(title=f"training job {name}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    spot = "spot" if info["spot"] else "on-demand"
    saving = f" (spot saving {info['spot_saving_percent']:.1f}%)" if info["spot_saving_percent"] is not None else ""
    rows = [("status", f"{info['status']} / {info['secondary_status'] or '-'}"),
            ("instances", f"{info['instance_count']} x {info['instance_type']}, {spot}"),
            ("training time", duration(info["training_seconds"])),
            ("billable time", duration(info["billable_seconds"]) + saving),
            ("created", info["created"] or "-"), ("ended", info["ended"] or "-")]
    if info["failure_reason"]:
        rows.append(("failure reason", info["failure_reason"]))
    rows += [(f"metric {k}", f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in info["final_metrics"].items()]
    rows.append(("model artifacts", info["model_artifacts"] or "-"))
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    _out().print(table)
    if info["transitions"]:
        steps = Table(title="secondary status transitions", title_justify="left")
        for column in ("status", "start", "end", "message"):
            steps.add_column(column)
        for t in info["transitions"]:
            steps.add_row(*(Text(str(t[c] or "-")) for c in ("status", "start", "end", "message")))
        _out().print(steps)


@app.command("logs")
def job_logs(job: JobArg = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job has ended.")] = False,
         poll_seconds: PollOpt = 10.0,
         timestamps: Annotated[bool, typer.Option("--timestamps", help="Prefix lines with their UTC time.")] = False,
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """The job's CloudWatch log lines (every host, by time; prefixed with the host when there are several)."""
    from multitype.cloud.sagemaker.logs import show_logs

    proj, name = _job_project("logs", root, config_dir, job)
    show_logs(proj.configs.project.aws, name, follow=follow, poll_seconds=poll_seconds, echo=_echo_out,
              note=_note, timestamps=timestamps)


@app.command("stop")
def job_stop(job: Annotated[str, typer.Argument(help="Training job name.", show_default=False)],
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Stop a running job (StopTrainingJob). Already stopping/stopped: exit 0; already Completed/Failed: exit 2."""
    from multitype.cloud.sagemaker import jobs

    proj = project("sagemaker stop", root, config_dir)
    _, message = jobs.stop(proj.configs.project.aws, job)
    _note(message)


@app.command("list")
def job_list(status_: Annotated[Optional[str], typer.Option(
              "--status", help="InProgress | Completed | Failed | Stopping | Stopped.")] = None,
          all_jobs: Annotated[bool, typer.Option("--all", help="Every job in the account and region, not only this project's.")] = False,
          limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many of the newest jobs.")] = 50,
          as_json: JsonOpt = False, root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Training jobs, newest first: this project's (named multitype-... or launched from this root), or --all."""
    from multitype.cloud.sagemaker import jobs
    from multitype.cloud.sagemaker.records import list_jobs

    proj = project("sagemaker list", root, config_dir)
    own = [str(r["job_name"]) for r in list_jobs(proj.storage)]
    rows = jobs.list_jobs(proj.configs.project.aws, status=status_, all_jobs=all_jobs, own=own, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        which = "in this account and region" if all_jobs else "from this project"
        _note(f"no training jobs {which}" + (f" with status {status_}" if status_ else ""))
        return
    table = Table()
    for column in ("job", "status", "instance", "spot", "duration", "created"):
        table.add_column(column)
    for r in rows:
        instance = f"{r['instance_count']} x {r['instance_type']}" if r["instance_type"] else "-"
        spot = "-" if r["spot"] is None else ("spot" if r["spot"] else "on-demand")
        table.add_row(Text(r["job_name"]), r["status"], instance, spot, duration(r["duration_seconds"]),
                      r["created"] or "-")
    _out().print(table)


@app.command("wait")
def job_wait(job: JobArg = None,
         logs_: Annotated[bool, typer.Option("--logs/--no-logs", help="Print the job's log lines meanwhile.")] = True,
         poll_seconds: PollOpt = 30.0,
         max_seconds: Annotated[Optional[float], typer.Option(
             "--max-seconds", min=0.0, help="Give up after this long [default: the job's MaxRuntime + MaxWait + 1 h].")] = None,
         root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Wait until the job ends; exit 0 Completed, 1 Failed (FailureReason printed), 143 Stopped."""
    from multitype.cloud.sagemaker import jobs

    proj, name = _job_project("wait", root, config_dir, job)
    desc = jobs.wait(proj.configs.project.aws, name, follow_logs=logs_, poll_seconds=poll_seconds,
                     echo=_echo_out, max_seconds=max_seconds)
    raise typer.Exit(jobs.exit_code(desc["TrainingJobStatus"]))


@app.command("collect")
def job_collect(job: JobArg = None,
            force: Annotated[bool, typer.Option("--force", help="Replace a local run that uses the same model name.")] = False,
            root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Download a Completed job's metrics, summary rows, manifests and final models into the root, for 'report'."""
    from multitype.cloud.sagemaker.collect import collect as collect_job

    proj, name = _job_project("collect", root, config_dir, job)
    done = collect_job(proj.storage, proj.configs.project.aws, name, force=force,
                       endpoint_url=proj.storage.endpoint_url,
                       echo=_note)
    _note(f"collected {len(done['models'])} model(s) of {name} into {proj.storage.url()}; "
          "'multitype report' compares them with the local runs")


# --- tune ---------------------------------------------------------------------------------------
tune_app = typer.Typer(help="Automatic model tuning: the tune: search space of models_transformer.yaml as a "
                            "SageMaker hyperparameter tuning job; 'tune status|stop|collect NAME' follow it.")
app.add_typer(tune_app, name="tune")
TuningArg = Annotated[str, typer.Argument(help="Tuning job name (multitype-<model>-<yymmddHHMM>).",
                                          show_default=False)]


@tune_app.callback(invoke_without_command=True)
def tune_launch(
    ctx: typer.Context,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="The transformer to tune (default: models_transformer.yaml's model_name).")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name of results/tuning/<study>.csv|json [default: the model name].")] = None,
    max_jobs: Annotated[int, typer.Option("--max-jobs", help="Training jobs (trials) in all.")] = 20,
    max_parallel_jobs: Annotated[int, typer.Option("--max-parallel-jobs", help="Trials at a time (at most --max-jobs).")] = 4,
    instance_type: Annotated[Optional[str], typer.Option("--instance-type", help="Training instance type of each trial (default: aws.sagemaker.instance_type).")] = None,
    spot: Annotated[Optional[bool], typer.Option("--spot/--on-demand", help="Managed spot training (default: aws.sagemaker.spot).")] = None,
    max_run: Annotated[Optional[int], typer.Option("--max-run", min=1, help="MaxRuntimeInSeconds of each trial (default: aws.sagemaker.max_run).")] = None,
    max_wait: Annotated[Optional[int], typer.Option("--max-wait", min=1, help="MaxWaitTimeInSeconds of each trial, spot only, >= --max-run.")] = None,
    volume_gb: Annotated[Optional[int], typer.Option("--volume-gb", min=1, help="EBS volume per trial, GB.")] = None,
    image_uri: Annotated[Optional[str], typer.Option("--image-uri", help="Training image (default: the AWS PyTorch training image from sagemaker-core's catalog).")] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Execution role ARN (default: SAGEMAKER_ROLE, else aws.sagemaker_role).")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root of the trials (default: storage.remote).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the validated request as JSON; upload and start nothing.")] = False,
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD: refuse when --max-jobs x the estimate of one trial is above it (default: aws.budget_usd).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even when the estimate is above the budget.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until the tuning job ends; exit 1 if it Failed, 143 if Stopped.")] = False,
    poll_seconds: PollOpt = 60.0,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Start a SageMaker hyperparameter tuning job (Bayesian, early stopping on) over the tune: space."""
    if ctx.invoked_subcommand is not None:
        return
    from multitype.cloud.sagemaker import tune

    proj = project("sagemaker tune", root, config_dir)
    opts = tune.TuneOptions(model_name=model_name, study=study, max_jobs=max_jobs,
                            max_parallel_jobs=max_parallel_jobs, spot=spot, max_run=max_run, max_wait=max_wait,
                            instance_type=instance_type, volume_gb=volume_gb, image_uri=image_uri, role=role,
                            remote=remote, dry_run=dry_run, budget=budget, force=force)
    result = tune.launch_tuning(proj, opts, config_dir=config_dir, echo=_note)
    if dry_run:
        typer.echo(json.dumps(result.request, indent=2))
        _note("(dry run) nothing uploaded or started")
        return
    typer.echo(result.name)
    if wait:
        from multitype.cloud.sagemaker import jobs, tune_jobs

        final = tune_jobs.wait(proj.configs.project.aws, result.name, poll_seconds=poll_seconds, echo=_note)
        if jobs.EXIT_CODES.get(final, 1):
            raise typer.Exit(jobs.EXIT_CODES.get(final, 1))


@tune_app.command("status")
def tune_status(name: TuningArg, as_json: JsonOpt = False, root: RootOpt = None,
                config_dir: ConfigDirOpt = "configs") -> None:
    """State, trials by state, the best so far and every trial's objective value and parameters."""
    from multitype.cloud.sagemaker import tune, tune_jobs

    proj = project("sagemaker tune status", root, config_dir)
    info = tune_jobs.summary(proj.configs.project.aws, name, tune.record_of(proj, name))
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in info["counts"].items())
    best = info["best"]
    head = Table(title=f"tuning job {name}", show_header=False, title_justify="left")
    head.add_column("field", style="bold")
    head.add_column("value")
    for field, value in (("status", info["status"]),
                         ("objective", f"{info['objective']['direction']} {info['objective']['metric']}"),
                         ("trials", f"{len(info['trials'])} of {info['max_jobs']} ({counts})"),
                         ("best so far", f"{best['slug']}: {best['value']:.6g}" if best else "-"),
                         ("failure reason", info["failure_reason"] or "-")):
        head.add_row(field, Text(str(value)))
    _out().print(head)
    if info["trials"]:
        names = sorted({n for r in info["trials"] for n in r["params"]})
        table = Table()
        for column in ("#", "training job", "state", "value", "time", *names):
            table.add_column(column)
        for r in info["trials"]:
            table.add_row(str(r["number"]), Text(r["slug"]), r["state"],
                          "-" if r["value"] is None else f"{r['value']:.6g}", duration(r["seconds"]),
                          *[Text(str(r["params"].get(n, "-"))) for n in names])
        _out().print(table)


@tune_app.command("stop")
def tune_stop(name: TuningArg, root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Stop a tuning job and its running trials. Already stopping/stopped: exit 0; Completed/Failed: exit 2."""
    from multitype.cloud.sagemaker import tune_jobs

    proj = project("sagemaker tune stop", root, config_dir)
    _note(tune_jobs.stop(proj.configs.project.aws, name))


@tune_app.command("collect")
def tune_collect(name: TuningArg,
                 study: Annotated[Optional[str], typer.Option("--study", help="Study name [default: the one it was launched with, else the tuning job's name].")] = None,
                 apply: Annotated[bool, typer.Option("--apply", help="Write the best parameters into models_transformer.yaml as models.<model>.<param>.")] = False,
                 root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Every trial's metrics to results/tuning/<study>.csv|json; the best trial's model, evaluated once on test."""
    from multitype.cloud.sagemaker import tune, tune_jobs

    proj = project("sagemaker tune collect", root, config_dir)
    if study is not None:
        tune.check_options(tune.TuneOptions(study=study))
    doc = tune_jobs.collect(proj.storage, proj.configs.project.aws, name, tune.record_of(proj, name), study=study,
                            endpoint_url=proj.storage.endpoint_url, echo=_note)
    if apply:
        from multitype.storage import storage_options
        from multitype.tuning.apply import apply_best

        if doc["best"] is None:
            _note("no completed trial: nothing to apply")
            return
        changed = apply_best(config_dir, "transformer", doc["model_name"], doc["best"]["params"],
                             storage_options(config_dir, proj.storage.endpoint_url,
                                             proj.configs.project.aws.profile))
        for line in changed or ["models_transformer.yaml already holds the best parameters"]:
            _note(line)


# --- deploy, invoke, undeploy, endpoints ----------------------------------------------------------
EndpointArg = Annotated[str, typer.Argument(help="Endpoint name (multitype-...).", show_default=False)]


@app.command("deploy")
def endpoint_deploy(
    source: Annotated[str, typer.Argument(help="A model folder (local or s3://), a name under the root's models/final, or a Completed training job of this project.", show_default=False)],
    instance_type: Annotated[Optional[str], typer.Option("--instance-type", help="Real-time endpoint instance type [default: ml.c5.xlarge].")] = None,
    instance_count: Annotated[int, typer.Option("--instance-count", help="Instances of a real-time endpoint.")] = 1,
    serverless: Annotated[bool, typer.Option("--serverless", help="A serverless endpoint (CPU, pay per request).")] = False,
    memory_mb: Annotated[Optional[int], typer.Option("--memory-mb", help="Serverless memory: 1024..6144 in steps of 1024 [default: 3072].")] = None,
    max_concurrency: Annotated[Optional[int], typer.Option("--max-concurrency", help="Serverless concurrent invocations, 1..200 [default: 5].")] = None,
    endpoint_name: Annotated[Optional[str], typer.Option("--endpoint-name", help="[default: multitype-<model name>].")] = None,
    image_uri: Annotated[Optional[str], typer.Option("--image-uri", help="Inference image [default: the AWS PyTorch inference image from sagemaker-core's catalog].")] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Execution role ARN (default: SAGEMAKER_ROLE, else aws.sagemaker_role).")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="S3 root for model.tar.gz (default: storage.remote).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the endpoint is InService (exit 2 if it fails).")] = False,
    max_wait_seconds: Annotated[float, typer.Option("--max-wait-seconds", min=0.0, help="Give up waiting after this long.")] = 1800.0,
    poll_seconds: PollOpt = 30.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the three validated requests as JSON; upload and create nothing.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Package a model as model.tar.gz (with code/inference.py), upload it and create a SageMaker endpoint."""
    from multitype.cloud.sagemaker import deploy as dep

    proj = project("sagemaker deploy", root, config_dir)
    opts = dep.DeployOptions(source=source, endpoint_name=endpoint_name, instance_type=instance_type,
                             instance_count=instance_count, serverless=serverless, memory_mb=memory_mb,
                             max_concurrency=max_concurrency, image_uri=image_uri, role=role, remote=remote,
                             dry_run=dry_run)
    result = dep.deploy(proj, opts, echo=_note)
    if dry_run:
        typer.echo(json.dumps(result.requests, indent=2))
        _note(f"(dry run) nothing uploaded or created; model.tar.gz would go to {result.model_data_url}")
        return
    typer.echo(result.endpoint_name)
    if wait:
        dep.wait(proj.configs.project.aws, result.endpoint_name, poll_seconds=poll_seconds,
                 max_seconds=max_wait_seconds, echo=_note)


@app.command("invoke")
def endpoint_invoke(
    endpoint: EndpointArg,
    text: Annotated[Optional[list[str]], typer.Option("--text", help="A text to classify (repeatable).")] = None,
    file: Annotated[Optional[str], typer.Option("--file", help="A UTF-8 file with one text per line (blank lines skipped).")] = None,
    as_json: JsonOpt = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Classify texts with an endpoint: one line per text, label and its score."""
    from pathlib import Path

    from multitype.cloud.sagemaker import deploy as dep
    from multitype.errors import UserError

    proj = project("sagemaker invoke", root, config_dir)
    texts = list(text or [])
    if file is not None:
        try:
            texts += [line for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--file {file}: cannot read it as UTF-8 text ({exc.__class__.__name__}: {exc})") from None
    answer = dep.invoke(proj.configs.project.aws, endpoint, texts)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    kind = answer.get("score_kind", "prob")
    for label, scores, sample in zip(answer["labels"], answer.get("scores") or [{}] * len(texts), texts):
        score = scores.get(label)
        shown = " ".join(sample.split())
        typer.echo(f"{label}\t{kind}={score:.4f}\t{shown[:60] + ('...' if len(shown) > 60 else '')}"
                   if isinstance(score, (int, float)) else f"{label}\t{shown[:60]}")


@app.command("undeploy")
def endpoint_undeploy(
    endpoint: EndpointArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Delete an endpoint, its endpoint config and its model (the model.tar.gz in S3 stays)."""
    import sys

    from multitype.cloud.sagemaker import deploy as dep
    from multitype.errors import UserError

    proj = project("sagemaker undeploy", root, config_dir)
    aws_config = proj.configs.project.aws
    plan = dep.undeploy_plan(aws_config, endpoint)
    listing = ", ".join(f"{kind.replace('_', ' ')} {name}" for kind, name in plan.delete)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"would delete {listing}; pass --yes to confirm without a terminal")
        if not typer.confirm(f"Delete {listing}?", default=False, err=True):
            _note("nothing deleted")
            raise typer.Exit(1)
    deleted = dep.undeploy(aws_config, plan, echo=_note)
    _note(f"deleted {len(deleted)} resource(s) of endpoint {endpoint}")


@app.command("endpoints")
def endpoint_list(
    all_endpoints: Annotated[bool, typer.Option("--all", help="Every endpoint in the account and region, not only multitype-... ones.")] = False,
    as_json: JsonOpt = False, root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """SageMaker endpoints, newest first: name, status, created."""
    from multitype.cloud.sagemaker import deploy as dep

    proj = project("sagemaker endpoints", root, config_dir)
    rows = dep.list_endpoints(proj.configs.project.aws, all_endpoints=all_endpoints)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _note("no endpoints" + ("" if all_endpoints else " named multitype-..."))
        return
    table = Table()
    for column in ("endpoint", "status", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(Text(r["endpoint"]), str(r["status"]), str(r["created"] or "-"))
    _out().print(table)


# --- prepare: SageMaker Processing ---------------------------------------------------------------
from multitype.cli.sagemaker_prepare import app as prepare_app  # noqa: E402 - a sub-group of this app

app.add_typer(prepare_app, name="prepare")
