#!/usr/bin/env bash
# tools/cltrain-relaunch's loop, with stand-in commands and probes (no MPI, no root, no device):
#   check_relaunch.sh
# Checks: a job that fails by a signal's code is run again, and the loop ends with 0 when a run
# succeeds; at most --max-restarts runs after the first, then the last code; exit 1 or 2 with
# every node answering is not run again; a node whose probe fails is left out of {hostfile}
# and {np} (slots summed, 1 where none); a node that stops answering while the job runs ends
# the job (its whole process group) within --watch + --probe-timeout + --grace; bad options
# are one line and exit 2.
set -u
here=$(cd "$(dirname "$0")" && pwd)
R=$here/../tools/cltrain-relaunch
work=$(mktemp -d /tmp/cltrain-relaunch-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
printf 'a slots=2\nb slots=2 max_slots=4\n# a comment\n\nc\n' >"$work/hosts"
# the probe: a node is dead when the file dead.<node> exists
printf '#!/bin/sh\n[ ! -e "%s/dead.$1" ]\n' "$work" >"$work/probe"
chmod +x "$work/probe"
P="--hostfile $work/hosts --probe $work/probe --probe-timeout 2 --grace 2"

# fails twice with 137 (a rank killed), then succeeds: 3 runs, exit 0
echo 0 >"$work/n"
"$R" $P --watch 0 -- sh -c 'n=$(($(cat "$0") + 1)); echo $n >"$0"; [ $n -ge 3 ] || exit 137' "$work/n" >"$work/out" 2>&1
rc=$?; cat "$work/out"
[ $rc -eq 0 ] && [ "$(cat "$work/n")" -eq 3 ] && grep -q "run 3 done" "$work/out" || fail "runs again after 137: exit $rc, $(cat "$work/n") runs"
# always 137: the first run and --max-restarts 2 more, then its code
echo 0 >"$work/n"
"$R" $P --watch 0 --max-restarts 2 -- sh -c 'echo $(($(cat "$0") + 1)) >"$0"; exit 137' "$work/n" >"$work/out" 2>&1
rc=$?; tail -1 "$work/out"
[ $rc -eq 137 ] && [ "$(cat "$work/n")" -eq 3 ] && grep -q "2 restart(s) done (--max-restarts): giving up, exit 137" "$work/out" \
  || fail "bounded restarts: exit $rc, $(cat "$work/n") runs"
# exit 1 (cltrain's own failure) with every node answering: not run again
echo 0 >"$work/n"
"$R" $P --watch 0 -- sh -c 'echo $(($(cat "$0") + 1)) >"$0"; exit 1' "$work/n" >"$work/out" 2>&1
rc=$?; tail -1 "$work/out"
[ $rc -eq 1 ] && [ "$(cat "$work/n")" -eq 1 ] && grep -q "failed by itself (exit 1) with every node answering: not run again" "$work/out" \
  || fail "exit 1 was run again: exit $rc"
# a node found dead after a failed run: left out of {hostfile} and {np}
: >"$work/args"
"$R" $P --watch 0 -- sh -c 'cat "$1" >>"$0"; echo "np $2" >>"$0"; [ -e "$3" ] && exit 0; touch "$3" "$4"; exit 9' \
  "$work/args" {hostfile} {np} "$work/second" "$work/dead.b" >"$work/out" 2>&1
rc=$?; cat "$work/out"
[ $rc -eq 0 ] || fail "dead node: exit $rc"
grep -q "run 1 ended (exit 9); no answer from b: left out" "$work/out" || fail "node b not found dead"
grep -q "run 2 on 2 node(s), 3 rank(s): a c" "$work/out" || fail "run 2 not on a and c with 3 ranks"
[ "$(cat "$work/args")" = "$(printf 'a slots=2\nb slots=2 max_slots=4\nc\nnp 5\na slots=2\nc\nnp 3')" ] \
  || { cat "$work/args"; fail "{hostfile} / {np} not as expected"; }
rm -f "$work/dead.b"
# a node that stops answering while the job runs ends it, its whole process group, and the job
# runs again without it
rm -f "$work/second"
t0=$(date +%s)
"$R" $P --watch 1 -- sh -c '[ -e "$0" ] && exit 0; touch "$0"; sleep 60 & echo $! >"$1"; touch "$2"; wait' \
  "$work/second" "$work/child" "$work/dead.c" >"$work/out" 2>&1
rc=$?; t=$(($(date +%s) - t0)); cat "$work/out"
[ $rc -eq 0 ] && grep -q "no answer from c within 2 s: ending run 1" "$work/out" && grep -q "run 2 on 2 node(s), 4 rank(s): a b" "$work/out" \
  || fail "a node lost mid-run: exit $rc"
[ $t -le 20 ] || fail "the job was ended $t s after the node was lost"
child=$(cat "$work/child")
for i in $(seq 1 20); do   # gone, or a zombie that its new parent has not reaped yet
  st=$(ps -o stat= -p "$child" 2>/dev/null)
  case "$st" in ''|Z*) break ;; esac
  sleep 0.1
done
case "$st" in ''|Z*) ;; *) kill "$child"; fail "the job's child process survived (state $st)" ;; esac
# bad options: one line, exit 2
for bad in "--max-restarts x -- true" "--hostfile $work/none -- true" "--hostfile $work/hosts" "--bogus -- true" "-- true"; do
  err=$("$R" $bad 2>&1 >/dev/null); rc=$?
  echo "cltrain-relaunch $bad -> exit $rc: $err"
  [ $rc -eq 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$bad: exit $rc: $err"
done
echo "PASS"
