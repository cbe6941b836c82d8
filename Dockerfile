# gpusim on an NVIDIA GPU: the package with its GPU extra in a virtual environment, run as a
# non-root user; `gpusim` is the entrypoint. On a machine with the NVIDIA Container Toolkit:
#
#   docker build -t gpusim:cuda12 .
#   docker run --rm --gpus all -v /mnt/runs:/data gpusim:cuda12 run baseline --paths 1000000 --out /data/baseline.h5
#
# For a driver that reports CUDA 13 in nvidia-smi, and with JAX on the GPU as well (docs/cloud.md):
#
#   docker build -t gpusim:cuda13 --build-arg CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04 \
#       --build-arg GPU_EXTRA=cuda13,jax-cuda13 .
#
# Ubuntu 24.04 for its Python 3.12 (gpusim needs 3.11 or newer; 22.04 has 3.10).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG GPU_EXTRA=cuda12

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# 10001:10001, so a host folder mounted at /data can be handed to it (chown 10001:10001); Ubuntu
# 24.04 images already have a user 1000 (ubuntu)
RUN groupadd --gid 10001 gpusim \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin gpusim \
    && python3 -m venv /opt/gpusim \
    && mkdir -p /data /cache \
    && chown gpusim:gpusim /data /cache

COPY pyproject.toml README.md /src/
COPY gpusim /src/gpusim
COPY configs /src/configs
COPY kernels /src/kernels
RUN /opt/gpusim/bin/pip install "/src[${GPU_EXTRA}]" \
    && rm -rf /src

# Compiled kernels (gpusim's generated headers, cupy's NVRTC cache) go to /cache: mount a
# persistent volume there and a new container skips the compile.
ENV PATH=/opt/gpusim/bin:$PATH \
    XDG_CACHE_HOME=/cache \
    CUPY_CACHE_DIR=/cache/cupy

USER gpusim
WORKDIR /data
ENTRYPOINT ["gpusim"]
CMD ["--help"]
