# test/slurm/lib.sh -- helpers for the Slurm job-script tests (test/slurm_*.sh), sourced after
# test/lib.sh. Each test starts its own private two-node cluster (test/slurm/cluster.sh) in its
# scratch directory and stops it when it exits, whatever happens.
#
#   slurm_require          exit 77 (skip) when Slurm, munge or root is missing; fail instead
#                          when CI=true or MPTRAIN_NO_SKIP=1 (.ci/run sets it), so that CI
#                          never silently skips these tests
#   slurm_start OFFSET     start the cluster on port MPTRAIN_SLURM_PORT (default 16817) + OFFSET
#                          (each test its own offset, 3 ports apart at least, so tests may run
#                          at once), or, where another cluster (another build's test run on
#                          this machine) holds one of its 3 ports, 100, 200, ... 900 above;
#                          exports SLURM_CONF, MPTRAIN and the Open MPI settings
#   job_field JOB FIELD    one field of "scontrol show job" (JobState, ExitCode, Restarts, StdOut)
#   wait_job JOB SECONDS STATE...   wait until the job is in one of the states
#   wait_for SECONDS DESCRIPTION COMMAND...   wait until COMMAND succeeds
#   job_steps_gone JOB     no step of the job is left on the nodes (before releasing a requeue)
#   warn_when_paused JOB NRANKS   the time-limit warning (SIGUSR1 to the batch script) once
#                          the job's NRANKS ranks have stopped at --test-hook=pause:STEP
# Every wait is bounded; on a timeout the caller records a FAIL and goes on or gives up.

# The cluster's functions, sourced so that this shell is the daemons' parent (and reaps them).
. "$top_srcdir/test/slurm/cluster.sh"
slurm_dir=''
slurm_tmp_dir=''

slurm_require() {
  local missing='' tool
  for tool in munged mungekey munge unmunge slurmctld slurmd sbatch srun squeue scontrol scancel \
              sinfo "$MPIRUN"; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  local reason=''
  if [ "$(id -u)" != 0 ]; then
    reason="the private Slurm cluster needs root (slurmd runs jobs as their owner)"
  elif [ -n "$missing" ]; then
    reason="not found:$missing (packages: slurmctld slurmd slurm-client munge libpmix-dev)"
  fi
  [ -z "$reason" ] && return 0
  if [ "${CI:-}" = true ] || [ "${MPTRAIN_NO_SKIP:-0}" = 1 ]; then
    echo "FAIL: Slurm tests cannot run: $reason. CI=true or MPTRAIN_NO_SKIP=1: these tests" \
      "must not be skipped." >&2
    exit 1
  fi
  echo "SKIP: Slurm tests cannot run: $reason"
  exit 77
}

slurm_cleanup() {
  local status=$?
  if [ -n "$slurm_dir" ]; then
    if [ "$status" -ne 0 ] && [ -d "$slurm_dir/log" ]; then
      echo "---- the cluster's logs (last lines), for the failure above"
      tail -n 20 "$slurm_dir"/log/slurmctld.log "$slurm_dir"/log/slurmd-n*.log 2>/dev/null
    fi
    cluster_stop "$slurm_dir" || status=1
  fi
  if [ -n "$slurm_tmp_dir" ]; then
    # Keep the logs with the test's other files; the socket-friendly short directory goes.
    cp -r "$slurm_tmp_dir/log" "$TEST_WORKDIR/slurm-log" 2>/dev/null
    rm -rf "$slurm_tmp_dir"
  fi
  exit "$status"
}

slurm_start() {
  local offset=${1:-0} var
  # A test run inside a real Slurm job must not talk to that job's cluster.
  for var in $(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_' | grep -v '^SLURM_TEST_'); do
    unset "$var"
  done
  local port=$((${MPTRAIN_SLURM_PORT:-16817} + offset)) above
  for above in 0 100 200 300 400 500 600 700 800 900; do
    cl_port_in_use $((port + above)) || cl_port_in_use $((port + above + 1)) ||
      cl_port_in_use $((port + above + 2)) || break
  done
  export SLURM_TEST_PORT=$((port + above))
  slurm_dir=$TEST_WORKDIR/slurm
  if [ ${#slurm_dir} -gt 64 ]; then
    # Unix socket paths are short (108 bytes): a deep build tree gets a directory in /tmp.
    slurm_tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/mptrain-slurm.XXXXXX") || exit 99
    slurm_dir=$slurm_tmp_dir
  fi
  trap slurm_cleanup EXIT
  # run-test.sh's time limit (SIGTERM, SIGKILL 30 s later): stop the cluster, in a hurry.
  trap 'cl_wait=10; exit 143' TERM INT
  if ! cluster_start "$slurm_dir"; then
    echo "FAIL: could not start the private Slurm cluster" >&2
    exit 1
  fi
  export SLURM_CONF=$slurm_dir/slurm.conf
  if ! srun --mpi=list 2>&1 | grep -q pmix; then
    echo "FAIL: this Slurm has no PMIx plugin (srun --mpi=list); install libpmix-dev" >&2
    srun --mpi=list >&2
    exit 1
  fi
  # Two fake nodes share one host: Open MPI's shared-memory transport would collide between
  # them, so TCP over loopback only. The nodes are oversubscribed (more ranks than cores), and
  # ranks that srun starts do not know it: make them yield the CPU while they wait.
  export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
  export OMPI_MCA_mpi_yield_when_idle=1
  # The job script finds mptrain through MPTRAIN; sbatch passes the environment on.
  export MPTRAIN=$MPTRAIN_BIN/mptrain
}

job_field() {
  scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# wait_job JOB SECONDS STATE...: prints the state reached (or the last one seen).
wait_job() {
  local job=$1 limit=$2 state
  shift 2
  local deadline=$((SECONDS + limit))
  while :; do
    state=$(job_field "$job" JobState)
    for s in "$@"; do
      if [ "$state" = "$s" ]; then
        echo "$state"
        return 0
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "${state:-unknown}"
      echo "wait_job: job $job still ${state:-unknown} after ${limit}s (waiting for $*)" >&2
      return 1
    fi
    sleep 0.2
  done
}

wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "wait_for: gave up after ${limit}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# job_steps_gone JOB: true once no slurmstepd of the job's steps is left on either node (each
# keeps a socket named NODE_JOB.STEP in its node's spool directory). A requeued job released at
# once (StartTime=now) can otherwise start its new step 0 while the old one is still cleaning
# up, and the PMIx plugin fails to bind the step's socket (a real cluster waits ~2 minutes).
job_steps_gone() {
  ! compgen -G "$slurm_dir/spool/n*/*_$1.*" >/dev/null
}

# warn_when_paused JOB NRANKS: the time-limit warning at a chosen step. The job runs mptrain
# with --test-hook=pause:STEP, so each of its NRANKS ranks stops after step STEP and writes
# its PID to mptrain-paused.RANK in the job's directory (the job's StdOut names it) and waits
# for a signal. Once all have, sends the batch script SIGUSR1 as "#SBATCH --signal=B:USR1@N"
# does (scancel --signal=USR1 --batch); the script forwards it to the launcher, which
# forwards it to every rank. Waiting for stopped ranks is not racing a running job: the
# bound only catches a job that never gets there. Returns 1 (after a message) on failure.
warn_when_paused() {
  local job=$1 nranks=$2 out dir r markers=()
  out=$(job_field "$job" StdOut)
  dir=$(job_field "$job" WorkDir)
  for ((r = 0; r < nranks; r++)); do markers+=("$dir/mptrain-paused.$r"); done
  if ! wait_for_files 120 "${markers[@]}"; then
    echo "warn_when_paused: the $nranks ranks of job $job did not all pause (markers: $(ls "$dir"/mptrain-paused.* 2>/dev/null | tr '\n' ' '))" >&2
    return 1
  fi
  scancel --signal=USR1 --batch "$job" || return 1
  wait_for 60 "the batch script of job $job to forward SIGUSR1" \
    grep -q "got SIGUSR1: asking mptrain to checkpoint" "$out"
}

# csv_rows FILE: the number of data rows in a metrics CSV (0 if it does not exist yet).
csv_rows() {
  local n
  n=$(wc -l <"$1" 2>/dev/null) || n=1
  echo $((n > 0 ? n - 1 : 0))
}

# show_job JOB: state, exit code and output file of a job, for a failure.
show_job() {
  echo "---- job $1: $(scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' |
    grep -E '^(JobState|Reason|ExitCode|Restarts)=' | tr '\n' ' ')"
  local out
  out=$(job_field "$1" StdOut)
  [ -n "$out" ] && [ -f "$out" ] && tail -n 25 "$out"
}
