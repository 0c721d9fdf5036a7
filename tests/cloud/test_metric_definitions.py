"""The job's metric definitions against the real stdout of a tiny training run (CONTRACT 6).

SageMaker applies each definition's regex to every log line of the job and
records the first group as the metric's value. Here the lines are those our
training loop printed in a real (tiny) run: every ``METRIC`` name it prints
must have exactly one definition, that definition must read back the printed
value, and every definition must be exercised.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from multitype.cloud.sagemaker.request import metric_definitions
from tests.conftest import run_cli_process, write_configs
from tests.transformer.conftest import SUBPROCESS_ENV, transformer_yaml, write_processed


@pytest.mark.slow
def test_every_metric_line_is_matched_by_its_definition(tmp_path: Path) -> None:
    root = write_processed(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", transformer=transformer_yaml())
    # batch 2: 12 steps in the one epoch, so the every-10-steps METRIC lines appear too
    result = run_cli_process("train", "transformer", "--model-name", "minilm", "--batch-size", "2",
                             "--num-epochs", "1", "--root", root, "--config-dir", configs, env=SUBPROCESS_ENV,
                             timeout=300)
    assert result.exit_code == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.startswith("METRIC ")]
    definitions = [(d["Name"], re.compile(d["Regex"])) for d in metric_definitions()]
    seen = set()
    for line in printed:
        name, value = line[len("METRIC "):].split("=", 1)
        matching = [(n, rx.search(line)) for n, rx in definitions if rx.search(line)]
        assert [n for n, _ in matching] == [name], line
        assert float(matching[0][1].group(1)) == float(value), line
        seen.add(name)
    assert seen == {n for n, _ in definitions}, "definitions that our loop never printed"
    # nothing else on stdout looks like a metric to SageMaker
    others = [line for line in result.stdout.splitlines() if not line.startswith("METRIC ")]
    assert not [line for line in others for _, rx in definitions if rx.search(line)]
