#!/bin/bash
# test/slurm_preempt.sh -- a job preempted through Slurm's warning signal checkpoints, requeues
# itself, resumes, and ends bit for bit where an uninterrupted run ends.
#   1. jobs/mptrain-cpu.sbatch runs the tiny deck for 12 steps on 2 nodes x 2 ranks, with
#      --test-hook=pause:5 passed through to mptrain: every rank stops after step 5 and waits.
#   2. Once all 4 ranks have paused, the harness sends the batch script SIGUSR1 the way
#      "#SBATCH --signal=B:USR1@N" does (scancel --signal=USR1 --batch), so the warning
#      arrives at a known step whatever the speed of this machine (warn_when_paused).
#   3. The script forwards SIGUSR1 through srun to every rank; mptrain checkpoints at step 5
#      and exits 3; the script requeues the job. Slurm holds a requeued job back for about
#      two minutes; the harness releases it at once (scontrol update StartTime=now).
#   4. The second start resumes from step 5 ([checkpoint] restart = auto; the hook does not
#      fire again: the run never trains step 5) and completes (COMPLETED, exit 0:0,
#      Restarts=1). Its losses and its final checkpoint (model, AdamW state, resume state)
#      are bit-identical to an uninterrupted run of the same layout under mpirun.
# Skipped (77) without Slurm/munge/root, except under CI=true or MPTRAIN_NO_SKIP=1, where that
# is a failure.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
script=$top_srcdir/jobs/mptrain-cpu.sbatch
steps=12 at=5
make_data || { echo "FAIL: mptrain-prep"; exit 1; }
slurm_start 10

mkdir -p job
ln -sf ../train.h5 ../val.h5 job/
job=$(sbatch --parsable -D job -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
  "$script" "$deck" --train.steps=$steps --checkpoint.dir=ckpt --test-hook=pause:$at) ||
  { fail "sbatch"; finish; }
echo "submitted job $job"

give_up() {
  fail "$1"
  show_job "$job"
  finish
}

# 2. The warning, at step 5.
warn_when_paused "$job" 4 ||
  give_up "the batch script did not get the warning or did not forward it to mptrain"
pass "all 4 ranks paused after step $at; the batch script got the warning (SIGUSR1) and forwarded it"
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
if [[ $line == *" at step $at and exiting (code 3); the signal reached 4 of 4 rank(s)"* ]] &&
  [ -f "job/ckpt/step_0000000$at.h5" ] && grep -q "mptrain exited with status 3" "$out" &&
  grep -q "requeueing job $job" "$out"; then
  pass "every rank got the signal; mptrain checkpointed at step $at and exited 3; the script requeued the job"
else
  fail "no checkpoint at step $at and exit 3 before the requeue (${line:-no preemption message})"
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
  grep -q "^restarted from ckpt/step_0000000$at.h5" "$out" &&
  [ "$(grep -c '^test hook: rank .* paused' "$out")" -eq 4 ]; then
  pass "the second start resumed from the preemption checkpoint (step $at) without pausing again"
else
  fail "the second start did not resume from the step-$at checkpoint (or paused again)"
  show_job "$job"
fi

# The uninterrupted reference, run directly (after the job, not to compete with it for CPUs):
# the same 4-rank layout, the same transport (TCP over loopback: slurm_start exported it).
OUT=ref.out run_mptrain 4 "$deck" --train.steps=$steps --log.metrics=ref.csv --checkpoint.dir=ref ||
  { cat ref.out; fail "the reference run"; finish; }
losses_identical job/metrics.csv ref.csv "preempted and resumed job vs an uninterrupted run"
ckpt_identical job/ckpt/step_000000$steps.h5 ref/step_000000$steps.h5 \
  "preempted and resumed job vs an uninterrupted run: the final checkpoint"
finish
