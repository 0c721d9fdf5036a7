"""A small prepared project for the SageMaker launch tests, and the entry script it packs.

``ENTRY_SCRIPT`` comes from :mod:`multitype.cloud.sagemaker.entrypoint` (another
part of issue 9); until that module is on this branch, the tests pack a copy of
its contract (CONTRACT 1): put ``<folder of entry.py>/src`` first on sys.path,
then run ``main``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from multitype.config import default_yaml
from tests.conftest import write_configs
from tests.transformer.conftest import write_processed

ROLE = "arn:aws:iam::123456789012:role/MultitypeSageMaker"

try:
    from multitype.cloud.sagemaker.entrypoint import ENTRY_SCRIPT
except ImportError:  # the entry point's branch is not merged here yet
    ENTRY_SCRIPT = (
        "import os\nimport sys\n\n"
        "sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'src'))\n\n"
        "from multitype.cloud.sagemaker.entrypoint import main  # noqa: E402\n\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n")


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
