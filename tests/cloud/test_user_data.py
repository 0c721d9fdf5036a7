"""The EC2 user data: rendered text (bash -n, quoting, no credentials, bad input) and the whole flow run locally.

The flow test runs the REAL rendered script with bash in temp folders standing in
for two instances, against SeaweedFS (the S3 root), the IMDS stub (the spot
notice) and moto (CloudWatch Logs); only the machine-specific parts are
overridden by environment (work folder, shutdown command, the Python to use).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitype.cloud.ec2.userdata import MAX_BYTES, render_user_data
from multitype.errors import UserError
from tests.cloud import spot_helpers as spot
from tests.conftest import write_configs
from tests.transformer.conftest import transformer_yaml, write_processed


def bash_n(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user-data.sh"
    script.write_text(text, encoding="utf-8")
    return subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)


def render(**overrides: object) -> str:
    values: dict[str, object] = {"root": "s3://bucket/project", "region": "us-east-1", "run_id": "20261201-ec2-1a2b",
                                 "train_args": ["transformer", "--model-name", "minilm"]}
    values.update(overrides)
    return render_user_data(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("overrides", [
    {},
    {"endpoint_url": "http://127.0.0.1:8333", "log_group": "/multitype/ec2-test"},
    {"root": "s3://my bucket/it's \"quoted\" $(rm -rf /)/`x`", "run_id": "run with spaces 'and' \"quotes\""},
    {"train_args": ["train", "transformer", "--model-name", "a b'c\"d$e`f`\\g", "--num-epochs", "2",
                    "--learning-rate", "2e-5", "--precision", "bf16"]},
    {"region": "eu-west-1; echo pwned"},
])
def test_the_rendered_script_is_valid_bash_and_values_stay_data(overrides: dict, tmp_path: Path) -> None:
    text = render(**overrides)
    result = bash_n(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text and "@@" not in text
    assert len(text.encode()) <= MAX_BYTES
    # each value reads back exactly as given: bash parses the assignments into the original strings
    probe = text.split("\nWORK_DIR=")[0] + '\nprintf "%s\\0" "$ROOT" "$REGION" "$RUN_ID" "${TRAIN_ARGS[@]}"\n'
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True).stdout
    values = {"root": "s3://bucket/project", "region": "us-east-1", "run_id": "20261201-ec2-1a2b",
              "train_args": ["transformer", "--model-name", "minilm"], **overrides}
    args = [a for a in values["train_args"]][1:] if values["train_args"][0] == "train" else values["train_args"]
    assert out.split("\0")[:-1] == [values["root"], values["region"], values["run_id"], *args]


def test_no_credentials_in_the_user_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY123456", "AWS_SECRET_ACCESS_KEY": "secret/abcdefghijklmnop1234",
               "AWS_SESSION_TOKEN": "session-token-xyz-987"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    text = render(endpoint_url="http://127.0.0.1:9000")
    for name, value in secrets.items():
        assert value not in text
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "aws_secret_access_key"):
        assert name not in text


def test_what_the_script_does(tmp_path: Path) -> None:
    """The steps the issue asks for are in the script (the flow test below runs them)."""
    text = render()
    assert 'multitype train "${TRAIN_ARGS[@]}" --root "$ROOT" --config-dir "$WORK_DIR/configs" --resume auto' in text
    assert "export MULTITYPE_SPOT_WATCH=1" in text
    assert "trap finish EXIT" in text and "shutdown -h now" in text
    assert "/opt/pytorch/bin/python3" in text  # the DLAMI's torch, not a second one
    assert "ship-logs --group \"$LOG_GROUP\" --stream \"$RUN_ID\"" in text and "LOG_GROUP=/multitype/ec2\n" in text
    # the pinned requirements: SageMaker's sourcedir list (no torch, no CUDA stack)
    from multitype.cloud.sagemaker.sourcedir import runtime_requirements

    block = text.split("<<'MULTITYPE_REQUIREMENTS'\n")[1].split("\nMULTITYPE_REQUIREMENTS\n")[0]
    assert block.splitlines() == runtime_requirements()
    assert not any(line.lower().startswith(("torch==", "nvidia-", "triton==")) for line in block.splitlines())


@pytest.mark.parametrize("overrides, message", [
    ({"root": "/home/me/project"}, "EC2 training needs an s3:// root (storage.root in project.yaml or --root), "
                                   "got '/home/me/project'"),
    ({"root": "s3:///prefix"}, "EC2 training needs an s3:// root"),
    ({"run_id": "a:b"}, "run id 'a:b' cannot name a CloudWatch Logs stream"),
    ({"log_group": "bad group"}, "log group 'bad group' is not a CloudWatch Logs group name"),
    ({"endpoint_url": "localhost:9000"}, "endpoint URL 'localhost:9000' must be http(s)://host[:port]"),
    ({"train_args": ["baseline"]}, "EC2 training runs 'multitype train transformer ...'"),
    ({"train_args": ["transformer", "--root", "s3://x/y"]}, "train argument '--root' is set by the user data itself"),
    ({"train_args": ["transformer", "--resume=never"]}, "train argument '--resume=never' is set by the user data"),
    ({"train_args": ["transformer", "--model-name", "x" * 20000]}, "over EC2's 16384"),
])
def test_bad_input_is_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        render(**overrides)
    assert str(info.value).startswith(message) or message in str(info.value)


# --- the whole flow, locally -----------------------------------------------------------------------------
TRAINING = {"num_epochs": 12, "learning_rate": 1e-3,
            "checkpoint": {"every_steps": 2, "every_minutes": None, "keep_last_epochs": 1}}


def prepare_project(tmp_path: Path, s3_server) -> tuple[str, Path]:
    """A project folder pushed with the real 'sync push' (data, configs, code) to a fresh S3 root."""
    from multitype.cloud.bundle import code_files
    from multitype.sync import sync

    project = write_processed(tmp_path / "project")
    project_yaml = "name: spot-test\nseed: 42\naws: {region: us-east-1, profile: my-laptop-profile}\n"
    write_configs(project / "configs", transformer=transformer_yaml(**TRAINING), project=project_yaml)
    root = f"s3://{s3_server.make_bucket('ec2flow')}/proj"
    sync("push", local=project, remote=root, only="data,configs,code", endpoint_url=s3_server.endpoint_url,
         code_files=code_files(project))
    return root, project


def run_instance(script: Path, work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = open(work.parent / f"{work.name}.console", "wb")
    return subprocess.Popen(["bash", str(script)], env={**env, "MULTITYPE_WORK_DIR": str(work)},
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def spot_instance(imds_stub) -> tuple[object, str]:
    """A persistent spot request in moto; the IMDS stub answers with its instance's id. (client, request id)."""
    from multitype.cloud.aws import client
    from multitype.config import AwsConfig

    ec2 = client("ec2", AwsConfig(region="us-east-1"))
    made = ec2.request_spot_instances(InstanceCount=1, Type="persistent",
                                      LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"})
    request = made["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    found = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request])["SpotInstanceRequests"][0]
    imds_stub.instance_id = found["InstanceId"]
    return ec2, request


def request_state(ec2, request: str) -> str:
    """The request's state; moto forgets a cancelled request (AWS lists it as ``cancelled``): ``cancelled`` too."""
    found = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    states = [r["State"] for r in found if r["SpotInstanceRequestId"] == request]
    return states[0] if states else "cancelled"


def reference_metrics(tmp_path: Path, model: Path) -> dict:
    """The same training, uninterrupted, on a local root (same data, configs, seed, one thread)."""
    import torch

    from multitype.cli import main

    root = write_processed(tmp_path / "reference")
    configs = write_configs(tmp_path / "reference-configs", transformer=transformer_yaml(**TRAINING))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "transformer", "--model-name", str(model), "--root", str(root),
                     "--config-dir", str(configs)]) == 0
    finally:
        torch.set_num_threads(before)
    return json.loads((root / f"results/transformer/{spot.SLUG}_metrics.json").read_text())


@pytest.mark.slow
def test_train_notice_checkpoint_shutdown_then_a_second_instance_resumes_and_finishes(
        s3_server, imds_stub, aws_env, tmp_path: Path) -> None:
    root, _ = prepare_project(tmp_path, s3_server)
    model = spot.tiny_model(tmp_path / spot.MODEL_DIR_NAME)
    run_id = "20261201-120000-ec2-spot"
    script = tmp_path / "user-data.sh"
    script.write_text(render_user_data(root=root, region="us-east-1", run_id=run_id,
                                       train_args=["transformer", "--model-name", str(model)],
                                       endpoint_url=s3_server.endpoint_url), encoding="utf-8")
    shutdowns = tmp_path / "shutdown-calls"
    env = {**os.environ, **spot.THREADS_ENV,
           "MULTITYPE_SHUTDOWN_CMD": f'echo "$MULTITYPE_EXIT_CODE" >> {shlex.quote(str(shutdowns))}',
           "MULTITYPE_USE_PYTHON": sys.executable, "MULTITYPE_SPOT_WATCH_INTERVAL": "0.5",
           "MULTITYPE_LOG_SHIP_INTERVAL": "0.5"}
    for name in ("AWS_ENDPOINT_URL",):  # the script sets the S3 endpoint itself (endpoint_url)
        env.pop(name, None)

    # instance 1: trains until the notice, saves a checkpoint to S3, exits 143, calls the shutdown command
    ec2, request1 = spot_instance(imds_stub)
    instance1 = imds_stub.instance_id
    first = run_instance(script, tmp_path / "instance-1", env)
    with spot.reaped(first):
        spot.wait_until(lambda: spot.complete_steps(s3_server, root) != [], "a first step checkpoint in S3",
                        timeout=120, alive=lambda: first.poll() is None)
        imds_stub.interrupt()
        noticed = time.monotonic()
        first.wait(timeout=120)
        reaction = time.monotonic() - noticed
    log1 = (tmp_path / "instance-1" / "user-data.log").read_text(errors="replace")
    assert first.returncode == 143, log1[-3000:]
    print(f"instance 1: notice -> checkpoint in S3 -> exit: {reaction:.2f} s")
    assert shutdowns.read_text().split() == ["143"]
    assert "ignoring aws.profile 'my-laptop-profile' of project.yaml on the instance" in log1
    assert "spot interruption notice: terminate at" in log1 and "Traceback" not in log1
    stopped_at = spot.resume_step(root, s3_server)
    total = 12 * 3
    assert 0 < stopped_at <= total, stopped_at
    if stopped_at < total:
        assert f"checkpoint saved at step {stopped_at}" in log1
    else:  # on a loaded machine the last epoch can end before the notice: it lands in the final evaluation
        assert "during the final evaluation; training is complete and checkpointed" in log1
    bucket, _, prefix = root[len("s3://"):].partition("/")
    assert f"{prefix}/results/transformer/{spot.SLUG}_metrics.json" not in s3_server.list_keys(bucket, prefix)
    assert request_state(ec2, request1) == "active" and "cancelled the persistent spot request" not in log1

    # instance 2 (a replacement from the persistent request): a fresh work folder, no notice; resumes and finishes
    imds_stub.clear()
    ec2, request2 = spot_instance(imds_stub)
    instance2 = imds_stub.instance_id
    second = run_instance(script, tmp_path / "instance-2", env)
    with spot.reaped(second):
        second.wait(timeout=180)
    log2 = (tmp_path / "instance-2" / "user-data.log").read_text(errors="replace")
    assert second.returncode == 0, log2[-3000:]
    assert shutdowns.read_text().split() == ["143", "0"]
    assert f"resuming from {root}/models/checkpoints/{spot.SLUG}-" in log2 and f"step {stopped_at})" in log2
    # done: its persistent request is cancelled before the shutdown, so no third instance is started for nothing
    assert request_state(ec2, request2) == "cancelled"
    assert f"cancelled the persistent spot request {request2} of {instance2}: no replacement" in log2

    # the same metrics as a run that was never interrupted
    got = spot.read_json(s3_server, root, f"results/transformer/{spot.SLUG}_metrics.json")
    want = reference_metrics(tmp_path, model)
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "global_step", "best_epoch"):
        assert got[key] == want[key], key
    assert got["global_step"] == total
    for x, y in zip(got["history"], want["history"], strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-5 and x["val_macro_f1"] == y["val_macro_f1"]

    # logs: each instance's file in S3, both in the run's CloudWatch Logs stream
    keys = s3_server.list_keys(bucket, f"{prefix}/runs/{run_id}/")
    assert keys == sorted([f"{prefix}/runs/{run_id}/ec2-finished.json",
                           f"{prefix}/runs/{run_id}/user-data-{instance1}.log",
                           f"{prefix}/runs/{run_id}/user-data-{instance2}.log"])
    from multitype.cloud.aws import client
    from multitype.config import AwsConfig

    events = client("logs", AwsConfig()).get_log_events(logGroupName="/multitype/ec2", logStreamName=run_id,
                                                         startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert any("spot interruption notice: terminate at" in m for m in messages)
    assert any(m.startswith("resuming from ") for m in messages)
    assert any("failed" not in m and "finished: training done" in m for m in messages)

    # a replacement that starts anyway (the cancellation failed or came late) trains nothing and shuts down
    ec2, request3 = spot_instance(imds_stub)
    third = run_instance(script, tmp_path / "instance-3", env)
    with spot.reaped(third):
        third.wait(timeout=120)
    log3 = (tmp_path / "instance-3" / "user-data.log").read_text(errors="replace")
    assert third.returncode == 0, log3[-3000:]
    assert f"run {run_id} already finished ({root}/runs/{run_id}/ec2-finished.json): nothing to train" in log3
    assert "multitype train transformer" not in log3 and "resuming from" not in log3
    assert shutdowns.read_text().split() == ["143", "0", "0"]
    assert request_state(ec2, request3) == "cancelled"
    assert spot.read_json(s3_server, root, f"results/transformer/{spot.SLUG}_metrics.json") == got


def test_a_failure_before_training_still_pushes_the_log_and_shuts_down(s3_server, imds_stub, aws_env,
                                                                       tmp_path: Path) -> None:
    """No code under the root: the script stops at the first error, says so, pushes its log, shuts down."""
    root = f"s3://{s3_server.make_bucket('ec2fail')}/proj"
    script = tmp_path / "user-data.sh"
    script.write_text(render_user_data(root=root, region="us-east-1", run_id="run-fail",
                                       train_args=["transformer", "--model-name", "minilm"],
                                       endpoint_url=s3_server.endpoint_url), encoding="utf-8")
    shutdowns = tmp_path / "shutdown-calls"
    env = {**os.environ, "MULTITYPE_SHUTDOWN_CMD": f'echo "$MULTITYPE_EXIT_CODE" >> {shlex.quote(str(shutdowns))}',
           "MULTITYPE_USE_PYTHON": sys.executable, "MULTITYPE_LOG_SHIP_INTERVAL": "0.5"}
    env.pop("AWS_ENDPOINT_URL", None)
    ec2, request = spot_instance(imds_stub)
    proc = run_instance(script, tmp_path / "instance", env)
    with spot.reaped(proc):
        proc.wait(timeout=120)
    log = (tmp_path / "instance" / "user-data.log").read_text(errors="replace")
    assert proc.returncode == 1, log[-3000:]
    assert f"error: {root}/code/src/multitype not found; run 'multitype sync push --only code' first" in log
    assert "failed with exit code 1" in log
    assert shutdowns.read_text().split() == ["1"]
    bucket, _, prefix = root[len("s3://"):].partition("/")
    assert s3_server.list_keys(bucket, f"{prefix}/runs/") == [
        f"{prefix}/runs/run-fail/user-data-{imds_stub.instance_id}.log"]
    # a replacement would fail the same way: the persistent request is cancelled (without the code: boto3 alone)
    assert request_state(ec2, request) == "cancelled"
    assert f"cancelled the persistent spot request {request} of {imds_stub.instance_id}: no replacement" in log
    console = (tmp_path / "instance.console").read_text(errors="replace")
    assert "pushing the log and shutting down" in console
