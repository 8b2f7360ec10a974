#!/bin/bash
# A rank whose launcher has died stops at once and writes nothing more (the launcher watchdog,
# include/mptrain/parallel/watchdog.hpp). 4 ranks (dp2·tp2) checkpoint every 2 steps and pause after
# step 5 (--test-hook=pause:5: every rank has written its PID and waits for a signal). The test
# then kills mpirun with SIGKILL, waits until it has been reaped (from then on every rank's
# parent has changed), and wakes the ranks with SIGUSR1, as a preemption warning would: left
# alone they would now write a step-5 checkpoint and update latest. Every rank must be gone
# within 10 s (the watchdog checks every 0.1 s; the bound only catches a rank that stays),
# and the checkpoint directory and the metrics file must be exactly as they were before the
# kill: no new checkpoint, no temporary file, no latest update, no new metrics row.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck

# snapshot: every file of ck/ (temporary ones included) and the metrics, with checksums.
snapshot() { find ck m.csv -type f -print0 2>/dev/null | sort -z | xargs -0 -r md5sum; }
# ours PID: PID is still one of this run's mptrain ranks (not a recycled PID).
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "--test-hook=pause:5 --checkpoint.dir=ck "; }

rm -rf ck mptrain-paused.*
# shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of flags
"$MPIRUN" $MPIRUN_FLAGS -np 4 "$MPTRAIN_BIN/mptrain" "$deck" --parallel.tp=2 --parallel.dp=2 \
  --checkpoint.every=2 --log.metrics=m.csv --test-hook=pause:5 --checkpoint.dir=ck \
  </dev/null >run.out 2>&1 &
launcher=$!
if ! wait_for_files 120 mptrain-paused.0 mptrain-paused.1 mptrain-paused.2 mptrain-paused.3; then
  fail "the 4 ranks did not all pause after step 5"; tail -5 run.out
  kill -9 $launcher; wait $launcher
  finish
fi
pids=$(cat mptrain-paused.0 mptrain-paused.1 mptrain-paused.2 mptrain-paused.3 | tr '\n' ' ')
before=$(snapshot)
[ "$(cat ck/latest 2>/dev/null)" = step_00000004.h5 ] && [ "$(($(wc -l <m.csv) - 1))" = 5 ] &&
  pass "all 4 ranks (pids $pids) paused after step 5; latest names step 4; 5 metrics rows" ||
  fail "before the kill: latest=$(cat ck/latest 2>/dev/null), metrics rows $(($(wc -l <m.csv) - 1))"

kill -9 $launcher
wait $launcher 2>/dev/null
start=$(date +%s.%N)
for p in $pids; do
  if ours "$p" && running "$p"; then kill -USR1 "$p" 2>/dev/null; fi
done
limit=10
until ! running $pids; do
  if awk -v a="$start" -v b="$(date +%s.%N)" -v l=$limit 'BEGIN { exit !(b - a > l) }'; then break; fi
  sleep 0.05
done
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
if running $pids; then
  fail "ranks still running ${seconds}s after their launcher was killed: $(for p in $pids; do running $p && echo $p; done | tr '\n' ' ')"
  for p in $pids; do ours "$p" && kill -9 "$p" 2>/dev/null; done
else
  pass "every rank ended within ${seconds}s of the launcher's SIGKILL (bound ${limit}s)"
fi
after=$(snapshot)
if [ -n "$before" ] && [ "$before" = "$after" ]; then
  pass "nothing was written after the kill (checkpoints, latest, metrics unchanged; no temporary file)"
else
  fail "files changed after the kill:"; diff <(echo "$before") <(echo "$after") | head -5
fi
finish
