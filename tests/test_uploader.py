"""FolderPublisher: background publishing in a niced uploader process that dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from multitype.errors import StorageError
from multitype.storage import COMPLETE_MARKER, Storage
from multitype.uploader import UPLOAD_NICE, FolderPublisher


def make_folder(path: Path, n: int = 3, size: int = 10_000) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"shard-{i:03d}.bin").write_bytes(os.urandom(size))
    return path


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def s3_root(s3_server) -> str:
    return f"s3://{s3_server.make_bucket('publish')}/proj"


def test_background_publishing_to_s3_keeps_order_and_calls_back_in_the_parent(s3_root: str, tmp_path: Path) -> None:
    storage = Storage(s3_root)
    publisher = FolderPublisher(storage)
    assert publisher.background and publisher.worker_pid is None  # started by the first publish
    done: list[tuple[str, int, str]] = []
    keys = [f"models/checkpoints/m-step{n}" for n in (1, 2, 3)]
    # a big folder first: if the small ones could overtake it, the order would show it
    folders = [make_folder(tmp_path / "a", 4, 2_000_000), make_folder(tmp_path / "b", 1, 100),
               make_folder(tmp_path / "c", 2, 1_000)]
    for folder, key in zip(folders, keys):
        publisher.publish(folder, key, on_done=lambda k: done.append(
            (k, os.getpid(), threading.current_thread().name)))
    pid = publisher.worker_pid
    assert pid is not None and pid != os.getpid()
    if hasattr(os, "getpriority"):
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + UPLOAD_NICE)
    if hasattr(os, "sched_getscheduler"):
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER  # SCHED_IDLE only when asked for (it can starve)
    publisher.wait()
    assert publisher.published == keys
    assert [k for k, _, _ in done] == keys
    assert all(p == os.getpid() for _, p, _ in done)  # in this process, on the publisher's thread
    assert all(storage.is_complete(k) for k in keys)
    assert sorted(storage.walk_files(keys[0])) == [f"{keys[0]}/{COMPLETE_MARKER}",
                                                   *(f"{keys[0]}/shard-{i:03d}.bin" for i in range(4))]
    assert not any(f.exists() for f in folders)
    assert publisher.seconds_uploading > 0 and publisher.in_flight == 0
    publisher.close()
    assert wait_gone(pid, 10), "the uploader process outlived close()"


def test_background_publishing_to_a_local_root(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "root"))
    inline = FolderPublisher(storage)
    assert not inline.background  # local roots publish inline by default
    inline.publish(make_folder(tmp_path / "i"), "models/checkpoints/m-epoch1")
    assert storage.is_complete("models/checkpoints/m-epoch1") and inline.worker_pid is None

    publisher = FolderPublisher(storage, background=True)
    seen: list[str] = []
    for n in (1, 2):
        publisher.publish(make_folder(tmp_path / f"l{n}"), f"models/checkpoints/m-step{n}", on_done=seen.append)
    publisher.close()
    assert seen == publisher.published == ["models/checkpoints/m-step1", "models/checkpoints/m-step2"]
    assert all((tmp_path / "root" / k / COMPLETE_MARKER).is_file() for k in seen)
    assert (tmp_path / "root" / "models/checkpoints/m-step2/shard-002.bin").stat().st_size == 10_000


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_idle_uploader_runs_under_sched_idle(tmp_path: Path) -> None:
    publisher = FolderPublisher(Storage(str(tmp_path / "root")), background=True, idle=True)
    publisher.publish(make_folder(tmp_path / "f"), "models/checkpoints/m-step1")
    assert os.sched_getscheduler(publisher.worker_pid) == os.SCHED_IDLE
    publisher.close()
    assert Storage(str(tmp_path / "root")).is_complete("models/checkpoints/m-step1")


def test_upload_error_comes_back_as_the_same_one_line_storage_error(s3_server, tmp_path: Path) -> None:
    missing = f"s3://no-such-bucket-{os.getpid()}/proj"
    with pytest.raises(StorageError) as inline:
        Storage(missing).put_dir(make_folder(tmp_path / "inline"), "models/checkpoints/m-step1")

    publisher = FolderPublisher(Storage(missing))
    called: list[str] = []
    publisher.publish(make_folder(tmp_path / "bg"), "models/checkpoints/m-step1", on_done=called.append)
    with pytest.raises(StorageError) as background:
        publisher.wait()
    assert type(background.value) is StorageError
    assert str(background.value) == str(inline.value) and "\n" not in str(background.value)
    assert called == [] and publisher.published == []
    assert (tmp_path / "bg").is_dir()  # never published, so not removed
    publisher.close(wait=False)


def test_later_publish_raises_an_earlier_failure(s3_server, tmp_path: Path) -> None:
    publisher = FolderPublisher(Storage(f"s3://no-such-bucket-{os.getpid()}/proj"))
    publisher.publish(make_folder(tmp_path / "one"), "models/checkpoints/m-step1")
    deadline = time.monotonic() + 30
    while publisher.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(StorageError):
        publisher.publish(make_folder(tmp_path / "two"), "models/checkpoints/m-step2")
    with pytest.raises(StorageError):
        publisher.raise_errors()
    publisher.close(wait=False)


PARENT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from multitype.storage import Storage
    from multitype.uploader import FolderPublisher

    root, folder, fork = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "fork"
    folder.mkdir()
    for i in range(8):
        (folder / f"shard-{i}.bin").write_bytes(os.urandom(8 * 2**20))
    publisher = FolderPublisher(Storage(root))
    publisher.publish(folder, "models/checkpoints/m-step1")
    sleeper = 0
    if fork:
        # a forked helper (as a DataLoader worker is) keeps the job pipe open: only
        # PR_SET_PDEATHSIG can tell the uploader that its parent died
        sleeper = os.fork()
        if sleeper == 0:
            time.sleep(30)
            os._exit(0)
    print(publisher.worker_pid, sleeper, flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("fork", ["plain", "fork"])
def test_sigkill_of_the_parent_leaves_no_uploader_behind(s3_root: str, s3_server, tmp_path: Path, fork: str) -> None:
    if fork == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, s3_root, str(tmp_path / "ckpt"), fork],
                              stdout=subprocess.PIPE, text=True, env=env)
    sleeper = 0
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert line, "the parent script printed nothing"
        uploader, sleeper = map(int, line.split())
        assert alive(uploader)
        parent.kill()  # SIGKILL: no atexit, no finally
        parent.wait(timeout=10)
        assert wait_gone(uploader, 15), "the uploader process outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if sleeper:
            try:
                os.kill(sleeper, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not Storage(s3_root).is_complete("models/checkpoints/m-step1")  # the half upload is not a checkpoint
