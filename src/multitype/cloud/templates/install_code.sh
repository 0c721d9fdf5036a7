# A part of the EC2 user-data templates (ec2_user_data.sh, serve_user_data.sh), put in at @@install_code:
# the Python with torch (the Deep Learning AMI's, else a venv) and the code of <root>/code/ with its pinned
# requirements. Needs ROOT, WORK_DIR, USE_PYTHON, TORCH_REQUIREMENT, BOOTSTRAP_BOTO3 and say(); sets PY and
# PYTHONPATH.
# -- 2. the Python with torch
INSTALL=1
PY=""
if [ -n "$USE_PYTHON" ]; then
    PY="$USE_PYTHON"
    INSTALL=0
    say "using $PY as it is (MULTITYPE_USE_PYTHON): nothing installed"
else
    for candidate in /opt/pytorch/bin/python3 /opt/conda/envs/pytorch/bin/python3; do
        if [ -x "$candidate" ]; then PY="$candidate"; break; fi
    done
    if [ -z "$PY" ]; then
        say "no Deep Learning AMI PyTorch environment: making a venv and installing $TORCH_REQUIREMENT"
        python3 -m venv "$WORK_DIR/venv"
        PY="$WORK_DIR/venv/bin/python3"
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet "$TORCH_REQUIREMENT"
    fi
fi
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'

# -- 3. the code: <root>/code/ (requirements.txt, src/, bundle.json; not the SageMaker tarballs)
if ! "$PY" -c 'import boto3' 2>/dev/null; then
    "$PY" -m pip install --quiet "$BOOTSTRAP_BOTO3"
fi
"$PY" - "$ROOT" "$WORK_DIR/code" <<'MULTITYPE_FETCH_CODE'
@@fetch_code
MULTITYPE_FETCH_CODE
if [ "$INSTALL" = 1 ]; then
    cat >"$WORK_DIR/requirements.txt" <<'MULTITYPE_REQUIREMENTS'
@@requirements
MULTITYPE_REQUIREMENTS
    "$PY" -m pip install --quiet -r "$WORK_DIR/requirements.txt"
fi
export PYTHONPATH="$WORK_DIR/code/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import multitype, os; print("multitype from", os.path.dirname(multitype.__file__))'
