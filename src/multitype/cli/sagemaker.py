"""``multitype sagemaker launch|status|logs|stop|list|collect``: training jobs on Amazon SageMaker."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, console, project, split_names
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
                         dry_run=dry_run)
    result = start(proj, opts, config_dir=config_dir, echo=lambda line: console.print(line, markup=False))
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
