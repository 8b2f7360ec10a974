#!/bin/bash
# jobs/chain.sh -- one long run as a chain of N Slurm jobs, each starting when the previous one
# has ended (--dependency=afterany) and resuming from the newest checkpoint.
#
#   jobs/chain.sh N DECK [SBATCH_ARGS ...] [-- OVERRIDES ...]
#   jobs/chain.sh 5 input/big.deck --time=12:00:00 -N 8 -- --train.steps=200000
#
# Every job runs jobs/mptrain-cpu.sbatch (MPTRAIN_JOB_SCRIPT=jobs/mptrain-gpu.sbatch for GPUs)
# with MPTRAIN_REQUEUE=0: at its time-limit warning a job checkpoints and ends (exit 0) rather
# than requeueing itself, and the next job of the chain takes over. Jobs 2..N resume
# (--checkpoint.restart=auto) from the deck's [checkpoint] dir, which must be set; a job that
# starts after the run has finished does nothing and ends at once. afterany: the chain goes
# on even when a job fails or is killed (it resumes from the last complete checkpoint);
# "scancel" the remaining job IDs to stop it. The deck and the launch are checked first
# (MPTRAIN_DRY_RUN: mptrain --print-deck reads the deck and every override), here on the
# submitting machine, so load mptrain's modules (or set MPTRAIN) before running this.
# Prints the job IDs, one a line, first to last.
set -u
die() {
  echo "chain.sh: error: $*" >&2
  exit 2
}
[ $# -ge 2 ] || die "usage: $0 N DECK [SBATCH_ARGS ...] [-- OVERRIDES ...]"
count=$1
deck=$2
shift 2
case $count in '' | *[!0-9]* | 0) die "N must be a positive number of jobs, not '$count'" ;; esac
sbatch_args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  sbatch_args+=("$1")
  shift
done
[ $# -gt 0 ] && shift  # the --
overrides=("$@")

script=${MPTRAIN_JOB_SCRIPT:-$(dirname "$0")/mptrain-cpu.sbatch}
[ -r "$script" ] || die "cannot read the job script $script (MPTRAIN_JOB_SCRIPT)"
command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this where you submit Slurm jobs"
# The job script's own checks (mptrain accepts the deck and the overrides, [checkpoint] dir),
# before anything is queued.
MPTRAIN_DRY_RUN=1 bash "$script" "$deck" "${overrides[@]}" >/dev/null ||
  die "the job script refused the arguments (above); nothing submitted"

export MPTRAIN_REQUEUE=0  # sbatch passes the environment on to the jobs
previous=''
for ((i = 1; i <= count; i++)); do
  dependency=() resume=()
  if [ -n "$previous" ]; then
    dependency=(--dependency="afterany:$previous")
    resume=(--checkpoint.restart=auto)
  fi
  job=$(sbatch --parsable "${dependency[@]}" "${sbatch_args[@]}" "$script" "$deck" \
    "${overrides[@]}" "${resume[@]}") || die "sbatch failed for job $i of $count"
  job=${job%%;*}  # --parsable prints "ID" or "ID;CLUSTER"
  echo "$job"
  echo "chain.sh: job $i of $count: $job${previous:+ (after $previous)}" >&2
  previous=$job
done
