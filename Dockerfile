# The AutoCoder chat (`python -m app`) on a GPU host.
#
#   docker build -t autocoder .
#   docker run --rm -it --gpus all -p 127.0.0.1:7860:7860 \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /tmp/autocoder-sessions:/tmp/autocoder-sessions \
#     -v autocoder-hf:/data autocoder --model Bin12345/AutoCoder_S_6.7B --quantize 4bit
#
# PyTorch: the pinned torch from PyPI is a CUDA build on Linux x86_64 (its CUDA runtime comes as nvidia-*
# wheels), so a plain Python base is enough: `--gpus all` brings the driver. BASE_IMAGE may be swapped for
# any Debian/Ubuntu image with Python >= 3.11 (e.g. a pytorch/pytorch CUDA runtime image).
#
# Sandboxes: with the host's Docker socket mounted, every chat's kernel runs in a sibling container of the
# sandbox image (build it once: `docker run --rm -v /var/run/docker.sock:/var/run/docker.sock
# --entrypoint python autocoder -m interpreter image build`). Session folders are bind-mounted into those containers by the host's
# daemon, so they must have the same path on the host and in here: hence the /tmp/autocoder-sessions mount.
# Without the socket, `--sandbox local` runs kernels in bubblewrap inside this container (needs
# `--security-opt seccomp=unconfined --security-opt apparmor=unconfined` or `--privileged` for user namespaces).
#
# The app binds 0.0.0.0 inside the container; publish it on 127.0.0.1 as above to keep it local, or add --auth.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/data/hf

# tini: PID 1 that forwards SIGTERM (`docker stop` shuts every kernel down) and reaps zombies.
# docker.io: the CLI the docker sandbox uses to talk to the host's daemon. bubblewrap + util-linux (setpriv):
# the local sandbox. python3-venv: only used when the base has no venv module.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini docker.io bubblewrap util-linux ca-certificates \
    && if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
         apt-get install -y --no-install-recommends python3-venv; \
       fi \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/autocoder
# Dependencies first, so editing the code does not re-download them. Behind a TLS-intercepting proxy, put
# the host's CA bundle next to this file as build-ca.crt (e.g. cp /etc/ssl/certs/ca-certificates.crt
# build-ca.crt): pip then trusts it. Without that file the glob copies nothing and pip uses its own CAs.
COPY requirements.txt build-ca.cr[t] ./
RUN python3 -m venv /opt/venv \
    && if [ -s build-ca.crt ]; then export PIP_CERT=/opt/autocoder/build-ca.crt; fi \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml ./
COPY app/ app/
COPY interpreter/ interpreter/
COPY llm/ llm/

ENV PATH=/opt/venv/bin:${PATH}
VOLUME ["/data"]
EXPOSE 7860
ENTRYPOINT ["tini", "--", "python", "-m", "app", "--host", "0.0.0.0", "--port", "7860"]
CMD []
