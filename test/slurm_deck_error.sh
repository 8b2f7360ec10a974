#!/bin/bash
# test/slurm_deck_error.sh -- bad input inside a Slurm job fails the job fast and says why.
# Each job asks for 2 nodes x 2 ranks; each must end FAILED with exit code 2 within a bounded
# time, its output file holding the message once.
#   1. A misspelt deck key (--optim.lerning_rate=1): the job script reads the deck through
#      mptrain --print-deck, which refuses it with mptrain's message before anything is
#      launched.
#   2. A deck without [checkpoint] dir: jobs/mptrain-cpu.sbatch refuses it before launching
#      anything (a requeued job could not resume), with a clear message. This job is a copy of
#      jobs/ in a directory with a space in its name, submitted by a relative path with an
#      argument holding a space: the script (which Slurm runs from its spool directory) must
#      still find jobs/mptrain-job.sh beside the script as submitted, whose message this is.
#   3. A valid deck with a layout the job cannot hold (--parallel.tp=3 on 4 ranks): only the
#      launched ranks can tell; rank 0 reports it once for all of them.
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
mkdir -p "site jobs"
cp "$top_srcdir"/jobs/* "site jobs/"
no_dir=$(sbatch --parsable -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
  "site jobs/mptrain-cpu.sbatch" "$deck" "--log.metrics=a b.csv") || { fail "sbatch"; finish; }
layout=$(sbatch --parsable -N 2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
  "$script" "$deck" --checkpoint.dir=ckpt --parallel.tp=3) || { fail "sbatch"; finish; }
echo "submitted jobs $bad (misspelt key), $no_dir (no checkpoint dir) and $layout (layout)"
check_failed "$bad" "a misspelt deck key" "^mptrain: error: .*lerning_rate"
out=$(job_field "$bad" StdOut)
if grep -q "mptrain refused the deck or the arguments .*nothing was launched" "$out" &&
  ! grep -q "running: " "$out"; then
  pass "a misspelt deck key: refused by mptrain --print-deck before the launch"
else
  fail "a misspelt deck key: not refused before the launch"
fi
check_failed "$no_dir" "no [checkpoint] dir" "error: the deck .* sets no \[checkpoint\] dir"
check_failed "$layout" "an impossible layout" \
  "^mptrain: error: \[parallel\] tp \* pp = 3 does not divide the 4 ranks"
finish
