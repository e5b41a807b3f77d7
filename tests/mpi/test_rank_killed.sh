#!/usr/bin/env bash
# A rank killed mid-run (SIGKILL: no handler runs) ends the whole job with a non-zero exit and a
# message naming the rank, and leaves the last checkpoint intact: one process resumes from it.
# Usage: test_rank_killed.sh MPIRUN TEST_DIST_TRAIN
set -u
mpirun=$1 worker=$2
dir=$(mktemp -d /tmp/spin_killed_XXXXXX)
log=$dir.log
# ZeRO-1 on 2 ranks, a checkpoint after every update (the newest two kept)
"$mpirun" -np 2 --oversubscribe -x OMP_NUM_THREADS -x SPIN_ALLOC_GUARD "$worker" train-forever "$dir" >"$log" 2>&1 &
job=$!
for _ in $(seq 600); do
    [ -f "$dir/rank1.pid" ] && [ -f "$dir/metrics.jsonl" ] && [ "$(wc -l <"$dir/metrics.jsonl")" -ge 3 ] && break
    kill -0 $job 2>/dev/null || break
    sleep 0.1
done
if ! [ -f "$dir/rank1.pid" ] || ! kill -0 $job 2>/dev/null; then
    echo "FAIL: the job did not get to 3 updates"; cat "$log"; exit 1
fi
kill -9 "$(cat "$dir/rank1.pid")"
echo "killed rank 1 (pid $(cat "$dir/rank1.pid")) after $(wc -l <"$dir/metrics.jsonl") updates"
for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then
    echo "FAIL: mpirun still running 30 s after rank 1 was killed"; kill -9 $job; cat "$log"; exit 1
fi
wait $job
rc=$?
cat "$log"
[ $rc -ne 0 ] || { echo "FAIL: the job exited 0"; exit 1; }
grep -Eq "rank 1 .*(signal 9|Killed)" "$log" || { echo "FAIL: no message naming the killed rank"; exit 1; }
echo "the job exited $rc"
# the newest checkpoint is complete (spin_ckpt_latest checks its files) and one process resumes it
"$worker" verify "$dir" || { echo "FAIL: the last checkpoint does not resume"; exit 1; }
rm -rf "$dir" "$log"
echo "test_rank_killed: passed"
