# syntax=docker/dockerfile:1
# One image for the API and the worker; the torch build is chosen by build argument:
#   CPU (default): docker build -t sidyp:cpu .
#   GPU:           docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t sidyp:gpu .
# Both builds start from the same python:3.11 image (the nvidia/cuda ubuntu22.04 images ship Python 3.10,
# too old for the project). A CUDA torch wheel brings its CUDA runtime libraries as nvidia-* wheels; only
# the driver comes from the host, mounted by the NVIDIA container toolkit. See docs/deploy.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, alone, from the chosen build's index: the project install then finds it satisfied and never
# pulls the default (CUDA, multi-GB) build from PyPI. TORCH_SPEC pins the version.
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"
WORKDIR /src
# .dockerignore keeps out .venv, .git, data, tests and benchmark results; pyproject decides what ships.
COPY . .
# hadolint ignore=DL3013
RUN pip install . && python -c "import torch, sidyp_engine, sidyp_client; print('torch', torch.__version__)"

FROM ${BASE_IMAGE} AS runtime
# NVIDIA_DRIVER_CAPABILITIES: without it the toolkit mounts only `utility` (nvidia-smi), not the CUDA
# driver library, into a non-CUDA base image. NVIDIA_VISIBLE_DEVICES is left to the GPU reservation, so a
# container that reserved no GPU (the API) gets none. (DL3064 takes TOKENIZERS_PARALLELISM for a secret.)
# hadolint ignore=DL3064
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SIDYP_DATA_DIR=/data \
    PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 sidyp && mkdir -p /data && chown 10001:10001 /data
USER 10001
WORKDIR /home/sidyp
VOLUME ["/data"]
EXPOSE 8000
# The API's check; compose gives the worker `sidyp healthcheck worker` (its heartbeat in the store), never
# Celery's `inspect ping`, which a solo-pool worker cannot answer while it runs a job.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["sidyp", "healthcheck", "api"]
CMD ["sidyp", "serve", "--host", "0.0.0.0", "--port", "8000"]
