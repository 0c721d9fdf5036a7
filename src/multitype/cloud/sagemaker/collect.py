"""``multitype sagemaker collect``: a finished job's results, manifests and final models into the local root.

Route through the file: the job must be ``Completed`` (:func:`jobs.describe`);
its ``root`` hyperparameter names the S3 root it wrote to, where it left
``runs/sagemaker/<job>/result.json`` (CONTRACT 5: run ids, and per model the
key of its metrics JSON and its folder inside ``model.tar.gz``). Everything is
fetched and checked before the local root is touched: the result, each metrics
JSON, and ``model.tar.gz`` (from ``ModelArtifacts.S3ModelArtifacts``), which is
unpacked into a temporary folder only after every member was checked
(:func:`safe_unpack`: plain files and folders under relative paths, nothing
that would land outside; then ``tarfile``'s ``data`` filter).

Then, per model, :func:`choose_names` picks the local name. ``multitype report``
finds runs by their ``*_metrics.json`` files and labels them by the record's
``model``, so a collected run sits beside a local one when it has a metrics
file and a model name of its own: a slug that the local root already uses for
another run (its metrics JSON has a different ``run_id``, or a final model of
unknown origin is there) is collected as ``<slug>@<job>`` (metrics
``<slug>@<job>_metrics.json``, ``model`` ``<model>@<job>``, final model
``models/final/<slug>@<job>/``); ``--force`` takes the plain slug instead,
replacing the local run. Collecting the same job again reuses the names it got
the first time (``runs/sagemaker/<job>/collected.json``). The summary CSVs are
rebuilt from all metrics files (:func:`multitype.results.write_summary`), so no
local row is dropped.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from multitype import layout
from multitype.cloud.sagemaker import jobs
from multitype.cloud.sagemaker.records import FOLDER
from multitype.config import AwsConfig
from multitype.errors import AwsError, StorageError
from multitype.results import KINDS, write_summary
from multitype.storage import Storage
from multitype.storage.keys import check_key, local_target, unsafe_reason

SEPARATOR = "@"


def result_key(job_name: str) -> str:
    """``runs/sagemaker/<job>/result.json``: what the job writes last when it succeeds (CONTRACT 5)."""
    return f"{FOLDER}/{job_name}/result.json"


def collected_key(job_name: str) -> str:
    """``runs/sagemaker/<job>/collected.json``: what ``collect`` wrote locally, and under which names."""
    return f"{FOLDER}/{job_name}/collected.json"


def job_root(desc: dict[str, Any]) -> str:
    """The results root of a job: its ``root`` hyperparameter, JSON-decoded (CONTRACT 2).

    Raises
    ------
    AwsError
        The job has no ``root`` hyperparameter, or not a JSON string.
    """
    name = desc.get("TrainingJobName")
    raw = (desc.get("HyperParameters") or {}).get("root")
    if raw is None:
        raise AwsError(f"training job {name} has no 'root' hyperparameter: it was not launched by "
                       "'multitype sagemaker launch', so there is nothing to collect")
    try:
        root = json.loads(raw)
    except json.JSONDecodeError:
        root = raw  # a plain string, as a hand-made request might send it
    if not isinstance(root, str) or not root:
        raise AwsError(f"training job {name}: hyperparameter root={raw!r} is not an S3 URL")
    return root


def kind_of(metrics_key: str) -> str:
    """``baseline`` or ``transformer``: the results folder a metrics key lies in."""
    folder = posixpath.dirname(metrics_key)
    for kind, (kind_folder, _) in KINDS.items():
        if folder == kind_folder and metrics_key.endswith("_metrics.json"):
            return kind
    raise AwsError(f"metrics key {metrics_key!r} in result.json is not a *_metrics.json under "
                   f"{' or '.join(f for f, _ in KINDS.values())}")


def metrics_key(kind: str, name: str) -> str:
    """The key of the metrics JSON of ``name`` (a slug, or ``<slug>@<job>``) among the results of ``kind``."""
    return layout.baseline_metrics(name) if kind == "baseline" else layout.transformer_metrics(name)


def fetch_job_model(job_name: str, desc: dict[str, Any], dest: Path, aws: AwsConfig, endpoint_url: str | None,
                    purpose: str, echo: Callable[[str], None] | None = None) -> str:
    """Download the model.tar.gz of a described training job and unpack it (checked) into ``dest``; its URL.

    Raises
    ------
    AwsError
        The job names no model archive, or the archive is not in S3.
    """
    url = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not url:
        raise AwsError(f"training job {job_name} has no ModelArtifacts.S3ModelArtifacts; no model to {purpose}")
    folder, _, name = url.rpartition("/")
    artifacts = Storage(folder, endpoint_url=endpoint_url, profile=aws.profile)
    if not artifacts.exists(name):
        raise AwsError(f"{url} not found: the model archive of training job {job_name} is missing")
    if echo is not None:
        echo(f"downloading {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = artifacts.get_file(name, dest.parent / f"{dest.name}.tar.gz")
    safe_unpack(archive, dest, url)
    archive.unlink()
    return url


def safe_unpack(archive: str | Path, dest: str | Path, source: str) -> list[str]:
    """Unpack a ``.tar.gz`` into ``dest``, after checking every member; returns the files' relative paths.

    Only regular files and folders under plain relative paths pass (checked with
    :func:`multitype.storage.keys.unsafe_reason` and
    :func:`~multitype.storage.keys.local_target`); then ``tarfile`` extracts with
    its ``data`` filter. Nothing is written when any member is refused.

    Raises
    ------
    StorageError
        One line naming the archive, the member and why it was refused.
    """
    dest = Path(dest)
    files = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                rel = member.name[2:] if member.name.startswith("./") else member.name  # tar -C dir . writes ./x
                if rel in ("", "."):
                    continue
                if member.issym() or member.islnk():
                    reason = f"it is a link (to {member.linkname!r})"
                elif not (member.isfile() or member.isdir()):
                    reason = "it is not a regular file or folder"
                else:
                    reason = unsafe_reason(rel)
                if reason is None:
                    try:
                        local_target(dest, rel, source)
                    except StorageError:
                        reason = "it resolves outside the destination"
                if reason is not None:
                    raise StorageError(f"refusing to unpack {source}: member {member.name!r}: {reason}; nothing "
                                       "was written: the archive must hold only files and folders under relative "
                                       "paths; check who else can write to the bucket")
                if member.isfile():
                    files.append(rel)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StorageError(f"cannot unpack {source}: {exc}; download it again or re-run the job") from None
    return sorted(files)


def _record_run(local: Storage, key: str) -> str | None:
    if not local.exists(key):
        return None
    record = local.read_json(key)
    return str(record.get("run_id")) if isinstance(record, dict) else None


def choose_names(local: Storage, job_name: str, models: dict[str, dict[str, Any]], run_ids: set[str],
                 force: bool = False) -> dict[str, str]:
    """The local name of each collected model (slug -> name): the slug, or ``<slug>@<job>`` when it is taken.

    A name is taken when the local root has its metrics JSON from another run
    (``run_id`` not one of the job's), or its final model without metrics.
    ``force`` takes the slug regardless. A name that an earlier collect of the
    same job chose is kept while it is still the job's own.
    """
    earlier = local.read_json(collected_key(job_name)) if local.exists(collected_key(job_name)) else {}
    names = {}
    for slug, info in models.items():
        kind = kind_of(info["metrics"])

        def taken(name: str) -> bool:
            run = _record_run(local, metrics_key(kind, name))
            return (run is not None and run not in run_ids) or (run is None and local.exists(layout.final_model(name)))

        before = ((earlier or {}).get("models") or {}).get(slug, {}).get("name")
        if force:
            names[slug] = slug
        elif before and not taken(before):
            names[slug] = before
        else:
            names[slug] = f"{slug}{SEPARATOR}{job_name}" if taken(slug) else slug
    return names


def _check_result(result: Any, url: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    if not isinstance(result, dict) or not isinstance(result.get("models"), dict) or not result["models"]:
        raise AwsError(f"{url} has no 'models' (slug -> metrics, model_dir); the job did not finish writing it")
    run_ids = result.get("run_ids") or []
    if not isinstance(run_ids, list):
        raise AwsError(f"{url}: 'run_ids' must be a list")
    for slug, info in result["models"].items():
        if not isinstance(info, dict) or not isinstance(info.get("metrics"), str):
            raise AwsError(f"{url}: model {slug!r} has no 'metrics' key")
        reason = unsafe_reason(slug)
        if reason or "/" in slug:
            raise AwsError(f"{url}: model slug {slug!r} cannot name a local folder")
        model_dir = info.get("model_dir")
        if model_dir not in (None, "") and unsafe_reason(str(model_dir).strip("/")):
            raise AwsError(f"{url}: model_dir {model_dir!r} of {slug!r} is not a relative path")
        check_key(info["metrics"])
    for rid in run_ids:
        if unsafe_reason(str(rid)) or "/" in str(rid):
            raise AwsError(f"{url}: run id {rid!r} cannot name a local folder")
    return [str(r) for r in run_ids], result["models"]


def collect(local: Storage, aws: AwsConfig, job_name: str, force: bool = False, endpoint_url: str | None = None,
            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Download a Completed job's results, run manifests and final models into ``local``.

    Parameters
    ----------
    local : Storage
        The local root (``--root``).
    aws : AwsConfig
        Region and profile.
    job_name : str
        The training job.
    force : bool, default=False
        Take each model's plain slug even when the local root holds another run under it.
    endpoint_url : str, optional
        S3 endpoint for the job's root (``storage.endpoint_url``).
    echo : callable
        Progress lines.

    Returns
    -------
    dict
        What was written (also saved as ``runs/sagemaker/<job>/collected.json``):
        ``job_name``, ``source``, ``models`` (slug -> name, metrics, model), ``runs``.

    Raises
    ------
    AwsError
        The job is not Completed, has no ``root``, no result.json or a malformed
        one; a metrics JSON or model.tar.gz is missing.
    StorageError
        model.tar.gz holds a member that would land outside its folder, or a link.
    """
    desc = jobs.describe(aws, job_name)
    status = desc.get("TrainingJobStatus")
    if status != "Completed":
        raise AwsError(f"training job {job_name} is {status}, not Completed: nothing to collect "
                       f"(see 'multitype sagemaker status {job_name}')")
    remote = Storage(job_root(desc), endpoint_url=endpoint_url, profile=aws.profile)
    key = result_key(job_name)
    if not remote.exists(key):
        raise AwsError(f"{remote.url(key)} not found: training job {job_name} ended Completed but wrote no "
                       "result.json, so there is nothing to collect (see its logs: 'multitype sagemaker logs "
                       f"{job_name}')")
    result = remote.read_json(key)
    run_ids, models = _check_result(result, remote.url(key))
    records = {}
    for slug, info in models.items():
        if not remote.exists(info["metrics"]):
            raise AwsError(f"{remote.url(info['metrics'])} not found (the metrics of {slug} named in "
                           f"{remote.url(key)})")
        records[slug] = remote.read_json(info["metrics"])
    names = choose_names(local, job_name, models, set(run_ids), force)

    with tempfile.TemporaryDirectory(prefix="multitype-collect-") as tmp:
        unpacked = Path(tmp) / "model"
        if any(info.get("model_dir") is not None for info in models.values()):
            url = fetch_job_model(job_name, desc, unpacked, aws, endpoint_url, "collect", echo)
            for slug, info in models.items():
                if info.get("model_dir") is not None and not (unpacked / str(info["model_dir"]).strip("/")).is_dir():
                    raise AwsError(f"{url} has no folder {info['model_dir']!r} for model {slug} (named in "
                                   f"{remote.url(key)})")

        # every input is here and checked: only now write into the local root
        written: dict[str, dict[str, Any]] = {}
        kinds = set()
        for slug, info in models.items():
            name, kind = names[slug], kind_of(info["metrics"])
            kinds.add(kind)
            entry: dict[str, Any] = {"name": name, "kind": kind}
            if info.get("model_dir") is not None:
                local.put_dir(unpacked / str(info["model_dir"]).strip("/"), layout.final_model(name))
                entry["model"] = layout.final_model(name)
            record = dict(records[slug])
            record["sagemaker_job"] = job_name
            if name != slug:
                record["model"] = f"{record.get('model', slug)}{SEPARATOR}{job_name}"
            entry["metrics"] = metrics_key(kind, name)
            local.write_json(entry["metrics"], record)
            written[slug] = entry
            echo(f"{slug}: {entry['metrics']}" + (f", {entry['model']}" if "model" in entry else "")
                 + (f" (as {name}: the local root has another run of {slug}; --force replaces it)"
                    if name != slug else ""))
    runs = []
    for rid in run_ids:
        run_key = f"{layout.RUNS}/{rid}"
        if remote.isdir(run_key):
            with remote.local_dir(run_key) as folder:
                local.put_dir(folder, run_key, marker=False)
            runs.append(run_key)
    for kind in sorted(kinds):
        write_summary(local, kind)
    local.write_json(result_key(job_name), result)
    done = {"job_name": job_name, "source": remote.url(), "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime()),
            "models": written, "runs": runs}
    local.write_json(collected_key(job_name), done)
    return done

