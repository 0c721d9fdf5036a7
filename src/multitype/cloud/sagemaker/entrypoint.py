"""The entry point inside a SageMaker training job (``sagemaker_program``: ``entry.py``).

``main`` runs in this order:

1. :func:`~multitype.cloud.sagemaker.environment.read_environment`: the toolkit's
   ``--name value`` arguments, the ``SM_*`` variables, or SageMaker's files under
   ``/opt/ml`` (``$SAGEMAKER_BASE_DIR``).
2. :func:`read_task`: the task (``transformer``, ``baseline``, ``parallel``), its
   models and hyperparameter overrides, the results ``root``, ``resume``.
3. :func:`assemble_root`: a local working root ``<base>/multitype-work/`` with
   ``data/processed/`` from the ``train``/``val``/``test``/``labels`` channels and
   ``configs/`` from the ``configs`` channel; a missing channel or file is a
   one-line error (exit 2).
4. The task, through the library's public functions, with
   :class:`~multitype.project.Outputs` pointing at SageMaker's folders:
   checkpoints in ``<base>/checkpoints`` (synced to S3 by SageMaker, resumed from
   on a restart, marker-less folders included: see
   :mod:`multitype.transformer.checkpoint`), the final model in ``SM_MODEL_DIR``
   (``SM_MODEL_DIR/<name>/`` for baselines and ``parallel``), metrics, summary
   and manifest in the ``root`` (S3), exactly where a local run puts them.
   Several hosts or GPUs: ``torchrun`` with a static rendezvous built from
   ``SM_HOSTS``/``SM_CURRENT_HOST`` (see :func:`torchrun_args`); global rank 0 alone writes.
5. ``<root>/runs/sagemaker/<job>/result.json`` last (host 0 only), what
   ``multitype sagemaker collect`` reads.

A trial of a ``multitype sagemaker tune`` job (static hyperparameter
``tuning-job``) also takes the searched values under their ``tune.space`` names
(:data:`TUNED`), reads no test data (an empty test split: it evaluates on val
alone, so its last ``METRIC val_<metric>`` line is the tuning objective), keeps
its checkpoints in ``<checkpoints>/<its job name>/`` and writes its results
under :func:`trial_root`.

Exit codes: 0 done; 2 bad input (one ``error: ...`` line, also written to
``<base>/output/failure``, SageMaker's ``FailureReason``); 143 after SIGTERM
with a checkpoint saved (spot interruption: the restarted job resumes); 1 a bug.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from multitype import layout
from multitype.config import TRANSFORMER_TUNABLE
from multitype.cloud.sagemaker.environment import SageMakerEnv, read_environment
from multitype.errors import ConfigError, DataError, Interrupted, UserError

if TYPE_CHECKING:
    from multitype.project import Project

ENTRY_SCRIPT = '''\
"""SageMaker entry point of multitype (sagemaker_program): see multitype.cloud.sagemaker.entrypoint."""
import os
import sys

# the package travels in sourcedir.tar.gz beside this file: it wins over anything installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from multitype.cloud.sagemaker.entrypoint import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''

TASKS = ("transformer", "baseline", "parallel")
WORK_DIR = "multitype-work"
MASTER_ADDR_ENV = "MULTITYPE_SM_MASTER_ADDR"
MASTER_PORT_ENV = "MULTITYPE_SM_MASTER_PORT"
DEFAULT_MASTER_PORT = 29500
# hyperparameter -> TransformerParams key (the flags of `train transformer`, same names)
OVERRIDES = {"num-epochs": "num_epochs", "learning-rate": "learning_rate", "batch-size": "batch_size",
             "max-length": "max_length", "max-steps": "max_steps", "max-train-samples": "max_train_samples",
             "precision": "precision"}
# a tuning job sends the searched parameters under the trainer's own names (tune.space keys)
TUNED = {name: name for name in TRANSFORMER_TUNABLE}
TUNING_JOB = "tuning-job"  # static hyperparameter of a tuning job's trials: the tuning job's name
KNOWN = {"task", "model-name", "models", "root", "resume", TUNING_JOB, *OVERRIDES, *TUNED}
SAGEMAKER_ADDED = {"_tuning_objective_metric"}  # what SageMaker adds to a tuning job's trials
DATA_CHANNELS = ("train", "val", "test")
TUNING_FOLDER = "sagemaker-tuning"


def trial_root(root: str, tuning_job: str, job_name: str) -> str:
    """Where a tuning trial writes its metrics, manifest and result.json: its own root, never the project's results.

    ``<root>/runs/sagemaker-tuning/<tuning job>/<training job>``: trials of one model share a slug, so in
    the project's ``results/`` they would overwrite each other and the model's own run.
    """
    return f"{root.rstrip('/')}/{layout.RUNS}/{TUNING_FOLDER}/{tuning_job}/{job_name}"


def result_key(job_name: str) -> str:
    """``runs/sagemaker/<job>/result.json``: the job's own record of what it wrote (CONTRACT 5)."""
    return f"{layout.RUNS}/sagemaker/{job_name}/result.json"


class JobFailed(Exception):
    """The task ran and failed (exit 1), e.g. a model of ``train parallel``."""


@dataclass
class Task:
    """What the hyperparameters ask for."""

    kind: str
    root: str
    resume: str = "auto"
    model_name: str | None = None
    models: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    tuning_job: str | None = None  # a trial of this SageMaker tuning job: val only, its own root and checkpoints


def _names(value: Any, field_name: str) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
    raise ConfigError(f"hyperparameter '{field_name}' must be comma-separated model names, got {value!r}")


def read_task(hyperparameters: dict[str, Any], say: Callable[[str], None] | None = None) -> Task:
    """Check the hyperparameters and return the task; unknown names are reported through ``say`` and ignored.

    Raises
    ------
    ConfigError
        No or an unknown ``task``, ``parallel`` without ``models``, a bad ``resume``,
        no ``root``.
    """
    hp = dict(hyperparameters)
    for name in sorted(set(hp) - KNOWN - SAGEMAKER_ADDED):
        if say is not None:
            say(f"warning: ignoring hyperparameter '{name}' (known: {', '.join(sorted(KNOWN))})")
    kind = hp.get("task")
    if kind not in TASKS:
        raise ConfigError(f"hyperparameter 'task' must be one of {', '.join(TASKS)}, got {kind!r}; "
                          "launch the job with 'multitype sagemaker launch'")
    resume = hp.get("resume", "auto")
    if resume not in ("auto", "never"):
        raise ConfigError(f"hyperparameter 'resume' must be 'auto' or 'never', got {resume!r}")
    root = hp.get("root")
    if not root or not isinstance(root, str):
        raise ConfigError(f"hyperparameter 'root' (the S3 root that results/ and runs/ go to) must be a URL such as "
                          f"s3://bucket/prefix, got {root!r}; launch the job with 'multitype sagemaker launch'")
    overrides = {OVERRIDES[k]: v for k, v in hp.items() if k in OVERRIDES and v is not None}
    overrides.update({TUNED[k]: v for k, v in hp.items() if k in TUNED and v is not None})
    task = Task(kind, root, resume, overrides=overrides)
    if hp.get(TUNING_JOB) is not None:
        if kind != "transformer" or not isinstance(hp[TUNING_JOB], str) or not hp[TUNING_JOB]:
            raise ConfigError(f"hyperparameter '{TUNING_JOB}' (a tuning job's name) goes with task transformer; "
                              f"got task {kind!r}, {TUNING_JOB}={hp[TUNING_JOB]!r}")
        task.tuning_job = hp[TUNING_JOB]
    if kind == "transformer":
        if hp.get("model-name") is not None:
            task.model_name = str(hp["model-name"])
        if "models" in hp:
            names = _names(hp["models"], "models")
            if len(names) != 1 or (task.model_name and names != [task.model_name]):
                raise ConfigError(f"task transformer trains one model; got models={hp['models']!r}: use task "
                                  "parallel for several")
            task.model_name = names[0]
    elif kind == "parallel":
        task.models = _names(hp.get("models", ""), "models")
        if not task.models:
            raise ConfigError("task parallel needs hyperparameter 'models' (comma-separated model names)")
    else:
        task.models = _names(hp["models"], "models") if hp.get("models") else []
        if overrides and say is not None:
            say(f"warning: {', '.join(sorted(k for k in hp if k in OVERRIDES))} do not apply to task baseline; "
                "ignored")
        task.overrides = {}
    return task


# -- the working root -----------------------------------------------------------------------------------------
def _channel(env: SageMakerEnv, name: str) -> Path:
    folder = env.channels.get(name)
    if folder is None or not folder.is_dir():
        where = f"{folder} is not a folder" if folder else \
            f"no SM_CHANNEL_{name.upper()}, no folder {env.base / 'input' / 'data' / name}"
        raise DataError(f"input channel '{name}' not found ({where}); launch the job with its "
                        f"train/val/test/labels/configs channels ('multitype prepare' and 'multitype sync push' first)")
    return folder


def assemble_root(env: SageMakerEnv, work: Path, trial: bool = False) -> Path:
    """Fill ``work`` (emptied first) with ``data/processed/`` and ``configs/`` from the channels; return it.

    The ``val`` channel may be absent (``split.val: 0``); ``train``, ``test``,
    ``labels`` and ``configs`` may not. A tuning ``trial`` reads no test data:
    its ``val`` channel is required, a ``test`` channel is ignored, and the
    test split is written empty (val's header, no rows), so the run evaluates
    on val alone.

    Raises
    ------
    DataError
        A channel or a file in it is missing; the message names both.
    """
    labels_file = _channel(env, "labels") / "labels.json"
    if not labels_file.is_file():
        raise DataError(f"{labels_file} not found: the labels channel must hold data/processed/labels.json")
    try:
        num_classes = len(json.loads(labels_file.read_text(encoding="utf-8")))
    except ValueError:
        raise DataError(f"{labels_file} is not valid JSON; rerun 'multitype prepare' and 'multitype sync push'") from None
    configs = _channel(env, "configs")
    sources = {}
    for split in DATA_CHANNELS:
        if (split == "val" and "val" not in env.channels and not trial) or (split == "test" and trial):
            continue
        name = Path(layout.processed_split(split, num_classes)).name
        path = _channel(env, split) / name
        if not path.is_file():
            present = ", ".join(sorted(p.name for p in path.parent.iterdir())) or "nothing"
            raise DataError(f"{path} not found (labels.json has {num_classes} classes; the channel holds "
                            f"{present}); rerun 'multitype prepare' and 'multitype sync push'")
        sources[layout.processed_split(split, num_classes)] = path
    sources[layout.LABELS] = labels_file
    yamls = sorted(p for p in configs.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not yamls:
        raise DataError(f"{configs} holds no YAML files: the configs channel must hold the four config files")

    if work.exists():
        shutil.rmtree(work)
    for key, path in sources.items():
        (work / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, work / key)
    if trial:
        val = sources[layout.processed_split("val", num_classes)]
        with val.open(encoding="utf-8", newline="") as f:
            header = f.readline()
        (work / layout.processed_split("test", num_classes)).write_text(header, encoding="utf-8")
    (work / layout.CONFIGS).mkdir(parents=True)
    for path in yamls:
        shutil.copyfile(path, work / layout.CONFIGS / path.name)
    _drop_profile(work / layout.CONFIGS / "project.yaml")
    return work


def _drop_profile(path: Path) -> None:
    """In the job the instance role is the credential: a laptop's ``aws.profile`` would not exist there."""
    import yaml

    if not path.is_file():
        return
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    aws = data.get("aws") if isinstance(data, dict) else None
    if isinstance(aws, dict) and aws.get("profile"):
        _say(f"ignoring aws.profile {aws['profile']!r} of project.yaml inside the job (the job's role is used)")
        aws["profile"] = None
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# -- the task ---------------------------------------------------------------------------------------------------
def open_job_project(env: SageMakerEnv, task: Task, work: Path) -> Project:
    """The project of the working root, with outputs in SageMaker's folders and the results root."""
    from multitype.config import load_configs
    from multitype.project import Outputs, Project
    from multitype.storage import Storage

    configs = load_configs(str(work / layout.CONFIGS))
    storage = Storage(str(work), endpoint_url=configs.project.storage.endpoint_url)
    # a trial keeps to its own folder: whether or not the trials of a tuning job share the checkpoint prefix,
    # one never resumes another's checkpoint (a spot restart of the same trial keeps its job name)
    checkpoints = env.checkpoint_dir / env.job_name if task.tuning_job else env.checkpoint_dir
    outputs = Outputs.from_locations(storage, checkpoints=str(checkpoints),
                                     model=str(env.model_dir) if task.kind == "transformer" else None,
                                     results=task.root)
    return Project(storage=storage, configs=configs, command=f"train {task.kind}", outputs=outputs)


def torchrun_args(env: SageMakerEnv, environ: dict[str, str] | None = None) -> list[str]:
    """torchrun's options for this host: static rendezvous at the first host, every GPU a rank (1 on CPU).

    ``MULTITYPE_SM_MASTER_ADDR`` replaces the first host's name (tests on loopback use
    ``127.0.0.1``); ``MULTITYPE_SM_MASTER_PORT`` the port (default 29500).
    """
    environ = dict(os.environ) if environ is None else environ
    master = environ.get(MASTER_ADDR_ENV) or (env.hosts[0] if env.multi_node else "127.0.0.1")
    port = environ.get(MASTER_PORT_ENV) or str(DEFAULT_MASTER_PORT)
    if not port.isdigit():
        raise ConfigError(f"{MASTER_PORT_ENV}={port!r} is not a port number")
    return [f"--nnodes={len(env.hosts)}", f"--node_rank={env.node_rank}",
            f"--nproc_per_node={max(1, env.num_gpus)}", f"--master_addr={master}", f"--master_port={port}"]


def torchrun_env(env: SageMakerEnv, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``NCCL_SOCKET_IFNAME``/``GLOO_SOCKET_IFNAME``: the job's network interface between hosts, unless set."""
    environ = dict(os.environ) if environ is None else environ
    if not env.multi_node or not env.network_interface:
        return {}
    return {name: env.network_interface for name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")
            if not environ.get(name)}


def run_transformer(env: SageMakerEnv, task: Task, project: Project) -> dict[str, Any]:
    """Fine-tune one model (under torchrun with several hosts or GPUs); return result.json's ``models``.

    On a host other than the first, a line ``rank check: {...}`` gives what this
    host's rank measured with its copy of the final model (val loss per epoch,
    test accuracy and macro-F1): the same numbers as the metrics JSON when the
    ranks agree.
    """
    from multitype.transformer import launch

    params = project.configs.transformer.params_for(task.model_name, **task.overrides)
    if env.multi_node or env.num_gpus > 1:
        args = torchrun_args(env)
        _say(f"torchrun: host {env.current_host} is node {env.node_rank} of {len(env.hosts)}, "
             f"{max(1, env.num_gpus)} process(es) here ({' '.join(args)})")
        with _environ(torchrun_env(env)):
            record = launch.run_torchrun(project, params, task.resume, args)
    else:
        from multitype.transformer.train import train_transformer

        record = train_transformer(project, params, resume=task.resume)
    if env.node_rank != 0:
        check = {"host": env.current_host, "val_loss": [entry.get("val_loss") for entry in record["history"]],
                 "accuracy": record["accuracy"], "macro_f1": record["macro_f1"]}
        _say(f"rank check: {json.dumps(check)}")
    return {record["slug"]: {"metrics": layout.transformer_metrics(record["slug"]), "model_dir": ""}}


def run_baseline(env: SageMakerEnv, task: Task, project: Project) -> dict[str, Any]:
    """TF-IDF baselines; their pipelines move to ``SM_MODEL_DIR/<name>/``."""
    from multitype.baselines import train_baselines

    records = train_baselines(project, models=task.models or None)
    for name in records:
        _move_model(project, name, env.model_dir)
    return {name: {"metrics": layout.baseline_metrics(name), "model_dir": name} for name in records}


def run_parallel(env: SageMakerEnv, task: Task, project: Project) -> tuple[dict[str, Any], list[str]]:
    """``train parallel`` (one process per GPU); final models to ``SM_MODEL_DIR/<slug>/``, logs to the root.

    Returns result.json's ``models`` and the run ids of the children.

    Raises
    ------
    JobFailed
        A model failed (its log is in ``runs/<run-id>/`` of the root).
    """
    from multitype.transformer.parallel import summary_table, train_parallel

    try:
        rows = train_parallel(project, task.models, overrides=task.overrides, resume=task.resume)
    finally:
        _copy_run_folder(project)
    from rich.console import Console

    Console(stderr=True).print(summary_table(rows))
    failed = [row["model"] for row in rows if row["exit_code"] != 0]
    if failed:
        raise JobFailed(f"train parallel: {', '.join(failed)} failed; see their logs in "
                        f"{project.outputs.results.url(layout.run_log(project.run_id, ''))}")
    models, run_ids = {}, []
    for row in rows:
        _move_model(project, row["slug"], env.model_dir)
        record = project.outputs.results.read_json(layout.transformer_metrics(row["slug"]))
        run_ids.append(record["run_id"])
        models[row["slug"]] = {"metrics": layout.transformer_metrics(row["slug"]), "model_dir": row["slug"]}
    return models, run_ids


def _move_model(project: Project, name: str, model_dir: Path) -> None:
    source = project.storage.local_path(layout.final_model(name))
    target = model_dir / name
    if target.exists():
        shutil.rmtree(target)
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def _copy_run_folder(project: Project) -> None:
    """``train parallel`` writes its logs and manifest under the working root: they go to the results root."""
    folder = project.storage.local_path(f"{layout.RUNS}/{project.run_id}")
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{layout.RUNS}/{project.run_id}/{path.relative_to(folder).as_posix()}"
            project.outputs.results.put_file(path, key)


# -- main ------------------------------------------------------------------------------------------------------------
def _say(message: str) -> None:
    print(f"[multitype] {message}", file=sys.stderr, flush=True)


def _fail(env: SageMakerEnv | None, message: str) -> None:
    """One line on stderr and in ``<base>/output/failure`` (SageMaker shows it as the job's FailureReason)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    if env is not None:
        try:
            failure = env.base / "output" / "failure"
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(message[:1000] + "\n", encoding="utf-8")
        except OSError:
            pass


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` (so torchrun ranks and ``train parallel`` children see them too) for the block."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_job(env: SageMakerEnv) -> int:
    """Steps 2-5 of the module docstring for one host; returns the exit code."""
    from multitype.transformer import checkpoint

    import multitype

    _say(f"multitype {multitype.__version__} from {Path(multitype.__file__).parent}")
    task = read_task(env.hyperparameters, say=_say)
    if task.tuning_job:
        task.root = trial_root(task.root, task.tuning_job, env.job_name)
        searched = ", ".join(f"{k}={v!r}" for k, v in sorted(task.overrides.items()))
        _say(f"trial of tuning job {task.tuning_job}: {searched}; val only (no test data)")
    _say(f"job {env.job_name}: task {task.kind}, host {env.current_host} ({env.node_rank + 1} of "
         f"{len(env.hosts)}), {env.num_gpus} GPU(s), results to {task.root}")
    if task.kind != "transformer" and env.node_rank != 0:
        _say(f"task {task.kind} runs on {env.hosts[0]} alone; nothing to do on {env.current_host}")
        return 0
    work = assemble_root(env, env.base / WORK_DIR, trial=task.tuning_job is not None)
    project = open_job_project(env, task, work)
    started = time.time()
    run_ids = [project.run_id]
    # SageMaker's checkpoint sync restores folders file by file, without our marker: trust their checksums
    with _environ({checkpoint.MARKERLESS_DIR_ENV: str(env.checkpoint_dir)}):
        if task.kind == "transformer":
            models = run_transformer(env, task, project)
        elif task.kind == "baseline":
            models = run_baseline(env, task, project)
        else:
            models, children = run_parallel(env, task, project)
            run_ids += children
    if env.node_rank != 0:
        _say(f"done on {env.current_host}; {env.hosts[0]} writes the artifacts")
        return 0
    result = {"job_name": env.job_name, "task": task.kind, "run_ids": run_ids, "models": models,
              **({"tuning_job": task.tuning_job, "overrides": task.overrides} if task.tuning_job else {}),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    project.outputs.results.write_json(result_key(env.job_name), result)  # last: the job's results are complete
    _say(f"done: {project.outputs.results.url(result_key(env.job_name))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job's task in this container (see the module docstring); return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The toolkit's arguments (default ``sys.argv[1:]``).
    """
    env = None
    try:
        env = read_environment(sys.argv[1:] if argv is None else argv)
        return run_job(env)
    except UserError as exc:
        _fail(env, str(exc))
        return UserError.exit_code
    except JobFailed as exc:
        _fail(env, str(exc))
        return 1
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        return Interrupted.exit_code
