#!/bin/bash
# multitype serving user data (the launch template of 'multitype autoscale'): install the package, serve the
# model from S3 under systemd. Rendered by multitype.cloud.autoscale.userdata.render_serve_user_data (every
# value below is shell-quoted there). It holds no credentials: the instance profile provides them.
#
# 1. log to the console and $WORK_DIR/user-data.log
# 2. the Python with torch: the Deep Learning AMI's PyTorch environment, else a venv with the pinned torch
# 3. the code from <root>/code/ (what 'multitype autoscale apply' pushed): src/ on PYTHONPATH and the pinned
#    runtime requirements installed, as the EC2 training user data does
# 4. a systemd service, multitype-serve: 'multitype serve --model <model> --host 0.0.0.0 --port <port>',
#    restarted whenever it stops (Restart=always) and started again after a reboot (enabled)
#
# A local rehearsal (tests/cloud/test_autoscale_user_data.py) overrides the machine-specific parts:
#   MULTITYPE_WORK_DIR      work folder (default /opt/multitype)
#   MULTITYPE_USE_PYTHON    this interpreter, as it is: no AMI lookup, nothing installed
#   MULTITYPE_SYSTEMD_DIR   where the unit file goes (default /etc/systemd/system)
#   MULTITYPE_SYSTEMCTL     the systemctl command (default systemctl)
set -euo pipefail

ROOT=@@root
REGION=@@region
MODEL=@@model
PORT=@@port
ENDPOINT_URL=@@endpoint_url
BOOTSTRAP_BOTO3=@@boto3_requirement
TORCH_REQUIREMENT=@@torch_requirement
SERVICE=multitype-serve

WORK_DIR=${MULTITYPE_WORK_DIR:-/opt/multitype}
USE_PYTHON=${MULTITYPE_USE_PYTHON:-}
SYSTEMD_DIR=${MULTITYPE_SYSTEMD_DIR:-/etc/systemd/system}
SYSTEMCTL=${MULTITYPE_SYSTEMCTL:-systemctl}
export AWS_DEFAULT_REGION="$REGION" AWS_REGION="$REGION"
if [ -n "$ENDPOINT_URL" ]; then
    export AWS_ENDPOINT_URL="$ENDPOINT_URL"
fi
export PYTHONUNBUFFERED=1

mkdir -p "$WORK_DIR"
exec > >(tee -a "$WORK_DIR/user-data.log") 2>&1

say() { echo "multitype-serve $(date -u +%Y-%m-%dT%H:%M:%SZ): $*"; }
trap 'say "failed with exit code $? (see $WORK_DIR/user-data.log)"' ERR

say "serving $MODEL on port $PORT: root $ROOT, region $REGION, work dir $WORK_DIR"

@@install_code

# -- 4. the service (every value in it was checked to hold no space, quote or '%' when rendered)
mkdir -p "$SYSTEMD_DIR"
cat >"$SYSTEMD_DIR/$SERVICE.service.part" <<MULTITYPE_UNIT
[Unit]
Description=multitype serve ($MODEL)
After=network-online.target
Wants=network-online.target

[Service]
# an unprivileged user of its own, with a writable home for the libraries' caches
DynamicUser=yes
CacheDirectory=$SERVICE
Environment=HOME=/var/cache/$SERVICE
Environment=PYTHONPATH=$WORK_DIR/code/src
Environment=AWS_REGION=$REGION
Environment=AWS_DEFAULT_REGION=$REGION
Environment=PYTHONUNBUFFERED=1
${ENDPOINT_URL:+Environment=AWS_ENDPOINT_URL=$ENDPOINT_URL}
WorkingDirectory=$WORK_DIR
ExecStart=$PY -m multitype serve --model $MODEL --host 0.0.0.0 --port $PORT
Restart=always
RestartSec=5
# 'multitype serve' finishes the requests in flight on SIGTERM
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
MULTITYPE_UNIT
mv "$SYSTEMD_DIR/$SERVICE.service.part" "$SYSTEMD_DIR/$SERVICE.service"
$SYSTEMCTL daemon-reload
$SYSTEMCTL enable --now "$SERVICE.service"
say "started $SERVICE.service: multitype serve --model $MODEL --host 0.0.0.0 --port $PORT"
