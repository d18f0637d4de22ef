#!/usr/bin/env bash
# slurm-up.sh N [RATE]: a Slurm cluster on N stand-in nodes (up.sh N RATE), from Debian's
# packages (tools/install-deps.sh --cluster): a head namespace <name>head (10.231.0.254, on the
# same bridge) runs munged and slurmctld; each node <name>node<i> runs a slurmd under its own
# node name and host name (a UTS namespace, like nsrsh's), with its own spool folder. Needs root.
# Run Slurm's commands through slurm.sh (in the head's namespace, with this configuration);
# undo with slurm-down.sh (the same CT_NETNS and CT_SLURM_DIR).
#   tools/netns-cluster/slurm-up.sh 2 && tools/netns-cluster/slurm.sh sinfo
# Environment:
#   CT_NETNS=name     the cluster's name (default "ct"), as for up.sh
#   SLOTS=k           CPUs (Slurm tasks) per node (default 2)
#   CT_SLURM_DIR=dir  configuration, keys, state, spool folders, logs, hostfile (default
#                     /tmp/cltrain-slurm-<name>); made afresh, so an earlier cluster's jobs never
#                     come back
#   CT_SLURM_WAIT=s   seconds to wait for every node to be idle (default 60)
#   CT_SLURM_CRED_EXPIRE=s  job credentials' lifetime (AuthInfo cred_expire; Slurm's default
#                     120, at least 5): a requeued job waits that long before it starts again
#   CT_SLURM_NODE_TIMEOUT=s  SlurmdTimeout (default 20): a node that stops answering is DOWN,
#                     and its jobs requeued or ended, this long after its last answer
#   CT_SLURM_EXTRA='K=V ...'  further slurm.conf lines, one per word (e.g. SchedulerParameters=
#                     bf_interval=5: a job whose wait ended starts within 5 s, not 30-60 s)
# Configuration for a VM or a container: no cgroups (proctrack/linuxproc, task/none,
# jobacct_gather/none; cgroup.conf pins the cgroup plugin whose start does nothing), no
# accounting database, everything as root, MUNGE with a key and socket of its own (so a
# machine's own munged, if any, is neither needed nor touched).
# Every daemon lives in one of the cluster's namespaces, so down.sh's sweep of those namespaces
# ends them all, also when this script's caller was killed.
set -eu
case "${1:-}" in -h|--help) sed -n '2,27p' "$0"; exit 0 ;; esac
n=${1:-}; rate=${2:-}
case "$n" in ''|*[!0-9]*|0) echo "slurm-up.sh: N must be a positive integer, got '$n' (usage: slurm-up.sh N [RATE])" >&2; exit 2 ;; esac
[ "$n" -le 253 ] || { echo "slurm-up.sh: at most 253 nodes (10.231.0.254 is the head), got $n" >&2; exit 2; }
slots=${SLOTS:-2}
case "$slots" in ''|*[!0-9]*|0) echo "slurm-up.sh: SLOTS must be a positive integer, got '$slots'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "slurm-up.sh: needs root (network namespaces, daemons)" >&2; exit 1; }
for c in slurmctld slurmd munged mungekey sinfo ip unshare; do
  command -v $c >/dev/null || { echo "slurm-up.sh: no '$c' (tools/install-deps.sh --cluster installs Slurm and MUNGE)" >&2; exit 1; }
done
p=${CT_NETNS:-ct}
here=$(cd "$(dirname "$0")" && pwd)
dir=${CT_SLURM_DIR:-/tmp/cltrain-slurm-$p}
wait_s=${CT_SLURM_WAIT:-60}
cred=${CT_SLURM_CRED_EXPIRE:-}
case "$cred" in
  '') ;;
  *[!0-9]*|[0-4]|0*) echo "slurm-up.sh: CT_SLURM_CRED_EXPIRE must be an integer of at least 5, got '$cred'" >&2; exit 2 ;;
esac
node_timeout=${CT_SLURM_NODE_TIMEOUT:-20}
case "$node_timeout" in
  ''|*[!0-9]*|0*|[1-4]) echo "slurm-up.sh: CT_SLURM_NODE_TIMEOUT must be an integer of at least 5, got '$node_timeout'" >&2; exit 2 ;;
esac
head=${p}head
die() { echo "slurm-up.sh: $*" >&2; exit 1; }

mark="# Made by tools/netns-cluster/slurm-up.sh"
if ip netns list 2>/dev/null | awk '{print $1}' | grep -qE "^${p}(node[0-9]+|switch|head)\$"; then
  die "the cluster '$p' is up already (slurm-down.sh, or another CT_NETNS)"
fi

# ---- folders; the nodes, and the head on the same bridge ---------------------------------------
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
# a folder of an earlier run is made afresh; any other folder with something in it is refused
if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && ! grep -qs "^$mark" "$dir/slurm.conf"; then
  die "$dir holds files that slurm-up.sh did not make: choose another CT_SLURM_DIR"
fi
rm -rf "$dir"
# on any failure from here on: everything started so far ends (the logs stay in $dir/log)
trap '[ $? = 0 ] || CT_NETNS=$p "$here/down.sh"' EXIT
mkdir -p "$dir/munge" "$dir/state" "$dir/log"
chmod 700 "$dir/munge"
for i in $(seq 1 "$n"); do mkdir -p "$dir/spool/${p}node$i" "$dir/tmp/${p}node$i"; done
# (up.sh's hostfile goes there too: mpirun.sh across the same nodes, without Slurm, takes it)
HOSTFILE=$dir/hostfile SLOTS=$slots "$here/up.sh" "$n" $rate >/dev/null
ip netns add "$head"
ip -n "${p}switch" link add cthead type veth peer name eth0 netns "$head"
ip -n "${p}switch" link set cthead master br0 up
ip -n "$head" addr add 10.231.0.254/24 dev eth0
ip -n "$head" link set eth0 up
ip -n "$head" link set lo up

# ---- key, configuration -----------------------------------------------------------------------
mungekey --create --keyfile="$dir/munge/munge.key" 2>"$dir/log/mungekey.log" \
  || die "mungekey failed: $(cat "$dir/log/mungekey.log")"
conf=$dir/slurm.conf
{ cat <<EOF
$mark for the stand-in nodes of "$p"; made afresh each time.
ClusterName=$(echo "$p" | tr 'A-Z' 'a-z')
SlurmctldHost=$head(10.231.0.254)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket${cred:+,cred_expire=$cred}
# no cgroups: processes tracked by parent pid, no task containment or binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the stand-in nodes share one machine: trust the CPUs configured here, not the hardware's
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=$node_timeout
MessageTimeout=10
KillWait=5
InactiveLimit=0
MinJobAge=600
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/slurmctld.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdSpoolDir=$dir/spool/%n
SlurmdPidFile=$dir/spool/%n/slurmd.pid
SlurmdLogFile=$dir/log/slurmd.%n.log
# per node: srun --mpi=pmix makes its client folder (spmix_appdir_<uid>_<job>.<step>) there, and
# with one folder for all nodes the second node's step failed ("File exists")
TmpFS=$dir/tmp/%n
SlurmctldDebug=info
SlurmdDebug=info
EOF
  # each node's address (Slurm knows the nodes by host name, which no resolver knows here)
  for i in $(seq 1 "$n"); do echo "NodeName=${p}node$i NodeAddr=10.231.0.$i CPUs=$slots State=UNKNOWN"; done
  echo "PartitionName=nodes Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  for line in ${CT_SLURM_EXTRA:-}; do echo "$line"; done
} > "$conf"
# Slurm 22.05's slurmd and slurmstepd always load a cgroup plugin, whatever the proctrack and
# task plugins. The default, "autodetect", reads /sys/fs/cgroup: under `ip netns exec` (a fresh
# /sys) it found none and slurmd stopped ("No filesystem mounted on /sys/fs/cgroup", "Unable to
# initialize cgroup plugin"), and on a cgroup v2 host it would load cgroup/v2, whose start moves
# slurmd into a cgroup scope of its own. cgroup/v1's start does nothing (its functions act only
# when a cgroup plugin of proctrack, task or jobacct_gather calls them, and none is configured):
# pinned, no cgroup is read, made or used, on any host.
echo "CgroupPlugin=cgroup/v1" > "$dir/cgroup.conf"

# ---- daemons, each in a namespace of the cluster (down.sh ends them) ---------------------------
# munged in the head's namespace; its socket is a file, which every namespace reaches
ip netns exec "$head" munged --force --socket="$dir/munge/munge.socket" \
  --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
  || die "munged did not start: $(tail -3 "$dir/log/munged.log" 2>/dev/null)"
# slurmctld: its host name must be SlurmctldHost's
ip netns exec "$head" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$head" \
  slurmctld -f "$conf" || die "slurmctld did not start: $(tail -3 "$dir/log/slurmctld.log" 2>/dev/null)"
# a slurmd per node, under the node's name, as host name too
for i in $(seq 1 "$n"); do
  ns=${p}node$i
  ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$ns" \
    slurmd -f "$conf" -N "$ns" || die "slurmd on $ns did not start: $(tail -3 "$dir/log/slurmd.$ns.log" 2>/dev/null)"
done
idle=""
for _ in $(seq 1 $((wait_s * 2))); do
  idle=$(SLURM_CONF=$conf ip netns exec "$head" sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
  [ "$idle" = "$n" ] && break
  sleep 0.5
done
if [ "$idle" != "$n" ]; then
  SLURM_CONF=$conf ip netns exec "$head" sinfo -N -l >&2 2>&1 || true
  die "$idle of $n nodes idle after ${wait_s} s; logs in $dir/log"
fi
echo "slurm-up: $n nodes (${p}node1..$n, $slots CPUs each${rate:+, $rate links}), controller ${head} (10.231.0.254); configuration $conf; run: $here/slurm.sh sbatch|srun|squeue ..."
