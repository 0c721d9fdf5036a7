"""One model on many GPUs: re-launch training under torchrun (DDP).

``--gpus all|N`` with more than one GPU re-launches training under
``torchrun`` (``python -m torch.distributed.run``): this process writes the
run's settings to a spec file, every rank runs ``python -m
multitype.transformer <spec>`` (:mod:`multitype.transformer.__main__`), rank 0
writes the outcome next to it, and :func:`maybe_relaunch` turns that into a
return value, a ``ModelError`` or ``Interrupted`` (SIGTERM is forwarded to the
ranks, which save a checkpoint first).

This module does not import the training loop: ``train`` calls
:func:`maybe_relaunch`, and the rank entry point calls ``train``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from multitype import interrupts, layout
from multitype.config import TransformerParams
from multitype.errors import Interrupted, ModelError, UserError
from multitype.project import Project
from multitype.transformer.logs import log, warn


def gpu_count() -> int:
    """CUDA devices visible to this process."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def processes_for(gpus: str, available: int) -> int:
    """How many DDP processes ``--gpus`` asks for, given ``available`` GPUs (0 or 1: no re-launch).

    Raises
    ------
    ModelError
        ``gpus`` is neither ``all`` nor a positive whole number.
    """
    value = gpus.strip().lower()
    if value == "all":
        return available
    if not value.isdigit() or int(value) < 1:
        raise ModelError(f"--gpus must be 'all' or a positive number of GPUs, got {gpus!r}")
    return min(int(value), available)


def write_spec(path: Path, project: Project, params: TransformerParams, resume: str, outcome: Path) -> None:
    """The settings every rank reads (see :func:`multitype.transformer.__main__.run_rank`)."""
    path.write_text(json.dumps({
        "root": project.storage.root, "endpoint_url": project.storage.endpoint_url,
        "config_dir": project.configs.source or "configs", "command": project.command,
        "run_id": project.run_id, "params": params.model_dump(mode="json"), "resume": resume,
        "outputs": project.outputs.to_env(),
        "outcome": str(outcome)}), encoding="utf-8")


def maybe_relaunch(project: Project, params: TransformerParams, resume: str, gpus: str) -> dict[str, Any] | None:
    """Train under torchrun when ``gpus`` asks for more than one GPU and they exist.

    Returns the metrics record of the re-launched run, or None when this
    process should train by itself (no GPU, one GPU, or already a torchrun rank).
    """
    if "LOCAL_RANK" in os.environ:
        return None
    available = gpu_count()
    wanted = processes_for(gpus, available)
    if available == 0:
        log(f"--gpus {gpus}: no CUDA GPU found; training on the CPU")
        return None
    if gpus.strip().isdigit() and int(gpus) > available:
        warn(f"--gpus {gpus}: only {available} GPU(s) visible; using {available}")
    if wanted <= 1:
        return None
    log(f"--gpus {gpus}: re-launching under torchrun on {wanted} GPUs")
    return run_torchrun(project, params, resume, ["--standalone", f"--nproc_per_node={wanted}"])


def run_torchrun(project: Project, params: TransformerParams, resume: str, launcher_args: list[str]) -> dict[str, Any]:
    """Train under ``python -m torch.distributed.run <launcher_args>`` on this node and return the metrics record.

    The record is the one this node's local rank 0 computed with its copy of the
    final model; on the node of global rank 0 it is the written metrics JSON.

    Parameters
    ----------
    launcher_args : list of str
        torchrun's options: ``--standalone --nproc_per_node=N`` on one machine;
        ``--nnodes``, ``--node_rank``, ``--master_addr``, ``--master_port`` too
        on several (the SageMaker entry point).

    Raises
    ------
    ModelError
        A rank refused its input (exit 2).
    Interrupted
        SIGTERM/SIGINT (forwarded to torchrun, which passes them to the ranks): checkpoint saved.
    """
    with tempfile.TemporaryDirectory(prefix="multitype-ddp-") as tmp:
        spec = Path(tmp) / "spec.json"
        outcome = Path(tmp) / "outcome.json"
        write_spec(spec, project, params, resume, outcome)
        cmd = [sys.executable, "-m", "torch.distributed.run", *launcher_args, "-m", "multitype.transformer", str(spec)]
        code = _run_forwarding_signals(cmd)
        result = json.loads(outcome.read_text(encoding="utf-8")) if outcome.exists() else {"exit_code": code}
    if result["exit_code"] == 0:
        if "record" in result:  # this node's local rank 0 evaluated the final model itself
            return result["record"]
        return project.outputs.results.read_json(layout.transformer_metrics(result["slug"]))
    if result["exit_code"] == Interrupted.exit_code:
        raise Interrupted(result.get("message") or "training under torchrun was interrupted; checkpoint saved")
    if result["exit_code"] == UserError.exit_code:
        raise ModelError(result.get("message") or "training under torchrun refused its input")
    raise RuntimeError(f"training under torchrun failed (exit {code}); see the ranks' output above")


def _run_forwarding_signals(cmd: list[str], poll_s: float = 0.5) -> int:
    """Run ``cmd``; SIGTERM/SIGINT received meanwhile go to it too (it saves and exits).

    A stop requested without a signal (the spot watcher's thread in this
    process) becomes one SIGTERM to ``cmd``: the ranks only see signals.
    """
    proc = subprocess.Popen(cmd)
    forwarded = False

    def forward(signum: int) -> None:
        nonlocal forwarded
        forwarded = True
        if proc.poll() is None:
            proc.send_signal(signum)

    with interrupts.stop_on_signals(on_signal=forward):
        while True:
            try:
                return proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                if not forwarded and interrupts.stop_requested() is not None:
                    forward(signal.SIGTERM)
