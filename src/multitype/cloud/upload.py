"""The push before a cloud run: processed data, the configs in force and the code, to the run's S3 root.

Shared by ``sagemaker launch`` and ``ec2 launch``. With a local project root,
:func:`push` runs :func:`multitype.sync.sync` over ``data/processed``, ``code``
(the bundle of :mod:`multitype.cloud.bundle`, plus any ``extra`` files such as
a SageMaker sourcedir) and ``configs`` when they come from the root's own
``configs/``; only what changed moves. With a root already on S3 the data and
results live there, so only the code goes (or only the ``extra`` files, for a
launcher that ships its code inside them). Configs read from another
``--config-dir`` are written to ``<root>/configs/`` file by file, so the run
reads the configs that were in force here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from multitype import layout
from multitype.config import CONFIG_FILES
from multitype.errors import DataError
from multitype.project import Project
from multitype.storage import Storage, is_remote


def require_processed(storage: Storage) -> list[str]:
    """The keys of the processed data a cloud run reads; each checked to exist in ``storage``.

    Raises
    ------
    DataError
        ``labels.json`` or a split is missing (run ``multitype prepare``), or ``labels.json`` is unreadable.
    """
    if not storage.exists(layout.LABELS):
        raise DataError(f"no processed data: {storage.url(layout.LABELS)} is missing; run 'multitype prepare' "
                        "first")
    try:
        count = len(storage.read_json(layout.LABELS))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{storage.url(layout.LABELS)} cannot be read ({exc}); run 'multitype prepare' again") \
            from None
    keys = [layout.LABELS]
    for split in layout.SPLITS:
        key = layout.processed_split(split, count)
        if not storage.exists(key):
            raise DataError(f"no processed data for the {split!r} split: {storage.url(key)} is missing; run "
                            "'multitype prepare' first")
        keys.append(key)
    return keys


def push(project: Project, root: str, config_dir: str, local: Path,
         extra: Mapping[str, Path] | None = None, code_to_remote_root: bool = True) -> tuple[list[str], int]:
    """Push data/processed, configs and code to ``root``; returns the keys uploaded and their bytes.

    Parameters
    ----------
    project : Project
        The opened project (its root local or on S3).
    root : str
        The run's S3 root (``s3://bucket/prefix``).
    config_dir : str
        Where the configs in force came from.
    local : Path
        The project folder the code bundle is made from (a per-user temp folder for an S3 root).
    extra : mapping, optional
        More ``key -> local file`` pushed with the code (a SageMaker sourcedir).
    code_to_remote_root : bool, default=True
        With a root on S3: push the code bundle too (EC2 installs it from ``<root>/code/``);
        False pushes only the ``extra`` files, and only those not there yet.
    """
    from multitype.cloud.bundle import code_files
    from multitype.sync import sync

    storage_cfg = project.configs.project.storage
    aws = project.configs.project.aws
    target = Storage(root, endpoint_url=storage_cfg.endpoint_url, profile=aws.profile)
    extra = dict(extra or {})
    uploaded: list[str] = []
    size = 0
    config_in_root = (not project.storage.remote and not is_remote(config_dir)
                      and Path(config_dir).resolve() == (local / layout.CONFIGS).resolve())
    if project.storage.remote and not code_to_remote_root:  # data and results already live there
        for key, path in extra.items():
            if not target.exists(key):
                target.put_file(path, key)
                uploaded.append(key)
                size += path.stat().st_size
    else:
        files = {**code_files(local), **extra}
        groups = ["code"] if project.storage.remote else \
            ["data/processed", "code"] + (["configs"] if config_in_root else [])
        result = sync("push", local=local, remote=root, only=groups, endpoint_url=storage_cfg.endpoint_url,
                      profile=aws.profile, code_files=files)
        uploaded += result.uploaded
        size += result.bytes
    if not config_in_root:  # the configs in force come from --config-dir, not from <root>/configs
        written, count = push_configs(config_dir, target, storage_cfg.endpoint_url, aws.profile)
        uploaded += written
        size += count
    return uploaded, size


def push_configs(config_dir: str, target: Storage, endpoint_url: str | None,
                 profile: str | None) -> tuple[list[str], int]:
    """Write each config file of ``config_dir`` to ``<target>/configs/`` where it differs; returns keys, bytes."""
    import fsspec

    from multitype.storage import storage_options

    fs, base = fsspec.core.url_to_fs(config_dir, **storage_options(config_dir, endpoint_url, profile))
    written: list[str] = []
    size = 0
    for name in CONFIG_FILES.values():
        text = fs.cat_file(f"{base.rstrip('/')}/{name}").decode("utf-8")
        key = f"{layout.CONFIGS}/{name}"
        if not target.exists(key) or target.read_text(key) != text:
            target.write_text(key, text)
            written.append(key)
            size += len(text.encode("utf-8"))
    return written, size

