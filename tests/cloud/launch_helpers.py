"""A small prepared project for the SageMaker launch tests, and the entry script it packs."""

from __future__ import annotations

from pathlib import Path

import yaml

from multitype.config import default_yaml
from tests.conftest import write_configs
from tests.transformer.conftest import write_processed

ROLE = "arn:aws:iam::123456789012:role/MultitypeSageMaker"

from multitype.cloud.sagemaker.entrypoint import ENTRY_SCRIPT  # noqa: F401 - the tests read it from here


def project_yaml(remote: str | None, role: str | None = ROLE, region: str = "us-east-1", **sagemaker: object) -> str:
    data = yaml.safe_load(default_yaml("project"))
    data["name"] = "bbc-news"
    data["storage"]["remote"] = remote
    data["aws"]["region"] = region
    data["aws"]["sagemaker_role"] = role
    data["aws"]["tags"] = {"team": "nlp"}
    data["aws"]["sagemaker"].update(sagemaker)
    return yaml.safe_dump(data, sort_keys=False)


def make_project(base: Path, remote: str | None, prepared: bool = True, **project: object) -> tuple[Path, Path]:
    """(root, config_dir): a processed 4-class BBC project (48 articles) pushing to ``remote``."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    if prepared:
        write_processed(root)
    configs = write_configs(base / "configs", project=project_yaml(remote, **project))  # type: ignore[arg-type]
    return root, configs
