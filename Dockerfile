# syntax=docker/dockerfile:1
# One image for every step of the Kubeflow pipeline (pipeline/kubeflow/). KFP starts each step
# as `python -m backbone_regularizer.pipeline.kubeflow.entrypoint ...` (our entrypoint in front
# of TFX's), so `python` on PATH is the venv holding exactly uv.lock (uv sync --frozen) and this
# project, with every extra of pyproject.toml (the image serves every feature):
# - `gpu`: instead of a CUDA base image, TensorFlow's own `and-cuda` extra installs the CUDA
#   12.3 / cuDNN 8.9 wheels that TF 2.16.2 was built and tested against. The node needs only
#   the NVIDIA driver and device plugin (resource `nvidia.com/gpu`);
# - `s3`: s3:// and MinIO (tensorflow-io for tf.io.gfile, boto3 for Beam);
# - `kerashub`: KerasHub presets and backbones.
# Keras 3 stays the Keras: no TF_USE_LEGACY_KERAS here (the stock gcr.io/tfx-oss-public/tfx
# image sets it). No pip in the venv: TFX runs `python -m pip` only to install a component's
# `module_file`, and this pipeline names its Trainer's `run_fn` by module path instead.
#
# Two stages: the builder has the C/C++ compiler that the lock's sdist-only packages need and
# builds /opt/venv; the runtime stage copies /opt/venv alone, so neither the compiler nor
# uv nor any build cache ends up in the image.

# --- builder ----------------------------------------------------------------------------------
FROM python:3.10-slim-bookworm AS builder

# Python 3.10 above and these pins must match uv.lock (tests/kubeflow/test_dockerfile.py).
ARG UV_VERSION=0.13.9
ARG TENSORFLOW_VERSION=2.16.2
ARG TFX_VERSION=1.16.0
# Debian bookworm's g++, for the two sdists below that compile C/C++.
ARG GXX_VERSION=4:12.2.0-3
# Packages of uv.lock with no wheel for cp310 manylinux x86_64 (glibc 2.36): uv builds them
# from their sdists in this stage; pyfarmhash (C++) and crcmod (C) need the compiler.
# tests/kubeflow/test_dockerfile.py keeps this list equal to what the lock resolves to sdists.
ARG BUILT_FROM_SOURCE="crcmod dill docopt google-apitools hdfs kfp kfp-server-api pyfarmhash rouge-score"

RUN apt-get update \
    && apt-get install --yes --no-install-recommends "g++=${GXX_VERSION}" \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.10 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /src

# Dependencies only (this layer is reused while only the code changes): the lock with every
# extra, no dev group.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra gpu --extra s3 --extra kerashub --extra openlineage \
    --no-install-project \
    && for package in ${BUILT_FROM_SOURCE}; do \
        uv pip show --quiet --python /opt/venv/bin/python "${package}" \
        || { echo "expected ${package} to be built from source" >&2; exit 1; }; \
    done

# The project itself, installed (not editable) into the venv. Then what no step needs: the
# C++ headers TensorFlow ships for building custom ops (~380 MiB) and the debug symbols of
# TensorFlow's and tensorflow-io's shared libraries (the CUDA wheels come stripped).
COPY components ./components
COPY pipeline ./pipeline
RUN uv sync --frozen --no-dev --extra gpu --extra s3 --extra kerashub --extra openlineage \
    --no-editable \
    && /opt/venv/bin/python -c "import tensorflow as tf, tfx, keras; \
assert tf.__version__ == '${TENSORFLOW_VERSION}', tf.__version__; \
assert tfx.__version__ == '${TFX_VERSION}', tfx.__version__; \
assert keras.__version__.startswith('3.'), keras.__version__; \
import backbone_regularizer.components.regularizer.executor, backbone_regularizer.pipeline.kubeflow.entrypoint, backbone_regularizer.pipeline.trainer.module; \
import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor" \
    && rm -rf /opt/venv/lib/python3.10/site-packages/tensorflow/include \
    && find /opt/venv/lib/python3.10/site-packages/tensorflow \
        /opt/venv/lib/python3.10/site-packages/tensorflow_io \
        -type f -name '*.so*' -size +1M -exec strip --strip-debug {} + \
    && /opt/venv/bin/python -c "import tensorflow as tf, tensorflow_io, keras_hub, boto3; \
assert float(tf.reduce_sum(tf.ones([3]))) == 3.0"

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# The venv's interpreter links to /usr/local/bin/python3.10, which both stages share.
COPY --from=builder /opt/venv /opt/venv

# Non-root, numeric so Kubernetes can enforce runAsNonRoot; HOME is writable (Keras, matplotlib).
RUN groupadd --gid 10001 tfx \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin tfx
USER 10001:10001
WORKDIR /home/tfx

CMD ["backbone-reg", "--help"]
