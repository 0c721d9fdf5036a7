"""``multitype iam policy ...``: least-privilege policies scoped to the project's bucket and prefix."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, console
from multitype.errors import UserError

app = typer.Typer(help="Least-privilege IAM policies for the SageMaker role, the EC2 profile and the launcher.",
                  no_args_is_help=True)


@app.command("policy")
def policy_cmd(
    kind: Annotated[str, typer.Argument(help="sagemaker-role | ec2-profile | launcher | trust")],
    bucket: Annotated[Optional[str], typer.Option("--bucket", help="Bucket [default: from storage.remote]")] = None,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Key prefix [default: from storage.remote]")] = None,
    trust_for: Annotated[str, typer.Option("--for", help="trust only: sagemaker | ec2")] = "sagemaker",
    create: Annotated[bool, typer.Option("--create", help="Create or update the role, its policy and the "
                                         "instance profile (launcher: a managed policy) in IAM.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the policy JSON (with --create: a JSON "
                                          "object with the policy and what was created).")] = False,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Print the policy document of KIND; with --create, make it exist in IAM (idempotent)."""
    from multitype.cli.sync import _project_config
    from multitype.cloud import iam

    if kind not in iam.KINDS:
        raise UserError(f"unknown policy {kind!r}; choose one of {', '.join(iam.KINDS)}")
    project = _project_config(config_dir)
    if kind == "trust":
        document = iam.trust_policy(trust_for)
        if create:
            iam.create(kind, iam.scope_for(project, bucket, prefix), project.aws)
    else:
        scope = iam.scope_for(project, bucket, prefix)  # bad input fails before any AWS call
        account = iam.account_id(project.aws)
        if account is None and not create:
            console.print("note: no AWS credentials, so the account id in ARNs is '*'")
        scope = iam.scope_for(project, bucket, prefix, account)
        document = iam.policy(kind, scope)
        if create:
            made = iam.create(kind, scope, project.aws)
            if as_json:
                typer.echo(json.dumps({"policy": document, "role_arn": made.role_arn,
                                       "instance_profile_arn": made.profile_arn, "policy_arn": made.policy_arn,
                                       "changes": made.changes}, indent=2))
                return
            for change in made.changes or []:
                console.print(change)
    typer.echo(json.dumps(document, indent=2))
