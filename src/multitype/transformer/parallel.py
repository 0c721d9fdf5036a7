"""Many models at once: ``train parallel``, one training process per GPU.

``train parallel`` starts one ``multitype train transformer`` subprocess per
GPU (``CUDA_VISIBLE_DEVICES=i``), queues the rest, runs them one after another
without a GPU, and logs each to ``runs/<run-id>/<slug>.log``. (One model on
many GPUs is :mod:`multitype.transformer.launch`.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

from multitype import interrupts, layout
from multitype.errors import Interrupted, ModelError
from multitype.manifest import write_manifest
from multitype.project import Project
from multitype.transformer.launch import gpu_count
from multitype.transformer.logs import log
from multitype.transformer.models import resolve_model

_POLL_SECONDS = 0.5
_FLAGS = {"num_epochs": "--num-epochs", "learning_rate": "--learning-rate", "batch_size": "--batch-size",
          "max_length": "--max-length", "max_steps": "--max-steps", "max_train_samples": "--max-train-samples",
          "precision": "--precision"}


# -- many models at once -------------------------------------------------------------------
@dataclass
class Job:
    """One model's training subprocess."""

    model: str
    slug: str
    log_key: str
    slot: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    log_path: Path | None = None
    started: float = 0.0
    seconds: float = 0.0
    exit_code: int | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        status = {0: "ok", None: "not started", 2: "failed (bad input)",
                  Interrupted.exit_code: "interrupted"}.get(self.exit_code, f"failed (exit {self.exit_code})")
        return {"model": self.model, "slug": self.slug, "exit_code": self.exit_code, "status": status,
                "gpu": self.slot, "seconds": round(self.seconds, 1), "accuracy": self.record.get("accuracy"),
                "macro_f1": self.record.get("macro_f1"), "log": self.log_key}


def _child_command(project: Project, model: str, overrides: dict[str, Any], resume: str) -> list[str]:
    cmd = [sys.executable, "-m", "multitype", "train", "transformer", "--model-name", model,
           "--root", project.storage.root, "--config-dir", project.configs.source or "configs", "--resume", resume]
    for key, value in overrides.items():
        cmd += [_FLAGS[key], str(value)]
    return cmd


def train_parallel(project: Project, models: Sequence[str], overrides: dict[str, Any] | None = None,
                   resume: str = "auto") -> list[dict[str, Any]]:
    """Train several models at once: one subprocess per GPU, queued; one after another on CPU.

    Parameters
    ----------
    project : Project
        Root, configs and run id (logs go to ``runs/<run-id>/<slug>.log``).
    models : sequence of str
        Model names (``minilm``, folders, hub ids).
    overrides : dict, optional
        Hyperparameters for every model (keys of :class:`TransformerParams`
        that ``train transformer`` has flags for).
    resume : {"auto", "never"}

    Returns
    -------
    list of dict
        One row per model: status, exit code, GPU, seconds, test accuracy and
        macro-F1, log key. A failed model does not stop the others.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(_FLAGS))
    if unknown:
        raise ModelError(f"train parallel cannot pass {unknown} to each model; set them in models_transformer.yaml")
    if not models:
        raise ModelError("--models is empty; name at least one model, e.g. --models minilm")
    if resume not in ("auto", "never"):
        raise ModelError(f"--resume must be 'auto' or 'never', got {resume!r}")
    if project.outputs.model is not None and len(models) > 1:
        raise ModelError(f"the final model folder is set to {project.outputs.model.url()} (MULTITYPE_MODEL_DIR), "
                         f"which holds one model; train one model at a time, or unset it")
    jobs: list[Job] = []
    for name in models:
        project.configs.transformer.params_for(name, **overrides)  # bad values fail here, before any start
        slug = resolve_model(name).slug
        if any(job.slug == slug for job in jobs):
            raise ModelError(f"--models lists '{name}' twice (or two models named '{slug}'); each needs its own name")
        jobs.append(Job(name, slug, layout.run_log(project.run_id, f"{slug}.log")))

    gpus = gpu_count()
    slots: list[int | None] = list(range(gpus)) or [None]
    log(f"training {len(jobs)} model(s) " + (f"on {gpus} GPU(s), one process each" if gpus
                                             else "one after another on the CPU (no GPU found)"))
    queue, running = list(jobs), []

    def forward(signum: int) -> None:
        for job in running:
            if job.proc is not None and job.proc.poll() is None:
                job.proc.send_signal(signum)

    with interrupts.stop_on_signals(on_signal=forward):
        while queue or running:
            while queue and slots and not interrupts.stop_requested():
                job = queue.pop(0)
                _start(project, job, slots.pop(0), overrides, resume)
                running.append(job)
            time.sleep(_POLL_SECONDS)
            for job in list(running):
                if job.proc is not None and job.proc.poll() is not None:
                    _finish(project, job)
                    running.remove(job)
                    slots.append(job.slot)
                    log(f"{job.model}: {job.row()['status']} after {job.seconds:.0f} s "
                        f"(log: {project.storage.url(job.log_key)})")
            if interrupts.stop_requested() and not running:
                break
    rows = [job.row() for job in jobs]
    write_manifest(project, outputs=[job.log_key for job in jobs] +
                   [layout.transformer_metrics(job.slug) for job in jobs if job.exit_code == 0],
                   extra={"models": list(models), "overrides": overrides, "jobs": rows})
    if interrupts.stop_requested():
        raise Interrupted(f"{interrupts.stop_requested()}: running models saved checkpoints; rerun to resume")
    return rows


def _open_log(project: Project, job: Job) -> None:
    """The job's log file: under the root, or a local temp file uploaded when the job ends (S3 roots)."""
    if project.storage.remote:
        fd, name = tempfile.mkstemp(prefix=f"multitype-{job.slug}-", suffix=".log")
        job.log_path = Path(name)
        job.log_file = os.fdopen(fd, "wb")  # the descriptor mkstemp opened, closed with the file
        return
    job.log_path = project.storage.local_path(job.log_key)
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.log_file = open(job.log_path, "wb")


def _start(project: Project, job: Job, slot: int | None, overrides: dict[str, Any], resume: str) -> None:
    env = {**os.environ, **project.outputs.to_env()}
    if slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    _open_log(project, job)
    job.slot, job.started = slot, time.monotonic()
    # own process group: a Ctrl-C in the terminal reaches the children only through `forward`
    job.proc = subprocess.Popen(_child_command(project, job.model, overrides, resume), env=env,
                                stdout=job.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _finish(project: Project, job: Job) -> None:
    assert job.proc is not None and job.log_file is not None and job.log_path is not None
    job.exit_code = job.proc.returncode if job.proc.returncode >= 0 else 128 - job.proc.returncode
    job.seconds = time.monotonic() - job.started
    job.log_file.close()
    if project.storage.remote:
        project.storage.put_file(job.log_path, job.log_key)
        job.log_path.unlink(missing_ok=True)
    if job.exit_code == 0:
        key = layout.transformer_metrics(job.slug)
        if project.outputs.results.exists(key):
            job.record = project.outputs.results.read_json(key)


def summary_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of :func:`train_parallel`'s rows."""
    from rich.table import Table

    table = Table(title="train parallel")
    for column in ("model", "status", "gpu", "test accuracy", "macro-F1", "seconds", "log"):
        table.add_column(column)
    for row in rows:
        fmt = (lambda v: "-" if v is None else f"{v:.4f}")
        table.add_row(row["model"], row["status"], "cpu" if row["gpu"] is None else str(row["gpu"]),
                      fmt(row["accuracy"]), fmt(row["macro_f1"]), f"{row['seconds']:.0f}", row["log"])
    return table
