"""A fake ``/opt/ml`` tree, built as SageMaker builds it, and the entry script run in it as a real process.

:func:`build_tree` writes what SageMaker gives a container: the channels under
``input/data/<name>/`` (the files ``multitype sagemaker launch`` points them at),
``input/config/hyperparameters.json`` with every value a JSON-encoded string (as
the SDK sends them, ``sagemaker_*`` included), ``input/config/resourceconfig.json``,
and the unpacked ``sourcedir.tar.gz`` in ``code/``: ``entry.py`` (the entry
script's text) beside ``src/`` (this checkout's package).
:func:`toolkit` adds what the training toolkit passes: ``--name value`` arguments
and the ``SM_*`` variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import multitype
from multitype.cloud.sagemaker.entrypoint import ENTRY_SCRIPT

SRC = Path(multitype.__file__).resolve().parents[1]
CHANNELS = ("train", "val", "test", "labels", "configs")


def build_tree(base: Path, project: Path, configs: Path, hyperparameters: dict[str, Any], host: str = "algo-1",
               hosts: Sequence[str] = ("algo-1",), channels: Sequence[str] = CHANNELS) -> Path:
    """``base`` as SageMaker fills ``/opt/ml`` for a job on ``project``'s processed data and ``configs``."""
    processed = project / "data" / "processed"
    data = base / "input" / "data"
    for name in channels:
        folder = data / name
        folder.mkdir(parents=True)
        if name == "configs":
            sources = sorted(configs.glob("*.yaml"))
        elif name == "labels":
            sources = [processed / "labels.json"]
        else:
            sources = sorted(processed.glob(f"{name}_*class.csv"))
        for path in sources:
            (folder / path.name).write_bytes(path.read_bytes())
    config = base / "input" / "config"
    config.mkdir(parents=True)
    sent = {name: json.dumps(value) for name, value in hyperparameters.items()}
    sent.update({"sagemaker_program": json.dumps("entry.py"), "sagemaker_region": json.dumps("us-east-1"),
                 "sagemaker_submit_directory": json.dumps("s3://bucket/code/sourcedir.tar.gz"),
                 "sagemaker_container_log_level": "20"})
    (config / "hyperparameters.json").write_text(json.dumps(sent), encoding="utf-8")
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": list(hosts),
                                                            "network_interface_name": "eth0"}), encoding="utf-8")
    for folder in ("model", "output/data", "checkpoints", "code"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "code" / "entry.py").write_text(ENTRY_SCRIPT, encoding="utf-8")
    os.symlink(SRC, base / "code" / "src")
    return base


def toolkit(base: Path, hyperparameters: dict[str, Any], host: str = "algo-1", hosts: Sequence[str] = ("algo-1",),
            num_gpus: int = 0) -> tuple[list[str], dict[str, str]]:
    """(arguments, environment) as the sagemaker-training toolkit starts the entry script."""
    args = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        args += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    env = {f"SM_CHANNEL_{name.upper()}": str(base / "input" / "data" / name) for name in CHANNELS}
    env.update({"SM_MODEL_DIR": str(base / "model"), "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
                "SM_HOSTS": json.dumps(list(hosts)), "SM_CURRENT_HOST": host, "SM_NUM_GPUS": str(num_gpus),
                "SM_HPS": json.dumps(hyperparameters)})
    return args, env


def entry_env(base: Path, job: str, **extra: str) -> dict[str, str]:
    """The process environment: this session's (S3 endpoint and keys), the base folder, one thread."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": job, "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", **extra}
    env.pop("MULTITYPE_ROOT", None)
    env.pop("SM_NUM_GPUS", None)
    return env


def start(base: Path, job: str, args: Sequence[str] = (), env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python <base>/code/entry.py ARGS`` from ``<base>/code`` (as the toolkit runs it); output to files beside."""
    out = open(base.parent / f"{base.name}.stdout", "w")
    err = open(base.parent / f"{base.name}.stderr", "w")
    return subprocess.Popen([sys.executable, str(base / "code" / "entry.py"), *args], cwd=base / "code",
                            env={**entry_env(base, job), **(env or {})}, stdout=out, stderr=err, text=True)


def output(base: Path) -> tuple[str, str]:
    """(stdout, stderr) of the latest process started on ``base``."""
    return ((base.parent / f"{base.name}.stdout").read_text(), (base.parent / f"{base.name}.stderr").read_text())


def run(base: Path, job: str, args: Sequence[str] = (), env: dict[str, str] | None = None,
        timeout: float = 240) -> tuple[int, str, str]:
    """Run the entry script to its end: (exit code, stdout, stderr)."""
    proc = start(base, job, args, env)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (code, *output(base))


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 180) -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the entry script ended (exit {proc.returncode}) before the condition held"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
