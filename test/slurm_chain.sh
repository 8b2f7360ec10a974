#!/bin/bash
# test/slurm_chain.sh -- jobs/chain.sh: one run as two dependent jobs.
#   1. jobs/chain.sh 2 submits two jobs of a 12-step run (2 nodes x 1 rank each), with
#      --test-hook=pause:5 among the overrides every job gets; the second job depends on the
#      first (afterany).
#   2. The first job's ranks stop after step 5; then it gets its time-limit warning
#      (warn_when_paused): it checkpoints at step 5 and, being part of a chain
#      (MPTRAIN_REQUEUE=0), ends COMPLETED (exit 0:0) without requeueing.
#   3. The second job then starts, resumes from the step-5 checkpoint (the hook does not fire
#      in a run resumed at step 5) and completes; its losses and final checkpoint are
#      bit-identical to an uninterrupted run's.
# Skipped (77) without Slurm/munge/root, except under CI=true or MPTRAIN_NO_SKIP=1, where
# that is a failure.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
steps=12 at=5
make_data || { echo "FAIL: mptrain-prep"; exit 1; }
slurm_start 30

mkdir -p job
ln -sf ../train.h5 ../val.h5 job/
ids=$(cd job && bash "$top_srcdir/jobs/chain.sh" 2 "$deck" -N 2 --ntasks-per-node=1 \
  --cpus-per-task=1 --time=10 -- --train.steps=$steps --checkpoint.dir=ckpt --test-hook=pause:$at)
# shellcheck disable=SC2086  # the IDs, one a line
set -- $ids
if [ $# -eq 2 ]; then
  first=$1 second=$2
  pass "chain.sh submitted jobs $first and $second"
else
  fail "chain.sh printed '$ids', not two job IDs"
  finish
fi
if [ "$(job_field "$second" Dependency)" = "afterany:$first(unfulfilled)" ]; then
  pass "job $second waits for job $first (afterany)"
else
  fail "job $second: Dependency=$(job_field "$second" Dependency)"
fi

warn_when_paused "$first" 2 || { fail "the warning to job $first"; show_job "$first"; finish; }
state=$(wait_job "$first" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL PENDING)
out=$(job_field "$first" StdOut)
if [ "$state" = COMPLETED ] && [ "$(job_field "$first" ExitCode)" = 0:0 ] &&
  grep -q "^preemption signal received: checkpointing at step $at and exiting (code 3)" "$out" &&
  [ -f "job/ckpt/step_0000000$at.h5" ] &&
  grep -q "not requeued (MPTRAIN_REQUEUE=0" "$out"; then
  pass "job $first: warned after step $at, checkpointed there and ended COMPLETED without a requeue"
else
  fail "job $first ended $state, exit code $(job_field "$first" ExitCode)"
  show_job "$first"
fi

state=$(wait_job "$second" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL)
out=$(job_field "$second" StdOut)
if [ "$state" = COMPLETED ] && [ "$(job_field "$second" ExitCode)" = 0:0 ] &&
  grep -q "^restarted from ckpt/step_0000000$at.h5" "$out" && ! grep -q "^test hook:" "$out"; then
  pass "job $second resumed ($(grep -m 1 '^restarted from' "$out")) and completed"
else
  fail "job $second ended $state, exit code $(job_field "$second" ExitCode)"
  show_job "$second"
fi

OUT=ref.out run_mptrain 2 "$deck" --train.steps=$steps --log.metrics=ref.csv --checkpoint.dir=ref ||
  { cat ref.out; fail "the reference run"; finish; }
losses_identical job/metrics.csv ref.csv "two chained jobs vs an uninterrupted run"
ckpt_identical job/ckpt/step_000000$steps.h5 ref/step_000000$steps.h5 \
  "two chained jobs vs an uninterrupted run: the final checkpoint"
finish
