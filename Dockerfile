# The multitype HTTP API on CPU: `multitype serve` for EC2, containers and SageMaker endpoints alike.
#
#   docker build -t multitype-serve .
#   docker run --rm -p 8080:8080 -v "$PWD/models/final/logreg:/opt/ml/model:ro" multitype-serve
#   docker run --rm -p 8080:8080 -e MULTITYPE_MODEL=s3://bucket/project/models/final/minilm \
#       -e AWS_REGION=us-east-1 multitype-serve          # credentials: an instance/task role, or -e AWS_...
#
# MULTITYPE_MODEL is the model folder (local path or s3://); the default /opt/ml/model is where SageMaker
# puts a model's files, and SageMaker starts the image with the argument `serve`, which this entry point
# takes (any other command runs as given: `docker run IMAGE multitype predict ...`). The port is 8080, or
# SAGEMAKER_BIND_TO_PORT when set (serve honours it). Not built in CI (see README, "Docker").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# CPU torch from PyTorch's CPU wheel index first (no CUDA libraries), then named again with the package
# (as the Makefile does) so pip's resolver keeps that wheel instead of fetching a CUDA build
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . "torch==${TORCH_VERSION}" && rm -rf /app/src

RUN useradd --system --uid 10001 --create-home --home-dir /home/multitype multitype
USER 10001:10001
ENV HOME=/home/multitype HF_HOME=/home/multitype/.cache/huggingface MULTITYPE_MODEL=/opt/ml/model
WORKDIR /home/multitype

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["/bin/sh", "-c", "if [ \"${1:-serve}\" = serve ]; then exec multitype serve --model \"$MULTITYPE_MODEL\" --host 0.0.0.0 --port 8080; else exec \"$@\"; fi", "multitype-entrypoint"]
CMD ["serve"]
