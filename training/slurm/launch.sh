#!/usr/bin/env bash
# One training process per SLURM task (started by `srun`): the torch.distributed rendezvous comes from the
# allocation, so no torchrun/deepspeed launcher runs on the nodes.
#   RANK = SLURM_PROCID, LOCAL_RANK = SLURM_LOCALID, WORLD_SIZE = SLURM_NTASKS,
#   MASTER_ADDR = first host of the job's node list, MASTER_PORT = 29500 + job id % 1000 (unless set).
# Usage (inside an allocation): srun training/slurm/launch.sh sft --config ... --data ... --out ...
set -euo pipefail
: "${SLURM_PROCID:?run this under srun (see training/slurm/sft.sbatch)}"
export RANK=$SLURM_PROCID
export LOCAL_RANK=${SLURM_LOCALID:-0}
export WORLD_SIZE=${SLURM_NTASKS:-1}
tasks_per_node=${SLURM_TASKS_PER_NODE:-$WORLD_SIZE}   # "4" or "4(x10)"
export LOCAL_WORLD_SIZE=${tasks_per_node%%(*}
if [ -z "${MASTER_ADDR:-}" ]; then
  MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -n1)
  export MASTER_ADDR
fi
export MASTER_PORT=${MASTER_PORT:-$((29500 + ${SLURM_JOB_ID:-0} % 1000))}
exec "${PYTHON:-python}" -m training "$@"
