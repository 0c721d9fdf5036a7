"""One torchrun rank: ``python -m multitype.transformer <spec.json>`` (see :mod:`multitype.transformer.launch`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from multitype.config import TransformerParams
from multitype.errors import Interrupted, UserError
from multitype.project import Outputs, open_project
from multitype.transformer.train import train_transformer


def run_rank(spec_path: str) -> int:
    """Open the project from the spec, train, record the outcome (each node's local rank 0); return the exit code."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    outcome: dict[str, Any] = {"exit_code": 0}
    try:
        project = open_project(spec["root"], spec["config_dir"], spec["command"], spec["endpoint_url"])
        project.run_id = spec["run_id"]
        if spec.get("outputs"):
            project.outputs = Outputs.from_env(project.storage, {**os.environ, **spec["outputs"]})
        record = train_transformer(project, TransformerParams.model_validate(spec["params"]), spec["resume"])
        outcome["slug"] = record["slug"]
        outcome["record"] = record  # this node's rank 0's own evaluation (the same as the written one on node 0)
    except (UserError, Interrupted) as exc:
        outcome = {"exit_code": exc.exit_code, "message": str(exc)}
        print(f"error: {exc}" if isinstance(exc, UserError) else f"interrupted: {exc}", file=sys.stderr)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # each node's launcher reads its own node's outcome file
        Path(spec["outcome"]).write_text(json.dumps(outcome, default=str), encoding="utf-8")
    return int(outcome["exit_code"])


if __name__ == "__main__":
    sys.exit(run_rank(sys.argv[1]))
