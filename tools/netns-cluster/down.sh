#!/usr/bin/env bash
# down.sh: removes the namespaces that up.sh made for CT_NETNS (default "ct": ctnode*,
# ctswitch), after ending (SIGKILL) the processes still running in them (an mpirun's daemons
# and ranks left behind by a failure). Safe to run twice, and when up.sh stopped half-way.
p=${CT_NETNS:-ct}
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}(node[0-9]+|switch)\$"); do
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null
done
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}(node[0-9]+|switch)\$"); do
  ip netns del "$ns"
done
exit 0
