"""``multitype train baseline|transformer|parallel``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from multitype import layout
from multitype.cli._common import (ConfigDirOpt, MetricLinesOpt, RootOpt, console, project, split_names,
                                   want_metric_lines)

app = typer.Typer(help="Train TF-IDF baselines or fine-tune transformers.", no_args_is_help=True)


@app.command("baseline")
def baseline(
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated: logreg,linear_svm (default: both).")] = None,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """TF-IDF + logistic regression / linear SVM: metrics, summary and saved pipelines."""
    proj = project("train baseline", root, config_dir)
    from multitype.baselines import train_baselines

    records = train_baselines(proj, models=split_names(models))
    for name, record in records.items():
        console.print(f"{name}: test accuracy {record['accuracy']:.4f}, macro-F1 {record['macro_f1']:.4f}")


# hyperparameter flags shared by `transformer` and `parallel` (None = the config's value)
NumEpochsOpt = Annotated[Optional[float], typer.Option("--num-epochs", help="Epochs (fractions allowed).")]
LearningRateOpt = Annotated[Optional[float], typer.Option("--learning-rate", help="Peak AdamW learning rate.")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Examples per batch (per GPU).")]
MaxLengthOpt = Annotated[Optional[int], typer.Option("--max-length", help="Tokens per text (longer ones are truncated).")]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimizer steps.")]
MaxTrainSamplesOpt = Annotated[Optional[int], typer.Option("--max-train-samples", help="Train on a stratified subset of this size.")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="auto | bf16 | fp16 | fp32 (auto: bf16 where fast, fp16 on older GPUs, else fp32).")]
CompileOpt = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the encoder (default: models_transformer.yaml's compile, auto: where it was measured to pay).")]
ResumeOpt = Annotated[str, typer.Option("--resume", help="auto: continue from the newest valid checkpoint; never: start fresh.")]


def _overrides(**values: object) -> dict[str, object]:
    return {key: value for key, value in values.items() if value is not None}


@app.command("transformer")
def transformer(
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="minilm (packaged all-MiniLM-L6-v2), a local folder or a hub id (default: models_transformer.yaml).")] = None,
    num_epochs: NumEpochsOpt = None,
    learning_rate: LearningRateOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    max_steps: MaxStepsOpt = None,
    max_train_samples: MaxTrainSamplesOpt = None,
    precision: PrecisionOpt = None,
    compile_: CompileOpt = None,
    resume: ResumeOpt = "auto",
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="'all' or a count: more than one GPU re-launches under torchrun (DDP).")] = None,
    spot_watch: Annotated[bool, typer.Option("--spot-watch", help="On EC2 spot: poll the instance metadata every 5 s and save a checkpoint and stop (exit 143) on an interruption notice [env: MULTITYPE_SPOT_WATCH=1].")] = False,
    metric_lines: MetricLinesOpt = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Fine-tune one transformer; resumes from the newest valid checkpoint by default."""
    want_metric_lines(metric_lines)
    from multitype import spotwatch

    watch = spotwatch.enabled(spot_watch)
    interval = spotwatch.interval_from_env() if watch else None
    proj = project("train transformer", root, config_dir)
    params = proj.configs.transformer.params_for(model_name, **_overrides(
        num_epochs=num_epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
        max_steps=max_steps, max_train_samples=max_train_samples, precision=precision, compile=compile_))
    from multitype.transformer.train import train_transformer

    watcher = None
    if watch:
        from multitype.cloud.imds import ImdsClient

        watcher = spotwatch.start(ImdsClient().notice, interval)
    try:
        record = train_transformer(proj, params, resume=resume, gpus=gpus)
    finally:
        if watcher is not None:
            watcher.stop()
    console.print(f"metrics: {proj.storage.url(layout.transformer_metrics(record['slug']))}")


@app.command("parallel", context_settings={"allow_extra_args": True})
def parallel(
    ctx: typer.Context,
    models: Annotated[str, typer.Option("--models", help="Model names: --models A B C (or comma-separated).")],
    num_epochs: NumEpochsOpt = None,
    learning_rate: LearningRateOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    max_steps: MaxStepsOpt = None,
    max_train_samples: MaxTrainSamplesOpt = None,
    precision: PrecisionOpt = None,
    resume: ResumeOpt = "auto",
    metric_lines: MetricLinesOpt = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """One training process per GPU (queued when models outnumber GPUs; one after another on CPU)."""
    want_metric_lines(metric_lines)
    proj = project("train parallel", root, config_dir)
    from multitype.transformer.parallel import summary_table, train_parallel

    names = [name for value in [models, *ctx.args] for name in split_names(value) or []]
    rows = train_parallel(proj, names, overrides=_overrides(
        num_epochs=num_epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
        max_steps=max_steps, max_train_samples=max_train_samples, precision=precision), resume=resume)
    console.print(summary_table(rows))
    if any(row["exit_code"] != 0 for row in rows):
        raise typer.Exit(1)
