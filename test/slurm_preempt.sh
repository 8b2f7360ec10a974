#!/bin/bash
# test/slurm_preempt.sh -- a job preempted through Slurm's warning signal checkpoints, requeues
# itself, resumes, and ends with the same losses as an uninterrupted run.
#   1. jobs/mptrain-cpu.sbatch runs the tiny deck for 60 steps on 2 nodes x 2 ranks.
#   2. Once the metrics CSV shows a few steps, the harness sends the batch script SIGUSR1 the
#      way "#SBATCH --signal=B:USR1@N" does (scancel --signal=USR1 --batch); the ranks are
#      paused meanwhile, so that it lands mid-run however fast this machine is (warn_mid_run).
#   3. The script forwards SIGUSR1 to mptrain, which checkpoints and exits 3; the script
#      requeues the job. Slurm holds a requeued job back for about two minutes; the harness
#      releases it at once (scontrol update StartTime=now) when it is PENDING.
#   4. The second start resumes from the checkpoint ([checkpoint] restart = auto) and completes
#      (COMPLETED, exit 0:0, Restarts=1); the CSV's losses equal an uninterrupted run's.
# Skipped (77) without Slurm/munge/root, except under CI=true, where that is a failure.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
script=$top_srcdir/jobs/mptrain-cpu.sbatch
steps=60
make_data || { echo "FAIL: mptrain-prep"; exit 1; }
slurm_start 10

mkdir -p job
ln -sf ../train.h5 ../val.h5 job/
job=$(sbatch --parsable -D job -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
  "$script" "$deck" --train.steps=$steps --checkpoint.dir=ckpt) || { fail "sbatch"; finish; }
echo "submitted job $job"

give_up() {
  fail "$1"
  show_job "$job"
  finish
}

# 2. The warning, mid-run.
warn_mid_run "$job" job/metrics.csv ||
  give_up "the batch script did not get the warning or did not forward it to mptrain"
pass "the batch script got the warning (SIGUSR1) at step $warned_at of $steps and forwarded it"
out=$(job_field "$job" StdOut)

# 3. Checkpoint, exit 3, requeue.
state=$(wait_job "$job" 120 PENDING COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL)
if [ "$state" != PENDING ]; then
  give_up "the job was not requeued (state $state)"
fi
wait_for 30 "the first start's job steps to end" job_steps_gone "$job" ||
  give_up "the first start's job steps did not end"
scontrol update JobId="$job" StartTime=now || give_up "scontrol update StartTime=now"
line=$(grep -m 1 "^preemption signal received: checkpointing at step" "$out")
at=$(echo "$line" | sed -n 's/.* at step \([0-9]*\) .*/\1/p')
if [ -n "$at" ] && [ "$at" -lt "$steps" ] && grep -q "mptrain exited with status 3" "$out" &&
  grep -q "requeueing job $job" "$out"; then
  pass "mptrain checkpointed at step $at and exited 3; the script requeued the job"
else
  fail "no checkpoint-and-exit-3 before the requeue (${line:-no preemption message})"
fi

# 4. The second start resumes and finishes.
state=$(wait_job "$job" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL)
exit_code=$(job_field "$job" ExitCode)
restarts=$(job_field "$job" Restarts)
if [ "$state" = COMPLETED ] && [ "$exit_code" = 0:0 ] && [ "$restarts" = 1 ]; then
  pass "the requeued job completed (exit $exit_code, Restarts=$restarts)"
else
  fail "the requeued job ended $state, exit code $exit_code, Restarts=$restarts"
  show_job "$job"
fi
if grep -q "job $job (restart 1)" "$out" &&
  grep -q "^restarted from ckpt/step_$(printf '%08d' "${at:-0}").h5" "$out"; then
  pass "the second start resumed from the preemption checkpoint (step ${at:-?})"
else
  fail "the second start did not resume from the preemption checkpoint"
  show_job "$job"
fi

# The uninterrupted reference, run directly (after the job, not to compete with it for CPUs).
OUT=ref.out run_mptrain 4 "$deck" --train.steps=$steps --log.metrics=ref.csv ||
  { cat ref.out; fail "the reference run"; finish; }
if [ "$(csv_rows job/metrics.csv)" = "$steps" ]; then
  losses_within job/metrics.csv ref.csv 1e-6 "preempted and resumed: losses of an uninterrupted run"
else
  fail "job/metrics.csv has $(csv_rows job/metrics.csv) rows, not $steps"
fi
finish
