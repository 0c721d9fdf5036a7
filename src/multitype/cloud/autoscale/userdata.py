"""The user data of a serving instance, rendered from ``cloud/templates/serve_user_data.sh``.

The same mechanics as the EC2 training user data (:mod:`multitype.cloud.ec2.userdata`):
``@@name`` placeholders, every value :func:`shlex.quote`-d, the code fetched
from ``<root>/code/`` by the same script and the same pinned requirements
installed. The values also go into a systemd unit, whose lines are not shell:
so the model URL, root, region and endpoint are checked to hold no space,
quote, ``%``, ``$`` or backslash before anything is rendered.
"""

from __future__ import annotations

import re
import shlex

from multitype.cloud.ec2.userdata import MAX_BYTES, Template, install_code_block, pinned_requirements, template_text
from multitype.errors import UserError

TEMPLATE = "serve_user_data.sh"
SERVICE = "multitype-serve"
# what may stand unquoted in a systemd unit line and a shell word alike
_PLAIN = re.compile(r"^[A-Za-z0-9._~:/@+=,-]+$")


def serve_command(model: str, port: int) -> str:
    """The command the service runs (after the interpreter): ``multitype serve --model ... --host 0.0.0.0 ...``."""
    return f"multitype serve --model {model} --host 0.0.0.0 --port {port}"


def render_serve_user_data(*, root: str, region: str, model: str, port: int = 8080,
                           endpoint_url: str | None = None) -> str:
    """The bash user data that installs multitype from ``root`` and serves ``model`` on ``port``.

    Parameters
    ----------
    root : str
        The project's S3 root (``s3://bucket/prefix``); the code comes from its ``code/``.
    region : str
        The AWS region (for the clients on the instance).
    model : str
        The model folder, an ``s3://`` URL.
    port : int, default=8080
        The port ``multitype serve`` listens on (all interfaces).
    endpoint_url : str, optional
        An S3-compatible endpoint (``AWS_ENDPOINT_URL`` on the instance); None: AWS.

    Returns
    -------
    str
        The script: valid bash, no credentials.

    Raises
    ------
    UserError
        A value that is not plain (see the module docstring), a root or model
        that is not ``s3://``, a port out of range, or a script over 16 KiB.
    """
    for name, value in (("root", root), ("model", model)):
        if not value.startswith("s3://") or not value[len("s3://"):].split("/")[0]:
            raise UserError(f"the serving instances read the {name} from S3: it must be s3://bucket/..., got "
                            f"{value!r}")
    checks = {"root": root, "model": model, "region": region, "endpoint URL": endpoint_url or "x"}
    for name, value in checks.items():
        if not _PLAIN.match(value):
            raise UserError(f"the {name} {value!r} holds a character the service unit cannot carry (space, quote, "
                            "'%', '$', backslash, ...); rename it")
    if endpoint_url is not None and not re.match(r"^https?://", endpoint_url):
        raise UserError(f"endpoint URL {endpoint_url!r} must be http(s)://host[:port]")
    if not 1 <= int(port) <= 65535:
        raise UserError(f"--port {port} is not a port number (1-65535)")
    requirements, torch_requirement, boto3 = pinned_requirements()
    values = {"root": root.rstrip("/"), "region": region, "model": model.rstrip("/"), "port": str(int(port)),
              "endpoint_url": endpoint_url or "", "boto3_requirement": boto3, "torch_requirement": torch_requirement}
    quoted = {name: shlex.quote(value) for name, value in values.items()}
    quoted["install_code"] = install_code_block(requirements)
    text = Template(template_text(TEMPLATE)).substitute(quoted)
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise UserError(f"the serving user data is {size} bytes, over EC2's {MAX_BYTES}")
    return text
