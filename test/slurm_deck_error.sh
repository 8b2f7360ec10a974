#!/bin/bash
# test/slurm_deck_error.sh -- bad input inside a Slurm job fails the job fast and says why.
#   1. A misspelt deck key (--optim.lerning_rate=1) on 2 nodes x 2 ranks: the job ends FAILED
#      with exit code 2 within a bounded time, and its output file holds mptrain's message,
#      once (rank 0 reports an error every rank sees).
#   2. A deck without [checkpoint] dir: jobs/mptrain-cpu.sbatch refuses it before launching
#      anything (a requeued job could not resume), FAILED with exit code 2 and a clear message.
# Skipped (77) without Slurm/munge/root, except under CI=true or MPTRAIN_NO_SKIP=1, where that
# is a failure.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
script=$top_srcdir/jobs/mptrain-cpu.sbatch
make_data || { echo "FAIL: mptrain-prep"; exit 1; }
slurm_start 20

# check_failed JOB LABEL PATTERN: FAILED, exit code 2:0, PATTERN once in the output file, all
# within 60 s of the submission.
check_failed() {
  local job=$1 label=$2 pattern=$3 state exit_code out count
  state=$(wait_job "$job" $((submitted + 60 - SECONDS)) COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL)
  exit_code=$(job_field "$job" ExitCode)
  out=$(job_field "$job" StdOut)
  count=$(grep -c -- "$pattern" "$out" 2>/dev/null)
  if [ "$state" = FAILED ] && [ "$exit_code" = 2:0 ] && [ "${count:-0}" -eq 1 ]; then
    pass "$label: job $job FAILED (exit $exit_code) $((SECONDS - submitted))s after sbatch; the message is in its output"
  else
    fail "$label: job $job ended ${state:-?}, exit code ${exit_code:-?}, message found ${count:-0} time(s): $pattern"
    show_job "$job"
  fi
}

submitted=$SECONDS
bad=$(sbatch --parsable -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
  "$script" "$deck" --checkpoint.dir=ckpt --optim.lerning_rate=1) || { fail "sbatch"; finish; }
no_dir=$(sbatch --parsable -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
  "$script" "$deck") || { fail "sbatch"; finish; }
echo "submitted jobs $bad (misspelt key) and $no_dir (no checkpoint dir)"
check_failed "$bad" "a misspelt deck key" "^mptrain: error: .*lerning_rate"
check_failed "$no_dir" "no [checkpoint] dir" "error: the deck .* sets no \[checkpoint\] dir"
finish
