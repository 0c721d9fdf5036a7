"""``multitype train baseline|transformer|parallel``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, console, project, split_names

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
