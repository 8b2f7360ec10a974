#!/bin/bash
# test/slurm_chain.sh -- jobs/chain.sh: one run as two dependent jobs.
#   1. jobs/chain.sh 2 submits two jobs of a 40-step run (2 nodes x 1 rank each: checkpoints
#      are cheaper with fewer ranks on this test's two cores); the second depends on the first
#      (afterany).
#   2. The first job gets its time-limit warning mid-run (warn_mid_run): it checkpoints and,
#      being part of a chain (MPTRAIN_REQUEUE=0), ends COMPLETED (exit 0:0) without requeueing.
#   3. The second job then starts, resumes from that checkpoint and completes; the metrics
#      CSV's losses equal an uninterrupted run's.
# Skipped (77) without Slurm/munge/root, except under CI=true, where that is a failure.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
steps=40
make_data || { echo "FAIL: mptrain-prep"; exit 1; }
slurm_start 30

mkdir -p job
ln -sf ../train.h5 ../val.h5 job/
ids=$(cd job && bash "$top_srcdir/jobs/chain.sh" 2 "$deck" -N 2 --ntasks-per-node=1 \
  --cpus-per-task=1 --time=10 -- --train.steps=$steps --checkpoint.dir=ckpt)
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

warn_mid_run "$first" job/metrics.csv || { fail "the warning to job $first"; show_job "$first"; finish; }
state=$(wait_job "$first" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL PENDING)
out=$(job_field "$first" StdOut)
if [ "$state" = COMPLETED ] && [ "$(job_field "$first" ExitCode)" = 0:0 ] &&
  grep -q "not requeued (MPTRAIN_REQUEUE=0" "$out"; then
  pass "job $first: warned at step $warned_at, checkpointed and ended COMPLETED without a requeue"
else
  fail "job $first ended $state, exit code $(job_field "$first" ExitCode)"
  show_job "$first"
fi

state=$(wait_job "$second" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL)
out=$(job_field "$second" StdOut)
if [ "$state" = COMPLETED ] && [ "$(job_field "$second" ExitCode)" = 0:0 ] &&
  grep -q "^restarted from ckpt/step_" "$out"; then
  pass "job $second resumed ($(grep -m 1 '^restarted from' "$out")) and completed"
else
  fail "job $second ended $state, exit code $(job_field "$second" ExitCode)"
  show_job "$second"
fi

OUT=ref.out run_mptrain 2 "$deck" --train.steps=$steps --log.metrics=ref.csv ||
  { cat ref.out; fail "the reference run"; finish; }
losses_within job/metrics.csv ref.csv 1e-6 "two chained jobs: losses of an uninterrupted run"
finish
