"""The spot watcher: a notice becomes a stop request; in a real training process, a checkpoint in S3 and exit 143."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitype import interrupts, spotwatch
from multitype.cloud.imds import ImdsClient, Notice
from tests.cloud import spot_helpers as spot


@pytest.fixture(autouse=True)
def _no_stop_left_behind():
    interrupts.clear()
    yield
    interrupts.clear()


def test_a_notice_requests_a_stop_and_is_logged_once(imds_stub) -> None:
    lines: list[str] = []
    watcher = spotwatch.SpotWatcher(ImdsClient().notice, interval=0.05, say=lines.append)
    assert watcher.poll() is None and interrupts.stop_requested() is None
    posted = imds_stub.interrupt()
    assert watcher.poll() is not None
    assert interrupts.stop_requested() == "spot interruption notice"
    assert lines == [f"spot interruption notice: terminate at {posted['time']}: saving a checkpoint and stopping"]
    interrupts.clear()  # a new run in the same process: the standing notice asks again
    watcher.poll()
    assert interrupts.stop_requested() == "spot interruption notice" and len(lines) == 1


def test_a_rebalance_recommendation_stops_too(imds_stub) -> None:
    watcher = spotwatch.SpotWatcher(ImdsClient().notice, say=lambda m: None)
    imds_stub.rebalance()
    watcher.poll()
    assert interrupts.stop_requested() == "spot rebalance recommendation"


def test_an_unreachable_service_is_logged_once_and_never_stops_training() -> None:
    lines: list[str] = []
    answers: list[object] = [OSError("no route"), OSError("no route"), None,
                             Notice("spot-interruption", "terminate", "2026-01-01T00:00:00Z")]

    def check():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watcher = spotwatch.SpotWatcher(check, interval=5, say=lines.append)
    watcher.poll(), watcher.poll()
    assert interrupts.stop_requested() is None
    assert lines == ["warning: spot watcher: cannot read the instance metadata (no route); still trying every 5 s"]
    watcher.poll()
    assert lines[-1] == "spot watcher: the instance metadata answers again"
    watcher.poll()
    assert interrupts.stop_requested() == "spot interruption notice"


def test_the_thread_polls_at_its_interval_and_stops(imds_stub) -> None:
    watcher = spotwatch.SpotWatcher(ImdsClient().notice, interval=0.05, say=lambda m: None).start()
    try:
        spot.wait_until(lambda: watcher.polls >= 3, "three polls", timeout=10)
        imds_stub.interrupt()
        spot.wait_until(lambda: interrupts.stop_requested() is not None, "a stop request", timeout=10)
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_interval_is_refused_before_training(value: str, cli, tmp_path: Path, config_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTITYPE_SPOT_WATCH_INTERVAL", value)
    result = cli("train", "transformer", "--spot-watch", "--root", tmp_path / "root", "--config-dir", config_dir)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: MULTITYPE_SPOT_WATCH_INTERVAL={value!r} is not a positive number of "
                                     f"seconds; unset it for the default 5")


def test_enabled_by_flag_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTITYPE_SPOT_WATCH", raising=False)
    assert not spotwatch.enabled() and spotwatch.enabled(True)
    monkeypatch.setenv("MULTITYPE_SPOT_WATCH", "1")
    assert spotwatch.enabled()
    monkeypatch.setenv("MULTITYPE_SPOT_WATCH", "0")
    assert not spotwatch.enabled()


@pytest.mark.slow
def test_a_notice_mid_training_saves_a_step_checkpoint_to_s3_and_exits_143_within_10_s(
        imds_stub, s3_server, tmp_path: Path) -> None:
    """The real CLI on an S3 root with the default 5 s poll: notice -> complete step checkpoint in S3 -> 143."""
    # no periodic step checkpoints: the only -step<N> is the one the notice asks for
    root, configs, model = spot.s3_project(tmp_path, s3_server, "spot",
                                           checkpoint={"every_steps": None, "every_minutes": None,
                                                       "keep_last_epochs": 1})
    err = tmp_path / "train.err"
    env = {**os.environ, **spot.THREADS_ENV, "MULTITYPE_SPOT_WATCH": "1"}
    env.pop("MULTITYPE_SPOT_WATCH_INTERVAL", None)  # the default: every 5 s
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "multitype", "train", "transformer", "--model-name", str(model),
                                 "--root", root, "--config-dir", str(configs), "--num-epochs", "500"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    with spot.reaped(proc):
        spot.wait_until(lambda: "training tiny-bert" in err.read_text(errors="replace") or
                        f"training {model}" in err.read_text(errors="replace"),
                        "training start", timeout=120, alive=lambda: proc.poll() is None)
        time.sleep(1.0)  # some steps in
        assert spot.complete_steps(s3_server, root) == []
        imds_stub.interrupt()
        noticed = time.monotonic()
        proc.wait(timeout=60)
        reaction = time.monotonic() - noticed
    stderr_text = err.read_text(errors="replace")
    assert proc.returncode == 143, stderr_text[-3000:]
    print(f"notice -> step checkpoint in S3 -> exit 143: {reaction:.2f} s")
    assert reaction < 10, f"{reaction:.1f} s"
    assert "spot watcher: polling the instance metadata every 5 s" in stderr_text
    assert "spot interruption notice: terminate at " in stderr_text and "Traceback" not in stderr_text
    # the newest complete checkpoint in S3 is the step the notice stopped at: a -step<N> made for it, or the
    # -epoch<k> just written when the notice came at an epoch's end (the loop does not save the same step twice)
    step = spot.resume_step(root, s3_server)
    assert step > 0 and f"spot interruption notice: checkpoint saved at step {step}" in stderr_text
    assert spot.complete_steps(s3_server, root) in ([step], [])
    # the process spoke IMDSv2: a token first, every GET with it
    assert imds_stub.count("PUT", "/latest/api/token") >= 1
    assert all(token for method, _, token in imds_stub.requests if method == "GET")


def test_a_notice_reaches_the_ranks_under_torchrun_as_sigterm(tmp_path: Path) -> None:
    """--gpus N re-launches under torchrun; the watcher runs in the parent, so its stop request becomes a SIGTERM."""
    import threading

    from multitype.transformer.launch import _run_forwarding_signals

    ready = tmp_path / "ready"
    child = ("import signal, sys, time, pathlib\n"
             "signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))\n"
             f"pathlib.Path({str(ready)!r}).write_text('up')\n"
             "time.sleep(60)\n"
             "sys.exit(0)\n")
    timer = threading.Thread(target=lambda: (spot.wait_until(ready.exists, "the child", timeout=30),
                                             interrupts.request_stop(spotwatch.INTERRUPTION_REASON)), daemon=True)
    timer.start()
    started = time.monotonic()
    assert _run_forwarding_signals([sys.executable, "-c", child], poll_s=0.1) == 143
    assert time.monotonic() - started < 30
    timer.join(timeout=5)
