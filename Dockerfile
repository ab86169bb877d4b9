# syntax=docker/dockerfile:1
# One image for every step of the Kubeflow pipeline (pipeline/kubeflow.py). KFP starts each step
# as `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...` (and
# ImageExampleGen as `python -m pipeline.kubeflow ...`), so `python` on PATH is the venv holding
# exactly uv.lock (uv sync --frozen), this project, and TensorFlow's CUDA libraries.
#
# GPU: instead of a CUDA base image, TensorFlow's own `and-cuda` extra installs the CUDA 12.3 /
# cuDNN 8.9 wheels that TF 2.16.2 was built and tested against (the extra pins each one exactly),
# resolved with the lock as constraints so no locked package moves. The node needs only the
# NVIDIA driver and device plugin (resource `nvidia.com/gpu`). Keras 3 stays the Keras: no
# TF_USE_LEGACY_KERAS here (the stock gcr.io/tfx-oss-public/tfx image sets it).
FROM python:3.10-slim-bookworm

# Python 3.10 above and these pins must match uv.lock (tests/kubeflow/test_dockerfile.py).
ARG UV_VERSION=0.13.9
ARG TENSORFLOW_VERSION=2.16.2
ARG TFX_VERSION=1.16.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.10 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /opt/backbone-regularizer

# Dependencies only (this layer is reused while only the code changes): the lock, no dev group.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# GPU libraries, constrained to the lock.
RUN uv export --frozen --no-dev --no-hashes --no-emit-project --output-file /tmp/locked.txt \
    && uv pip install --python /opt/venv/bin/python --constraint /tmp/locked.txt \
        "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" \
    && rm /tmp/locked.txt

# The project itself, installed (not editable) into the venv; --inexact keeps the CUDA wheels.
COPY components ./components
COPY pipeline ./pipeline
RUN uv sync --frozen --no-dev --no-editable --inexact \
    && python -c "import tensorflow as tf, tfx, keras; \
assert tf.__version__ == '${TENSORFLOW_VERSION}', tf.__version__; \
assert tfx.__version__ == '${TFX_VERSION}', tfx.__version__; \
assert keras.__version__.startswith('3.'), keras.__version__; \
import components.regularizer.executor, pipeline.kubeflow, pipeline.trainer_module; \
import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"

# Non-root, numeric so Kubernetes can enforce runAsNonRoot; HOME is writable (Keras, matplotlib).
RUN groupadd --gid 10001 tfx \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin tfx
USER 10001:10001
WORKDIR /home/tfx

CMD ["backbone-reg", "--help"]
