"""Least-privilege IAM policies for multitype, and ``iam policy --create``.

The route through the file: :func:`scope_for` reads the bucket, prefix, region,
account, project name and the role and profile names from ``project.yaml``
(flags override); :func:`policy` builds one of :data:`KINDS` from the statement
builders below; :func:`unknown_actions` checks every action name against
botocore's service models (plus the IAM-only names in :data:`IAM_ONLY`, each
with the API operations it authorises); :func:`create` makes or updates the
role, its inline policy and the instance profile.

What each policy allows is exactly what the project's code calls
(``tests/cloud/test_iam_coverage.py`` records every AWS operation of the
project's flows and checks them against these policies), plus the actions in
:data:`REASONS`, which AWS itself uses on our behalf or which flows not
testable offline need, each with its reason:

- ``sagemaker-role``: what a SageMaker training job needs: S3 on the project
  prefix (inputs, ``code/``, checkpoints, the model output and the training
  code's writes on the S3 root), CloudWatch Logs for
  ``/aws/sagemaker/TrainingJobs``, training metrics, and ECR pull for the AWS
  Deep Learning Container images (account 763104351884); an endpoint of
  ``sagemaker deploy`` runs with it too: ``model.tar.gz`` under the prefix, the
  inference image, and its logs in ``/aws/sagemaker/Endpoints/multitype-*``;
  so does a processing job of ``sagemaker prepare`` (its logs in
  ``/aws/sagemaker/ProcessingJobs``).
- ``ec2-profile``: what the instance's user data and training need: S3 on the
  prefix, CloudWatch Logs for ``/multitype/ec2``, and cancelling its own
  persistent spot request after a success or a failure (spot requests tagged
  ``multitype:project`` with the project's name; finding it is a List action,
  which IAM scopes to the region only).
- ``launcher``: what the laptop user needs for every multitype command (sync,
  training on an S3 root, SageMaker training and processing jobs, EC2 launches, logs, cost, budgets,
  doctor, endpoints: models, endpoint configs and endpoints named
  ``multitype-*``, created only with the project tag), with ``iam:PassRole`` limited to the two roles, EC2 instances,
  volumes and spot requests created, tagged and terminated only with the
  project's ``multitype:project`` tag (tags only as RunInstances puts them),
  and budgets changed only when named
  ``multitype-*`` (``cost budget create``'s default name); the serving launch
  template and Auto Scaling group of ``autoscale`` created only with that tag
  and changed or deleted only while they carry it (groups also only when
  named ``multitype-*``).
- ``trust``: the assume-role policy of the SageMaker or the EC2 role.

EC2 ``Describe*`` and ``pricing:GetProducts`` are List actions without
resource-level permissions: ``"Resource": "*"``, EC2's conditioned on the
region.

S3 is never ``s3:*`` and never on ``*``: objects are ``<bucket>/<prefix>/*``,
listing is conditioned on ``s3:prefix``, and ``s3:DeleteObject`` is granted
only under the folders where multitype deletes (``sync --delete`` and
``prepare``'s staging on the laptop; checkpoint rotation and the replacement of
a published model folder in a job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from multitype import layout
from multitype.config import AwsConfig, ProjectConfig
from multitype.errors import AwsError, UserError
from multitype.storage import is_remote, split_s3_url

KINDS = ("sagemaker-role", "ec2-profile", "launcher", "trust")
TRUST_FOR = {"sagemaker": "sagemaker.amazonaws.com", "ec2": "ec2.amazonaws.com"}
SAGEMAKER_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"  # `sagemaker prepare`'s jobs
EC2_LOG_GROUP = "/multitype/ec2"
JOB_PREFIX = "multitype-"
PROJECT_TAG = "multitype:project"
# AWS Deep Learning Containers (the SageMaker PyTorch training images of multitype.cloud.catalog)
DLC_ACCOUNT = "763104351884"
DLC_REPOSITORY = "pytorch-training"
DLC_INFERENCE_REPOSITORY = "pytorch-inference"  # the image of `sagemaker deploy`'s endpoints
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints"
ENDPOINT_PREFIX = "multitype-"  # endpoints, endpoint configs and models of `sagemaker deploy`
DEFAULT_SAGEMAKER_ROLE = "multitype-sagemaker"
DEFAULT_EC2_PROFILE = "multitype-ec2"
INLINE_POLICY = "multitype"
LAUNCHER_POLICY = "multitype-launcher"
DOCTOR_FOLDER = ".multitype-doctor"
VERSION = "2012-10-17"

# IAM action -> the API operations it authorises, where the names differ (the Service Authorization
# Reference); every other action must be an operation of botocore's model for its service prefix.
IAM_ONLY: dict[str, tuple[str, ...]] = {
    "s3:ListBucket": ("ListObjectsV2", "ListObjects", "HeadBucket"),
    "s3:GetObject": ("GetObject", "HeadObject"),
    "s3:PutObject": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject"),
    "s3:DeleteObject": ("DeleteObject", "DeleteObjects"),
    "s3:GetLifecycleConfiguration": ("GetBucketLifecycleConfiguration",),
    "s3:PutLifecycleConfiguration": ("PutBucketLifecycleConfiguration",),
    "budgets:ViewBudget": ("DescribeBudgets", "DescribeBudget", "DescribeNotificationsForBudget",
                           "DescribeSubscribersForNotification"),
    "budgets:ModifyBudget": ("CreateBudget", "UpdateBudget", "CreateNotification", "CreateSubscriber"),
    "iam:PassRole": (),  # checked by the service that receives a role ARN (CreateTrainingJob, RunInstances)
}
# service prefix in IAM -> botocore service name
SERVICES = {"s3": "s3", "sagemaker": "sagemaker", "logs": "logs", "ecr": "ecr", "sts": "sts", "iam": "iam",
            "ec2": "ec2", "budgets": "budgets", "pricing": "pricing", "cloudwatch": "cloudwatch",
            "autoscaling": "autoscaling"}
# further botocore services under the same IAM prefix (InvokeEndpoint is sagemaker-runtime's)
MORE_SERVICES = {"sagemaker": ("sagemaker-runtime",)}

# Actions allowed although no offline flow calls them, with why (the coverage test requires a reason here).
REASONS: dict[str, str] = {
    "s3:AbortMultipartUpload": "s3transfer aborts a multipart upload that failed, so no parts are left billed",
    "logs:CreateLogGroup": "SageMaker creates /aws/sagemaker/TrainingJobs with the job's role on the first job "
                           "of an account",
    "logs:CreateLogStream": "SageMaker writes a stream per job with the job role",
    "logs:PutLogEvents": "SageMaker sends the job's output with the job role",
    "logs:DescribeLogStreams": "SageMaker's log agent looks up the job's stream with the job role",
    "cloudwatch:PutMetricData": "SageMaker publishes the job's METRIC values (metric definitions) with the role",
    "ecr:GetAuthorizationToken": "SageMaker pulls the Deep Learning Container image with the role",
    "ecr:BatchGetImage": "SageMaker pulls the Deep Learning Container image with the role",
    "ecr:GetDownloadUrlForLayer": "SageMaker pulls the Deep Learning Container image with the role",
    "ecr:BatchCheckLayerAvailability": "SageMaker pulls the Deep Learning Container image with the role",
    "sagemaker:StopTrainingJob": "sagemaker stop (moto implements no StopTrainingJob, so no offline flow makes it)",
    "sagemaker:AddTags": "CreateTrainingJob with Tags needs AddTags on the job (tag on create)",
    "sagemaker:CreateHyperParameterTuningJob": "sagemaker tune (tests/cloud/test_sagemaker_tune_launch.py sends it "
                                               "to moto; the recorded flows do not tune)",
    "sagemaker:DescribeHyperParameterTuningJob": "sagemaker tune status|stop|collect (tests/cloud/"
                                                 "test_sagemaker_tune_jobs.py)",
    "sagemaker:ListTrainingJobsForHyperParameterTuningJob": "sagemaker tune status|collect (moto lacks it: "
                                                            "answered at our client in test_sagemaker_tune_jobs.py)",
    "sagemaker:StopHyperParameterTuningJob": "sagemaker tune stop (moto lacks it: answered at our client in "
                                             "test_sagemaker_tune_jobs.py)",
    "sagemaker:ListProcessingJobs": "'sagemaker prepare status' of a missing job points to 'aws sagemaker "
                                    "list-processing-jobs'",
    "iam:PassRole": "CreateTrainingJob and RunInstances hand the role to SageMaker and EC2",
    "ec2:CreateTags": "RunInstances with TagSpecifications needs CreateTags on the new resources",
    "iam:CreateServiceLinkedRole": "the first Auto Scaling group of an account creates AWSServiceRoleForAutoScaling "
                                   "(moto has it already, so no offline flow asks)",
}


@dataclass(frozen=True)
class Scope:
    """What the policies are scoped to.

    Attributes
    ----------
    bucket, prefix : str
        The project's S3 bucket and key prefix (``""``: the whole bucket).
    region, account : str
        Region of the project; the AWS account id (``"*"`` when unknown).
    project : str
        ``name`` in project.yaml: the value of the ``multitype:project`` tag.
    sagemaker_role, ec2_role, ec2_profile : str
        Names of the SageMaker execution role, the EC2 role and its instance profile.
    """

    bucket: str
    prefix: str
    region: str
    account: str
    project: str
    sagemaker_role: str = DEFAULT_SAGEMAKER_ROLE
    ec2_role: str = DEFAULT_EC2_PROFILE
    ec2_profile: str = DEFAULT_EC2_PROFILE

    def objects(self, folder: str = "") -> str:
        """The object ARN pattern of ``folder`` (under the prefix), or of the whole prefix."""
        key = "/".join(p for p in (self.prefix, folder) if p)
        return f"arn:aws:s3:::{self.bucket}/{key}/*" if key else f"arn:aws:s3:::{self.bucket}/*"

    def role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    def log_group(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}:*"

    def log_group_arns(self, group: str) -> list[str]:
        """The group as the Service Authorization Reference writes it, and with ``:*`` (its streams, and the
        form CloudWatch Logs has long evaluated group actions against): either works."""
        return [f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}", self.log_group(group)]

    def ec2(self, resource: str) -> str:
        return f"arn:aws:ec2:{self.region}:{self.account}:{resource}"


def _name(value: str | None, kind: str, default: str) -> str:
    """``arn:aws:iam::1:role/path/name`` or ``name`` -> ``name``."""
    if not value:
        return default
    if value.startswith("arn:"):
        resource = value.split(":", 5)[-1]
        if not resource.startswith(f"{kind}/"):
            raise UserError(f"{value!r} is not an IAM {kind} ARN (arn:aws:iam::<account>:{kind}/<name>)")
        return resource.rsplit("/", 1)[-1]
    return value


def scope_for(config: ProjectConfig, bucket: str | None = None, prefix: str | None = None,
              account: str | None = None) -> Scope:
    """The :class:`Scope` of a project: ``storage.remote`` (else an ``s3://`` ``storage.root``), flags first.

    Raises
    ------
    UserError
        No bucket given or configured, or a role/profile value that is not a name or an IAM ARN.
    """
    url = config.storage.remote or (config.storage.root if is_remote(config.storage.root) else None)
    conf_bucket, conf_prefix = split_s3_url(url) if url and url.startswith("s3://") else (None, "")
    bucket = bucket or conf_bucket
    if not bucket:
        raise UserError("no S3 bucket to scope the policy to: set storage.remote (s3://bucket/prefix) in "
                        "project.yaml or pass --bucket")
    if bucket.startswith("s3://") or "/" in bucket:
        raise UserError(f"--bucket takes a bucket name, got {bucket!r}; put the folder in --prefix")
    chosen = (conf_prefix if prefix is None and bucket == conf_bucket else (prefix or "")).strip("/")
    aws = config.aws
    profile = _name(aws.ec2_instance_profile, "instance-profile", DEFAULT_EC2_PROFILE)
    return Scope(bucket=bucket, prefix=chosen, region=aws.region, account=account or "*", project=config.name,
                 sagemaker_role=_name(aws.sagemaker_role, "role", DEFAULT_SAGEMAKER_ROLE),
                 ec2_role=profile, ec2_profile=profile)


def account_id(aws: AwsConfig) -> str | None:
    """The account of the credentials in force (STS GetCallerIdentity), or None without credentials."""
    from multitype.cloud import aws as cloud_aws

    try:
        cloud_aws.check_credentials(aws)
        with cloud_aws.aws_errors("read the AWS account id (sts get-caller-identity)", aws):
            return str(cloud_aws.client("sts", aws).get_caller_identity()["Account"])
    except AwsError:
        return None


# --- statements ---------------------------------------------------------------------------------
def _statement(sid: str, actions: list[str], resources: list[str] | str,
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
                           "Resource": resources if isinstance(resources, str) else sorted(resources)}
    if condition:
        out["Condition"] = condition
    return out


def _s3(scope: Scope, delete_under: list[str], sid: str) -> list[dict[str, Any]]:
    bucket = f"arn:aws:s3:::{scope.bucket}"
    listing = {"StringLike": {"s3:prefix": [scope.prefix, f"{scope.prefix}/*"]}} if scope.prefix else None
    return [
        _statement(f"{sid}List", ["s3:ListBucket"], [bucket], listing),
        _statement(f"{sid}ReadWrite", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                   [scope.objects()]),
        _statement(f"{sid}Delete", ["s3:DeleteObject"], [scope.objects(f) for f in delete_under]),
    ]


# folders where a training run deletes: checkpoint rotation, and the replaced files of a published
# folder (Storage.put_dir) under models/ (checkpoints, final models)
JOB_DELETES = [layout.CHECKPOINTS, "models/final"]
# sync --delete may delete in every group it syncs; prepare cleans its staging under data/; doctor its test object
LAUNCHER_DELETES = sorted({*layout.SYNC_GROUPS.values(), DOCTOR_FOLDER})


def _logs_write(scope: Scope, group: str, sid: str, describe: bool = True) -> dict[str, Any]:
    """Create ``group`` and its streams, put events (``describe``: and look streams up, as SageMaker's agent does)."""
    return _statement(sid, ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
                      + ["logs:DescribeLogStreams"] * describe, scope.log_group_arns(group))


def _in_region(scope: Scope) -> dict[str, Any]:
    return {"StringEquals": {"ec2:Region": scope.region}}


def _ours(scope: Scope) -> dict[str, Any]:
    return {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": scope.project}}


def sagemaker_role_policy(scope: Scope) -> dict[str, Any]:
    """The inline policy of the SageMaker execution role."""
    return {"Version": VERSION, "Statement": [
        *_s3(scope, JOB_DELETES, "ProjectS3"),
        _logs_write(scope, SAGEMAKER_LOG_GROUP, "TrainingJobLogs"),
        _logs_write(scope, PROCESSING_LOG_GROUP, "ProcessingJobLogs"),
        # an endpoint of `sagemaker deploy` runs with this role too: its container logs go to its own group
        _logs_write(scope, f"{ENDPOINT_LOG_GROUP}/{ENDPOINT_PREFIX}*", "EndpointLogs"),
        _statement("TrainingJobMetrics", ["cloudwatch:PutMetricData"], "*",
                   {"StringEquals": {"cloudwatch:namespace": SAGEMAKER_LOG_GROUP}}),
        _statement("PullImageToken", ["ecr:GetAuthorizationToken"], "*"),
        _statement("PullTrainingImage", ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                         "ecr:GetDownloadUrlForLayer"],
                   [f"arn:aws:ecr:{scope.region}:{DLC_ACCOUNT}:repository/{DLC_REPOSITORY}"]),
        _statement("PullInferenceImage", ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                          "ecr:GetDownloadUrlForLayer"],
                   [f"arn:aws:ecr:{scope.region}:{DLC_ACCOUNT}:repository/{DLC_INFERENCE_REPOSITORY}"]),
    ]}


def ec2_profile_policy(scope: Scope) -> dict[str, Any]:
    """The inline policy of the EC2 instance role (in the instance profile)."""
    return {"Version": VERSION, "Statement": [
        *_s3(scope, JOB_DELETES, "ProjectS3"),
        _logs_write(scope, EC2_LOG_GROUP, "InstanceLogs", describe=False),
        # the user data cancels its own persistent spot request after a success or a failure (else a
        # replacement starts): IAM cannot tie a request to the instance asking, so the project's tag it is
        _statement("FindOwnSpotRequest", ["ec2:DescribeSpotInstanceRequests"], "*", _in_region(scope)),
        _statement("CancelOwnSpotRequest", ["ec2:CancelSpotInstanceRequests"],
                   [scope.ec2("spot-instances-request/*")], _ours(scope)),
    ]}


def _autoscale(scope: Scope, tagged: dict[str, Any]) -> list[dict[str, Any]]:
    """``autoscale apply|status|destroy``: the serving launch template and Auto Scaling group, named
    ``multitype-*`` and tagged with the project (created only with the tag, changed only while they carry it)."""
    templates = [scope.ec2("launch-template/*")]
    groups = [f"arn:aws:autoscaling:{scope.region}:{scope.account}:autoScalingGroup:*:autoScalingGroupName/"
              f"{JOB_PREFIX}*"]
    ours = {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": scope.project}}
    return [
        _statement("CreateServeTemplate", ["ec2:CreateLaunchTemplate"], templates, tagged),
        _statement("TagServeTemplate", ["ec2:CreateTags"], templates,
                   {"StringEquals": {"ec2:CreateAction": "CreateLaunchTemplate", **tagged["StringEquals"]}}),
        _statement("ChangeServeTemplate", ["ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplate"], templates,
                   ours),
        # the group launches with the caller's permission to use the template (RunTaggedInstances covers the
        # instances and volumes its TagSpecifications tag)
        _statement("LaunchFromServeTemplate", ["ec2:RunInstances"], templates, ours),
        _statement("DescribeServeTemplates", ["ec2:DescribeLaunchTemplateVersions"], "*", _in_region(scope)),
        _statement("CreateServeGroup", ["autoscaling:CreateAutoScalingGroup"], groups, tagged),
        _statement("ManageServeGroup", ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteAutoScalingGroup",
                                        "autoscaling:DeletePolicy", "autoscaling:DeleteScheduledAction",
                                        "autoscaling:PutScalingPolicy", "autoscaling:PutScheduledUpdateGroupAction",
                                        "autoscaling:UpdateAutoScalingGroup"], groups, ours),
        # Describe*: no resource-level permissions in Auto Scaling; only the region
        _statement("DescribeServeGroups", ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribePolicies",
                                           "autoscaling:DescribeScalingActivities",
                                           "autoscaling:DescribeScheduledActions"], "*",
                   {"StringEquals": {"aws:RequestedRegion": scope.region}}),
        _statement("AutoScalingServiceRole", ["iam:CreateServiceLinkedRole"],
                   [f"arn:aws:iam::{scope.account}:role/aws-service-role/autoscaling.amazonaws.com/"
                    "AWSServiceRoleForAutoScaling*"],
                   {"StringEquals": {"iam:AWSServiceName": "autoscaling.amazonaws.com"}}),
    ]


def launcher_policy(scope: Scope) -> dict[str, Any]:
    """The policy of the user (or CI) that runs multitype commands from a laptop."""
    bucket = f"arn:aws:s3:::{scope.bucket}"
    jobs = f"arn:aws:sagemaker:{scope.region}:{scope.account}:training-job/{JOB_PREFIX}*"
    tuning = f"arn:aws:sagemaker:{scope.region}:{scope.account}:hyper-parameter-tuning-job/{JOB_PREFIX}*"
    processing = f"arn:aws:sagemaker:{scope.region}:{scope.account}:processing-job/{JOB_PREFIX}*"
    hosting = [f"arn:aws:sagemaker:{scope.region}:{scope.account}:{kind}/{ENDPOINT_PREFIX}*"
               for kind in ("model", "endpoint-config", "endpoint")]
    # a versioned model package is model-package/<group>/<k>; its group model-package-group/<group>
    packages = [f"arn:aws:sagemaker:{scope.region}:{scope.account}:{kind}/{ENDPOINT_PREFIX}*"
                for kind in ("model-package-group", "model-package")]
    tagged = {"StringEquals": {f"aws:RequestTag/{PROJECT_TAG}": scope.project}}
    made = [scope.ec2("instance/*"), scope.ec2("volume/*"), scope.ec2("spot-instances-request/*")]
    return {"Version": VERSION, "Statement": [
        *_s3(scope, LAUNCHER_DELETES, "ProjectS3"),
        _statement("ArchiveRules", ["s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"], [bucket]),
        _statement("WhoAmI", ["sts:GetCallerIdentity"], "*"),
        _statement("LaunchTrainingJobs", ["sagemaker:AddTags", "sagemaker:CreateTrainingJob"], [jobs], tagged),
        _statement("ManageTrainingJobs", ["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"], [jobs]),
        _statement("ListTrainingJobs", ["sagemaker:ListTrainingJobs"], "*"),
        # sagemaker tune: tuning jobs named multitype-* (their trials are multitype-*-NNN-id, covered above)
        _statement("LaunchTuningJobs", ["sagemaker:AddTags", "sagemaker:CreateHyperParameterTuningJob"], [tuning],
                   tagged),
        _statement("ManageTuningJobs", ["sagemaker:DescribeHyperParameterTuningJob",
                                        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                                        "sagemaker:StopHyperParameterTuningJob"], [tuning]),
        # sagemaker prepare: processing jobs named multitype-prepare-*
        _statement("LaunchProcessingJobs", ["sagemaker:AddTags", "sagemaker:CreateProcessingJob"], [processing],
                   tagged),
        _statement("ManageProcessingJobs", ["sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"],
                   [processing]),
        _statement("ListProcessingJobs", ["sagemaker:ListProcessingJobs"], "*"),
        # sagemaker deploy/undeploy/invoke/endpoints: models, endpoint configs and endpoints named multitype-*
        _statement("DeployEndpoints", ["sagemaker:AddTags", "sagemaker:CreateEndpoint",
                                       "sagemaker:CreateEndpointConfig", "sagemaker:CreateModel"], hosting, tagged),
        _statement("ManageEndpoints", ["sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig",
                                       "sagemaker:DeleteModel", "sagemaker:DescribeEndpoint",
                                       "sagemaker:DescribeEndpointConfig"], hosting),
        _statement("InvokeEndpoints", ["sagemaker:InvokeEndpoint"], [hosting[2]]),
        # registry add --sagemaker / promote / archive: model package groups multitype-<name> and their versions
        _statement("RegisterModelPackages", ["sagemaker:AddTags", "sagemaker:CreateModelPackage",
                                             "sagemaker:CreateModelPackageGroup"], packages, tagged),
        _statement("ManageModelPackages", ["sagemaker:DescribeModelPackageGroup", "sagemaker:UpdateModelPackage"],
                   packages),
        _statement("ListEndpoints", ["sagemaker:ListEndpoints"], "*"),
        _statement("PassSageMakerRole", ["iam:PassRole"], [scope.role_arn(scope.sagemaker_role)],
                   {"StringEquals": {"iam:PassedToService": TRUST_FOR["sagemaker"]}}),
        _statement("PassInstanceRole", ["iam:PassRole"], [scope.role_arn(scope.ec2_role)],
                   {"StringEquals": {"iam:PassedToService": TRUST_FOR["ec2"]}}),
        _statement("ReadRolesForDoctor", ["iam:GetRole", "iam:GetRolePolicy"],
                   [scope.role_arn(scope.sagemaker_role), scope.role_arn(scope.ec2_role)]),
        _statement("ReadInstanceProfile", ["iam:GetInstanceProfile"],
                   [f"arn:aws:iam::{scope.account}:instance-profile/{scope.ec2_profile}"]),
        _statement("ReadJobLogs", ["logs:DescribeLogStreams", "logs:GetLogEvents"],
                   scope.log_group_arns(SAGEMAKER_LOG_GROUP) + scope.log_group_arns(PROCESSING_LOG_GROUP)),
        _statement("ReadInstanceLogs", ["logs:DescribeLogStreams", "logs:GetLogEvents"],
                   scope.log_group_arns(EC2_LOG_GROUP)),
        # RunInstances touches several resource types; only the ones it creates can carry a tag condition
        _statement("RunTaggedInstances", ["ec2:RunInstances"], made, tagged),
        _statement("RunInstancesWith", ["ec2:RunInstances"],
                   [f"arn:aws:ec2:{scope.region}::image/*", scope.ec2("network-interface/*"), scope.ec2("subnet/*"),
                    scope.ec2("security-group/*"), scope.ec2("key-pair/*")]),
        _statement("TagOnLaunch", ["ec2:CreateTags"], made,
                   {"StringEquals": {"ec2:CreateAction": "RunInstances", **tagged["StringEquals"]}}),
        _statement("StopOurInstances", ["ec2:CancelSpotInstanceRequests", "ec2:TerminateInstances"],
                   [scope.ec2("instance/*"), scope.ec2("spot-instances-request/*")], _ours(scope)),
        # List actions: IAM has no resource-level permissions for them, only the region
        _statement("DescribeEc2", ["ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeInstances",
                                   "ec2:DescribeSpotInstanceRequests", "ec2:DescribeSpotPriceHistory"], "*",
                   _in_region(scope)),
        *_autoscale(scope, tagged),
        _statement("Prices", ["pricing:GetProducts"], "*"),
        _statement("ReadBudgets", ["budgets:ViewBudget"], [f"arn:aws:budgets::{scope.account}:budget/*"]),
        _statement("CreateOurBudget", ["budgets:ModifyBudget"],
                   [f"arn:aws:budgets::{scope.account}:budget/{JOB_PREFIX}*"]),
    ]}


def trust_policy(service: str) -> dict[str, Any]:
    """The assume-role (trust) policy of the role that ``service`` (``sagemaker`` or ``ec2``) takes on."""
    if service not in TRUST_FOR:
        raise UserError(f"--for takes one of {', '.join(TRUST_FOR)}, got {service!r}")
    return {"Version": VERSION, "Statement": [
        {"Effect": "Allow", "Principal": {"Service": TRUST_FOR[service]}, "Action": "sts:AssumeRole"}]}


def policy(kind: str, scope: Scope, trust_for: str = "sagemaker") -> dict[str, Any]:
    """The policy document of ``kind`` (one of :data:`KINDS`) for ``scope``.

    Raises
    ------
    UserError
        An unknown kind.
    """
    if kind == "sagemaker-role":
        return sagemaker_role_policy(scope)
    if kind == "ec2-profile":
        return ec2_profile_policy(scope)
    if kind == "launcher":
        return launcher_policy(scope)
    if kind == "trust":
        return trust_policy(trust_for)
    raise UserError(f"unknown policy {kind!r}; choose one of {', '.join(KINDS)}")


def actions(document: Mapping[str, Any]) -> set[str]:
    """Every action a policy document names."""
    out: set[str] = set()
    for statement in document["Statement"]:
        value = statement["Action"]
        out.update([value] if isinstance(value, str) else value)
    return out


def unknown_actions(document: Mapping[str, Any]) -> list[str]:
    """Actions of ``document`` that are neither a botocore operation of their service nor in :data:`IAM_ONLY`."""
    import botocore.session

    loader = botocore.session.get_session()
    out = []
    for action in sorted(actions(document)):
        prefix, _, name = action.partition(":")
        if action in IAM_ONLY or (prefix == "sts" and name == "AssumeRole"):
            continue
        service = SERVICES.get(prefix)
        services = [service, *MORE_SERVICES.get(prefix, ())] if service else []
        if not any(name in loader.get_service_model(s).operation_names for s in services):
            out.append(action)
    return out


def iam_action(service_prefix: str, operation: str) -> str:
    """The IAM action that authorises ``operation`` (a botocore operation name) of ``service_prefix``."""
    for action, operations in IAM_ONLY.items():
        if action.startswith(f"{service_prefix}:") and operation in operations:
            return action
    return f"{service_prefix}:{operation}"


def canonical(document: Mapping[str, Any]) -> str:
    """A policy as sorted JSON, with one-item lists as strings, for comparing two documents."""
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items() if k != "Sid"}
        if isinstance(value, list):
            items = sorted((norm(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
            return items[0] if len(items) == 1 else items
        return value

    statements = sorted((norm(s) for s in document.get("Statement", [])), key=lambda s: json.dumps(s, sort_keys=True))
    return json.dumps({"Version": document.get("Version"), "Statement": statements}, sort_keys=True)


# --- --create -----------------------------------------------------------------------------------
@dataclass
class Created:
    """What :func:`create` made or updated (ARNs, and ``created`` or ``updated`` for each)."""

    role_arn: str | None = None
    profile_arn: str | None = None
    policy_arn: str | None = None
    changes: list[str] | None = None


def _role(iam: Any, name: str, trust: dict[str, Any], document: dict[str, Any], project: str,
          changes: list[str]) -> str:
    trust_json = json.dumps(trust)
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust_json)
        changes.append(f"updated role {name}")
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_json,
                              Description=f"multitype ({project}): least-privilege role",
                              Tags=[{"Key": PROJECT_TAG, "Value": project}])["Role"]["Arn"]
        changes.append(f"created role {name}")
    iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY, PolicyDocument=json.dumps(document))
    changes.append(f"wrote inline policy {INLINE_POLICY} of role {name}")
    return str(arn)


def _profile(iam: Any, name: str, role: str, changes: list[str]) -> str:
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        changes.append(f"created instance profile {name}")
    roles = [r["RoleName"] for r in profile.get("Roles", [])]
    for other in roles:
        if other != role:  # a profile holds one role
            iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=other)
            changes.append(f"removed role {other} from instance profile {name}")
    if role not in roles:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        changes.append(f"added role {role} to instance profile {name}")
    return str(profile["Arn"])


def _managed(iam: Any, account: str, name: str, document: dict[str, Any], changes: list[str]) -> str:
    arn = f"arn:aws:iam::{account}:policy/{name}"
    text = json.dumps(document)
    try:
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_policy(PolicyName=name, PolicyDocument=text,
                                Description="multitype launcher: least privilege")["Policy"]["Arn"]
        changes.append(f"created managed policy {name}")
        return str(arn)
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= 5 and old:  # IAM keeps at most five versions
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=text, SetAsDefault=True)
    changes.append(f"updated managed policy {name} (new default version)")
    return arn


def create(kind: str, scope: Scope, aws: AwsConfig) -> Created:
    """Create or update in IAM what ``kind`` describes; idempotent.

    ``sagemaker-role``: the role (trust for SageMaker) with the inline policy
    :data:`INLINE_POLICY`; ``ec2-profile``: the role (trust for EC2), its
    inline policy and the instance profile holding it; ``launcher``: the
    managed policy :data:`LAUNCHER_POLICY` (attach it to your user or group).
    Existing ones are updated in place, never duplicated.

    Raises
    ------
    AwsError
        ``trust`` (it is created with its role), no credentials, or IAM refused.
    """
    from multitype.cloud import aws as cloud_aws

    if kind == "trust":
        raise UserError("a trust policy is created with its role: run 'multitype iam policy sagemaker-role "
                        "--create' or 'multitype iam policy ec2-profile --create'")
    if scope.account == "*":
        raise AwsError("cannot create IAM resources without the account id: no AWS credentials were found "
                       "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    iam = cloud_aws.client("iam", aws)
    document = policy(kind, scope)
    out = Created(changes=[])
    assert out.changes is not None
    with cloud_aws.aws_errors(f"create the IAM resources of '{kind}'", aws):
        if kind == "sagemaker-role":
            out.role_arn = _role(iam, scope.sagemaker_role, trust_policy("sagemaker"), document, scope.project,
                                 out.changes)
        elif kind == "ec2-profile":
            out.role_arn = _role(iam, scope.ec2_role, trust_policy("ec2"), document, scope.project, out.changes)
            out.profile_arn = _profile(iam, scope.ec2_profile, scope.ec2_role, out.changes)
        else:
            out.policy_arn = _managed(iam, scope.account, LAUNCHER_POLICY, document, out.changes)
    return out


def role_status(scope: Scope, aws: AwsConfig, which: str) -> tuple[bool, str]:
    """Does the role of ``which`` (``sagemaker`` or ``ec2``) exist with the trust and inline policy we write?

    Returns ``(ok, reason)``; for ``ec2`` the instance profile must hold the role too.
    """
    from multitype.cloud import aws as cloud_aws

    iam = cloud_aws.client("iam", aws)
    name = scope.sagemaker_role if which == "sagemaker" else scope.ec2_role
    kind = "sagemaker-role" if which == "sagemaker" else "ec2-profile"
    with cloud_aws.aws_errors(f"read the IAM role {name}", aws):
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return False, f"role {name} does not exist"
        trust = role.get("AssumeRolePolicyDocument")
        trust = json.loads(trust) if isinstance(trust, str) else trust
        if canonical(trust or {}) != canonical(trust_policy(which)):
            return False, f"role {name} does not trust {TRUST_FOR[which]} as 'iam policy trust' writes it"
        try:
            inline = iam.get_role_policy(RoleName=name, PolicyName=INLINE_POLICY)["PolicyDocument"]
        except iam.exceptions.NoSuchEntityException:
            return False, f"role {name} has no inline policy {INLINE_POLICY}"
        inline = json.loads(inline) if isinstance(inline, str) else inline
        if canonical(inline) != canonical(policy(kind, scope)):
            return False, f"the policy {INLINE_POLICY} of role {name} differs from 'iam policy {kind}'"
        if which == "ec2":
            try:
                profile = iam.get_instance_profile(InstanceProfileName=scope.ec2_profile)["InstanceProfile"]
            except iam.exceptions.NoSuchEntityException:
                return False, f"instance profile {scope.ec2_profile} does not exist"
            if name not in [r["RoleName"] for r in profile.get("Roles", [])]:
                return False, f"instance profile {scope.ec2_profile} does not hold role {name}"
    return True, f"role {name}" + (f" and instance profile {scope.ec2_profile}" if which == "ec2" else "") + \
        " match 'iam policy'"

