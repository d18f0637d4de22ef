#!/usr/bin/env bash
# slurm.sh CMD [ARGS...]: runs a Slurm command (sbatch, srun, salloc, squeue, sinfo, scontrol,
# scancel) against the cluster that slurm-up.sh started, from the head's namespace (the stand-in
# nodes' network), with that cluster's configuration (SLURM_CONF). Same CT_NETNS and
# CT_SLURM_DIR as slurm-up.sh. The environment goes with the command, and sbatch/srun pass it
# on to the job (their default --export=ALL).
#   tools/netns-cluster/slurm.sh sbatch --wait -N 2 tools/slurm/cltrain-srun.sbatch --model mlp
case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  '') echo "slurm.sh: a Slurm command expected (usage: slurm.sh CMD [ARGS...])" >&2; exit 2 ;;
esac
p=${CT_NETNS:-ct}
dir=${CT_SLURM_DIR:-/tmp/cltrain-slurm-$p}
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
[ -e "$dir/slurm.conf" ] || { echo "slurm.sh: no $dir/slurm.conf (start the cluster with slurm-up.sh; CT_NETNS=$p)" >&2; exit 1; }
export SLURM_CONF=$dir/slurm.conf
exec ip netns exec "${p}head" "$@"
