#!/usr/bin/env bash
# Installs and starts the system pieces AutoCoder needs, when they are missing. Idempotent.
#   scripts/ensure_system.sh chat   bubblewrap (local sandbox); starts Docker if it is installed
#   scripts/ensure_system.sh test   + Docker engine (started), Chromium, debootstrap, the sandbox image
# Needs root (or sudo) only when something must be installed.
set -euo pipefail
mode=${1:-chat}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=$(command -v sudo || true); fi

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v setpriv >/dev/null || need+=(util-linux)
# mkfs.ext4: each session's disk quota is a small ext4 filesystem (interpreter/sandboxes/disk.py).
PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ "$mode" = test ]; then
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v chromium >/dev/null || need+=(chromium)
  command -v debootstrap >/dev/null || need+=(debootstrap)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    echo "error: missing system packages (${need[*]}); install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Start the Docker engine when it is installed but not answering (CI machines boot without it).
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then
    echo "starting dockerd"
    $SUDO sh -c 'nohup dockerd >/var/log/autocoder-dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "error: dockerd did not start; see /var/log/autocoder-dockerd.log" >&2; exit 1; }
  elif [ "$mode" = test ]; then
    echo "error: the Docker engine is not running; start it (sudo systemctl start docker)" >&2
    exit 1
  fi
fi
