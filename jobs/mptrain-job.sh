# jobs/mptrain-job.sh -- what the mptrain batch scripts (jobs/mptrain-cpu.sbatch,
# jobs/mptrain-gpu.sbatch) have in common. They source it; it is not run by itself. Keep it in
# the same directory as the scripts: each finds it beside the script you submitted (or at
# MPTRAIN_JOB_HELPER=/path/to/mptrain-job.sh).
#
#   mptrain_job NAME [FIXED_ARG ...] -- DECK [--section.key=value ...]
#
# NAME prefixes the script's own log lines ("2024-01-01 12:00:00 NAME: ..."). The FIXED_ARGs
# go to mptrain before the user's overrides (the GPU script's --device.backend=cuda), so an
# override still wins. mptrain_job never returns: it exits with the job's status.
#
# What it does, in order:
#   1. finds mptrain (MPTRAIN=/path/to/mptrain, else PATH) and reads the deck through mptrain
#      itself (mptrain DECK ARGS --print-deck=KEYS: the deck and every override are checked
#      before anything is launched, by the one parser there is); a bad deck ends the job with
#      mptrain's message and its exit status (2). The deck must set [checkpoint] dir.
#   2. builds the launch: srun --mpi=pmix (default) or, with MPTRAIN_LAUNCH=mpirun, the MPI
#      library's mpirun inside the allocation; MPTRAIN_LAUNCH_FLAGS adds flags. Each rank runs
#      SLURM_CPUS_PER_TASK OpenMP threads bound to its cores. MPTRAIN_DRY_RUN=1 stops here and
#      prints the command (jobs/chain.sh checks its arguments this way before submitting).
#   3. runs mptrain in the background and waits for it, so that the traps can act: SIGUSR1
#      (Slurm's warning before the time limit, "#SBATCH --signal=B:USR1@180", or by hand:
#      scancel --signal=USR1 --batch JOBID) and SIGTERM (scancel, Slurm's own preemption, a
#      time limit reached without a warning) are passed on to the launcher as SIGUSR1, which
#      it forwards to every rank; mptrain then checkpoints at the next step boundary and exits
#      3. (Not SIGTERM itself: srun answers it by killing the ranks, mpirun by aborting.)
#   4. afterwards: exit 3 after a warning requeues the job (scontrol requeue; it resumes with
#      [checkpoint] restart = auto, which a requeued start always uses), or, with
#      MPTRAIN_REQUEUE=0 (jobs/chain.sh), ends it so the next job of a chain takes over. Exit 3
#      after SIGTERM is not requeued: the job is being ended on purpose. The warning must leave
#      time for one step and one checkpoint save; Slurm may send it up to a minute early.
#
# Exit status: 0 when the run finished, or was checkpointed and requeued (or ended with
# MPTRAIN_REQUEUE=0): the job does not look failed. Otherwise mptrain's code (2 bad input,
# 3 checkpointed after SIGTERM, 4 numerical failure, ...), or 1 when the launcher reported
# success but the checkpoint of the last step is missing (srun can exit 0 when a rank never
# started), so the job shows FAILED.
# shellcheck shell=bash

say() { printf '%s %s: %s\n' "$(date '+%F %T')" "$job_name" "$*"; }
die() {
  say "error: $*" >&2
  exit 2
}

# job_read_deck: the values this script needs, as mptrain resolves them from the deck and
# every argument it will get (mptrain --print-deck, before MPI and without the data): sets
# ckpt_dir, restart and steps. Ends the job with mptrain's status when mptrain refuses them.
job_read_deck() {
  local out line rc
  out=$("$prog" "${args[@]}" --print-deck=checkpoint.dir,checkpoint.restart,train.steps)
  rc=$?
  if [ "$rc" -ne 0 ]; then
    say "error: mptrain refused the deck or the arguments (its message is above; exit $rc):" \
      "nothing was launched" >&2
    exit "$rc"
  fi
  ckpt_dir='' restart='' steps=''
  while IFS= read -r line; do
    case $line in
      checkpoint.dir=*) ckpt_dir=${line#*=} ;;
      checkpoint.restart=*) restart=${line#*=} ;;
      train.steps=*) steps=${line#*=} ;;
    esac
  done <<<"$out"
}

# job_launch_command: cmd = the launcher and its flags for this allocation, then mptrain.
job_launch_command() {
  local launch=$1 extra
  # shellcheck disable=SC2206  # MPTRAIN_LAUNCH_FLAGS is a list of flags
  extra=(${MPTRAIN_LAUNCH_FLAGS:-})
  case $launch in
    srun)
      # Slurm 22.05 and later do not pass the job's --cpus-per-task on to srun: say it again.
      cmd=(srun --mpi=pmix --cpus-per-task="$threads" --cpu-bind=cores --kill-on-bad-exit=1
        "${extra[@]}") ;;
    mpirun)
      cmd=(mpirun -np "${SLURM_NTASKS:-1}" --map-by "slot:PE=$threads" --bind-to core
        -x OMP_NUM_THREADS -x OMP_PROC_BIND -x OMP_PLACES "${extra[@]}") ;;
    *) die "MPTRAIN_LAUNCH=$launch: use srun or mpirun" ;;
  esac
  cmd+=("$prog" "${args[@]}")
}

# job_run: runs cmd in the background with the signal traps; sets rc and terminated.
job_run() {
  child='' warned=0 terminated=0
  trap 'warned=1; job_forward USR1' USR1
  trap 'terminated=1; job_forward TERM' TERM
  "${cmd[@]}" &
  child=$!
  # A signal that came before $! was known: pass it on now.
  [ "$warned" = 1 ] && kill -s USR1 "$child" 2>/dev/null
  [ "$terminated" = 1 ] && kill -s USR1 "$child" 2>/dev/null
  # wait returns early (status > 128) whenever a trapped signal arrives: wait again until the
  # launcher has really exited.
  while :; do
    wait "$child"
    rc=$?
    if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
    break
  done
  child=''
  say "mptrain exited with status $rc"
}

# shellcheck disable=SC2317  # called from the traps
job_forward() {
  if [ -n "$child" ]; then
    say "got SIG$1: asking mptrain to checkpoint and stop at the next step (SIGUSR1 to PID $child)"
    kill -s USR1 "$child" 2>/dev/null
  else
    say "got SIG$1 while mptrain is not running"
  fi
}

# job_finish: the job's exit status from mptrain's (rc): checks a reported success against
# the checkpoint of the last step, requeues after a warning. Exits.
job_finish() {
  if [ "$rc" -eq 0 ]; then
    # srun can report success when a rank failed to launch: trust the last step's checkpoint.
    local saved
    saved=$(sed -n 's/^.*step_0*\([0-9][0-9]*\)\.h5.*$/\1/p' "$ckpt_dir/latest" 2>/dev/null)
    case $steps in '' | *[!0-9]*) steps=0 ;; esac
    if [ "$steps" -gt 0 ] && [ "${saved:-0}" -lt "$steps" ]; then
      say "error: the launcher reported success, but $ckpt_dir/latest is at step ${saved:-none}," \
        "not $steps: did every rank start? Resubmit to resume." >&2
      exit 1
    fi
    [ "$steps" -gt 0 ] && say "run finished: step $steps checkpointed in $ckpt_dir"
    exit 0
  fi
  [ "$rc" -eq 3 ] || exit "$rc"
  if [ "$terminated" = 1 ]; then
    say "mptrain was stopped and checkpointed in $ckpt_dir; resubmit the same command to resume"
    exit 3
  fi
  if [ "${MPTRAIN_REQUEUE:-1}" = 0 ] || [ -z "${SLURM_JOB_ID:-}" ]; then
    say "checkpointed in $ckpt_dir; not requeued (MPTRAIN_REQUEUE=0, or not a Slurm job):" \
      "the next job resumes from there"
    exit 0
  fi
  say "checkpointed in $ckpt_dir; requeueing job $SLURM_JOB_ID: it resumes from there"
  trap - USR1 TERM  # Slurm ends this script as it requeues the job
  scontrol requeue "$SLURM_JOB_ID" && exit 0
  say "error: scontrol requeue failed (was the job submitted with --requeue?); resubmit the" \
    "same command to resume from $ckpt_dir" >&2
  exit 3
}

mptrain_job() {
  job_name=$1
  shift
  local fixed=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    fixed+=("$1")
    shift
  done
  [ $# -gt 0 ] && shift  # the --
  [ $# -ge 1 ] || die "usage: sbatch $job_name DECK [--section.key=value ...]"
  local deck=$1
  shift
  if ! [ -f "$deck" ] || ! [ -r "$deck" ]; then
    die "cannot read the deck '$deck' (relative paths start at $PWD)"
  fi
  prog=${MPTRAIN:-$(command -v mptrain 2>/dev/null)}
  [ -n "$prog" ] || die "mptrain is not on PATH; load its module or set MPTRAIN=/path/to/mptrain"
  [ -x "$prog" ] || die "MPTRAIN=$prog is not an executable file"

  threads=${SLURM_CPUS_PER_TASK:-1}
  export OMP_NUM_THREADS=$threads OMP_PROC_BIND=close OMP_PLACES=cores
  args=("$deck" "${fixed[@]}" --device.threads="$threads" "$@")
  job_read_deck
  [ -n "$ckpt_dir" ] || die "the deck $deck sets no [checkpoint] dir: a preempted or requeued" \
    "job could not resume. Set it in the deck ([checkpoint] dir = ...) or add" \
    "--checkpoint.dir=DIR."
  if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [ "$restart" != auto ]; then
    # A requeued job continues its own run, whatever the first start restarted from.
    say "requeued job (restart $SLURM_RESTART_COUNT):" \
      "--checkpoint.restart=auto instead of '$restart'"
    args+=(--checkpoint.restart=auto)
  fi
  local launch=${MPTRAIN_LAUNCH:-srun}
  job_launch_command "$launch"
  if [ "${MPTRAIN_DRY_RUN:-0}" = 1 ]; then
    say "dry run: mptrain accepts the deck and the arguments; checkpoints in $ckpt_dir;" \
      "would run: ${cmd[*]}"
    exit 0
  fi
  say "job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NUM_NODES:-?}" \
    "node(s) [${SLURM_JOB_NODELIST:-?}]: ${SLURM_NTASKS:-?} ranks x $threads threads," \
    "launcher $launch"
  say "checkpoints in $ckpt_dir; running: ${cmd[*]}"
  job_run
  job_finish
}
