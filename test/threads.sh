#!/bin/bash
# Multi-threaded determinism (doc/DESIGN.md §5.2 with OpenMP): 2 ranks x 2 OpenMP threads.
#   1. The same run twice: bit-identical losses and final checkpoints (model, AdamW state).
#   2. While paused after step 3 (--test-hook=pause:3), each rank of a 2-thread run has more
#      threads than each rank of a 1-thread run: the OpenMP loops and the multi-threaded
#      sgemm really ran (the model is sized for it: B·T·C = 4·64·128 = 32768 elements, above
#      the CPU backend's parallel threshold of 16384; sgemm M·N·K = 256·512·128, above
#      OpenBLAS's single-thread threshold). Released with SIGUSR1, it checkpoints at step 3;
#      resumed with 2 threads, it ends bit for bit where the uninterrupted run ends.
#   3. A 1-thread run against the 2-thread one, reported as a NOTE, not a check: the CPU
#      backend's own reductions add in an order that depends only on the sizes
#      (src/backend/cpu/cpu_backend.cpp), but OpenBLAS promises nothing across thread counts.
# OMP_WAIT_POLICY=passive: 4 threads on a 2-core machine must not spin against each other.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
export OMP_WAIT_POLICY=passive
model="--model.n_layer=2 --model.n_embd=128 --model.seq_len=64 --parallel.micro_batch=4"
common="$model --parallel.dp=2 --train.steps=6 --data.val_every=0"
final=step_00000006.h5

# run_threads THREADS NAME ARGS...: 2 ranks, THREADS OpenMP threads each.
run_threads() {
  local threads=$1 name=$2
  shift 2
  # shellcheck disable=SC2086  # $common is a list of options
  OMP_NUM_THREADS=$threads OUT=$name.out run_mptrain 2 "$deck" $common --device.threads="$threads" \
    --log.metrics="$name.csv" --checkpoint.dir="ck_$name" "$@"
}

# 1. Twice the same 2 x 2 run.
run_threads 2 a || fail "2-thread run exits $?"
run_threads 2 a2 || fail "2-thread rerun exits $?"
grep -q "(2 threads/rank)" a.out && pass "the run uses 2 threads per rank" ||
  fail "the run does not report 2 threads per rank"
losses_identical a.csv a2.csv "2 ranks x 2 threads, twice"
ckpt_identical ck_a/$final ck_a2/$final "2 ranks x 2 threads, twice"

# paused_run THREADS NAME: a run paused after step 3; sets tasks (the threads of each rank,
# "N N"), then releases it with SIGUSR1 (checkpoint at step 3, exit 3) and resumes it.
paused_run() {
  local threads=$1 name=$2 p pids
  rm -f mptrain-paused.*
  run_threads "$threads" "$name" --test-hook=pause:3 &
  local job=$!
  tasks=''
  if wait_for_files 120 mptrain-paused.0 mptrain-paused.1; then
    pids=$(cat mptrain-paused.0 mptrain-paused.1)
    for p in $pids; do tasks="$tasks$(find /proc/"$p"/task -mindepth 1 -maxdepth 1 | wc -l) "; done
    # shellcheck disable=SC2086
    kill -USR1 $pids
  else
    fail "$name: the ranks did not pause after step 3"
  fi
  wait $job
  local rc1=$?
  run_threads "$threads" "$name"
  local rc2=$?
  [ $rc1 -eq 3 ] && [ $rc2 -eq 0 ] && grep -q "^restarted from ck_$name/step_00000003.h5" $name.out &&
    pass "$name: stopped after step 3 (exit 3), resumed (exit 0)" ||
    fail "$name: stop/resume exits $rc1/$rc2"
}

# 2. Threads really in use, and exact resume with 2 threads.
paused_run 2 b
tasks2=$tasks
paused_run 1 c
tasks1=$tasks
read -r b0 b1 <<<"$tasks2"
read -r c0 c1 <<<"$tasks1"
if [ -n "${b1:-}" ] && [ -n "${c1:-}" ] && [ "$b0" -gt "$c0" ] && [ "$b1" -gt "$c1" ]; then
  pass "threads per rank while paused: $tasks2(2 OpenMP threads) vs $tasks1(1)"
else
  fail "threads per rank while paused: '$tasks2' (2 OpenMP threads) vs '$tasks1' (1): the OpenMP pool was not used"
fi
losses_identical a.csv b.csv "2 threads: stopped after step 3 and resumed vs uninterrupted"
ckpt_identical ck_a/$final ck_b/$final "2 threads: stopped after step 3 and resumed vs uninterrupted"

# 3. Does the thread count change the bits? (c: 1 thread, stopped and resumed like b.)
if [ "$(compare_losses a.csv c.csv)" = 0.000e+00 ] && diff <(losses a.csv) <(losses c.csv) >/dev/null &&
   "$MPTRAIN_BIN/mptrain-ckpt" diff --tol 0 ck_a/$final ck_c/$final >c-diff.out 2>&1; then
  echo "NOTE: 1 and 2 threads per rank give bit-identical losses and checkpoints"
else
  echo "NOTE: 1 and 2 threads per rank differ: losses $(compare_losses a.csv c.csv)," \
    "weights up to $(ckpt_max_abs c-diff.out) (OpenBLAS sums in another order)"
fi
finish
