#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests of the SLURM scripts (data pipeline arrays,
# training jobs). Debian's slurm-wlm + munge; slurmctld and slurmd run in the background as root.
#   scripts/slurm_single_node.sh start    install if missing, write the config, start munged/slurmctld/slurmd,
#                                         wait until the node is idle; prints nothing else on success
#   scripts/slurm_single_node.sh stop     stop the daemons this script started
#   scripts/slurm_single_node.sh status   exit 0 when the node accepts jobs
# It writes /etc/slurm/slurm.conf only when there is none or it is this script's own (first line marker),
# so a machine with a real SLURM setup is never touched: `start` then only checks that it answers.
# Needs root (or sudo). Idempotent. Config choices that make one node work without systemd or cgroups:
# SlurmUser=root, ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, select/cons_tres.
set -euo pipefail
mode=${1:-start}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=$(command -v sudo || true); fi
CONF=/etc/slurm/slurm.conf
MARKER="# autocoder single-node SLURM (scripts/slurm_single_node.sh)"
LOG_DIR=/var/log/autocoder-slurm

node_ready() {
  timeout 10 sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

ours() { [ -f "$CONF" ] && head -n1 "$CONF" | grep -qF "$MARKER"; }

case "$mode" in
  status)
    node_ready
    exit $?
    ;;
  stop)
    if ours; then
      for daemon in slurmd slurmctld; do
        pid_file=/run/autocoder-$daemon.pid
        if [ -f "$pid_file" ]; then $SUDO kill "$(cat "$pid_file")" 2>/dev/null || true; fi
      done
    fi
    exit 0
    ;;
  start) ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

if [ -f "$CONF" ] && ! ours; then
  # Someone else's cluster: use it as it is.
  node_ready || { echo "error: $CONF exists (not ours) but no node is idle; check sinfo" >&2; exit 1; }
  exit 0
fi

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    echo "error: missing system packages (${need[*]}); install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR" /etc/munge /var/lib/munge /var/log/munge /run/munge

# munge: a key, then the daemon (as root: no munge user needed for a test cluster).
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO sh -c 'dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key'
fi
if ! timeout 5 munge -n >/dev/null 2>&1; then
  $SUDO chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
  $SUDO munged --force
  for _ in $(seq 1 20); do timeout 5 munge -n >/dev/null 2>&1 && break; sleep 0.25; done
  timeout 5 munge -n >/dev/null 2>&1 || { echo "error: munged did not start" >&2; exit 1; }
fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
config="$MARKER
ClusterName=autocoder
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/autocoder-slurmctld.pid
SlurmdPidFile=/run/autocoder-slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$config" ]; then
  printf '%s\n' "$config" | $SUDO tee "$CONF" >/dev/null
  # A changed config needs fresh daemons.
  "$0" stop
  sleep 1
fi

if ! pgrep -x slurmctld >/dev/null; then $SUDO slurmctld; fi
if ! pgrep -x slurmd >/dev/null; then $SUDO slurmd; fi
for _ in $(seq 1 60); do
  node_ready && exit 0
  # A node left DOWN by an earlier run comes back once slurmd answers.
  $SUDO scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 0.5
done
echo "error: the SLURM node did not become idle; see $LOG_DIR/slurmctld.log and slurmd.log" >&2
exit 1
