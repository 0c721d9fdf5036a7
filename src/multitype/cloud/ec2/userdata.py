"""The user data of an EC2 training instance, rendered from ``cloud/templates/ec2_user_data.sh``.

The template (read it: it says step by step what the instance does) is a bash
script with ``@@name`` placeholders, filled by a :class:`string.Template` whose
delimiter is ``@@`` (bash itself uses ``$``). Every value is quoted with
:func:`shlex.quote`, so quotes, spaces or ``$(...)`` in a value stay data; the
pinned requirements go into a quoted here-document and are checked to be
plain ``name==version`` lines first.

What the instance installs is the list a SageMaker job's sourcedir installs
(:func:`multitype.cloud.sagemaker.sourcedir.runtime_requirements`: the runtime
dependencies of multitype pinned to the versions in use, without torch and its
CUDA stack, which the Deep Learning AMI's PyTorch environment has). The full
``code/requirements.txt`` that ``sync push`` uploads pins the whole pushing
environment (test and notebook tools included) and is kept as a record, not
installed.
"""

from __future__ import annotations

import re
import shlex
import string
from importlib import resources

from multitype.errors import UserError

TEMPLATE = "ec2_user_data.sh"
DEFAULT_LOG_GROUP = "/multitype/ec2"
MAX_BYTES = 16 * 1024  # EC2's limit on user data before base64
_OWN_OPTIONS = ("--root", "--config-dir", "--resume")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9._+!-]*$")
_LOG_GROUP = re.compile(r"^[A-Za-z0-9._/#-]{1,512}$")
_LOG_STREAM = re.compile(r"^[^:*]{1,512}$")


FETCH_CODE = "fetch_code.py"  # the code/ download, shared with the serving user data
INSTALL_CODE = "install_code.sh"  # Python, code/ and its requirements: the part both user-data templates share


class Template(string.Template):
    """A user-data template: ``@@name`` placeholders (bash keeps ``$``)."""

    delimiter = "@@"


def template_text(name: str = TEMPLATE) -> str:
    """The text of ``cloud/templates/<name>``."""
    return (resources.files("multitype.cloud") / "templates" / name).read_text(encoding="utf-8")


def fetch_code_script() -> str:
    """The Python (boto3 only) that copies ``<root>/code/`` onto the instance, for a quoted here-document."""
    lines = template_text(FETCH_CODE).rstrip("\n").split("\n")
    while lines and lines[0].startswith("#"):  # the file's header, not the script's
        lines.pop(0)
    return "\n".join(lines)


def install_code_block(requirements: str) -> str:
    """The templates' shared part (``templates/install_code.sh``, put in at ``@@install_code``): the Python with
    torch and the code of ``<root>/code/`` with ``requirements`` (pinned, one per line)."""
    lines = template_text(INSTALL_CODE).split("\n")
    while lines and not lines[0].startswith("# -- "):  # the file's header, not the script's
        lines.pop(0)
    return Template("\n".join(lines).rstrip("\n")).substitute(fetch_code=fetch_code_script(),
                                                              requirements=requirements)


def _train_command(train_args: list[str]) -> list[str]:
    """The arguments of ``multitype train`` (a leading ``train`` is allowed); only ``transformer`` is watched."""
    args = list(train_args)
    if args[:1] == ["train"]:
        args = args[1:]
    if args[:1] != ["transformer"]:
        raise UserError(f"EC2 training runs 'multitype train transformer ...', got train arguments {train_args!r}")
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in _OWN_OPTIONS:
            raise UserError(f"train argument {arg!r} is set by the user data itself (--root <root> --config-dir "
                            f"<pulled configs> --resume auto); leave it out")
    return args


def pinned_requirements() -> tuple[str, str, str]:
    """(pinned runtime requirements, the torch requirement for a plain venv, a boto3 pin to fetch the code)."""
    import importlib.metadata

    from multitype.cloud.sagemaker.sourcedir import runtime_requirements, torch_specifier

    pins = runtime_requirements()
    bad = [pin for pin in pins if not _PIN.match(pin)]
    if bad:  # cannot happen with importlib.metadata names; a here-document must only ever hold plain pins
        raise UserError(f"requirements that are not plain name==version pins: {bad}")
    try:
        boto3 = f"boto3=={importlib.metadata.version('boto3').split('+')[0]}"
    except importlib.metadata.PackageNotFoundError:
        boto3 = "boto3"
    return "\n".join(pins), f"torch{torch_specifier()}", boto3


def render_user_data(*, root: str, region: str, run_id: str, train_args: list[str],
                     log_group: str = DEFAULT_LOG_GROUP, endpoint_url: str | None = None) -> str:
    """The bash user data that bootstraps, trains on ``root`` and shuts the instance down.

    Parameters
    ----------
    root : str
        The project's S3 root (``s3://bucket/prefix``): ``code/`` and ``configs/``
        come from it, training reads ``data/processed`` and writes checkpoints,
        models and results there, and the log goes to ``runs/<run_id>/``.
    region : str
        The AWS region (for the CLI clients on the instance).
    run_id : str
        The run; also the CloudWatch Logs stream name.
    train_args : list of str
        Arguments of ``multitype train``: ``["transformer", "--model-name", "M", ...]``
        (a leading ``"train"`` is allowed). ``--root``, ``--config-dir`` and
        ``--resume`` are the script's own.
    log_group : str, default="/multitype/ec2"
        CloudWatch Logs group.
    endpoint_url : str, optional
        An S3-compatible endpoint (``AWS_ENDPOINT_URL`` on the instance); None: AWS.

    Returns
    -------
    str
        The script (valid bash, no credentials: the instance profile provides them).

    Raises
    ------
    UserError
        A root that is not ``s3://``, a bad run id, log group or endpoint, train
        arguments the script sets itself, or a script over EC2's 16 KiB.
    """
    if not root.startswith("s3://") or not root[len("s3://"):].split("/")[0]:
        raise UserError(f"EC2 training needs an s3:// root (storage.root in project.yaml or --root), got {root!r}")
    if not region or not region.strip():
        raise UserError("the region is empty; set aws.region in project.yaml")
    if not _LOG_STREAM.match(run_id):
        raise UserError(f"run id {run_id!r} cannot name a CloudWatch Logs stream (1-512 characters, no ':' or '*')")
    if not _LOG_GROUP.match(log_group):
        raise UserError(f"log group {log_group!r} is not a CloudWatch Logs group name (letters, digits, '._/#-')")
    if endpoint_url is not None and not re.match(r"^https?://[^\s]+$", endpoint_url):
        raise UserError(f"endpoint URL {endpoint_url!r} must be http(s)://host[:port]")
    args = _train_command(train_args)
    requirements, torch_requirement, boto3 = pinned_requirements()
    values = {"root": root.rstrip("/"), "region": region.strip(), "run_id": run_id, "log_group": log_group,
              "endpoint_url": endpoint_url or "", "boto3_requirement": boto3, "torch_requirement": torch_requirement}
    quoted = {name: shlex.quote(value) for name, value in values.items()}
    quoted["train_args"] = " ".join(shlex.quote(arg) for arg in args)
    quoted["install_code"] = install_code_block(requirements)
    text = Template(template_text()).substitute(quoted)
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise UserError(f"the user data is {size} bytes, over EC2's {MAX_BYTES}; shorten the train arguments")
    return text
