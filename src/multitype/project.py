"""What every command starts from: the root's storage, the configs in force and a run id."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field

from multitype.config import Configs, load_configs
from multitype.storage import Storage, is_remote, storage_options


def new_run_id(command: str) -> str:
    """``20261123-173200-prepare-1a2b``: sortable, readable, unique enough."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{command.replace(' ', '-')}-{secrets.token_hex(2)}"


@dataclass
class Project:
    """A root, its configs and the id of the run in progress."""

    storage: Storage
    configs: Configs
    command: str
    run_id: str = ""
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = new_run_id(self.command)


def resolve_root(cli_root: str | None, configs: Configs) -> str:
    """``--root`` > ``MULTITYPE_ROOT`` > ``storage.root`` in project.yaml > ``.``."""
    return cli_root or os.environ.get("MULTITYPE_ROOT") or configs.project.storage.root or "."


def open_project(root: str | None, config_dir: str, command: str, endpoint_url: str | None = None) -> Project:
    """Load the configs from ``config_dir`` and open the resolved root."""
    configs = load_configs(config_dir, storage_options(config_dir, endpoint_url))
    endpoint = endpoint_url or configs.project.storage.endpoint_url
    resolved = resolve_root(root, configs)
    if not is_remote(resolved) and not os.path.exists(resolved):
        os.makedirs(resolved)
    storage = Storage(resolved, endpoint_url=endpoint, profile=configs.project.aws.profile)
    return Project(storage=storage, configs=configs, command=command)
