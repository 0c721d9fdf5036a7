"""What the EC2 user data runs on the instance once the package is there: configs, log shipping, the log push.

``python -m multitype.cloud.ec2.bootstrap <command>`` (see
``cloud/templates/ec2_user_data.sh``):

``configs --root S3 --dest DIR``
    The four config files of ``<root>/configs/`` into ``DIR``, with
    ``aws.profile`` dropped: on the instance the instance profile is the
    credential, and a laptop's profile name does not exist there (the SageMaker
    entry point does the same).
``ship-logs --group G --stream S --file LOG``
    Tails ``LOG`` from its first byte into CloudWatch Logs (``put_log_events``,
    group and stream created when missing) every few seconds, until SIGTERM,
    then ships what is left and exits. Why our own few lines rather than the
    CloudWatch agent or ``aws logs``: the Deep Learning AMIs do not all run the
    agent, the agent needs a config file and a service, ``aws logs
    put-log-events`` in a bash loop cannot batch safely, and this one runs with
    the package's clients and is tested against moto.
``finished --root S3 --run-id ID [--mark]``
    Prints ``finished`` or ``not finished``: whether ``<root>/runs/<run-id>/ec2-finished.json``
    exists; ``--mark`` writes it (after a successful training). A replacement
    instance that a persistent spot request starts after the run finished (its
    cancellation failed, or came too late) reads it and shuts down without training.
``push-log --root S3 --run-id ID --file LOG``
    Uploads ``LOG`` to ``<root>/runs/<run-id>/user-data-<instance-id>.log``
    (one per instance, so a replacement instance does not overwrite the first one's).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from multitype import layout

SHIP_INTERVAL_ENV = "MULTITYPE_LOG_SHIP_INTERVAL"
# put_log_events limits: 10,000 events and 1,048,576 bytes a batch (26 bytes of overhead per event),
# 256 KiB per event
_MAX_EVENTS = 10_000
_MAX_BATCH_BYTES = 1_048_576
_EVENT_OVERHEAD = 26
_MAX_EVENT_BYTES = 256 * 1024 - _EVENT_OVERHEAD


def pull_configs(root: str, dest: Path) -> list[Path]:
    """Copy ``<root>/configs/*.yaml`` (the four config files) into ``dest``, without ``aws.profile``.

    Raises
    ------
    UserError
        A config file is missing under the root.
    """
    import yaml

    from multitype.config import CONFIG_FILES
    from multitype.errors import UserError
    from multitype.storage import Storage

    storage = Storage(root)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in CONFIG_FILES.items():
        key = f"{layout.CONFIGS}/{name}"
        if not storage.exists(key):
            raise UserError(f"{storage.url(key)} not found; run 'multitype sync push --only configs' before the "
                            f"launch")
        text = storage.read_text(key)
        if kind == "project":
            data = yaml.safe_load(text) or {}
            aws = data.get("aws")
            if isinstance(aws, dict) and aws.get("profile"):
                print(f"ignoring aws.profile {aws['profile']!r} of project.yaml on the instance (the instance "
                      f"profile is used)", file=sys.stderr)
                aws["profile"] = None
                text = yaml.safe_dump(data, sort_keys=False)
        path = dest / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written


class LogShipper:
    """Ships the lines of a growing file to one CloudWatch Logs stream.

    Parameters
    ----------
    logs : botocore client
        A ``logs`` client.
    group, stream : str
        Created when missing.
    path : Path
        The file; read from its first byte (lines written before the shipper
        started are shipped too).
    """

    def __init__(self, logs: Any, group: str, stream: str, path: Path) -> None:
        self.logs, self.group, self.stream, self.path = logs, group, stream, path
        self.offset = 0
        self.shipped = 0
        self._warned = False

    def ensure_stream(self) -> None:
        for call, kwargs in ((self.logs.create_log_group, {"logGroupName": self.group}),
                             (self.logs.create_log_stream, {"logGroupName": self.group, "logStreamName": self.stream})):
            try:
                call(**kwargs)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass

    def _new_lines(self, final: bool) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = len(data) if final else data.rfind(b"\n") + 1  # a line still being written waits
        self.offset += end
        return [line.decode("utf-8", errors="replace") for line in data[:end].splitlines()]

    def ship(self, final: bool = False) -> int:
        """Put the new complete lines (every line when ``final``); return how many events went out."""
        lines = self._new_lines(final)
        now = int(time.time() * 1000)
        batch: list[dict[str, Any]] = []
        size = sent = 0
        for line in lines:
            message = line.encode("utf-8")[:_MAX_EVENT_BYTES].decode("utf-8", errors="ignore") or " "
            cost = len(message.encode("utf-8")) + _EVENT_OVERHEAD
            if batch and (len(batch) >= _MAX_EVENTS or size + cost > _MAX_BATCH_BYTES):
                sent += self._put(batch)
                batch, size = [], 0
            batch.append({"timestamp": now, "message": message})
            size += cost
        if batch:
            sent += self._put(batch)
        self.shipped += sent
        return sent

    def _put(self, events: list[dict[str, Any]]) -> int:
        try:
            self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
        except Exception as exc:  # logs are best effort: training must go on (the file is pushed to S3 at the end)
            if not self._warned:
                print(f"warning: log shipper: put_log_events to {self.group}/{self.stream} failed ({exc}); the "
                      f"log file is still pushed to S3 at the end", file=sys.stderr, flush=True)
                self._warned = True
            return 0
        return len(events)

    def run(self, stop: threading.Event, interval: float) -> None:
        """Ship every ``interval`` seconds until ``stop`` is set, then ship the rest."""
        try:
            self.ensure_stream()
        except Exception as exc:
            print(f"warning: log shipper: cannot create {self.group}/{self.stream} ({exc})", file=sys.stderr,
                  flush=True)
        while not stop.wait(interval):
            self.ship()
        self.ship(final=True)


def ship_logs(group: str, stream: str, path: Path, region: str | None) -> int:
    """Run a :class:`LogShipper` until SIGTERM/SIGINT; return the number of events shipped."""
    from multitype.cloud.aws import client
    from multitype.config import AwsConfig

    aws = AwsConfig(region=region) if region else AwsConfig()
    shipper = LogShipper(client("logs", aws), group, stream, path)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    shipper.run(stop, float(os.environ.get(SHIP_INTERVAL_ENV, "5")))
    return shipper.shipped


FINISHED = "ec2-finished.json"


def _instance_id() -> str:
    """This instance's id from the metadata service, else the host name (off EC2)."""
    from multitype.cloud.imds import ImdsClient, ImdsError

    try:
        return ImdsClient(timeout=0.5).instance_id() or socket.gethostname()
    except ImdsError:
        return socket.gethostname()


def finished(root: str, run_id: str, mark: bool = False) -> bool:
    """Whether the run finished on EC2 (``runs/<run-id>/ec2-finished.json``); ``mark`` records that it has."""
    from multitype.storage import Storage

    storage = Storage(root)
    key = layout.run_log(run_id, FINISHED)
    if mark:
        storage.write_json(key, {"run_id": run_id, "instance": _instance_id(),
                                 "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return True
    return storage.exists(key)


def push_log(root: str, run_id: str, path: Path) -> str:
    """Upload ``path`` to ``<root>/runs/<run-id>/user-data-<instance id>.log``; return its URL."""
    from multitype.storage import Storage

    storage = Storage(root)
    key = layout.run_log(run_id, f"user-data-{_instance_id()}.log")
    storage.put_file(path, key)
    return storage.url(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multitype.cloud.ec2.bootstrap")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("configs")
    cmd.add_argument("--root", required=True)
    cmd.add_argument("--dest", required=True, type=Path)
    cmd = commands.add_parser("ship-logs")
    cmd.add_argument("--group", required=True)
    cmd.add_argument("--stream", required=True)
    cmd.add_argument("--file", required=True, type=Path)
    cmd.add_argument("--region")
    cmd = commands.add_parser("finished")
    cmd.add_argument("--root", required=True)
    cmd.add_argument("--run-id", required=True)
    cmd.add_argument("--mark", action="store_true")
    cmd = commands.add_parser("push-log")
    cmd.add_argument("--root", required=True)
    cmd.add_argument("--run-id", required=True)
    cmd.add_argument("--file", required=True, type=Path)
    args = parser.parse_args(argv)
    from multitype.errors import UserError

    try:
        if args.command == "configs":
            for path in pull_configs(args.root, args.dest):
                print(f"config: {path}")
        elif args.command == "finished":
            print("finished" if finished(args.root, args.run_id, args.mark) else "not finished")
        elif args.command == "ship-logs":
            ship_logs(args.group, args.stream, args.file, args.region)
        else:
            print(f"log: {push_log(args.root, args.run_id, args.file)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
