#!/usr/bin/env bash
# down.sh: removes the namespaces that up.sh (and slurm-up.sh) made for CT_NETNS (default "ct":
# ctnode*, ctswitch, cthead), after ending (SIGKILL) the processes still running in them (an
# mpirun's daemons and ranks left behind by a failure; Slurm's daemons and jobs).
# Safe to run twice, and when up.sh stopped half-way. Returns once they are gone (at most 5 s).
p=${CT_NETNS:-ct}
# SIGKILL until none is left (at most 5 s): a process forked meanwhile is killed in the next round
for _ in $(seq 1 50); do
  pids=$(for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}(node[0-9]+|switch|head)\$"); do
    ip netns pids "$ns" 2>/dev/null
  done)
  [ -n "$pids" ] || break
  kill -9 $pids 2>/dev/null
  sleep 0.1
done
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}(node[0-9]+|switch|head)\$"); do
  ip netns del "$ns"
done
exit 0
