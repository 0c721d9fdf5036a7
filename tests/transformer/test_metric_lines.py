"""METRIC lines are for machines: printed to a pipe or file, inside SageMaker or with --metric-lines; not to a person.

Terminals here are real pseudo-terminals (``pty.openpty``) given to a child process as its stdout.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from multitype.transformer.logs import METRIC_LINES_ENV
from tests.conftest import write_configs
from tests.transformer.conftest import SUBPROCESS_ENV, train_args, transformer_yaml, write_processed

PRINT_ONE = "from multitype.transformer.logs import metric; metric('val_loss', 0.5)"
CLEAN = {k: v for k, v in os.environ.items() if k not in (METRIC_LINES_ENV, "SM_TRAINING_ENV", "TRAINING_JOB_NAME")}


def run_on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[str, str]:
    """(what reached the terminal on stdout, stderr) of ``args`` run with a pty as stdout."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, text=True)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        _, err = proc.communicate(timeout=timeout)
        return b"".join(chunks).decode(errors="replace"), err
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


@pytest.mark.parametrize(("extra", "printed"), [
    ({}, False),                                            # a person at a terminal
    ({METRIC_LINES_ENV: "1"}, True),                        # --metric-lines
    ({"SM_TRAINING_ENV": "{}"}, True),                      # inside a SageMaker job
    ({"TRAINING_JOB_NAME": "job-1"}, True),
])
def test_metric_lines_on_a_terminal(extra: dict[str, str], printed: bool) -> None:
    out, err = run_on_a_terminal([sys.executable, "-c", PRINT_ONE], {**CLEAN, **extra})
    assert err == ""
    assert ("METRIC val_loss=0.5" in out) is printed, out


def test_metric_lines_on_a_pipe() -> None:
    proc = subprocess.run([sys.executable, "-c", PRINT_ONE], env=CLEAN, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "METRIC val_loss=0.5\n"


def test_the_flag_asks_for_metric_lines_in_this_process_and_its_children(cli, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(METRIC_LINES_ENV, "")  # restored after the test: the flag sets it process-wide
    result = cli("train", "transformer", "--metric-lines", "--batch-size", "0", "--root", tmp_path,
                 "--config-dir", write_configs(tmp_path / "configs"))
    assert result.exit_code == 2 and "--batch-size" in result.stderr  # refused; the flag took effect before
    assert os.environ[METRIC_LINES_ENV] == "1"


@pytest.mark.slow  # trains MiniLM for one epoch with stdout on a terminal
def test_a_person_at_a_terminal_sees_epoch_lines_not_metric_lines(tmp_path: Path) -> None:
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml(num_epochs=1))
    out, err = run_on_a_terminal([sys.executable, "-m", "multitype", *train_args(root, configs)],
                                 {**CLEAN, **SUBPROCESS_ENV}, timeout=300)
    assert "epoch 1/1: train loss" in err and "minilm: test accuracy" in err
    assert "METRIC" not in out and "METRIC" not in err
