"""What AWS offers, read from AWS's own libraries: training instance types, their GPUs, and the PyTorch image.

Nothing here is a table typed by hand:

- training instance types: the ``TrainingInstanceType`` enum of botocore's
  SageMaker service model (:func:`training_instance_types`);
- GPUs per instance type: sagemaker-core's ``instance_types_gpu_info``
  (:func:`gpu_count`);
- the training image: sagemaker-core's ``image_uris`` catalog for ``pytorch``
  training (:func:`pytorch_training_image`), the newest version whose torch
  satisfies the ``torch`` requirement of the installed multitype distribution
  (:func:`torch_requirement`) and, where there is one, whose Python matches
  the local Python, so that the pinned requirements install as they are.

sagemaker-core takes ~2 s to import, so it is imported inside the functions.
Shared by the SageMaker and EC2 launchers.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Sequence

from multitype.errors import AwsError

IMAGE_FRAMEWORK = "pytorch"
_TAG = re.compile(r":(?P<version>\d+\.\d+(?:\.\d+)?)-(?P<processor>cpu|gpu)-(?P<py>py\d+)")


class UnknownTorchWarning(UserWarning):
    """An image whose tag does not say its torch version (a custom image): accepted, unchecked."""


@dataclass(frozen=True)
class TrainingImage:
    """A training image and what it holds (``torch_version`` None: unknown, a custom image)."""

    uri: str
    torch_version: str | None
    py_version: str | None
    processor: str | None


@functools.lru_cache(maxsize=None)
def service_enum(service: str, shape: str) -> tuple[str, ...]:
    """The values botocore's model of ``service`` allows for the string ``shape`` (instance types, ...)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return tuple(model.shape_for(shape).enum)


def nearest_hint(value: str, known: Sequence[str], otherwise: str, cutoff: float = 0.6) -> str:
    """``did you mean a, b, c?`` with the names closest to a mistyped ``value``, else ``otherwise``."""
    near = difflib.get_close_matches(value, known, n=3, cutoff=cutoff)
    return f"did you mean {', '.join(near)}?" if near else otherwise


def training_instance_types() -> tuple[str, ...]:
    """Every SageMaker training instance type botocore's service model knows (``ml.m5.xlarge``, ...)."""
    return service_enum("sagemaker", "TrainingInstanceType")


def check_instance_type(instance_type: str) -> str:
    """``instance_type`` if SageMaker can train on it.

    Raises
    ------
    AwsError
        Not a training instance type; the message suggests the nearest names.
    """
    return _check_type(instance_type, training_instance_types(), "training", "create-training-job")


def _check_type(instance_type: str, known: tuple[str, ...], kind: str, command: str) -> str:
    if instance_type in known:
        return instance_type
    hint = nearest_hint(instance_type, known, f"see 'aws sagemaker {command} help'")
    raise AwsError(f"instance type {instance_type!r} is not a SageMaker {kind} instance type; {hint}")


def processing_instance_types() -> tuple[str, ...]:
    """Every instance type a SageMaker Processing job can run on (botocore's ``ProcessingInstanceType`` enum)."""
    return service_enum("sagemaker", "ProcessingInstanceType")


def check_processing_instance_type(instance_type: str) -> str:
    """``instance_type`` if a SageMaker Processing job can run on it.

    Raises
    ------
    AwsError
        Not a processing instance type; the message suggests the nearest names.
    """
    return _check_type(instance_type, processing_instance_types(), "Processing", "create-processing-job")


def hosting_instance_types() -> tuple[str, ...]:
    """Every instance type a SageMaker endpoint can run on (botocore's ``ProductionVariantInstanceType`` enum)."""
    return service_enum("sagemaker", "ProductionVariantInstanceType")


def check_hosting_instance_type(instance_type: str) -> str:
    """``instance_type`` if a SageMaker endpoint can run on it.

    Raises
    ------
    AwsError
        Not a hosting instance type; the message suggests the nearest names.
    """
    known = hosting_instance_types()
    if instance_type in known:
        return instance_type
    hint = nearest_hint(instance_type, known, "see 'aws sagemaker create-endpoint-config help'")
    raise AwsError(f"--instance-type {instance_type!r} is not a SageMaker endpoint instance type; {hint}")


def _family_gpus(instance_type: str) -> int:
    """GPUs of a type that sagemaker-core's table lacks (e.g. ml.g5.xlarge, ml.g6.*), from its family.

    The fallback rule: CPU families have none; GPU families (g*, p*) have one
    below 12xlarge, 4 at 12x/24xlarge and 8 at 48xlarge (g4dn/g5/g6/g6e
    follow this; the p families with more are in sagemaker-core's table).
    """
    parts = instance_type.split(".")
    family = parts[1] if len(parts) == 3 else ""
    if not family or family[0] not in "gp":
        return 0
    size = parts[2]
    if size in ("48xlarge",):
        return 8
    if size in ("12xlarge", "24xlarge"):
        return 4
    return 1


def gpu_count(instance_type: str, region: str = "us-east-1") -> int:
    """GPUs of one instance of ``instance_type`` (0 for CPU types)."""
    from sagemaker.core import instance_types_gpu_info

    try:
        info = instance_types_gpu_info.retrieve(region) or instance_types_gpu_info.retrieve("us-east-1")
    except ValueError:
        info = {}
    if instance_type in info:
        return int(info[instance_type]["Count"])
    return _family_gpus(instance_type)


def multi_gpu_types(at_least: int, region: str = "us-east-1") -> list[str]:
    """Training instance types with ``at_least`` GPUs (fewest GPUs first), for suggestions."""
    from sagemaker.core import instance_types_gpu_info

    try:
        info = instance_types_gpu_info.retrieve(region) or instance_types_gpu_info.retrieve("us-east-1")
    except ValueError:
        info = {}
    known = set(training_instance_types())
    found = [(int(v["Count"]), name) for name, v in info.items() if int(v["Count"]) >= at_least and name in known]
    return [name for _, name in sorted(found)]


@functools.lru_cache(maxsize=1)
def torch_requirement() -> str:
    """The ``torch`` version range of the installed multitype distribution (``">=2.2,<3"``); ``""`` if none."""
    from packaging.requirements import Requirement

    try:
        requires = importlib.metadata.requires("multitype") or []
    except importlib.metadata.PackageNotFoundError:
        return ""
    for line in requires:
        req = Requirement(line)
        if req.name.lower() == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
            return str(req.specifier)
    return ""


def _local_py() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def _minor(py: str) -> int:
    """``py311`` -> 11 (``py3`` -> 0)."""
    return int(py[3:] or 0) if py.startswith("py3") else 0


def _allowed(version: str, specifier: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) in SpecifierSet(specifier)
    except InvalidVersion:
        return False


def pytorch_training_image(region: str, instance_type: str, specifier: str | None = None,
                           py_version: str | None = None) -> TrainingImage:
    """The AWS PyTorch training image for ``region`` and ``instance_type`` (see :func:`pytorch_image`)."""
    return pytorch_image(region, instance_type, specifier, py_version, scope="training")


def pytorch_image(region: str, instance_type: str, specifier: str | None = None, py_version: str | None = None,
                  scope: str = "training") -> TrainingImage:
    """The AWS PyTorch ``scope`` image (``training`` or ``inference``) for ``region`` and ``instance_type``.

    Parameters
    ----------
    region : str
        The AWS region of the job.
    instance_type : str
        Decides the CPU or GPU image (sagemaker-core's own rule).
    specifier : str, optional
        The torch versions allowed; default :func:`torch_requirement`.
    py_version : str, optional
        Preferred ``pyXY``; default the local Python's. Images with another
        Python are taken only when none has this one.
    scope : {"training", "inference"}
        Which image family of sagemaker-core's catalog.

    Raises
    ------
    AwsError
        No image with an allowed torch in ``region`` (names the regions that have one).
    """
    from sagemaker.core import image_uris

    specifier = torch_requirement() if specifier is None else specifier
    wanted_py = py_version or _local_py()
    config = image_uris.config_for_framework(IMAGE_FRAMEWORK)[scope]
    from packaging.version import Version

    candidates = []   # (prefers our python, version) for images in the region
    regions: set[str] = set()
    for version, entry in config["versions"].items():
        if not _allowed(version, specifier):
            continue
        regions.update(entry.get("registries", {}))
        if region not in entry.get("registries", {}):
            continue
        pys = entry.get("py_versions") or []
        # our Python if the image has it, else the nearest one (pinned wheels are likeliest to exist)
        py = min(pys, key=lambda p: abs(_minor(p) - _minor(wanted_py)), default=None)
        candidates.append((-abs(_minor(py) - _minor(wanted_py)) if py else -99, Version(version), version, py))
    if not candidates:
        where = f"regions with one: {', '.join(sorted(regions))}" if regions else "no region has one"
        raise AwsError(f"no AWS PyTorch {scope} image (torch {specifier or 'any'}) in region {region!r}; "
                       f"{where}. Set aws.region in project.yaml or pass --image-uri")
    _, _, version, py = max(candidates)
    try:
        uri = image_uris.retrieve(IMAGE_FRAMEWORK, region=region, version=version, py_version=py,
                                  instance_type=instance_type, image_scope=scope)
    except ValueError as exc:
        raise AwsError(f"no AWS PyTorch {scope} image for {instance_type} in {region}: {exc}") from None
    return image_from_uri(uri, torch_version=version)


def image_from_uri(uri: str, torch_version: str | None = None) -> TrainingImage:
    """What the tag of an image URI says (``...:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker``)."""
    match = _TAG.search(uri)
    if match is None:
        return TrainingImage(uri, torch_version, None, None)
    return TrainingImage(uri, torch_version or match["version"], match["py"], match["processor"])


def check_torch(image: TrainingImage, specifier: str | None = None) -> None:
    """Refuse an image whose torch is outside ``specifier`` (default :func:`torch_requirement`).

    An image whose tag gives no torch version (a custom image) is accepted with a warning.

    Raises
    ------
    AwsError
        The image's torch is outside the range.
    """
    specifier = torch_requirement() if specifier is None else specifier
    if image.torch_version is None:
        warnings.warn(f"cannot tell the torch version of the image {image.uri}; make sure it is torch "
                      f"{specifier or '(any)'}", UnknownTorchWarning, stacklevel=2)
        return
    if specifier and not _allowed(image.torch_version, specifier):
        raise AwsError(f"the image {image.uri} has torch {image.torch_version}, outside the supported range "
                       f"torch{specifier}; pass another --image-uri (or none, to take one from the catalog)")
