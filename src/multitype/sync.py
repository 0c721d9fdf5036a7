"""Incremental, ``aws s3 sync``-compatible transfer between a local root and an S3 root.

Keys are the relative paths under the root and the S3 prefix, nothing else: no
wrapper folder and no metadata object in the bucket, so ``aws s3 sync`` and
``multitype sync`` read each other's trees. Only the layout's top-level groups
move (``data``, ``configs``, ``results``, ``models``, ``figures``, ``runs``;
``--only`` picks some, and ``--only code`` pushes the project's ``src/`` and
pinned requirements under ``code/``).

When is a file unchanged? Exactly this, in order:

1. Sizes differ: changed.
2. The file was transferred by an earlier ``multitype sync`` and neither side
   moved since: same local size and ``mtime_ns`` and same remote ETag as
   recorded then in ``<local>/.multitype/sync-state.json``: unchanged. This
   makes a no-change sync one listing and one ``stat`` per file.
3. Otherwise the content is compared where S3 gives a checksum: a single-part
   ETag is the MD5 of the object, compared with the local file's MD5; a
   multipart ETag (``<md5 of part md5s>-<n>``) is compared with the local file's
   multipart ETag for the common part sizes that give ``n`` parts (8 MiB, as
   ``aws s3 sync`` and multitype upload; 16 MiB; 50 MiB, as s3fs). Local MD5s are cached
   in the state file by (path, size, ``mtime_ns``).
4. No checksum matched (an unknown part size, or an encrypted object whose ETag
   is not an MD5): the rule of ``aws s3 sync``. A push uploads when the local
   mtime is newer than ``LastModified``; a pull downloads unless the local mtime
   equals ``LastModified`` (what both tools set after a download).

Pulled files get their mtime from ``LastModified``, so the next sync of either
tool sees them unchanged. ``--delete`` removes what the source no longer has,
only after every transfer succeeded. Nothing is deleted on a failed sync.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from multitype import layout
from multitype.errors import StorageError, UserError
from multitype.storage import Storage, check_key, split_s3_url

Direction = Literal["push", "pull"]
GROUPS = tuple(layout.SYNC_GROUPS)
DEFAULT_GROUPS = tuple(g for g in GROUPS if g != "code")  # code moves only when asked for
STATE_KEY = ".multitype/sync-state.json"
REQUIREMENTS_KEY = f"{layout.CODE}/requirements.txt"
DEFAULT_JOBS = 10
# part sizes whose multipart ETags are recomputed locally (aws cli and multitype, others, s3fs)
PART_SIZES = (8 * 2**20, 16 * 2**20, 50 * 2**20)
_READ_BLOCK = 2**20
_TRANSIENT = re.compile(r"^\..+\.(tmp|old-\d+)$")  # Storage's temp files and folders
_NOT_CODE = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


@dataclass
class SyncResult:
    """What a sync did (or, with ``dry_run``, would do): keys relative to the root."""

    direction: str
    local: str
    remote: str
    dry_run: bool = False
    uploaded: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def transferred(self) -> list[str]:
        return self.uploaded if self.direction == "push" else self.downloaded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Local:
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Remote:
    size: int
    etag: str
    modified: float  # LastModified, epoch seconds


# --- the two trees ------------------------------------------------------------
def _walk(folder: Path, key_prefix: str, skip_dirs: frozenset[str] = frozenset()) -> dict[str, _Local]:
    """Files under ``folder`` as ``key_prefix/<relative path>`` (os.scandir: one stat per file)."""
    found: dict[str, _Local] = {}
    stack = [(str(folder), key_prefix)]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = entry.name
            if _TRANSIENT.match(name):
                continue
            if entry.is_dir(follow_symlinks=False):
                if name not in skip_dirs and not (skip_dirs and name.endswith(".egg-info")):
                    stack.append((entry.path, f"{prefix}/{name}"))
                continue
            if skip_dirs and name.endswith((".pyc", ".pyo")):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # removed while we walked
                continue
            found[f"{prefix}/{name}"] = _Local(Path(entry.path), st.st_size, st.st_mtime_ns)
    return found


def pinned_requirements() -> str:
    """``name==version`` for every distribution of the running environment but multitype.

    Like ``pip freeze`` (pip, setuptools and wheel left out); local version
    labels such as ``+cpu`` are dropped so a GPU machine installs its own build.
    """
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        canonical = re.sub(r"[-_.]+", "-", name).lower()
        if canonical in ("multitype", "pip", "setuptools", "wheel", "distribute"):
            continue
        pins[canonical] = f"{name}=={dist.version.split('+')[0]}"
    lines = [pins[k] for k in sorted(pins)]
    return "# written by 'multitype sync push --only code': the environment that pushed it\n" + "\n".join(lines) + "\n"


def _code_tree(local: Path) -> dict[str, _Local]:
    """What ``--only code`` pushes: the project's ``src/`` (+ pyproject/README) and pinned requirements."""
    src = local / "src"
    if src.is_dir():
        tree = _walk(src, f"{layout.CODE}/src", _NOT_CODE)
        project_dir = local
    else:  # not run from the project folder: the installed package itself
        import multitype

        package = Path(multitype.__file__).resolve().parent
        tree = _walk(package, f"{layout.CODE}/src/multitype", _NOT_CODE)
        project_dir = package.parent.parent if package.parent.name == "src" else None
    if project_dir is not None:
        for name in ("pyproject.toml", "README.md", "setup.cfg", "setup.py"):
            path = project_dir / name
            if path.is_file():
                st = path.stat()
                tree[f"{layout.CODE}/{name}"] = _Local(path, st.st_size, st.st_mtime_ns)
    requirements = Storage(str(local))
    text = pinned_requirements()
    key = f".multitype/{REQUIREMENTS_KEY}"
    if not requirements.exists(key) or requirements.read_text(key) != text:  # keep the mtime when unchanged
        requirements.write_text(key, text)
    path = requirements.local_path(key)
    st = path.stat()
    tree[REQUIREMENTS_KEY] = _Local(path, st.st_size, st.st_mtime_ns)
    return tree


def _local_tree(local: Path, groups: Iterable[str], direction: Direction) -> dict[str, _Local]:
    tree: dict[str, _Local] = {}
    for group in groups:
        folder = layout.SYNC_GROUPS[group]
        if group == "code" and direction == "push":
            tree.update(_code_tree(local))
        else:
            tree.update(_walk(local / folder, folder))
    return tree


def _modified(info: dict[str, Any]) -> float:
    value = info.get("LastModified") or info.get("mtime") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _remote_tree(storage: Storage, groups: Iterable[str]) -> dict[str, _Remote]:
    """One listing per group, all at once."""
    folders = [layout.SYNC_GROUPS[g] for g in groups]
    tree: dict[str, _Remote] = {}
    with ThreadPoolExecutor(max_workers=max(len(folders), 1), thread_name_prefix="sync-list") as pool:
        for listing in pool.map(storage.walk_files, folders):
            for key, info in listing.items():
                if key.endswith("/"):
                    continue  # a "folder" placeholder object
                tree[key] = _Remote(int(info.get("size", 0)), str(info.get("ETag", "")).strip('"'), _modified(info))
    return tree


# --- the state file: what was synced, and cached local checksums -----------------
class _State:
    def __init__(self, local: Path, remote: str) -> None:
        self.storage = Storage(str(local))
        self.remote = remote
        self.data: dict[str, Any] = {"version": 1, "synced": {}, "hashes": {}}
        try:
            if self.storage.exists(STATE_KEY):
                loaded = self.storage.read_json(STATE_KEY)
                if isinstance(loaded, dict) and loaded.get("version") == 1:
                    self.data = loaded
        except (StorageError, UnicodeDecodeError):
            pass  # a damaged cache only costs checksums
        self.synced: dict[str, list[Any]] = self.data.setdefault("synced", {}).setdefault(remote, {})
        self.hashes: dict[str, dict[str, Any]] = self.data.setdefault("hashes", {})
        self.lock = threading.Lock()
        self.dirty = False

    def record(self, key: str, local: _Local, etag: str) -> None:
        with self.lock:
            entry = [local.size, local.mtime_ns, etag]
            if self.synced.get(key) != entry:
                self.synced[key] = entry
                self.dirty = True

    def forget(self, key: str) -> None:
        with self.lock:
            if self.synced.pop(key, None) is not None:
                self.dirty = True

    def unchanged_since_sync(self, key: str, local: _Local, remote: _Remote) -> bool:
        return self.synced.get(key) == [local.size, local.mtime_ns, remote.etag]

    def checksums(self, local: _Local, etag: str) -> dict[str, str]:
        """MD5 (and, for a multipart ``etag``, the matching multipart ETags) of a local file, cached."""
        name = str(local.path)
        with self.lock:
            entry = self.hashes.get(name)
        if not entry or entry.get("size") != local.size or entry.get("mtime_ns") != local.mtime_ns:
            entry = {"size": local.size, "mtime_ns": local.mtime_ns, "etags": {}}
        missing = [p for p in _part_sizes_for(local.size, etag) if str(p) not in entry["etags"]]
        if "md5" not in entry or missing:
            digests = _file_digests(local.path, missing)
            entry["md5"] = digests.pop("md5")
            entry["etags"].update(digests)
            with self.lock:
                self.hashes[name] = entry
                self.dirty = True
        return {"md5": entry["md5"], **entry["etags"]}

    def save(self) -> None:
        """Write the state file if anything changed (atomically, through Storage)."""
        with self.lock:
            if not self.dirty:
                return
            live = {k: v for k, v in self.hashes.items() if os.path.exists(k)}
            self.data["hashes"] = live
            self.storage.write_json(STATE_KEY, self.data)


def _part_sizes_for(size: int, etag: str) -> list[int]:
    match = re.fullmatch(r"[0-9a-f]{32}-(\d+)", etag)
    if not match:
        return []
    n = int(match.group(1))
    return [p for p in PART_SIZES if math.ceil(size / p) == n]


def _file_digests(path: Path, part_sizes: list[int]) -> dict[str, str]:
    """One read of ``path``: its MD5 and its multipart ETag for each part size."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: dict[int, list[bytes]] = {p: [] for p in part_sizes}
    current = {p: hashlib.md5(usedforsecurity=False) for p in part_sizes}
    filled = dict.fromkeys(part_sizes, 0)
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            whole.update(block)
            for p in part_sizes:
                view = memoryview(block)
                while view:
                    take = min(len(view), p - filled[p])
                    current[p].update(view[:take])
                    filled[p] += take
                    view = view[take:]
                    if filled[p] == p:
                        parts[p].append(current[p].digest())
                        current[p], filled[p] = hashlib.md5(usedforsecurity=False), 0
    out = {"md5": whole.hexdigest()}
    for p in part_sizes:
        if filled[p]:
            parts[p].append(current[p].digest())
        out[str(p)] = f"{hashlib.md5(b''.join(parts[p]), usedforsecurity=False).hexdigest()}-{len(parts[p])}"
    return out


def _unchanged(key: str, local: _Local, remote: _Remote, direction: Direction, state: _State) -> bool:
    if local.size != remote.size:
        return False
    if state.unchanged_since_sync(key, local, remote):
        return True
    etag = remote.etag.lower()
    if re.fullmatch(r"[0-9a-f]{32}", etag) or _part_sizes_for(local.size, etag):
        sums = state.checksums(local, etag)
        if etag in sums.values():
            state.record(key, local, remote.etag)
            return True
        if "-" not in etag:
            return False  # a plain ETag is the MD5 of the object: the content differs
    local_mtime = local.mtime_ns / 1e9
    if direction == "push":
        return local_mtime <= remote.modified
    return abs(local_mtime - remote.modified) < 1.0


# --- the sync -------------------------------------------------------------------
def parse_only(only: str | Iterable[str] | None) -> list[str]:
    """``"data,configs"`` (or a list) -> validated group names; ``None`` -> every group but ``code``."""
    if only is None:
        return list(DEFAULT_GROUPS)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n and n.strip()]
    unknown = [n for n in names if n not in layout.SYNC_GROUPS]
    if unknown or not names:
        raise UserError(f"--only: unknown group(s) {', '.join(repr(n) for n in unknown) or 'none given'}; "
                        f"choose from {','.join(GROUPS)}")
    return list(dict.fromkeys(names))


def _check_local(local: Path, direction: Direction) -> None:
    if local.exists() and not local.is_dir():
        raise StorageError(f"local root '{local}' is a file; --local must be a folder")
    if direction == "push" and not local.exists():
        raise StorageError(f"local root '{local}' does not exist; nothing to push")


def sync(
    direction: Direction,
    local: str | os.PathLike[str] = ".",
    remote: str | None = None,
    only: str | Iterable[str] | None = None,
    dry_run: bool = False,
    delete: bool = False,
    endpoint_url: str | None = None,
    jobs: int = DEFAULT_JOBS,
    profile: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SyncResult:
    """Bring ``remote`` up to date with ``local`` (push) or the reverse (pull).

    Parameters
    ----------
    direction : {"push", "pull"}
    local : path, default="."
        The local root (a folder).
    remote : str
        ``s3://bucket/prefix``.
    only : str or list of str, optional
        Groups to sync (``data,configs,code,results,models,figures,runs``); default: all but ``code``.
    dry_run : bool, default=False
        Work out and report what would move; move nothing.
    delete : bool, default=False
        Also delete, on the destination, files the source does not have.
    endpoint_url : str, optional
        S3-compatible endpoint (default: ``AWS_ENDPOINT_URL``).
    jobs : int, default=10
        Files transferred in parallel.
    profile : str, optional
        AWS profile.
    progress : bool, default=False
        Show a progress bar (on a terminal).
    log : callable, optional
        Called with one line per planned action on a dry run.

    Returns
    -------
    SyncResult
        Keys uploaded, downloaded, deleted and skipped, bytes moved, seconds.

    Raises
    ------
    StorageError
        Unusable local folder or remote (see :mod:`multitype.storage`).
    """
    start = time.perf_counter()
    if direction not in ("push", "pull"):
        raise UserError(f"sync direction must be 'push' or 'pull', got {direction!r}")
    if not remote:
        raise UserError("no remote to sync with; pass --remote s3://bucket/prefix or set storage.remote in project.yaml")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    split_s3_url(remote)
    groups = parse_only(only)
    local_root = Path(local).expanduser()
    _check_local(local_root, direction)
    storage = Storage(remote, endpoint_url=endpoint_url, profile=profile)
    storage.check()
    result = SyncResult(direction, str(local_root), storage.root, dry_run=dry_run)

    local_tree = _local_tree(local_root, groups, direction) if local_root.exists() else {}
    remote_tree = _remote_tree(storage, groups)
    state = _State(local_root, storage.root)

    if direction == "push":
        source, dest = local_tree, remote_tree
    else:
        source, dest = remote_tree, local_tree  # type: ignore[assignment]
        for key in remote_tree:
            check_key(key)  # an object key with '..' must not escape the local root
    todo: list[str] = []
    for key in sorted(source):
        if key in dest and _unchanged(key, local_tree[key], remote_tree[key], direction, state):
            result.skipped.append(key)
        else:
            todo.append(key)
    stale = sorted(set(dest) - set(source)) if delete else []

    moved = result.uploaded if direction == "push" else result.downloaded
    if dry_run:
        verb = "upload" if direction == "push" else "download"
        for key in todo:
            moved.append(key)
            result.bytes += source[key].size
            if log:
                log(f"(dry run) {verb}: {key}")
        for key in stale:
            result.deleted.append(key)
            if log:
                log(f"(dry run) delete: {key}")
        result.seconds = time.perf_counter() - start
        return result

    try:
        _transfer(direction, todo, local_root, local_tree, remote_tree, storage, state, result, jobs, progress)
        if direction == "push" and todo:
            touched = {k.split("/", 1)[0] for k in todo}
            fresh = _remote_tree(storage, [g for g in groups if layout.SYNC_GROUPS[g] in touched])
            for key in result.uploaded:
                if key in fresh:
                    state.record(key, local_tree[key], fresh[key].etag)
        if stale:
            _delete(direction, stale, local_root, storage, state)
            result.deleted.extend(stale)
    finally:
        state.save()
    result.seconds = time.perf_counter() - start
    return result


def _transfer(direction: Direction, keys: list[str], local_root: Path, local_tree: dict[str, _Local],
              remote_tree: dict[str, _Remote], storage: Storage, state: _State, result: SyncResult,
              jobs: int, progress: bool) -> None:
    """Move ``keys`` with ``jobs`` threads; on the first failure stop the rest and re-raise it."""
    if not keys:
        return
    from tqdm import tqdm

    total = sum((local_tree[k].size if direction == "push" else remote_tree[k].size) for k in keys)
    lock = threading.Lock()
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=direction,
               disable=None if progress else True, leave=False)

    def one(key: str) -> None:
        if direction == "push":
            item = local_tree[key]
            storage.put_file(item.path, key)
            size = item.size
        else:
            obj = remote_tree[key]
            path = storage.get_file(key, local_root / key)
            os.utime(path, (obj.modified, obj.modified))
            st = path.stat()
            state.record(key, _Local(path, st.st_size, st.st_mtime_ns), obj.etag)
            size = obj.size
        with lock:
            (result.uploaded if direction == "push" else result.downloaded).append(key)
            result.bytes += size
            bar.update(size)

    def size(key: str) -> int:
        return local_tree[key].size if direction == "push" else remote_tree[key].size

    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix=f"sync-{direction}") as pool:
            # largest first: a big file's parts then overlap the many small files
            futures: list[Future[None]] = [pool.submit(one, key) for key in sorted(keys, key=size, reverse=True)]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in pending:
                fut.cancel()
            for fut in futures:
                if fut.done() and not fut.cancelled() and fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
    finally:
        bar.close()
        result.uploaded.sort()
        result.downloaded.sort()


def _delete(direction: Direction, keys: list[str], local_root: Path, storage: Storage, state: _State) -> None:
    if direction == "push":
        storage.rm_files(keys)
    else:
        local = Storage(str(local_root))
        local.rm_files(keys)
    for key in keys:
        state.forget(key)


# --- archive: a lifecycle rule for old checkpoints and raw data ------------------
STORAGE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE", "STANDARD_IA")
ARCHIVED_FOLDERS = (layout.CHECKPOINTS, "data/raw")
_MIN_DAYS = {"STANDARD_IA": 30}  # S3 refuses earlier transitions to STANDARD_IA


@dataclass
class ArchivePlan:
    """The rules ``sync archive`` adds, and the bucket's whole configuration after merging."""

    bucket: str
    rules: list[dict[str, Any]]
    merged: list[dict[str, Any]]
    applied: bool = False


def parse_days(value: str | int) -> int:
    """``"30d"``, ``"30"`` or ``30`` -> 30 (whole days, at least 1)."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*d?", text)
    if not match or int(match.group(1)) < 1:
        raise UserError(f"--older-than must be a whole number of days such as 30d, got {value!r}")
    return int(match.group(1))


def archive_rules(remote: str, days: int, storage_class: str) -> list[dict[str, Any]]:
    """One lifecycle rule per archived folder of the root ``remote`` (``s3://bucket/prefix``)."""
    if storage_class not in STORAGE_CLASSES:
        raise UserError(f"--storage-class must be one of {', '.join(STORAGE_CLASSES)}, got {storage_class!r}")
    if days < _MIN_DAYS.get(storage_class, 1):
        raise UserError(f"--older-than {days}d: S3 moves objects to {storage_class} only after "
                        f"{_MIN_DAYS[storage_class]} days or more")
    _, prefix = split_s3_url(remote)
    rules = []
    for folder in ARCHIVED_FOLDERS:
        key_prefix = f"{prefix}/{folder}/" if prefix else f"{folder}/"
        rules.append({
            "ID": f"multitype-archive:{key_prefix}"[:255],
            "Filter": {"Prefix": key_prefix},
            "Status": "Enabled",
            "Transitions": [{"Days": days, "StorageClass": storage_class}],
        })
    return rules


def merge_rules(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``existing`` with rules of the same ID replaced by ``new`` ones; the rest kept, in order."""
    ids = {rule["ID"] for rule in new}
    return [rule for rule in existing if rule.get("ID") not in ids] + new


def archive(remote: str, older_than: str | int = 30, storage_class: str = "GLACIER_IR", apply: bool = False,
            endpoint_url: str | None = None, profile: str | None = None) -> ArchivePlan:
    """Plan (and with ``apply``, put) a lifecycle rule archiving old checkpoints and raw data.

    The bucket's existing rules are read and kept; a rule of an earlier
    ``sync archive`` for the same prefix is replaced.
    """
    if not remote:
        raise UserError("no remote to archive; pass --remote s3://bucket/prefix or set storage.remote in project.yaml")
    rules = archive_rules(remote, parse_days(older_than), storage_class)
    storage = Storage(remote, endpoint_url=endpoint_url, profile=profile)
    merged = merge_rules(storage.lifecycle_rules(), rules)
    plan = ArchivePlan(storage.bucket, rules, merged)
    if apply:
        storage.put_lifecycle_rules(merged)
        plan.applied = True
    return plan
