"""Where a tuning study lives in the root, and opening it: created, or resumed under the same search space.

A local root keeps the Optuna study in SQLite, ``runs/tune/<study>/study.db``. An S3 root cannot hold a
SQLite file, so the study is an Optuna journal (an append-only log) kept in a local file while ``tune`` runs
and copied to ``runs/tune/<study>/journal.log`` after every trial; a later ``tune`` starts from that copy.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitype import layout
from multitype.errors import UserError
from multitype.storage import Storage
from multitype.tuning.space import TuneConfig

STUDY_DB = "study.db"
JOURNAL = "journal.log"
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def default_study_name(kind: str, model_name: str) -> str:
    """``<model>`` for transformers, ``<model>-baseline`` for baselines (the contract's default)."""
    name = layout.model_slug(model_name)
    return name if kind == "transformer" else f"{name}-baseline"


def check_study_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise UserError(f"--study {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


@dataclass
class StudyStore:
    """The study's files: ``local`` on this machine, mirrored to the root when the root is S3."""

    storage: Storage
    name: str
    local: Path

    @property
    def remote(self) -> bool:
        return self.storage.remote

    def key(self) -> str:
        return layout.tune_study(self.name, JOURNAL if self.remote else STUDY_DB)

    def optuna_storage(self) -> Any:
        import optuna
        from optuna.storages.journal import JournalFileBackend

        if self.remote:
            return optuna.storages.JournalStorage(JournalFileBackend(str(self.local / JOURNAL)))
        # several `--parallel` workers write one file: wait for the lock instead of failing
        return optuna.storages.RDBStorage(f"sqlite:///{self.local / STUDY_DB}",
                                          engine_kwargs={"connect_args": {"timeout": 60}})

    def push(self) -> None:
        """Copy the journal to the root (S3 roots; a local root's database is already in place)."""
        if self.remote and (self.local / JOURNAL).exists():
            self.storage.put_file(self.local / JOURNAL, self.key())

    def url(self) -> str:
        return self.storage.url(layout.tune_study(self.name))


def open_store(storage: Storage, name: str, local: str | Path | None = None) -> StudyStore:
    """The study's files, fetched from an S3 root into ``local`` (a new temporary folder by default).

    ``local`` is given to ``--parallel`` workers so that they share the parent's journal file.
    """
    if not storage.remote:
        folder = storage.local_path(layout.tune_study(name))
        folder.mkdir(parents=True, exist_ok=True)
        return StudyStore(storage, name, folder)
    if local is not None:
        return StudyStore(storage, name, Path(local))
    folder = Path(tempfile.mkdtemp(prefix=f"multitype-tune-{name}-"))
    store = StudyStore(storage, name, folder)
    if storage.exists(store.key()):
        storage.get_file(store.key(), folder / JOURNAL)
    return store


def study_exists(store: StudyStore) -> bool:
    if store.remote:
        return (store.local / JOURNAL).exists()
    return (store.local / STUDY_DB).exists()


def open_study(store: StudyStore, tune: TuneConfig, kind: str, model_name: str, seed: int,
               pruner: Any = None, create: bool = True) -> Any:
    """The Optuna study, created with its identity (space fingerprint, kind, model) or checked against it.

    Raises
    ------
    UserError
        The study exists with another search space, metric, direction, kind or model: it is left as it is.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    identity = {"fingerprint": tune.fingerprint(), "kind": kind, "model_name": model_name}
    existed = study_exists(store)
    storage = store.optuna_storage()
    names = optuna.get_all_study_names(storage) if existed else []
    if store.name in names:
        attrs = optuna.load_study(study_name=store.name, storage=storage).user_attrs
        differs = [key for key, value in identity.items() if attrs.get(key) != value]
        if differs:
            what = {"fingerprint": "search space (tune: metric, direction or space)", "kind": "kind",
                    "model_name": "model"}
            raise UserError(f"study '{store.name}' in {store.url()} was started with another "
                            f"{' and '.join(what[k] for k in differs)}; pass --study NEW to start a new one, or "
                            f"delete {store.url()} to start it over")
    # TPE's own random draws are seeded by the project seed and the trials so far: a resumed study does not
    # draw the same first parameters again
    done = len(optuna.load_study(study_name=store.name, storage=storage).trials) if store.name in names else 0
    sampler = optuna.samplers.TPESampler(seed=seed + done)
    study = optuna.create_study(study_name=store.name, storage=storage, direction=tune.direction,
                                sampler=sampler, pruner=pruner or make_pruner(tune.pruner),
                                load_if_exists=True)
    if store.name not in names:
        for key, value in {**identity, "space": tune.space_spec(), "metric": tune.metric}.items():
            study.set_user_attr(key, value)
    return study


def make_pruner(name: str) -> Any:
    """``tune.pruner``: median (after 5 finished trials, from the first epoch), hyperband, or none."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()
