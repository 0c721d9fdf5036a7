"""Benchmark ``multitype sagemaker launch`` on the BBC project: time to the request, sourcedir size, upload.

Not a test. Starts its own SeaweedFS (S3) and moto (SageMaker control plane) on
127.0.0.1, runs ``multitype prepare`` on the embedded BBC News data (4 classes)
into a fresh project folder, then launches, in one process each time so that
the imports (sagemaker-core's catalog ~2 s, botocore) are counted as a user
meets them:

``first``
    a fresh bucket: pushes ``data/processed``, the configs, the code bundle
    and the sourcedir, then sends ``CreateTrainingJob``;
``again``
    nothing changed: the sync lists, finds everything in place, sends the request;
``code-change``
    one source file touched (a new sourcedir hash): only that file and the new
    tarball move.

Reported per launch: seconds from the start of ``launch()`` to the request
being sent (``seconds_to_request``, as launch measures it), the whole command's
wall time (``command_seconds``, interpreter start included), files and bytes
uploaded; and the size of sourcedir.tar.gz. Results:
``benchmarks/results/sagemaker_launch.json``.

Usage::

    .venv/bin/python benchmarks/sagemaker_launch.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import SeaweedServer, _free_ports, weed_binary, write_configs  # noqa: E402
from tests.cloud.launch_helpers import ENTRY_SCRIPT, project_yaml  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "sagemaker_launch.json"

# one launch in a child process: what the user's `multitype sagemaker launch` does, timed by launch() itself
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from multitype.cloud.sagemaker import sourcedir
try:
    from multitype.cloud.sagemaker.entrypoint import ENTRY_SCRIPT  # noqa: F401
except ImportError:  # the entry point's branch is not merged yet: its contract
    sourcedir._entry_script = lambda: json.loads(sys.argv[3])
from multitype.cloud.sagemaker.launch import LaunchOptions, launch
from multitype.project import open_project
project = open_project(sys.argv[1], sys.argv[2], "sagemaker launch")
result = launch(project, LaunchOptions(model_name="minilm"), sys.argv[2], echo=lambda line: None)
print(json.dumps({"seconds_to_request": result.jobs[0].seconds_to_request, "launch_seconds": result.seconds,
                  "uploaded": result.uploaded, "uploaded_bytes": result.uploaded_bytes, "phases": result.phases,
                  "sourcedir_bytes": result.sourcedir_bytes,
                  "sourcedir_uri": result.sourcedir_uri, "job": result.jobs[0].job_name,
                  "process_seconds": time.perf_counter() - t0}))
"""


def run_launch(root: Path, configs: Path, env: dict[str, str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(configs), json.dumps(ENTRY_SCRIPT)],
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["command_seconds"] = time.perf_counter() - start
    out["uploaded_files"] = len(out.pop("uploaded"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    work = Path(tempfile.mkdtemp(prefix="bench-sm-"))
    weed = SeaweedServer(work / "weed", weed_binary())
    weed.start()
    port = _free_ports(1)[0]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        env = {**os.environ, **weed.env, "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{port}",
               "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{port}",
               "SAGEMAKER_ROLE": "arn:aws:iam::123456789012:role/Bench", "PYTHONPATH": str(REPO / "src"),
               "AWS_EC2_METADATA_DISABLED": "true"}
        runs: dict[str, list[dict]] = {"first": [], "again": [], "code-change": []}
        for r in range(args.repeats):
            base = work / f"round{r}"
            bucket = weed.make_bucket("bench")
            configs = write_configs(base / "configs", project=project_yaml(f"s3://{bucket}/bbc", role=None))
            root = base / "root"
            subprocess.run([sys.executable, "-m", "multitype", "prepare", "--root", str(root), "--config-dir",
                            str(configs)], env=env, check=True, capture_output=True, timeout=600)
            shutil.copytree(REPO / "src", root / "src")  # a project folder with its own source tree
            runs["first"].append(run_launch(root, configs, env))
            time.sleep(1.1)  # job names carry the second
            runs["again"].append(run_launch(root, configs, env))
            time.sleep(1.1)
            (root / "src" / "multitype" / "layout.py").write_text(
                (root / "src" / "multitype" / "layout.py").read_text() + f"\n# edit {r}\n")
            runs["code-change"].append(run_launch(root, configs, env))
        processed = sum(p.stat().st_size for p in (work / "round0" / "root" / "data" / "processed").iterdir())
        summary = {
            name: {key: statistics.median(x[key] for x in items)
                   for key in ("seconds_to_request", "command_seconds", "uploaded_files", "uploaded_bytes")}
            for name, items in runs.items()}
        for name, items in runs.items():
            summary[name]["phases"] = {p: statistics.median(x["phases"][p] for x in items)
                                       for p in items[0]["phases"] if not p.startswith("create ")}
        report = {
            "what": "multitype sagemaker launch on the prepared BBC News project (4 classes) against SeaweedFS "
                    "(S3) and moto (SageMaker), one child process per launch; medians over rounds",
            "sourcedir_bytes": runs["first"][0]["sourcedir_bytes"],
            "processed_data_bytes": processed,
            "summary": summary, "runs": runs, "repeats": args.repeats,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                        "load_avg_1m_end": os.getloadavg()[0]},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({"sourcedir_bytes": report["sourcedir_bytes"], "summary": summary}, indent=2))
    finally:
        moto.stop()
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
