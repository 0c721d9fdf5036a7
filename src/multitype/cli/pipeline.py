"""init, prepare, report, predict and run: the local pipeline's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, ForceOpt, MetricLinesOpt, RootOpt, console, project, want_metric_lines


def init(
    config_dir: ConfigDirOpt = "configs",
    force: ForceOpt = False,
) -> None:
    """Write the four default config files into --config-dir."""
    from multitype.config import CONFIG_FILES, default_yaml
    from multitype.errors import UserError

    folder = Path(config_dir)
    existing = [name for name in CONFIG_FILES.values() if (folder / name).exists()]
    if existing and not force:
        raise UserError(f"{folder / existing[0]} already exists; pass --force to overwrite the configs")
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in CONFIG_FILES.items():
        (folder / name).write_text(default_yaml(kind), encoding="utf-8")
    console.print(f"wrote {', '.join(CONFIG_FILES.values())} to {folder}/")


def prepare(
    input: Annotated[Optional[str], typer.Option("--input", help="Raw data: file, folder or s3:// URL "
                                                 "(default: data_config.yaml 'input', else embedded BBC News).")] = None,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
    force: ForceOpt = False,
) -> None:
    """Raw input -> data/raw/raw_data.json -> audited, stratified train/val/test splits."""
    proj = project("prepare", root, config_dir)
    from multitype.data.prepare import prepare as run_prepare

    run_prepare(proj, input=input, force=force)


def report(root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Summary CSVs, intervals and paired tests, error lists, figures, results/report.md and report.html."""
    proj = project("report", root, config_dir)
    from multitype import layout
    from multitype.report import build_report

    key = build_report(proj, warn=lambda message: console.print(f"warning: {message}", markup=False,
                                                                highlight=False, soft_wrap=True))
    console.print(f"report: {key} (and {layout.REPORT_HTML}, figures embedded)")


def predict(
    model: Annotated[str, typer.Option("--model", help="A model folder (models/final/<name>), local or s3://.")],
    input: Annotated[str, typer.Option("--input", help="CSV, JSON, JSONL or Parquet with a text column, or a .txt file (one text a line).")],
    output: Annotated[Optional[str], typer.Option("--output", help="Where to write predictions (.csv or .jsonl; default: <input>.predictions.csv); an existing file needs --force.")] = None,
    text_field: Annotated[Optional[str], typer.Option("--text-field", help="Text column (default: data_config.yaml text_field).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    backend: Annotated[str, typer.Option("--backend", help="torch (PyTorch or scikit-learn, as the model is), onnx or onnx-int8 (a transformer's export from 'multitype export onnx', under ONNX Runtime).")] = "torch",
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Batch predictions from a saved baseline or transformer to CSV/JSONL."""
    proj = project("predict", root, config_dir)
    from multitype.predict import predict_file

    out = predict_file(proj, model=model, input_path=input, output_path=output,
                       text_field=text_field, batch_size=batch_size, force=force, backend=backend)
    console.print(f"predictions: {out}")


def run(
    transformer: Annotated[bool, typer.Option("--transformer/--no-transformer", help="Include the transformer step.")] = True,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
    force: ForceOpt = False,
    metric_lines: MetricLinesOpt = False,
) -> None:
    """The whole local pipeline: prepare, baselines, transformer, report."""
    want_metric_lines(metric_lines)
    proj = project("run", root, config_dir)
    from multitype.pipeline import run_pipeline

    run_pipeline(proj, transformer=transformer, force=force)


def register(app: typer.Typer) -> None:
    for command in (init, prepare, report, predict, run):
        app.command()(command)
