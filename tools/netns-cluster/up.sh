#!/usr/bin/env bash
# up.sh N [RATE]: N stand-in "nodes" on this machine, each a network namespace of its own
# (<name>node1..N, address 10.231.0.<i>), joined by a bridge in a namespace of its own
# (<name>switch). RATE (e.g. 1gbit, 10gbit) caps each node's outgoing link with a token bucket.
# Writes the hostfile ($HOSTFILE, default ./hostfile; SLOTS=k for k ranks per node). Needs root.
# Undo with down.sh (the same CT_NETNS).
#
# CT_NETNS=name (default "ct": ctnode1..N, ctswitch) names the cluster, so that two clusters
# (two tests at once, or someone else's) never meet: every interface is made inside the
# cluster's own namespaces, none in the machine's. Addresses repeat across clusters, harmlessly:
# each cluster has its own bridge.
# The veth pairs are made in the switch's namespace, never in the machine's.
set -eu
n=${1:?usage: up.sh N [RATE]}; rate=${2:-}
case "$n" in ''|*[!0-9]*|0) echo "up.sh: N must be a positive integer, got '$n'" >&2; exit 2 ;; esac
[ "$n" -le 254 ] || { echo "up.sh: at most 254 nodes, got $n" >&2; exit 2; }
p=${CT_NETNS:-ct}
here=$(cd "$(dirname "$0")" && pwd)
hostfile=${HOSTFILE:-hostfile}
sw=${p}switch
ip netns add "$sw"
ip -n "$sw" link set lo up
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
: > "$hostfile"
for i in $(seq 1 "$n"); do
  ns=${p}node$i
  ip netns add "$ns"
  ip -n "$sw" link add "ct$i" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "ct$i" master br0 up
  ip -n "$ns" addr add "10.231.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  [ -z "$rate" ] || ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 20ms
  echo "10.231.0.$i slots=${SLOTS:-1}" >> "$hostfile"
done
echo "up: $n nodes (${p}node1..$n, 10.231.0.1-$n)${rate:+, $rate links}; hostfile: $hostfile; run: $here/mpirun.sh -np N ..."
