"""Watching, stopping and listing SageMaker training jobs (and processing jobs), and waiting for one to end.

Route through the file: :func:`describe` (DescribeTrainingJob, a missing job
named in one line) -> :func:`summary` (what ``multitype sagemaker status``
shows: status, secondary-status transitions, instances, spot, billable vs
training seconds and the spot saving, FailureReason, final metrics, model
artifact) -> :func:`stop` (StopTrainingJob, sent once) -> :func:`list_jobs`
(ListTrainingJobs, paginated, this project's jobs by default) -> :func:`wait`
and :func:`exit_code` (``launch --wait`` and ``multitype sagemaker wait``).
The CloudWatch log reading lives in :mod:`multitype.cloud.sagemaker.logs`.

Exit codes of a job that ended (:data:`EXIT_CODES`): ``Completed`` 0,
``Failed`` 1, ``Stopped`` 143. A stopped job did not finish its work, so it is
not a success; 143 (128 + SIGTERM) is what a process stopped by SIGTERM
reports, and SageMaker stops a job by sending SIGTERM to its container.

The same describe/stop/wait serve the processing jobs of ``multitype sagemaker
prepare``: pass ``kind=PROCESSING`` (:class:`JobKind` names the API calls,
fields, log group and command of each kind of job).
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from multitype.cloud.aws import aws_errors, client, error_code
from multitype.config import AwsConfig
from multitype.errors import AwsError

TERMINAL = ("Completed", "Failed", "Stopped")
STATUSES = ("InProgress", "Completed", "Failed", "Stopping", "Stopped")
EXIT_CODES = {"Completed": 0, "Failed": 1, "Stopped": 143}
JOB_PREFIX = "multitype-"
# slack on top of MaxRuntime + MaxWait before `wait` gives up: provisioning, image download, uploading the model
WAIT_SLACK_SECONDS = 3600.0
LIST_DESCRIBE_THREADS = 8


@dataclass(frozen=True)
class JobKind:
    """What differs between a training job and a processing job for describe, stop, wait and logs."""

    word: str          # "training": in messages
    api: str           # "TrainingJob": DescribeTrainingJob, TrainingJobName, TrainingJobStatus
    log_group: str
    command: str       # the CLI group that watches it: 'multitype <command> status NAME'

    @property
    def snake(self) -> str:
        return "training_job" if self.api == "TrainingJob" else "processing_job"

    @property
    def name_key(self) -> str:
        return f"{self.api}Name"

    @property
    def status_key(self) -> str:
        return f"{self.api}Status"


TRAINING = JobKind("training", "TrainingJob", "/aws/sagemaker/TrainingJobs", "sagemaker")
PROCESSING = JobKind("processing", "ProcessingJob", "/aws/sagemaker/ProcessingJobs", "sagemaker prepare")


def sagemaker(aws: AwsConfig, max_attempts: int | None = None) -> Any:
    """The shared SageMaker client of :func:`multitype.cloud.aws.client`."""
    return client("sagemaker", aws, max_attempts=max_attempts)


def _not_found(job_name: str, aws: AwsConfig, kind: JobKind = TRAINING) -> AwsError:
    where = ("see 'multitype sagemaker list --all' for the jobs there" if kind is TRAINING else
             f"see 'aws sagemaker list-{kind.snake.replace('_', '-')}s' for the jobs there")
    return AwsError(f"no SageMaker {kind.word} job named {job_name!r} in {aws.region}; {where}")


def describe(aws: AwsConfig, job_name: str, kind: JobKind = TRAINING) -> dict[str, Any]:
    """DescribeTrainingJob (or DescribeProcessingJob) for ``job_name``.

    Raises
    ------
    AwsError
        No such job in the region (one line naming it and pointing to ``list``),
        or any failure the user can fix (credentials, access, endpoint).
    """
    from botocore.exceptions import ClientError

    try:
        with aws_errors(f"describe the {kind.word} job {job_name}", aws):
            return dict(getattr(sagemaker(aws), f"describe_{kind.snake}")(**{kind.name_key: job_name}))
    except (ClientError, AwsError) as exc:
        # AWS answers a missing job with ValidationException "Requested resource not found."
        # (moto: "Could not find training job ..."): say which job, and where to look
        text = str(exc).lower()
        code = error_code(exc) or ("validationexception" if ": validationexception: " in text else "")
        if code.lower() in ("validationexception", "resourcenotfound") and (
                "not found" in text or "could not find" in text):
            raise _not_found(job_name, aws, kind) from None
        raise


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else str(value)


def spot_saving(desc: dict[str, Any]) -> float | None:
    """The managed-spot saving in percent, ``100 * (1 - billable / training)``, as the console shows it.

    ``None`` for an on-demand job or before SageMaker reports both times.
    """
    billable, training = desc.get("BillableTimeInSeconds"), desc.get("TrainingTimeInSeconds")
    if not desc.get("EnableManagedSpotTraining") or not billable or not training:
        return None
    return round(100.0 * (1.0 - billable / training), 1)


def duration_seconds(desc: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    """Training time: ``TrainingTimeInSeconds`` when reported, else start (or creation) to end (or now)."""
    if desc.get("TrainingTimeInSeconds") is not None:
        return float(desc["TrainingTimeInSeconds"])
    start = desc.get("TrainingStartTime") or desc.get("CreationTime")
    if not isinstance(start, dt.datetime):
        return None
    end = desc.get("TrainingEndTime")
    if not isinstance(end, dt.datetime):
        end = now or dt.datetime.now(start.tzinfo)
    return max((end - start).total_seconds(), 0.0)


def summary(desc: dict[str, Any]) -> dict[str, Any]:
    """What ``status`` shows, JSON-ready (times as ISO 8601).

    Parameters
    ----------
    desc : dict
        A DescribeTrainingJob response.

    Returns
    -------
    dict
        ``job_name``, ``status``, ``secondary_status``, ``transitions``
        (status, start, end, message), ``instance_type``, ``instance_count``,
        ``spot``, ``billable_seconds``, ``training_seconds``,
        ``spot_saving_percent``, ``failure_reason``, ``final_metrics``
        (name -> value), ``model_artifacts``, ``created``, ``started``, ``ended``,
        ``max_runtime_seconds``, ``max_wait_seconds``.
    """
    resources = desc.get("ResourceConfig") or {}
    stopping = desc.get("StoppingCondition") or {}
    metrics = {}
    for item in sorted(desc.get("FinalMetricDataList") or [], key=lambda m: str(m.get("Timestamp", ""))):
        metrics[item["MetricName"]] = item.get("Value")  # the latest value of each name wins
    return {
        "job_name": desc.get("TrainingJobName"),
        "status": desc.get("TrainingJobStatus"),
        "secondary_status": desc.get("SecondaryStatus"),
        "transitions": [{"status": t.get("Status"), "start": _iso(t.get("StartTime")), "end": _iso(t.get("EndTime")),
                         "message": t.get("StatusMessage")} for t in desc.get("SecondaryStatusTransitions") or []],
        "instance_type": resources.get("InstanceType"),
        "instance_count": resources.get("InstanceCount"),
        "spot": bool(desc.get("EnableManagedSpotTraining")),
        "billable_seconds": desc.get("BillableTimeInSeconds"),
        "training_seconds": desc.get("TrainingTimeInSeconds"),
        "spot_saving_percent": spot_saving(desc),
        "failure_reason": desc.get("FailureReason"),
        "final_metrics": metrics,
        "model_artifacts": (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "created": _iso(desc.get("CreationTime")),
        "started": _iso(desc.get("TrainingStartTime")),
        "ended": _iso(desc.get("TrainingEndTime")),
        "max_runtime_seconds": stopping.get("MaxRuntimeInSeconds"),
        "max_wait_seconds": stopping.get("MaxWaitTimeInSeconds"),
    }


def processing_summary(desc: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """What ``sagemaker prepare status`` shows of a DescribeProcessingJob answer, JSON-ready.

    ``job_name``, ``status``, ``instance_type``, ``instance_count``, ``volume_gb``,
    ``failure_reason``, ``exit_message`` (the container's ``/opt/ml/output/message``),
    ``inputs`` and ``outputs`` (name -> S3 URI), ``created``, ``started``, ``ended``,
    ``duration_seconds`` (start to end, or to now while it runs) and ``max_runtime_seconds``.
    """
    cluster = (desc.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    start, end = desc.get("ProcessingStartTime"), desc.get("ProcessingEndTime")
    seconds = None
    if isinstance(start, dt.datetime):
        stop_at = end if isinstance(end, dt.datetime) else (now or dt.datetime.now(start.tzinfo))
        seconds = max((stop_at - start).total_seconds(), 0.0)
    return {
        "job_name": desc.get("ProcessingJobName"),
        "status": desc.get("ProcessingJobStatus"),
        "instance_type": cluster.get("InstanceType"),
        "instance_count": cluster.get("InstanceCount"),
        "volume_gb": cluster.get("VolumeSizeInGB"),
        "failure_reason": desc.get("FailureReason"),
        "exit_message": desc.get("ExitMessage"),
        "inputs": {i.get("InputName"): (i.get("S3Input") or {}).get("S3Uri")
                   for i in desc.get("ProcessingInputs") or []},
        "outputs": {o.get("OutputName"): (o.get("S3Output") or {}).get("S3Uri")
                    for o in (desc.get("ProcessingOutputConfig") or {}).get("Outputs") or []},
        "created": _iso(desc.get("CreationTime")),
        "started": _iso(start),
        "ended": _iso(end),
        "duration_seconds": seconds,
        "max_runtime_seconds": (desc.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"),
    }


def stop(aws: AwsConfig, job_name: str, kind: JobKind = TRAINING) -> tuple[bool, str]:
    """Ask SageMaker to stop ``job_name`` (StopTrainingJob or StopProcessingJob, sent once: no blind retries).

    A job already ``Stopping`` or ``Stopped`` is what the user asked for: nothing
    is sent and the answer is ``(False, message)`` (exit 0, like ``docker stop``
    on a stopped container). A job that already ended ``Completed`` or ``Failed``
    cannot be stopped: aws-cli fails there (ValidationException), and so does this.

    Returns
    -------
    tuple of (bool, str)
        Whether a stop request was sent, and a line for the user.

    Raises
    ------
    AwsError
        No such job; the job already ended Completed/Failed; the request failed
        (the message says the job may still be running).
    """
    from botocore.exceptions import ClientError

    status = describe(aws, job_name, kind).get(kind.status_key)
    if status in ("Stopping", "Stopped"):
        return False, f"{kind.word} job {job_name} is already {status}; nothing to do"
    if status in ("Completed", "Failed"):
        raise _already_ended(job_name, status, kind)
    action = f"stop the {kind.word} job {job_name}"
    try:
        with aws_errors(action, aws):
            getattr(sagemaker(aws, max_attempts=1), f"stop_{kind.snake}")(**{kind.name_key: job_name})
    except ClientError as exc:
        code = error_code(exc)
        message = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())
        what = f"HTTP {code}" if code.isdigit() else code or "error"  # botocore's code for a bare 5xx page
        if message and not message.startswith("<"):  # an HTML error page says nothing more
            what += f": {message[:300]}"
        raise AwsError(f"cannot {action}: {what}; the job may still be running: "
                       f"check with 'multitype {kind.command} status {job_name}'") from None
    except AwsError as exc:
        if "ValidationException" in str(exc):  # it ended between our describe and the stop
            ended = describe(aws, job_name, kind).get(kind.status_key)
            if ended in ("Stopping", "Stopped"):
                return False, f"{kind.word} job {job_name} is already {ended}; nothing to do"
            if ended in ("Completed", "Failed"):
                raise _already_ended(job_name, ended, kind) from None
        raise
    if kind is not TRAINING:
        return True, (f"stopping {kind.word} job {job_name} (was {status}): SageMaker sends SIGTERM and the job "
                      f"ends Stopped, its outputs not uploaded; watch it with 'multitype {kind.command} status "
                      f"{job_name}'")
    return True, (f"stopping training job {job_name} (was {status}): SageMaker sends SIGTERM, the job saves a "
                  f"checkpoint and ends Stopped; watch it with 'multitype sagemaker status {job_name}'")


def _already_ended(job_name: str, status: str, kind: JobKind = TRAINING) -> AwsError:
    return AwsError(f"{kind.word} job {job_name} already ended {status}; there is nothing to stop "
                    f"(see 'multitype {kind.command} status {job_name}')")


def list_jobs(aws: AwsConfig, status: str | None = None, all_jobs: bool = False,
              own: Iterable[str] = (), limit: int | None = 50, page_size: int | None = None) -> list[dict[str, Any]]:
    """Training jobs, newest first, each with status, instance, spot and duration.

    Parameters
    ----------
    aws : AwsConfig
        Region and profile.
    status : str, optional
        Only jobs in this status (one of :data:`STATUSES`).
    all_jobs : bool, default=False
        Every job in the account and region; otherwise only this project's: names
        starting with ``multitype-`` and the jobs named in ``own``.
    own : iterable of str
        Names of the jobs this root launched (its ``runs/sagemaker/`` records).
    limit : int or None, default=50
        Describe (for instance type and spot) and return at most this many of the newest.
    page_size : int, optional
        ListTrainingJobs ``MaxResults`` per page (AWS default and maximum: 100).

    Returns
    -------
    list of dict
        ``job_name``, ``status``, ``secondary_status``, ``instance_type``,
        ``instance_count``, ``spot``, ``duration_seconds``, ``created``, ``ended``.

    Raises
    ------
    AwsError
        An unknown status, or a failed request.
    """
    if status is not None and status not in STATUSES:
        raise AwsError(f"--status {status!r} is not a training job status; use one of {', '.join(STATUSES)}")
    own = set(own)
    kwargs: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
    if status:
        kwargs["StatusEquals"] = status
    if not all_jobs and not own:
        kwargs["NameContains"] = JOB_PREFIX
    if page_size:
        kwargs["PaginationConfig"] = {"PageSize": page_size}
    found: dict[str, dict[str, Any]] = {}
    with aws_errors("list the training jobs", aws):
        for page in sagemaker(aws).get_paginator("list_training_jobs").paginate(**kwargs):
            for item in page.get("TrainingJobSummaries", []):
                name = item["TrainingJobName"]
                if all_jobs or name.startswith(JOB_PREFIX) or name in own:
                    found[name] = item
    rows = sorted(found.values(), key=lambda s: (s.get("CreationTime") or dt.datetime.min.replace(
        tzinfo=dt.timezone.utc), s["TrainingJobName"]), reverse=True)
    if limit is not None:
        rows = rows[:limit]

    def detail(item: dict[str, Any]) -> dict[str, Any]:
        try:
            desc = describe(aws, item["TrainingJobName"])
        except AwsError:  # deleted meanwhile, or no permission to describe: show what the listing has
            desc = dict(item)
        resources = desc.get("ResourceConfig") or {}
        return {
            "job_name": item["TrainingJobName"],
            "status": desc.get("TrainingJobStatus", item.get("TrainingJobStatus")),
            "secondary_status": desc.get("SecondaryStatus"),
            "instance_type": resources.get("InstanceType"),
            "instance_count": resources.get("InstanceCount"),
            "spot": bool(desc["EnableManagedSpotTraining"]) if "EnableManagedSpotTraining" in desc else None,
            "duration_seconds": duration_seconds(desc),
            "created": _iso(desc.get("CreationTime", item.get("CreationTime"))),
            "ended": _iso(desc.get("TrainingEndTime", item.get("TrainingEndTime"))),
        }

    with ThreadPoolExecutor(max_workers=LIST_DESCRIBE_THREADS, thread_name_prefix="sagemaker-list") as pool:
        return list(pool.map(detail, rows))


def exit_code(status: str) -> int:
    """The exit code for a job that ended in ``status``: Completed 0, Failed 1, Stopped 143.

    Raises
    ------
    ValueError
        ``status`` is not a terminal status (the job has not ended).
    """
    try:
        return EXIT_CODES[status]
    except KeyError:
        raise ValueError(f"training job status {status!r} is not a final one ({', '.join(TERMINAL)})") from None


def default_wait_seconds(desc: dict[str, Any]) -> float:
    """How long :func:`wait` waits by default: MaxRuntime + MaxWait of the job, plus :data:`WAIT_SLACK_SECONDS`."""
    stopping = desc.get("StoppingCondition") or {}
    return float(stopping.get("MaxRuntimeInSeconds") or 0) + float(stopping.get("MaxWaitTimeInSeconds") or 0) \
        + WAIT_SLACK_SECONDS


def final_line(desc: dict[str, Any], kind: JobKind = TRAINING) -> str:
    """One line on how the job ended (FailureReason included), for people."""
    name, status = desc.get(kind.name_key), desc.get(kind.status_key)
    line = f"{kind.word} job {name} ended {status}"
    if desc.get("SecondaryStatus") and desc["SecondaryStatus"] != status:
        line += f" ({desc['SecondaryStatus']})"
    if status == "Failed":
        line += f": {desc.get('FailureReason') or desc.get('ExitMessage') or 'no FailureReason given'}"
    saving = spot_saving(desc)
    if desc.get("BillableTimeInSeconds") is not None:
        line += f"; billable {desc['BillableTimeInSeconds']} s of {desc.get('TrainingTimeInSeconds')} s"
        if saving is not None:
            line += f" (spot saving {saving:.1f}%)"
    if status in EXIT_CODES:
        line += f"; exit {EXIT_CODES[status]}"
    return line


def wait(aws: AwsConfig, job_name: str, follow_logs: bool = True, poll_seconds: float = 30.0,
         echo: Callable[[str], None] = print, max_seconds: float | None = None,
         kind: JobKind = TRAINING) -> dict[str, Any]:
    """Wait until ``job_name`` ends, echoing its secondary-status changes (and its logs), and return its description.

    Parameters
    ----------
    aws : AwsConfig
        Region and profile.
    job_name : str
        The training job.
    follow_logs : bool, default=True
        Print its CloudWatch log lines as they arrive (all hosts, by time).
    poll_seconds : float, default=30.0
        Seconds between polls (DescribeTrainingJob, GetLogEvents).
    echo : callable
        Where lines go.
    max_seconds : float, optional
        Give up after this long; default :func:`default_wait_seconds` (the
        job's MaxRuntime + MaxWait, plus an hour).
    kind : JobKind, default=TRAINING
        :data:`PROCESSING` for a processing job (no secondary statuses: only its status changes are echoed).

    Returns
    -------
    dict
        The final DescribeTrainingJob response (``TrainingJobStatus`` is one of
        :data:`TERMINAL`); map it with :func:`exit_code`.

    Raises
    ------
    AwsError
        No such job; a failed request; the job still running after ``max_seconds``
        (it keeps running).
    """
    from multitype.cloud.sagemaker.logs import LogReader

    desc = describe(aws, job_name, kind)
    deadline = time.monotonic() + (default_wait_seconds(desc) if max_seconds is None else max_seconds)
    reader = LogReader(aws, job_name, echo=echo, log_group=kind.log_group) if follow_logs else None
    shown, last = 0, None
    while True:
        transitions = desc.get("SecondaryStatusTransitions") or []
        for t in transitions[shown:]:
            message = f": {t['StatusMessage']}" if t.get("StatusMessage") else ""
            echo(f"[{job_name}] {t.get('Status')}{message}")
        shown = max(shown, len(transitions))
        if kind is not TRAINING and desc.get(kind.status_key) != last:
            last = desc.get(kind.status_key)
            echo(f"[{job_name}] {last}")
        ended = desc.get(kind.status_key) in TERMINAL
        if reader is not None:
            reader.poll()  # after the job ended: the last lines (CloudWatch may lag behind the status)
        if ended:
            echo(final_line(desc, kind))
            return desc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AwsError(f"{kind.word} job {job_name} is still {desc.get(kind.status_key)} after waiting "
                           f"{max_seconds if max_seconds is not None else default_wait_seconds(desc):.0f} s; it keeps "
                           f"running: watch it with 'multitype {kind.command} status {job_name}' or stop it with "
                           f"'multitype {kind.command} stop {job_name}'")
        time.sleep(max(min(poll_seconds, remaining), 0.0))
        desc = describe(aws, job_name, kind)
