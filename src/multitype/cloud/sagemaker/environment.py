"""What a SageMaker training container tells the entry point: hyperparameters, channels, folders, hosts.

The training toolkit of the stock images passes every hyperparameter as
``--name value`` and sets ``SM_*`` variables (``SM_CHANNEL_<NAME>``,
``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_HOSTS``, ``SM_CURRENT_HOST``,
``SM_NUM_GPUS``). Without the toolkit (a plain ``python entry.py``, a test)
the same facts come from SageMaker's files under the base folder:
``input/config/hyperparameters.json`` (every value a string, JSON-decoded
when it parses, as the toolkit does), ``input/config/resourceconfig.json``
and ``input/data/<channel>/``. The base folder is ``/opt/ml``, moved by
``SAGEMAKER_BASE_DIR`` (the toolkit's variable, ``sagemaker_training.environment``).
Arguments win over the file; ``sagemaker_*`` hyperparameters are the SDK's, not ours.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from multitype.errors import ConfigError

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"


@dataclass(frozen=True)
class SageMakerEnv:
    """One container's view of its training job.

    Attributes
    ----------
    base : Path
        ``/opt/ml`` or ``$SAGEMAKER_BASE_DIR``.
    hyperparameters : dict
        Ours, decoded (``sagemaker_*`` left out); arguments over the file.
    channels : dict of str to Path
        Channel name -> its folder (``SM_CHANNEL_<NAME>``, else ``<base>/input/data/<name>``
        for every folder there).
    model_dir, output_data_dir, checkpoint_dir : Path
        ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR`` and ``<base>/checkpoints`` (SageMaker's
        ``CheckpointConfig.LocalPath``).
    hosts : list of str
        Every container of the job, sorted as SageMaker gives them (``algo-1``, ``algo-2``, ...).
    current_host : str
        This container.
    num_gpus : int
        GPUs of this container.
    network_interface : str or None
        The interface between the hosts (``SM_NETWORK_INTERFACE_NAME`` or
        ``network_interface_name`` in ``resourceconfig.json``, e.g. ``eth0``).
    job_name : str
        ``TRAINING_JOB_NAME``, else ``job_name`` in ``SM_TRAINING_ENV``, else ``local-<UTC time>``.
    """

    base: Path
    hyperparameters: dict[str, Any]
    channels: dict[str, Path]
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    hosts: list[str]
    current_host: str
    num_gpus: int
    network_interface: str | None
    job_name: str

    @property
    def node_rank(self) -> int:
        """This host's place in ``hosts`` (0: the master, which writes the artifacts)."""
        return self.hosts.index(self.current_host)

    @property
    def multi_node(self) -> bool:
        return len(self.hosts) > 1


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SAGEMAKER_BASE_DIR`` or ``/opt/ml``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)


def decode(value: Any) -> Any:
    """A hyperparameter value as the toolkit decodes it: JSON when it parses, else the string itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``--name value`` / ``--name=value`` pairs -> ``{name: decoded value}``; a bare ``--flag`` is True.

    Anything else (a stray positional argument) is ignored: the toolkit's command
    line is not ours to refuse.
    """
    values: dict[str, Any] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if not item.startswith("--") or len(item) == 2:
            continue
        name, sep, value = item[2:].partition("=")
        if not sep:
            if i < len(items) and not items[i].startswith("--"):
                value = items[i]
                i += 1
            else:
                values[name] = True
                continue
        values[name] = decode(value)
    return values


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); SageMaker writes this file as {what}") from None


def read_hyperparameters(base: Path, argv: Sequence[str]) -> dict[str, Any]:
    """``hyperparameters.json`` (string values, decoded) overlaid with the arguments; without ``sagemaker_*``."""
    values: dict[str, Any] = {}
    path = base / "input" / "config" / "hyperparameters.json"
    if path.is_file():
        data = _read_json(path, "a JSON object of strings")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of hyperparameters, got {type(data).__name__}")
        values.update({str(k): decode(v) for k, v in data.items()})
    values.update(parse_args(argv))
    return {name: value for name, value in values.items() if not name.startswith("sagemaker_")}


def _resource_config(base: Path) -> dict[str, Any]:
    resource = base / "input" / "config" / "resourceconfig.json"
    config = _read_json(resource, '{"current_host": ..., "hosts": [...]}') if resource.is_file() else {}
    if not isinstance(config, dict):
        raise ConfigError(f"{resource}: expected a JSON object with current_host and hosts")
    return config


def _hosts(base: Path, environ: Mapping[str, str]) -> tuple[list[str], str]:
    resource = base / "input" / "config" / "resourceconfig.json"
    config = _resource_config(base)
    if environ.get("SM_HOSTS"):
        try:
            hosts = json.loads(environ["SM_HOSTS"])
        except ValueError:
            raise ConfigError(f"SM_HOSTS={environ['SM_HOSTS']!r} is not a JSON list of host names") from None
    else:
        hosts = config.get("hosts") or []
    current = environ.get("SM_CURRENT_HOST") or config.get("current_host") or ""
    if not hosts and not current:
        return ["algo-1"], "algo-1"  # no resource config at all: a one-host run
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts) or current not in hosts:
        raise ConfigError(f"the host list {hosts!r} (SM_HOSTS or {resource}) does not contain the current host "
                          f"{current!r} (SM_CURRENT_HOST or current_host there)")
    return list(hosts), current


def _num_gpus(environ: Mapping[str, str]) -> int:
    value = environ.get("SM_NUM_GPUS")
    if value is None or value == "":
        from multitype.transformer.launch import gpu_count

        return gpu_count()
    try:
        return max(int(value), 0)
    except ValueError:
        raise ConfigError(f"SM_NUM_GPUS={value!r} is not a whole number") from None


def _job_name(environ: Mapping[str, str]) -> str:
    if environ.get("TRAINING_JOB_NAME"):
        return environ["TRAINING_JOB_NAME"]
    try:
        name = json.loads(environ.get("SM_TRAINING_ENV") or "{}").get("job_name")
    except (ValueError, AttributeError):
        name = None
    return str(name) if name else time.strftime("local-%Y%m%d-%H%M%S", time.gmtime())


def _channels(base: Path, environ: Mapping[str, str]) -> dict[str, Path]:
    found = {}
    data = base / "input" / "data"
    if data.is_dir():
        found = {p.name: p for p in sorted(data.iterdir()) if p.is_dir()}
    for var, value in environ.items():
        if var.startswith("SM_CHANNEL_") and value:
            found[var[len("SM_CHANNEL_"):].lower()] = Path(value)
    return found


def read_environment(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> SageMakerEnv:
    """The job as this container sees it (see the module docstring for where each fact comes from).

    Raises
    ------
    ConfigError
        An unreadable ``hyperparameters.json``/``resourceconfig.json``, ``SM_HOSTS``
        that is not a JSON list holding the current host, a bad ``SM_NUM_GPUS``.
    """
    environ = os.environ if environ is None else environ
    base = base_dir(environ)
    hosts, current = _hosts(base, environ)
    return SageMakerEnv(
        base=base,
        hyperparameters=read_hyperparameters(base, argv),
        channels=_channels(base, environ),
        model_dir=Path(environ.get("SM_MODEL_DIR") or base / "model"),
        output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR") or base / "output" / "data"),
        checkpoint_dir=base / "checkpoints",
        hosts=hosts,
        current_host=current,
        num_gpus=_num_gpus(environ),
        network_interface=environ.get("SM_NETWORK_INTERFACE_NAME") or
        _resource_config(base).get("network_interface_name") or None,
        job_name=_job_name(environ),
    )
