# The AutoCoder chat (`python -m app`) on a GPU host.
#
#   docker build -t autocoder .
#   docker run --rm -it --gpus all --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /tmp/autocoder-sessions:/tmp/autocoder-sessions \
#     -v "$PWD/logins:/run/secrets/autocoder-logins:ro" -v autocoder-hf:/data \
#     autocoder --auth-file /run/secrets/autocoder-logins --model Bin12345/AutoCoder_S_6.7B --quantize 4bit
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
# Who can reach what:
# - The app binds 127.0.0.1 (the default; no --host here) in the host's network namespace (--network host):
#   only this machine's own users reach it, not other containers. Kernel and installer sandboxes have no
#   network at all (docker: --network none; pip downloads wheels as trusted code in this container, and
#   installs them in a network-less sandbox), so code the model writes cannot reach the app, the host's
#   services or the Docker API. For access from other machines, put an HTTPS reverse proxy on this host in
#   front of 127.0.0.1:7860, or pass `--host 0.0.0.0` with a login on a user-defined network
#   (`docker network create autocoder`; `--network autocoder -p 127.0.0.1:7860:7860`), never the default bridge.
# - The Docker socket is root on the host. Whoever takes over the app process (a bug in the app, Gradio or
#   the model server, not the sandboxes: they never see the socket) owns the host. Run the socket variant
#   only on a machine dedicated to it; the local sandbox needs no socket.
# - Logins: --auth-file (a mounted file, as above) or -e AUTOCODER_AUTH; never --auth USER:PASSWORD, which
#   anyone on the host reads in the process list (`docker inspect` shows environment variables, too).
# - Past chats (the Chats panel) are kept under /data/autocoder/chats (XDG_DATA_HOME), in the /data volume
#   with the model cache; `--no-history` keeps none.
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
    HF_HOME=/data/hf \
    XDG_DATA_HOME=/data

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
ENTRYPOINT ["tini", "--", "python", "-m", "app", "--port", "7860"]
CMD []
