"""What every command starts from: the root's storage, the configs in force, a run id, and where outputs go."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Mapping

from multitype import layout
from multitype.config import Configs, load_configs
from multitype.storage import Storage, is_remote, storage_options

# where training writes, when not under the root (a SageMaker entry point sets these)
CHECKPOINT_DIR_ENV = "MULTITYPE_CHECKPOINT_DIR"
MODEL_DIR_ENV = "MULTITYPE_MODEL_DIR"
RESULTS_ROOT_ENV = "MULTITYPE_RESULTS_ROOT"


def new_run_id(command: str) -> str:
    """``20261123-173200-prepare-1a2b``: sortable, readable, unique enough."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{command.replace(' ', '-')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Place:
    """A folder: a key under a storage (``""``: the storage's root itself)."""

    storage: Storage
    key: str = ""

    def join(self, name: str) -> str:
        """The key of ``name`` inside this folder."""
        return f"{self.key}/{name}" if self.key else name

    def url(self, name: str = "") -> str:
        """Where ``name`` inside this folder (or the folder itself) is, for messages and manifests."""
        return self.storage.url(self.join(name) if name else self.key)


@dataclass(frozen=True)
class Outputs:
    """Where training writes; each place can be set apart from the root.

    Attributes
    ----------
    root : Storage
        The project's root (``models/final/<slug>`` goes there unless ``model`` is set).
    checkpoints : Place
        The folder that holds ``<slug>-step<N>/``, ``<slug>-epoch<k>/``, ``<slug>-best/``
        (default ``<root>/models/checkpoints``).
    model : Place or None
        The exact folder of the final model; None: ``<root>/models/final/<slug>``.
    results : Storage
        A root for ``results/transformer/...`` and the run's ``runs/<run-id>/manifest.json``
        (default: the root).
    """

    root: Storage
    checkpoints: Place
    model: Place | None
    results: Storage

    @classmethod
    def under(cls, storage: Storage) -> "Outputs":
        """Today's layout: everything under the root."""
        return cls(storage, Place(storage, layout.CHECKPOINTS), None, storage)

    @classmethod
    def from_locations(cls, storage: Storage, checkpoints: str | None = None, model: str | None = None,
                       results: str | None = None) -> "Outputs":
        """Outputs under ``storage``, except for the places given (local folders or ``s3://`` URLs)."""
        return cls(storage,
                   Place(_open(checkpoints, storage)) if checkpoints else Place(storage, layout.CHECKPOINTS),
                   Place(_open(model, storage)) if model else None,
                   _open(results, storage) if results else storage)

    @classmethod
    def from_env(cls, storage: Storage, env: Mapping[str, str] = os.environ) -> "Outputs":
        """Outputs from ``MULTITYPE_CHECKPOINT_DIR``, ``MULTITYPE_MODEL_DIR``, ``MULTITYPE_RESULTS_ROOT``."""
        return cls.from_locations(storage, env.get(CHECKPOINT_DIR_ENV) or None, env.get(MODEL_DIR_ENV) or None,
                                  env.get(RESULTS_ROOT_ENV) or None)

    def to_env(self) -> dict[str, str]:
        """The environment that gives a child process (torchrun rank, train parallel job) these outputs."""
        env = {}
        if self.checkpoints != Place(self.root, layout.CHECKPOINTS):
            env[CHECKPOINT_DIR_ENV] = self.checkpoints.url()
        if self.model is not None:
            env[MODEL_DIR_ENV] = self.model.url()
        if self.results.url() != self.root.url():
            env[RESULTS_ROOT_ENV] = self.results.url()
        return env

    def checkpoint(self, slug: str, tag: str) -> str:
        """Key (under ``checkpoints.storage``) of the checkpoint ``<slug>-<tag>``."""
        return layout.checkpoint(slug, tag, self.checkpoints.key)

    def final_model(self, slug: str) -> Place:
        """The folder of the final model of ``slug``."""
        return self.model if self.model is not None else Place(self.root, layout.final_model(slug))


def _open(where: str, like: Storage) -> Storage:
    """A storage for ``where``, with the endpoint and profile of the root ``like``."""
    if not is_remote(where):
        os.makedirs(where, exist_ok=True)
    return Storage(where, endpoint_url=like.endpoint_url, profile=like.profile)


@dataclass
class Project:
    """A root, its configs, the id of the run in progress and where training writes."""

    storage: Storage
    configs: Configs
    command: str
    run_id: str = ""
    started: float = field(default_factory=time.time)
    outputs: Outputs = None  # type: ignore[assignment]  # None: everything under the root

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = new_run_id(self.command)
        if self.outputs is None:
            self.outputs = Outputs.under(self.storage)


def resolve_root(cli_root: str | None, configs: Configs) -> str:
    """``--root`` > ``MULTITYPE_ROOT`` > ``storage.root`` in project.yaml > ``.``."""
    return cli_root or os.environ.get("MULTITYPE_ROOT") or configs.project.storage.root or "."


def open_project(root: str | None, config_dir: str, command: str, endpoint_url: str | None = None) -> Project:
    """Load the configs from ``config_dir``, open the resolved root and the output places (see :class:`Outputs`)."""
    configs = load_configs(config_dir, storage_options(config_dir, endpoint_url))
    endpoint = endpoint_url or configs.project.storage.endpoint_url
    resolved = resolve_root(root, configs)
    if not is_remote(resolved) and not os.path.exists(resolved):
        os.makedirs(resolved)
    storage = Storage(resolved, endpoint_url=endpoint, profile=configs.project.aws.profile)
    return Project(storage=storage, configs=configs, command=command, outputs=Outputs.from_env(storage))
