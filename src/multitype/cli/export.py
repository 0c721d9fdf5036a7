"""``multitype export onnx``: ONNX (and int8) beside a transformer model, checked against PyTorch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, console, project

app = typer.Typer(help="Export a trained model to another format.", no_args_is_help=True)


@app.command("onnx")
def onnx(
    model: Annotated[str, typer.Option("--model", help="A transformer model folder (models/final/<name>), local, s3:// or a key under the root.")],
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="int8: also write onnx/model.int8.onnx (dynamic int8 quantisation with ONNX Runtime).")] = None,
    input: Annotated[Optional[str], typer.Option("--input", help="A labelled file (text and label fields of data_config.yaml) to check on instead of the root's test split.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Write onnx/model.onnx (+ model.int8.onnx) beside the model; check it agrees with PyTorch (>= 99.5% of labels)."""
    from multitype.errors import UserError
    from multitype.serve.onnx_export import QUANTIZE, export_onnx

    if quantize is not None and quantize not in QUANTIZE:  # before the project or any model is opened
        raise UserError(f"--quantize must be one of: {', '.join(QUANTIZE)}; got {quantize!r}")
    proj = project("export", root, config_dir)
    result = export_onnx(proj, model, quantize=quantize, input=input, force=force)
    report = result.report
    console.print(f"checked on {report['texts']} texts of {report['check_set']}: "
                  f"PyTorch accuracy {report['torch']['accuracy']:.4f}", soft_wrap=True)
    for backend in ("onnx", "onnx-int8"):
        if backend in report:
            r = report[backend]
            console.print(f"{r['file']}: labels agree on {r['label_agreement']:.2%} ({r['disagreements']} differ), "
                          f"max probability difference {r['max_prob_diff']:.2g}, accuracy {r['accuracy']:.4f} "
                          f"({r['accuracy_delta_points']:+.2f} points)", soft_wrap=True)
    console.print(f"wrote {', '.join(result.files)} in {result.model}", soft_wrap=True)
