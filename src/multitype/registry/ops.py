"""The registry's commands as library calls: add, promote, archive, and the lookups list, show and resolve.

Stages: ``none`` (registered only), ``staging``, ``production`` and
``archived``. At most one version of a name is in production: promoting
another one moves the previous production version to ``staging`` (kept as the
obvious rollback, never archived behind the user's back). ``registry:<name>``
means the production version; ``registry:<name>:<k>`` version ``k``.

Each version points at the registry's own copy of the model,
``models/registry/<name>/<sha16>/``, copied in before the index names it:
retraining ``models/final/<name>`` later never changes what a version serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from multitype import layout
from multitype.errors import AwsError, RegistryError
from multitype.project import Place, Project
from multitype.registry import index as ix
from multitype.registry.index import Index, RegisteredModel, StageChange, Version
from multitype.storage import Storage

PREFIX = "registry:"
ADD_STAGES = ("production", "staging", "none")
PROMOTE_STAGES = ("production", "staging")


@dataclass(frozen=True)
class Resolved:
    """A registry reference resolved to one version and the place of its model."""

    name: str
    version: Version
    place: Place

    def describe(self, reference: str) -> str:
        """``model registry:news:3 (production) -> models/registry/news/1a2b...`` for the loading commands."""
        return (f"model {reference} is {self.name} version {self.version.version} ({self.version.stage}, sha256 "
                f"{self.version.sha256[:12]}) -> {self.place.url()}")


def parse_ref(text: str, need_version: bool = False) -> tuple[str, int | None]:
    """``news`` -> ("news", None); ``news:3`` -> ("news", 3); a ``registry:`` prefix is allowed.

    Raises
    ------
    RegistryError
        A bad name, a version that is not a positive whole number, or no version where one is needed.
    """
    body = text[len(PREFIX):] if text.startswith(PREFIX) else text
    name, sep, number = body.partition(":")
    if not ix.valid_name(name):
        raise RegistryError(f"{text!r}: {name!r} is not a registry name (letters, digits and single hyphens)")
    if not sep:
        if need_version:
            raise RegistryError(f"{text!r} names no version; write NAME:VERSION (e.g. {name}:1)")
        return name, None
    if not number.isdigit() or int(number) < 1:
        raise RegistryError(f"{text!r}: version {number!r} is not a version number (1, 2, ...)")
    return name, int(number)


def _entry(index: Index, name: str, where: str) -> RegisteredModel:
    entry = index.models.get(name)
    if entry is None or not entry.versions:
        known = ", ".join(sorted(index.models)) or "none yet"
        raise RegistryError(f"no model {name!r} in the registry {where} (names: {known}); register it with "
                            f"'multitype registry add MODEL_DIR --name {name}'")
    return entry


def _version(index: Index, name: str, number: int, where: str) -> Version:
    entry = _entry(index, name, where)
    if not 1 <= number <= len(entry.versions):
        raise RegistryError(f"{name} has no version {number} in {where}; it has versions 1-{len(entry.versions)} "
                            f"('multitype registry list {name}' shows them)")
    return entry.versions[number - 1]


def _production(entry: RegisteredModel) -> Version | None:
    return next((v for v in entry.versions if v.stage == "production"), None)


def _set_stage(version: Version, stage: str, at: str) -> None:
    version.stage = stage  # type: ignore[assignment]
    version.updated = at
    version.history.append(StageChange(stage=stage, at=at))  # type: ignore[arg-type]


def check_stage(stage: str, allowed: tuple[str, ...], flag: str = "--stage") -> str:
    if stage not in allowed:
        raise RegistryError(f"{flag} {stage!r} is not a stage here; use one of: {', '.join(allowed)}")
    return stage


def add(project: Project, model_dir: str, name: str, stage: str = "none", sagemaker: bool = False,
        remote: str | None = None, echo: Callable[[str], None] = print) -> Version:
    """Register the model folder ``model_dir`` as the next version of ``name``.

    Parameters
    ----------
    project : Project
        The root holding the registry (and the model, for keys such as ``models/final/logreg``).
    model_dir : str
        A model folder: local, ``s3://`` or a key under the root (as ``predict --model`` takes it).
    name : str
        The registry name.
    stage : {"none", "staging", "production"}
        The new version's stage; ``production`` moves the current production version to ``staging``.
    sagemaker : bool
        Also create a model package in the SageMaker Model Registry (:mod:`.sagemaker`).
    remote : str, optional
        The S3 root for ``model.tar.gz`` when the root is local (default ``storage.remote``).

    Returns
    -------
    Version
        The version as committed to the index.

    Raises
    ------
    RegistryError
        A bad name or stage, or an invalid index (checked before anything is copied).
    ModelError
        ``model_dir`` is missing or not a model folder.
    """
    from multitype.predict import model_place
    from multitype.registry.entry import model_facts

    ix.check_name(name)
    check_stage(stage, ADD_STAGES)
    root = project.storage
    ix.load(root)  # an invalid index stops here, before any copy
    mirror = None
    if sagemaker:
        from multitype.registry import sagemaker as sm

        mirror = sm.plan(project, name, remote)
    place = model_place(project, model_dir, echo)
    package_url = None
    with place.storage.local_dir(place.key) as local:
        facts = model_facts(root, local)
        for warning in facts.warnings:
            echo(f"warning: {warning}")
        key = layout.registry_model(name, facts.sha256)
        if not root.is_complete(key):
            echo(f"copying the model ({facts.kind}, {len(facts.files)} files) to {root.url(key)}")
            try:
                root.put_dir(local, key)
            except OSError:
                if not root.is_complete(key):  # else a concurrent add of this very model published it first
                    raise
        if mirror is not None:
            package_url = sm.upload_archive(project, mirror, local, name, facts.sha256, echo)
    source = place.url()

    def change(index: Index) -> Version:
        entry = index.models.setdefault(name, RegisteredModel())
        at = ix.now()
        if stage == "production":
            current = _production(entry)
            if current is not None:
                _set_stage(current, "staging", at)
        version = Version(version=len(entry.versions) + 1, stage=stage, created=at, updated=at, model=key,
                          source=source, sha256=facts.sha256, kind=facts.kind, name=facts.name,
                          run_id=facts.run_id, code=facts.code, data_fingerprint=facts.data_fingerprint,
                          data_files=facts.data_files, metrics=facts.metrics, metrics_file=facts.metrics_file,
                          history=[StageChange(stage=stage, at=at)])
        entry.versions.append(version)
        return version

    version = ix.update(root, change)
    echo(f"registered {name} version {version.version} ({version.stage}) from {source} -> {root.url(key)}")
    if mirror is not None and package_url is not None:
        try:
            mirrored = sm.register(mirror, name, version, package_url)
        except AwsError as exc:
            raise AwsError(f"{name} version {version.version} is registered, but not mirrored to SageMaker: "
                           f"{exc}") from None
        version = ix.update(root, lambda index: _record_mirror(index, name, version.version, mirrored))
        echo(f"SageMaker model package {mirrored.model_package_arn} ({sm.APPROVAL[version.stage]})")
    return version


def _record_mirror(index: Index, name: str, number: int, mirrored: ix.SageMakerMirror) -> Version:
    version = _version(index, name, number, layout.REGISTRY_INDEX)
    version.sagemaker = mirrored
    return version


def set_stage(project: Project, reference: str, stage: str,
              echo: Callable[[str], None] = print) -> tuple[Version, list[Version]]:
    """Move ``NAME:VERSION`` to ``stage`` (``promote`` and ``archive``); returns it and any version it demoted.

    Mirrored versions get the matching SageMaker approval status.
    """
    name, number = parse_ref(reference, need_version=True)
    assert number is not None
    root = project.storage
    where = root.url(layout.REGISTRY_INDEX)

    def change(index: Index) -> tuple[Version, list[Version]]:
        version = _version(index, name, number, where)
        at = ix.now()
        demoted: list[Version] = []
        if stage == "production":
            current = _production(index.models[name])
            if current is not None and current.version != number:
                _set_stage(current, "staging", at)
                demoted.append(current)
        if version.stage != stage:
            _set_stage(version, stage, at)
        return version, demoted

    version, demoted = ix.update(root, change)
    for other in demoted:
        echo(f"{name} version {other.version}: production -> staging")
    echo(f"{name} version {version.version}: {version.stage}")
    aws = project.configs.project.aws
    for changed in (version, *demoted):
        if changed.sagemaker is not None:
            from multitype.registry import sagemaker as sm

            sm.set_status(aws, changed.sagemaker.model_package_arn, changed.stage)
            echo(f"SageMaker model package {changed.sagemaker.model_package_arn}: {sm.APPROVAL[changed.stage]}")
    return version, demoted


def promote(project: Project, reference: str, stage: str,
            echo: Callable[[str], None] = print) -> tuple[Version, list[Version]]:
    """``registry promote NAME:VERSION --stage production|staging``."""
    check_stage(stage, PROMOTE_STAGES)
    return set_stage(project, reference, stage, echo)


def archive(project: Project, reference: str, echo: Callable[[str], None] = print) -> Version:
    """``registry archive NAME:VERSION``: out of service (``registry:NAME`` no longer finds it if it was production)."""
    return set_stage(project, reference, "archived", echo)[0]


def load(storage: Storage) -> Index:
    return ix.load(storage)


def show(project: Project, reference: str) -> RegisteredModel | Version:
    """The whole entry of ``NAME``, or one version for ``NAME:VERSION``."""
    name, number = parse_ref(reference)
    root = project.storage
    index = ix.load(root)
    where = root.url(layout.REGISTRY_INDEX)
    return _entry(index, name, where) if number is None else _version(index, name, number, where)


def resolve(root: Storage, reference: str) -> Resolved:
    """``registry:NAME`` (its production version) or ``registry:NAME:K`` -> the version and its model's place.

    Raises
    ------
    RegistryError
        No such name or version, no production version, an invalid index, or
        the version's copy is missing from the root.
    """
    name, number = parse_ref(reference)
    index = ix.load(root)
    where = root.url(layout.REGISTRY_INDEX)
    if number is None:
        version = _production(_entry(index, name, where))
        if version is None:
            raise RegistryError(f"{name} has no production version in {where}; promote one ('multitype registry "
                                f"promote {name}:<version> --stage production') or name one ({PREFIX}{name}:<version>)")
    else:
        version = _version(index, name, number, where)
    if not root.is_complete(version.model):
        raise RegistryError(f"{name} version {version.version}: its model {root.url(version.model)} is missing or "
                            "incomplete; register the model again")
    return Resolved(name, version, Place(root, version.model))
