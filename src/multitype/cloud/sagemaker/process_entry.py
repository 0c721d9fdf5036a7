"""The entry point inside a ``multitype sagemaker prepare`` processing job: ``prepare`` on SageMaker's folders.

SageMaker Processing downloads the inputs and uploads the output folder; this
runs in between (``python -m multitype.cloud.sagemaker.process_entry``, started
by :func:`multitype.cloud.sagemaker.processing.container_command` once the
sourcedir's requirements are installed):

1. the base folder is ``/opt/ml/processing`` (``$MULTITYPE_PROCESSING_BASE`` in
   tests): configs in ``input/configs/``, the raw data in ``input/raw/``
   (``--input-name``: the file there, ``.`` for a folder of ``<label>/*.txt``);
2. ``output/`` becomes the working root: the root's raw copy (``--current``)
   is placed at ``data/raw/raw_data.json`` first, so a differing input needs
   ``--force`` exactly as a local ``prepare`` does;
3. :func:`multitype.data.prepare.prepare` runs on it and writes the layout of
   DESIGN.md section 1 there; an unchanged raw copy is taken out again, so only
   what changed is uploaded to the root.

Exit codes: 0 done; 2 bad input (one ``error: ...`` line, also written to
``/opt/ml/output/message``, which DescribeProcessingJob returns as
``ExitMessage``); 1 anything else (a bug: traceback in the log).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Sequence

from multitype import layout
from multitype.errors import DataError, UserError

BASE_ENV = "MULTITYPE_PROCESSING_BASE"
DEFAULT_BASE = "/opt/ml/processing"


def base_dir() -> Path:
    """``$MULTITYPE_PROCESSING_BASE`` or ``/opt/ml/processing``."""
    return Path(os.environ.get(BASE_ENV) or DEFAULT_BASE)


def _message_file(base: Path) -> Path:
    """``/opt/ml/output/message`` beside ``/opt/ml/processing`` (SageMaker's ExitMessage)."""
    return base.parent / "output" / "message"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="process_entry", description="multitype prepare in a processing job")
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("--input-name", required=True, help="the raw file under input/raw/ ('.' for the folder)")
    parser.add_argument("--current", help="the root's raw copy (data/raw/raw_data.json), if it has one")
    parser.add_argument("--force", action="store_true", help="replace a differing raw copy")
    return parser.parse_args(list(argv))


def run(base: Path, input_name: str, current: str | None = None, force: bool = False) -> dict:
    """Prepare ``base/input/raw/<input_name>`` with ``base/input/configs`` into ``base/output``; return the summary.

    Raises
    ------
    DataError
        A missing input folder or file, and every error of ``prepare`` itself.
    """
    from multitype.data.prepare import prepare
    from multitype.project import open_project

    configs = base / "input" / "configs"
    if not configs.is_dir() or not any(p.suffix in (".yaml", ".yml") for p in configs.iterdir()):
        raise DataError(f"{configs} holds no config files: the job's 'configs' input must be <root>/configs/ "
                        "(start it with 'multitype sagemaker prepare')")
    raw = base / "input" / "raw" / input_name
    if not raw.exists():
        present = sorted(p.name for p in raw.parent.iterdir()) if raw.parent.is_dir() else []
        raise DataError(f"raw input {raw} not found (input/raw holds: {', '.join(present) or 'nothing'}); "
                        "start the job with 'multitype sagemaker prepare'")
    out = base / "output"
    out.mkdir(parents=True, exist_ok=True)
    placed = None
    if current:
        placed = out / layout.RAW_DATA
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current, placed)
    project = open_project(str(out), str(configs), "prepare")
    summary = prepare(project, input=str(raw), force=force)
    if placed is not None and summary.get("raw_data") == "unchanged":
        placed.unlink()  # the root has it already: nothing to upload
        for folder in (placed.parent, placed.parent.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job's ``prepare``; see the module docstring for the exit codes."""
    args = parse(sys.argv[1:] if argv is None else argv)
    base = base_dir()
    try:
        summary = run(base, args.input_name, args.current, args.force)
    except UserError as exc:
        line = f"error: {exc}"
        print(line, file=sys.stderr, flush=True)
        _write_message(base, line)
        return 2
    except Exception as exc:  # a bug: the traceback goes to the log, the last line to ExitMessage
        traceback.print_exc()
        _write_message(base, f"{type(exc).__name__}: {exc}")
        return 1
    print(json.dumps({"prepare": {k: summary[k] for k in ("run_id", "labels", "counts", "audit", "manifest")
                                  if k in summary}}), flush=True)
    return 0


def _write_message(base: Path, text: str) -> None:
    path = _message_file(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[:1024], encoding="utf-8")
    except OSError:  # read-only outside a job: the log line says it all
        pass


if __name__ == "__main__":
    sys.exit(main())
