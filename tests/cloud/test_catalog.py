"""The catalog reads AWS's own libraries: botocore's instance types, sagemaker-core's images and GPU counts."""

from __future__ import annotations

import importlib.metadata
import warnings

import pytest

from multitype.cloud import catalog
from multitype.errors import AwsError


def test_instance_types_are_botocores_enum() -> None:
    import botocore.session

    enum = botocore.session.get_session().get_service_model("sagemaker").shape_for("TrainingInstanceType").enum
    assert catalog.training_instance_types() == tuple(enum)
    assert catalog.check_instance_type("ml.g5.xlarge") == "ml.g5.xlarge"


def test_unknown_instance_type_suggests_the_nearest() -> None:
    with pytest.raises(AwsError, match=r"^instance type 'ml\.g5\.xlarg' is not a SageMaker training instance "
                                       r"type; did you mean ml\.g5\.xlarge"):
        catalog.check_instance_type("ml.g5.xlarg")
    with pytest.raises(AwsError, match="'g5.xlarge' is not a SageMaker training instance type; did you mean "
                                       "ml.g5.xlarge"):
        catalog.check_instance_type("g5.xlarge")  # the EC2 name


def test_gpu_counts_come_from_sagemaker_core_with_a_family_fallback() -> None:
    from sagemaker.core import instance_types_gpu_info

    table = instance_types_gpu_info.retrieve("us-east-1")
    assert catalog.gpu_count("ml.p3.8xlarge") == table["ml.p3.8xlarge"]["Count"] == 4
    assert catalog.gpu_count("ml.g5.12xlarge") == table["ml.g5.12xlarge"]["Count"]
    assert "ml.g5.xlarge" not in table  # hence the fallback rule
    assert catalog.gpu_count("ml.g5.xlarge") == 1
    assert catalog.gpu_count("ml.m5.xlarge") == 0
    assert catalog.multi_gpu_types(4)[0] in table and all(table[t]["Count"] >= 4 for t in catalog.multi_gpu_types(4))


def test_torch_requirement_is_the_distributions() -> None:
    from packaging.requirements import Requirement

    declared = [Requirement(r) for r in importlib.metadata.requires("multitype") if r.startswith("torch")]
    assert catalog.torch_requirement() == str(declared[0].specifier)


@pytest.mark.parametrize("instance_type,processor", [("ml.g5.xlarge", "gpu"), ("ml.m5.xlarge", "cpu")])
def test_image_is_sagemaker_cores_for_the_processor(instance_type: str, processor: str) -> None:
    from sagemaker.core import image_uris

    image = catalog.pytorch_training_image("eu-west-1", instance_type, ">=2.2,<3", py_version="py311")
    # py311 is the newest Python the allowed images share with us: torch 2.5.1 (2.6+ is py312)
    assert image.uri == image_uris.retrieve("pytorch", region="eu-west-1", version="2.5.1", py_version="py311",
                                            instance_type=instance_type, image_scope="training")
    assert f":2.5.1-{processor}-py311" in image.uri and image.processor == processor
    assert image.torch_version == "2.5.1" and image.py_version == "py311"


def test_image_takes_the_newest_allowed_torch_and_the_nearest_python() -> None:
    image = catalog.pytorch_training_image("us-east-1", "ml.g5.xlarge", ">=2.6,<3", py_version="py311")
    assert (image.torch_version, image.py_version) == ("2.9.0", "py312")  # 2.10 is py313: further from us
    assert image.uri.endswith("pytorch-training:2.9.0-gpu-py312")


def test_region_without_an_image_names_the_regions_with_one() -> None:
    with pytest.raises(AwsError, match=r"^no AWS PyTorch training image \(torch >=2.2,<3\) in region "
                                       r"'xx-nowhere-1'; regions with one: .*us-east-1.*pass --image-uri$"):
        catalog.pytorch_training_image("xx-nowhere-1", "ml.g5.xlarge", ">=2.2,<3")


def test_image_uri_override_is_checked_by_its_tag() -> None:
    uri = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:1.13.1-gpu-py39-cu117-ubuntu20.04-sagemaker"
    image = catalog.image_from_uri(uri)
    assert (image.torch_version, image.processor, image.py_version) == ("1.13.1", "gpu", "py39")
    with pytest.raises(AwsError, match=r"has torch 1\.13\.1, outside the supported range torch>=2\.2"):
        catalog.check_torch(image, ">=2.2,<3")
    catalog.check_torch(catalog.image_from_uri(uri.replace("1.13.1", "2.4.0")), ">=2.2,<3")
    custom = catalog.image_from_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:latest")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalog.check_torch(custom, ">=2.2,<3")
    assert "cannot tell the torch version of the image" in str(caught[0].message)
    assert caught[0].category is catalog.UnknownTorchWarning
