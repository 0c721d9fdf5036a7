"""Many GPUs for one model (a DDP re-launch) and many models at once (one process per GPU).

``--gpus all|N`` with more than one GPU re-launches training under
``torchrun`` (``python -m torch.distributed.run``): the parent writes the run's
settings to a spec file, every rank runs :func:`worker_main` on it, rank 0
writes the outcome next to it and the parent turns that into a return value,
a ``ModelError`` or ``Interrupted`` (SIGTERM is forwarded to the ranks, which
save a checkpoint first).

``train parallel`` starts one ``multitype train transformer`` subprocess per
GPU (``CUDA_VISIBLE_DEVICES=i``), queues the rest, runs them one after another
without a GPU, and logs each to ``runs/<run-id>/<slug>.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

from multitype import interrupts, layout
from multitype.config import TransformerParams
from multitype.errors import Interrupted, ModelError, UserError
from multitype.manifest import write_manifest
from multitype.project import Project

_POLL_SECONDS = 0.5
_FLAGS = {"num_epochs": "--num-epochs", "learning_rate": "--learning-rate", "batch_size": "--batch-size",
          "max_length": "--max-length", "max_steps": "--max-steps", "max_train_samples": "--max-train-samples",
          "precision": "--precision"}


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


# -- one model on many GPUs ---------------------------------------------------------------
def maybe_relaunch(project: Project, params: TransformerParams, resume: str, gpus: str) -> dict[str, Any] | None:
    """Train under torchrun when ``gpus`` asks for more than one GPU and they exist.

    Returns the metrics record of the re-launched run, or None when this
    process should train by itself (no GPU, one GPU, or already a torchrun rank).
    """
    from multitype.transformer.train import log, warn

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
    with tempfile.TemporaryDirectory(prefix="multitype-ddp-") as tmp:
        spec = Path(tmp) / "spec.json"
        outcome = Path(tmp) / "outcome.json"
        spec.write_text(json.dumps({
            "root": project.storage.root, "endpoint_url": project.storage.endpoint_url,
            "config_dir": project.configs.source or "configs", "command": project.command,
            "run_id": project.run_id, "params": params.model_dump(mode="json"), "resume": resume,
            "outcome": str(outcome)}), encoding="utf-8")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={wanted}",
               "-m", "multitype.transformer.parallel", str(spec)]
        log(f"--gpus {gpus}: re-launching under torchrun on {wanted} GPUs")
        code = _run_forwarding_signals(cmd)
        result = json.loads(outcome.read_text(encoding="utf-8")) if outcome.exists() else {"exit_code": code}
    if result["exit_code"] == 0:
        return project.storage.read_json(layout.transformer_metrics(result["slug"]))
    if result["exit_code"] == Interrupted.exit_code:
        raise Interrupted(result.get("message") or "training under torchrun was interrupted; checkpoint saved")
    if result["exit_code"] == UserError.exit_code:
        raise ModelError(result.get("message") or "training under torchrun refused its input")
    raise RuntimeError(f"training under torchrun failed (exit {code}); see the ranks' output above")


def _run_forwarding_signals(cmd: list[str]) -> int:
    """Run ``cmd``; SIGTERM/SIGINT received meanwhile go to it too (it saves and exits)."""
    proc = subprocess.Popen(cmd)

    def forward(signum: int) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    with interrupts.stop_on_signals(on_signal=forward):
        return proc.wait()


def worker_main(spec_path: str) -> int:
    """One torchrun rank: open the project from the spec, train, record the outcome (rank 0)."""
    from multitype.project import open_project
    from multitype.transformer.train import train_transformer

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    outcome: dict[str, Any] = {"exit_code": 0}
    try:
        project = open_project(spec["root"], spec["config_dir"], spec["command"], spec["endpoint_url"])
        project.run_id = spec["run_id"]
        record = train_transformer(project, TransformerParams.model_validate(spec["params"]), spec["resume"])
        outcome["slug"] = record["slug"]
    except (UserError, Interrupted) as exc:
        outcome = {"exit_code": exc.exit_code, "message": str(exc)}
        print(f"error: {exc}" if isinstance(exc, UserError) else f"interrupted: {exc}", file=sys.stderr)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["outcome"]).write_text(json.dumps(outcome), encoding="utf-8")
    return int(outcome["exit_code"])


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
    from multitype.transformer.models import resolve_model
    from multitype.transformer.train import log

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(_FLAGS))
    if unknown:
        raise ModelError(f"train parallel cannot pass {unknown} to each model; set them in models_transformer.yaml")
    if not models:
        raise ModelError("--models is empty; name at least one model, e.g. --models minilm")
    if resume not in ("auto", "never"):
        raise ModelError(f"--resume must be 'auto' or 'never', got {resume!r}")
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


def _start(project: Project, job: Job, slot: int | None, overrides: dict[str, Any], resume: str) -> None:
    env = dict(os.environ)
    if slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    if project.storage.remote:
        job.log_path = Path(tempfile.mkstemp(prefix=f"multitype-{job.slug}-", suffix=".log")[1])
    else:
        job.log_path = project.storage.local_path(job.log_key)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.log_file = open(job.log_path, "wb")
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
        if project.storage.exists(key):
            job.record = project.storage.read_json(key)


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


if __name__ == "__main__":  # a torchrun rank (see maybe_relaunch)
    sys.exit(worker_main(sys.argv[1]))
