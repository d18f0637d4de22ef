#!/usr/bin/env bash
# slurm-down.sh: ends the Slurm cluster that slurm-up.sh started (same CT_NETNS): its daemons
# (munged, slurmctld, the slurmds), every job process on the nodes, then the namespaces, head
# included (down.sh). Safe to run twice, and after slurm-up.sh stopped half-way. The folder
# CT_SLURM_DIR (logs, state) stays for a look afterwards; --purge removes it too.
#   tools/netns-cluster/slurm-down.sh [--purge]
purge=0
case "${1:-}" in
  '') ;;
  --purge) purge=1 ;;
  -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
  *) echo "slurm-down.sh: unknown option '$1' (expected --purge)" >&2; exit 2 ;;
esac
p=${CT_NETNS:-ct}
here=$(cd "$(dirname "$0")" && pwd)
"$here/down.sh"
if [ $purge = 1 ]; then
  dir=${CT_SLURM_DIR:-/tmp/cltrain-slurm-$p}
  case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
  # only a folder that slurm-up.sh made
  grep -qs "^# Made by tools/netns-cluster/slurm-up.sh" "$dir/slurm.conf" && rm -rf "$dir"
fi
exit 0
