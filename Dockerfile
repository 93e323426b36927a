# The kmnist-sweep agent image.
#
# Production: a CUDA build of PyTorch as the base (the default below); pick the tag that matches
# your driver at https://hub.docker.com/r/pytorch/pytorch/tags. torch comes from the base.
#   docker compose build                       # or: docker build -t kmnist-sweep .
# CI / CPU hosts with no registry: a plain Python base plus the CPU torch wheel copied into
# docker/wheels/ (see docker/wheels/README.md):
#   docker build --build-arg BASE=kmnist-base:bookworm -t kmnist-sweep .
#
# Secrets (W&B key, database password) are passed at run time only: .dockerignore keeps .env,
# netrc files and wandb/ out of the build context, and no ARG or ENV here carries one.
ARG BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# --system-site-packages: the venv sees the base image's CUDA torch.
RUN python3 -m venv --system-site-packages /opt/venv
# Dependencies before source, each in its own layer: a code change rebuilds only the last one.
COPY docker/wheels/ /tmp/wheels/
RUN for wheel in /tmp/wheels/torch-*.whl; do \
      if [ -e "$wheel" ]; then /opt/venv/bin/pip install --no-deps "$wheel"; fi; \
    done
COPY docker/requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install -r /tmp/requirements.lock
COPY pyproject.toml README.md /src/
COPY kmnist /src/kmnist
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/python -c "import torch, kmnist.cli; print('torch', torch.__version__)"

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KMNIST_DATA_DIR=/data \
    KMNIST_GPU_LEASE_DIR=/leases \
    WANDB_DIR=/state
# A numeric user, so Kubernetes' runAsNonRoot can check it. A named volume mounted on these
# folders starts as a copy, owned by that user (no VOLUME: it would leave anonymous volumes).
RUN groupadd --gid 10001 agent \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin agent \
    && mkdir -p /data /leases /state \
    && chown 10001:10001 /data /leases /state
COPY --from=build /opt/venv /opt/venv
COPY agents/entrypoint.sh /usr/local/bin/kmnist-entrypoint
COPY sweeps /app/sweeps
WORKDIR /app
USER 10001:10001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "kmnist.healthcheck"]
ENTRYPOINT ["kmnist-entrypoint"]
CMD ["agent"]
