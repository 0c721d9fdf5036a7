#!/bin/bash
# multitype EC2 user data: bootstrap, train on the S3 root, shut down. Rendered by
# multitype.cloud.ec2.userdata.render_user_data (every value below is shell-quoted there).
# It holds no credentials: the instance profile provides them.
#
# 1. log to the console and $WORK_DIR/user-data.log (and, once the package is there, CloudWatch Logs)
# 2. the Python with torch: the Deep Learning AMI's PyTorch environment (no second torch)
# 3. the code from <root>/code/ (what 'multitype sync push --only code' uploaded): src/ on PYTHONPATH,
#    the pinned runtime requirements (the same list as a SageMaker job's sourcedir) installed
# 4. configs from <root>/configs/; data, checkpoints and results stay in S3 (training runs on the S3 root)
# 5. multitype train ... --root <root> --resume auto, with the spot watcher on
# 6. whatever happened (success, failure, a spot notice: exit 143): push the log, shut down;
#    InstanceInitiatedShutdownBehavior=terminate makes that a termination. After a success or a failure
#    this instance's persistent spot request (if any) is cancelled first: a terminated instance of an open
#    persistent request is replaced, and only a spot notice (exit 143) should bring a replacement. A finished
#    run is marked in <root>/runs/<run id>/ec2-finished.json; a replacement that still starts shuts down.
#
# A local rehearsal (tests/cloud/test_user_data.py) overrides the machine-specific parts:
#   MULTITYPE_WORK_DIR      work folder (default /opt/multitype)
#   MULTITYPE_SHUTDOWN_CMD  run at the end through 'bash -c', with MULTITYPE_EXIT_CODE set (default: shutdown -h now)
#   MULTITYPE_USE_PYTHON    this interpreter, as it is: no AMI lookup, nothing installed
#   MULTITYPE_IMDS_URL      the instance metadata service (default http://169.254.169.254)
set -euo pipefail

ROOT=@@root
REGION=@@region
RUN_ID=@@run_id
LOG_GROUP=@@log_group
ENDPOINT_URL=@@endpoint_url
TRAIN_ARGS=(@@train_args)
BOOTSTRAP_BOTO3=@@boto3_requirement
TORCH_REQUIREMENT=@@torch_requirement

WORK_DIR=${MULTITYPE_WORK_DIR:-/opt/multitype}
SHUTDOWN_CMD=${MULTITYPE_SHUTDOWN_CMD:-shutdown -h now}
USE_PYTHON=${MULTITYPE_USE_PYTHON:-}
export MULTITYPE_IMDS_URL=${MULTITYPE_IMDS_URL:-http://169.254.169.254}
export MULTITYPE_SPOT_WATCH=1
export AWS_DEFAULT_REGION="$REGION" AWS_REGION="$REGION"
if [ -n "$ENDPOINT_URL" ]; then
    export AWS_ENDPOINT_URL="$ENDPOINT_URL"
fi
export PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1

mkdir -p "$WORK_DIR"
LOG_FILE="$WORK_DIR/user-data.log"
exec 3>&1 4>&2  # the console, for the last lines after the log file is closed
exec > >(tee -a "$LOG_FILE") 2>&1  # the console (cloud-init's output log) and the file
TEE_PID=$!
PY=""
SHIPPER_PID=""

say() { echo "multitype-ec2 $(date -u +%Y-%m-%dT%H:%M:%SZ): $*"; }

# boto3 and the metadata service only (it must work when the code never arrived)
cancel_spot_request() {
    "$PY" - "$MULTITYPE_IMDS_URL" <<'MULTITYPE_CANCEL_SPOT'
import sys, urllib.request
import boto3
base = sys.argv[1].rstrip("/")
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
token = http.open(urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                  headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=2).read().decode()
instance = http.open(urllib.request.Request(f"{base}/latest/meta-data/instance-id",
                     headers={"X-aws-ec2-metadata-token": token}), timeout=2).read().decode().strip()
ec2 = boto3.client("ec2")
found = ec2.describe_spot_instance_requests(Filters=[{"Name": "instance-id", "Values": [instance]}])
ids = [r["SpotInstanceRequestId"] for r in found["SpotInstanceRequests"]
       if r.get("Type") == "persistent" and r.get("State") in ("open", "active", "disabled")]
if ids:
    ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids)
    print(f"cancelled the persistent spot request {', '.join(ids)} of {instance}: no replacement")
MULTITYPE_CANCEL_SPOT
}

finish() {
    local code=$?
    trap - EXIT
    set +e
    case "$code" in
        0) say "finished: training done" ;;
        143) say "stopped: a spot notice or SIGTERM, checkpoint saved in $ROOT (exit 143); a replacement resumes it" ;;
        *) say "failed with exit code $code" ;;
    esac
    if [ "$code" != 143 ] && [ -n "$PY" ]; then
        cancel_spot_request || say "warning: could not cancel this instance's spot request (if it is persistent, cancel it)"
    fi
    say "pushing the log and shutting down: $SHUTDOWN_CMD"
    # close the log file before the shipper's last batch: back to the console, then let tee write what it holds
    exec 1>&3 2>&4
    for _ in $(seq 1 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done
    if [ -n "$SHIPPER_PID" ]; then
        kill -TERM "$SHIPPER_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$SHIPPER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SHIPPER_PID" 2>/dev/null
    fi
    if [ -n "$PY" ]; then
        "$PY" -m multitype.cloud.ec2.bootstrap push-log --root "$ROOT" --run-id "$RUN_ID" --file "$LOG_FILE" \
            || say "could not push the log to $ROOT"
    fi
    MULTITYPE_EXIT_CODE="$code" bash -c "$SHUTDOWN_CMD"
    exit "$code"
}
trap finish EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

say "run $RUN_ID: root $ROOT, region $REGION, work dir $WORK_DIR"

@@install_code

# -- 1 (cont.). CloudWatch Logs: this file, from its first line, into LOG_GROUP / RUN_ID
# (its own output goes to the file, not through tee: tee must see its end when the script closes its output)
"$PY" -m multitype.cloud.ec2.bootstrap ship-logs --group "$LOG_GROUP" --stream "$RUN_ID" --file "$LOG_FILE" \
    --region "$REGION" >>"$LOG_FILE" 2>&1 &
SHIPPER_PID=$!

# -- 4. configs (data, checkpoints and results are read and written in S3 by training itself)
"$PY" -m multitype.cloud.ec2.bootstrap configs --root "$ROOT" --dest "$WORK_DIR/configs"

# -- 5. train; a spot notice saves a checkpoint and exits 143
state=$("$PY" -m multitype.cloud.ec2.bootstrap finished --root "$ROOT" --run-id "$RUN_ID")
if [ "$state" = finished ]; then
    say "run $RUN_ID already finished ($ROOT/runs/$RUN_ID/ec2-finished.json): nothing to train"
    exit 0
fi
cd "$WORK_DIR"
say "multitype train ${TRAIN_ARGS[*]} --root $ROOT --resume auto"
"$PY" -m multitype train "${TRAIN_ARGS[@]}" --root "$ROOT" --config-dir "$WORK_DIR/configs" --resume auto &
TRAIN_PID=$!
trap 'kill -TERM "$TRAIN_PID" 2>/dev/null' TERM
set +e
wait "$TRAIN_PID"
code=$?
if kill -0 "$TRAIN_PID" 2>/dev/null; then  # a SIGTERM to this script interrupted the wait: let training save
    wait "$TRAIN_PID"
    code=$?
fi
set -e
if [ "$code" = 0 ]; then
    "$PY" -m multitype.cloud.ec2.bootstrap finished --root "$ROOT" --run-id "$RUN_ID" --mark >/dev/null \
        || say "warning: could not write $ROOT/runs/$RUN_ID/ec2-finished.json"
fi
exit "$code"
