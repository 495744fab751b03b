# One image for the API and the worker. CPU by default; for GPU workers build with
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t sidyp:gpu .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    SIDYP_DATA_DIR=/data

# CUDA base images ship without Python; the slim image already has it.
RUN if ! command -v python3 >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /srv/sidyp
# torch first, from the index that matches the base image, so the project install never pulls another build.
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY sidyp_engine ./sidyp_engine
COPY benchmarks ./benchmarks
RUN pip install . && useradd --create-home --uid 10001 sidyp && mkdir -p /data && chown sidyp /data
USER sidyp
VOLUME ["/data"]
EXPOSE 8000
CMD ["sidyp", "serve", "--host", "0.0.0.0", "--port", "8000"]
