"""A SageMaker job's CloudWatch logs: every host's stream, in time order, read once or followed to the end.

SageMaker writes each host's stdout/stderr to the log group
``/aws/sagemaker/TrainingJobs`` (``/aws/sagemaker/ProcessingJobs`` for a processing job), in a stream named ``<job>/<host>-<epoch>``
(``multitype-minilm-.../algo-1-1733050000``). :class:`LogReader` finds the
streams (DescribeLogStreams with the ``<job>/`` prefix, paginated), reads each
one forward with GetLogEvents from where it stopped (``nextForwardToken``; a
stream is drained when the token comes back unchanged) and prints the new
events of all streams merged by timestamp, each line prefixed with its host
when the job has more than one. :func:`show_logs` reads once, or follows
until the job has ended and its last lines are printed.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from multitype.cloud.aws import aws_errors, client
from multitype.config import AwsConfig
from multitype.errors import AwsError

if TYPE_CHECKING:
    from multitype.cloud.sagemaker.jobs import JobKind

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STREAM_PAGE = 50  # DescribeLogStreams' maximum page size
_EPOCH_SUFFIX = re.compile(r"-\d{9,}$")


def host_of(stream: str) -> str:
    """``<job>/algo-1-1733050000`` -> ``algo-1``."""
    return _EPOCH_SUFFIX.sub("", stream.split("/", 1)[-1])


class LogReader:
    """Reads the log streams of one training job forward, a poll at a time.

    Parameters
    ----------
    aws : AwsConfig
        Region and profile.
    job_name : str
        The training job.
    echo : callable
        Where each line goes.
    page_size : int, optional
        GetLogEvents ``limit`` (AWS default: up to 10,000 events or 1 MB a page).
    stream_page_size : int, default=50
        DescribeLogStreams page size.
    timestamps : bool, default=False
        Prefix each line with its UTC time.
    log_group : str, default="/aws/sagemaker/TrainingJobs"
        The log group.
    stream_prefix : str, optional
        The streams read (default: ``<job_name>/``, SageMaker's per-host streams).
    """

    def __init__(self, aws: AwsConfig, job_name: str, echo: Callable[[str], None] = print,
                 page_size: int | None = None, stream_page_size: int = STREAM_PAGE, timestamps: bool = False,
                 log_group: str = LOG_GROUP, stream_prefix: str | None = None) -> None:
        self.aws = aws
        self.log_group = log_group  # another group and prefix: e.g. an EC2 run's /multitype/ec2 stream
        self.stream_prefix = f"{job_name}/" if stream_prefix is None else stream_prefix
        self.job_name = job_name
        self.echo = echo
        self.page_size = page_size
        self.stream_page_size = stream_page_size
        self.timestamps = timestamps
        self.tokens: dict[str, str | None] = {}  # stream -> nextForwardToken (None: not read yet)
        self.lines = 0

    @property
    def _logs(self) -> Any:
        return client("logs", self.aws)

    def streams(self) -> list[str]:
        """The job's stream names (one per host), sorted; empty before the job logged anything."""
        names: list[str] = []
        kwargs = {"logGroupName": self.log_group, "logStreamNamePrefix": self.stream_prefix,
                  "PaginationConfig": {"PageSize": self.stream_page_size}}
        try:
            with aws_errors(f"list the log streams of {self.job_name} in {self.log_group}", self.aws):
                for page in self._logs.get_paginator("describe_log_streams").paginate(**kwargs):
                    names.extend(s["logStreamName"] for s in page.get("logStreams", []))
        except AwsError as exc:
            if "ResourceNotFoundException" in str(exc):  # no training job logged in this region yet
                return []
            raise
        return sorted(set(names))

    def _drain(self, stream: str) -> list[dict[str, Any]]:
        """The events of ``stream`` after its token, page by page until the token repeats."""
        events: list[dict[str, Any]] = []
        token = self.tokens.get(stream)
        with aws_errors(f"read the log stream {stream}", self.aws):
            while True:
                kwargs: dict[str, Any] = {"logGroupName": self.log_group, "logStreamName": stream,
                                          "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                if self.page_size:
                    kwargs["limit"] = self.page_size
                page = self._logs.get_log_events(**kwargs)
                events.extend(page.get("events", []))
                new = page.get("nextForwardToken")
                if not new or new == token:
                    break
                token = new
        self.tokens[stream] = token
        return events

    def poll(self) -> int:
        """Print every event that arrived since the last poll (all streams, by timestamp); return how many."""
        streams = self.streams()
        for stream in streams:
            self.tokens.setdefault(stream, None)
        merged = []
        for order, stream in enumerate(sorted(self.tokens)):
            merged.extend((e.get("timestamp", 0), order, i, stream, e) for i, e in enumerate(self._drain(stream)))
        merged.sort(key=lambda item: item[:3])
        several = len(self.tokens) > 1
        for timestamp, _, _, stream, event in merged:
            message = str(event.get("message", "")).rstrip("\n")
            prefix = f"[{host_of(stream)}] " if several else ""
            if self.timestamps:
                when = dt.datetime.fromtimestamp(timestamp / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                prefix = f"{when} {prefix}"
            self.echo(f"{prefix}{message}")
        self.lines += len(merged)
        return len(merged)


def show_logs(aws: AwsConfig, job_name: str, follow: bool = False, poll_seconds: float = 10.0,
              echo: Callable[[str], None] = print, note: Callable[[str], None] | None = None,
              max_seconds: float | None = None, page_size: int | None = None, timestamps: bool = False,
              kind: "JobKind | None" = None) -> int:
    """Print the job's log lines; with ``follow``, keep polling until the job has ended and its logs are drained.

    Parameters
    ----------
    aws : AwsConfig
        Region and profile.
    job_name : str
        The training job (checked to exist first).
    follow : bool, default=False
        Poll every ``poll_seconds`` until the job is Completed, Failed or Stopped,
        then read once more.
    poll_seconds : float, default=10.0
        Seconds between polls.
    echo, note : callable
        Where log lines go, and where remarks for people go (default: ``echo``).
    max_seconds : float, optional
        Stop following after this long (default: the job's MaxRuntime + MaxWait, plus an hour).
    page_size : int, optional
        GetLogEvents page size.
    timestamps : bool, default=False
        Prefix lines with their UTC time.
    kind : jobs.JobKind, optional
        ``jobs.PROCESSING`` for a processing job (log group ``/aws/sagemaker/ProcessingJobs``);
        default a training job.

    Returns
    -------
    int
        The number of lines printed.

    Raises
    ------
    AwsError
        No such job; a failed request.
    """
    from multitype.cloud.sagemaker import jobs

    kind = kind or jobs.TRAINING
    group, status_key = kind.log_group, kind.status_key
    note = note or echo
    desc = jobs.describe(aws, job_name, kind)
    reader = LogReader(aws, job_name, echo=echo, page_size=page_size, timestamps=timestamps, log_group=group)
    detail = f", {desc.get('SecondaryStatus')}" if kind is jobs.TRAINING else ""
    if not follow:
        if reader.poll() == 0:
            note(f"no log lines yet for {kind.word} job {job_name} ({desc.get(status_key)}{detail}) in {group}; "
                 "SageMaker starts logging once the instances run the container; try again later or use --follow")
        return reader.lines
    deadline = time.monotonic() + (jobs.default_wait_seconds(desc) if max_seconds is None else max_seconds)
    told = False
    while True:
        ended = desc.get(status_key) in jobs.TERMINAL
        reader.poll()
        if ended:
            if reader.lines == 0:
                note(f"{kind.word} job {job_name} ended {desc.get(status_key)} without log lines in {group}")
            return reader.lines
        if reader.lines == 0 and not told:
            where = desc.get("SecondaryStatus", desc.get(status_key))
            note(f"waiting for the first log lines of {job_name} ({where})...")
            told = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            waited = max_seconds or jobs.default_wait_seconds(desc)
            raise AwsError(f"stopped following {job_name} after {waited:.0f} s: "
                           f"it is still {desc.get(status_key)}; run 'multitype {kind.command} logs {job_name} "
                           "--follow' again")
        time.sleep(max(min(poll_seconds, remaining), 0.0))
        desc = jobs.describe(aws, job_name, kind)

