"""Incremental, ``aws s3 sync``-compatible transfer between a local root and an S3 root.

Keys are the relative paths under the root and the S3 prefix, nothing else: no
wrapper folder and no metadata object in the bucket, so ``aws s3 sync`` and
``multitype sync`` read each other's trees. Only the layout's top-level groups
move (``data``, ``configs``, ``results``, ``models``, ``figures``, ``runs``;
``--only`` picks some; ``--only code`` pushes the code bundle of
:mod:`multitype.cloud.bundle` under ``code/``, given as ``code_files``).

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
   ``aws s3 sync`` and multitype upload; 16 MiB; 50 MiB, as s3fs; see
   :mod:`multitype.storage.etag`). Local MD5s are cached
   in the state file by (path, size, ``mtime_ns``).
4. No checksum matched (an unknown part size, or an encrypted object whose ETag
   is not an MD5): the rule of ``aws s3 sync``. A push uploads when the local
   mtime is newer than ``LastModified``; a pull downloads unless the local mtime
   equals ``LastModified`` (what both tools set after a download).

Pulled files get their mtime from ``LastModified``, so the next sync of either
tool sees them unchanged. ``--delete`` removes what the source no longer has,
only after every transfer succeeded. Nothing is deleted on a failed sync.
A pull checks every listed key before anything is created: a key that is not a
plain relative path (``//``, ``..``, a backslash, NUL...) stops it with an error.

The archive lifecycle rule (``sync archive``) lives in :mod:`multitype.cloud.lifecycle`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

from multitype import layout
from multitype.errors import StorageError, UserError
from multitype.storage import Storage, local_target, split_s3_url
from multitype.storage.etag import file_digests, is_md5, part_sizes_for

Direction = Literal["push", "pull"]
GROUPS = tuple(layout.SYNC_GROUPS)
DEFAULT_GROUPS = tuple(g for g in GROUPS if g != "code")  # code moves only when asked for
STATE_KEY = ".multitype/sync-state.json"
DEFAULT_JOBS = 10
_TRANSIENT = re.compile(r"^\..+\.(tmp|old-\d+)$")  # Storage's temp files and folders


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
def _walk(folder: Path, key_prefix: str) -> dict[str, _Local]:
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
                stack.append((entry.path, f"{prefix}/{name}"))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # removed while we walked
                continue
            found[f"{prefix}/{name}"] = _Local(Path(entry.path), st.st_size, st.st_mtime_ns)
    return found


def _stat_files(files: Mapping[str, str | os.PathLike[str]]) -> dict[str, _Local]:
    tree = {}
    for key, path in files.items():
        st = os.stat(path)
        tree[key] = _Local(Path(path), st.st_size, st.st_mtime_ns)
    return tree


def _local_tree(local: Path, groups: Iterable[str], direction: Direction,
                code_files: Mapping[str, str | os.PathLike[str]] | None) -> dict[str, _Local]:
    tree: dict[str, _Local] = {}
    for group in groups:
        folder = layout.SYNC_GROUPS.get(group, group)
        if group == "code" and direction == "push":
            if code_files is None:
                raise UserError("pushing the code group needs the bundle's files: run 'multitype sync push --only "
                                "code', or pass code_files=multitype.cloud.bundle.code_files(local)")
            tree.update(_stat_files(code_files))
        else:
            tree.update(_walk(local / folder, folder))
    return tree


def _modified(info: dict[str, Any]) -> float:
    value = info.get("LastModified") or info.get("mtime") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _remote_tree(storage: Storage, groups: Iterable[str]) -> dict[str, _Remote]:
    """One listing per group, all at once."""
    folders = [layout.SYNC_GROUPS.get(g, g) for g in groups]
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
        missing = [p for p in part_sizes_for(local.size, etag) if str(p) not in entry["etags"]]
        if "md5" not in entry or missing:
            digests = file_digests(local.path, missing)
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


def _unchanged(key: str, local: _Local, remote: _Remote, direction: Direction, state: _State) -> bool:
    if local.size != remote.size:
        return False
    if state.unchanged_since_sync(key, local, remote):
        return True
    etag = remote.etag.lower()
    if is_md5(etag) or part_sizes_for(local.size, etag):
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
    # a folder inside a group ("data/processed") narrows it; sagemaker launch pushes only that
    unknown = [n for n in names if n.split("/", 1)[0] not in layout.SYNC_GROUPS or ".." in n.split("/")]
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
    code_files: Mapping[str, str | os.PathLike[str]] | None = None,
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
    code_files : mapping, optional
        What the ``code`` group pushes, ``code/...`` key -> local file
        (:func:`multitype.cloud.bundle.code_files`); needed to push that group.

    Returns
    -------
    SyncResult
        Keys uploaded, downloaded, deleted and skipped, bytes moved, seconds.

    Raises
    ------
    StorageError
        Unusable local folder or remote (see :mod:`multitype.storage`), or on
        a pull, a listed key that is not a plain relative path.
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

    local_tree = _local_tree(local_root, groups, direction, code_files) if local_root.exists() else {}
    remote_tree = _remote_tree(storage, groups)
    state = _State(local_root, storage.root)

    if direction == "push":
        source, dest = local_tree, remote_tree
    else:
        source, dest = remote_tree, local_tree  # type: ignore[assignment]
        for key in remote_tree:  # every key checked before anything is created
            local_target(local_root, key, source=f"{storage.root}/{key}")
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
            fresh = _remote_tree(storage, [g for g in groups if layout.SYNC_GROUPS.get(g, g).split("/")[0] in touched])
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
            path = storage.get_file(key, local_root / key, size=obj.size, etag=obj.etag or None)
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
