#!/usr/bin/env bash
# mpirun.sh [mpirun args...]: mpirun across the stand-in nodes of CT_NETNS (default "ct"),
# started from node 1, over TCP only between nodes (shared memory within a node), with the
# hostfile that up.sh wrote ($HOSTFILE, default ./hostfile). No binding to cores: every stand-in
# node would bind its first rank to core 0 of the one real machine, and ranks sharing a core
# make each MPI message wait for a scheduler tick (4 ms here). -x VAR forwards a variable.
here=$(cd "$(dirname "$0")" && pwd)
export CT_NETNS=${CT_NETNS:-ct}   # for nsrsh, which mpirun starts
ns=${CT_NETNS}node1
# node 1 gets a host name of its own, as nsrsh gives the others (see there)
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$ns" \
  mpirun --allow-run-as-root --hostfile "${HOSTFILE:-hostfile}" --bind-to none \
  --mca plm_rsh_agent "$here/nsrsh" --mca btl tcp,self,vader \
  --mca btl_tcp_if_include 10.231.0.0/24 --mca oob_tcp_if_include 10.231.0.0/24 "$@"
