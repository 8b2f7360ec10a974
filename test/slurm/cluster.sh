#!/bin/bash
# test/slurm/cluster.sh -- a private Slurm cluster for the job-script tests, run by root inside
# one scratch directory: munge with its own key, slurmctld, and two slurmd daemons acting as
# two nodes (n1, n2) on 127.0.0.1.
#
#   test/slurm/cluster.sh start DIR    write DIR/slurm.conf, start the daemons, wait until both
#                                      nodes are idle; clients then need SLURM_CONF=DIR/slurm.conf
#   test/slurm/cluster.sh stop DIR     cancel every job, wait for the queue to drain, stop the
#                                      daemons (by the PIDs recorded in DIR/pids, never by name)
#   test/slurm/cluster.sh status DIR   the daemons' PIDs and sinfo
# or, sourced: cluster_start DIR / cluster_stop DIR / cluster_status DIR (return non-zero on
# failure). Sourced, the daemons are children of the sourcing shell, which reaps them when they
# exit; started by the command, they are orphans that PID 1 must reap (where PID 1 does not,
# as in some containers, they stay as harmless zombies).
#
# Settings (environment, read by "start"):
#   SLURM_TEST_PORT  slurmctld's port; the nodes' slurmd listen on the next two (default 16817).
#                    Tests that may run at the same time need ports at least 3 apart.
#   SLURM_TEST_CPUS  CPUs each node declares (default max(2 * nproc, 4)). It must be at least
#                    the largest task count (x cpus-per-task) a job asks of one node, or the
#                    job is accepted but pends forever. The nodes are oversubscribed on purpose.
#   SLURM_TEST_WAIT  seconds any single wait may take before giving up (default 30).
#
# Everything lives under DIR: the munge key, socket and log; slurm.conf; state, spool, tmp and
# log directories; one file per daemon in DIR/pids. Job IDs start at a number derived from the
# port (FirstJobId), so two clusters running at once never use the same job IDs (Open MPI and
# PMIx name their session files after them). Configuration: no cgroups (proctrack/linuxproc,
# task/none), no accounting (finished jobs stay visible to "scontrol show job" for MinJobAge
# seconds, and in DIR/log/jobcomp.txt), every daemon and every job runs as root.
set -u

# The cluster's directory (absolute) and the time limit of any single wait.
cl_dir=''
cl_wait=${SLURM_TEST_WAIT:-30}
cl_set_dir() {
  [ -n "${1:-}" ] || { echo "cluster.sh: no DIR given" >&2; return 1; }
  case $1 in
    /*) cl_dir=$1 ;;
    *) cl_dir=$PWD/$1 ;;
  esac
}

cl_say() { echo "cluster.sh: $*"; }
cl_die() {
  echo "cluster.sh: error: $*" >&2
  return 1
}

# cl_wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds;
# fails after SECONDS.
cl_wait_until() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster.sh: gave up after ${limit}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# The PID recorded for a daemon, if that process is still alive and still ours (its command
# line names a file under DIR: guards against a recycled PID).
cl_live_pid() {
  local file=$cl_dir/pids/$1 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$cl_dir/" || return 1
  echo "$pid"
}

cl_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cl_munge_works() {
  munge -n -S "$cl_dir/munge/munge.socket" | unmunge -S "$cl_dir/munge/munge.socket"
}
cl_controller_up() { SLURM_CONF=$cl_dir/slurm.conf scontrol ping | grep -q "is UP"; }
cl_nodes_idle() {
  local states
  states=$(SLURM_CONF=$cl_dir/slurm.conf sinfo -h -N -o '%N=%T' | sort -u | tr '\n' ' ')
  [ "$states" = "n1=idle n2=idle " ]
}

# cl_start_daemon NAME LOG COMMAND...: runs COMMAND (a daemon in the foreground) in the
# background, in a session of its own, and records its PID in DIR/pids/NAME. Its own session:
# a signal to the caller's process group (a test's time limit) leaves the cluster up, so that
# the caller's cleanup can still cancel the jobs (whose processes are not in that group either)
# before stopping the daemons. (In a shell without job control setsid is no process-group
# leader, so it execs the daemon directly and $! is the daemon; with job control, as in an
# interactive shell, it would fork, and the daemon is in a group of its own anyway.)
cl_start_daemon() {
  local name=$1 log=$2
  shift 2
  case $- in
    *m*) "$@" </dev/null >>"$log" 2>&1 & ;;
    *) setsid "$@" </dev/null >>"$log" 2>&1 & ;;
  esac
  echo $! >"$cl_dir/pids/$name"
}

cl_show_logs() {
  local f
  for f in "$cl_dir"/log/*.log "$cl_dir"/log/*.out; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
}

cluster_start() {
  cl_set_dir "$1" || return 1
  local tool
  for tool in munged mungekey munge unmunge slurmctld slurmd scontrol sinfo squeue scancel setsid; do
    command -v "$tool" >/dev/null 2>&1 || cl_die "$tool not found (packages: slurmctld slurmd slurm-client munge)" || return 1
  done
  [ "$(id -u)" = 0 ] || cl_die "must run as root (slurmd runs jobs as their owner)" || return 1
  local port=${SLURM_TEST_PORT:-16817}
  case $port in '' | *[!0-9]*) cl_die "SLURM_TEST_PORT must be a port number, not '$port'" || return 1 ;; esac
  local cpus=${SLURM_TEST_CPUS:-}
  if [ -z "$cpus" ]; then
    cpus=$((2 * $(nproc)))
    [ "$cpus" -ge 4 ] || cpus=4
  fi
  local p
  for p in "$port" $((port + 1)) $((port + 2)); do
    if cl_port_in_use "$p"; then
      cl_die "port $p is in use (another cluster? set SLURM_TEST_PORT)"
      return 1
    fi
  done
  if cl_live_pid slurmctld >/dev/null || cl_live_pid munged >/dev/null; then
    cl_die "a cluster is already running in $cl_dir (stop it first)"
    return 1
  fi
  # Unix socket paths (munge's, slurmd's per step) are limited to 108 bytes.
  [ ${#cl_dir} -le 64 ] || cl_die "DIR is too long for Unix socket paths (${#cl_dir} > 64 characters): $cl_dir" || return 1

  mkdir -p "$cl_dir"/{munge,state,pids,log,spool/n1,spool/n2,tmp/n1,tmp/n2} || cl_die "cannot create $cl_dir" || return 1
  chmod 0755 "$cl_dir" "$cl_dir/munge"  # munged insists on it
  rm -f "$cl_dir"/pids/*

  # munge: a key of this cluster's own; /etc/munge is not touched.
  if [ ! -f "$cl_dir/munge/munge.key" ]; then
    mungekey -c -k "$cl_dir/munge/munge.key" >/dev/null 2>&1 || cl_die "mungekey failed" || return 1
  fi
  chmod 0600 "$cl_dir/munge/munge.key"
  cl_start_daemon munged "$cl_dir/log/munged.out" munged -F -S "$cl_dir/munge/munge.socket" \
    --key-file="$cl_dir/munge/munge.key" --pid-file="$cl_dir/munge/munged.pid" \
    --log-file="$cl_dir/log/munged.log" --seed-file="$cl_dir/munge/munged.seed"
  cl_wait_until "$cl_wait" "munged" cl_munge_works || {
    cl_show_logs
    return 1
  }

  local host
  host=$(hostname -s 2>/dev/null || hostname)
  local first_job=$(((port % 1000) * 1000 + 1))
  cat >"$cl_dir/slurm.conf" <<EOF
# Written by test/slurm/cluster.sh: a private two-node cluster on this host.
ClusterName=mptrain$port
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cl_dir/munge/munge.socket
StateSaveLocation=$cl_dir/state
SlurmdSpoolDir=$cl_dir/spool/%n
TmpFS=$cl_dir/tmp/%n
SlurmctldPidFile=$cl_dir/log/slurmctld.pid
SlurmdPidFile=$cl_dir/log/slurmd-%n.pid
SlurmctldLogFile=$cl_dir/log/slurmctld.log
SlurmdLogFile=$cl_dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$cl_dir/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
KillWait=5
MinJobAge=300
FirstJobId=$first_job
NodeName=n[1-2] NodeHostname=$host NodeAddr=127.0.0.1 Port=[$((port + 1))-$((port + 2))] CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
EOF

  cl_start_daemon slurmctld "$cl_dir/log/slurmctld.out" slurmctld -D -i -f "$cl_dir/slurm.conf"
  cl_wait_until "$cl_wait" "slurmctld" cl_controller_up || {
    cl_show_logs
    return 1
  }
  local node
  for node in n1 n2; do
    cl_start_daemon "slurmd-$node" "$cl_dir/log/slurmd-$node.out" slurmd -D -f "$cl_dir/slurm.conf" -N "$node"
  done
  cl_wait_until "$cl_wait" "nodes n1 and n2 to become idle" cl_nodes_idle || {
    cl_show_logs
    SLURM_CONF=$cl_dir/slurm.conf sinfo -N >&2
    return 1
  }
  cl_say "cluster up in $cl_dir: slurmctld on port $port, nodes n1 n2 ($cpus CPUs each), first job ID $first_job"
}

cl_queue_empty() { [ -z "$(SLURM_CONF=$cl_dir/slurm.conf squeue -h -o %i 2>/dev/null)" ]; }

cluster_stop() {
  cl_set_dir "$1" || return 1
  [ -d "$cl_dir/pids" ] || {
    cl_say "nothing to stop in $cl_dir"
    return 0
  }
  local status=0
  # Jobs first: their processes (slurmstepd, scripts, ranks) would outlive slurmd.
  if cl_live_pid slurmctld >/dev/null && [ -f "$cl_dir/slurm.conf" ]; then
    local jobs
    jobs=$(SLURM_CONF=$cl_dir/slurm.conf timeout 10 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086  # a list of job IDs
      SLURM_CONF=$cl_dir/slurm.conf timeout 10 scancel $jobs
      cl_wait_until "$cl_wait" "the cancelled jobs to finish" cl_queue_empty || status=1
    fi
  fi
  # Then every daemon at once, munged last; SIGKILL after 15 s.
  local name pid pids=()
  for name in slurmd-n1 slurmd-n2 slurmctld; do
    if pid=$(cl_live_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null
      pids+=("$pid")
    fi
  done
  cl_stop_pids 15 "${pids[@]}" || status=1
  if pid=$(cl_live_pid munged); then
    kill -TERM "$pid" 2>/dev/null
    cl_stop_pids 15 "$pid" || status=1
  fi
  rm -f "$cl_dir"/pids/*
  [ "$status" -eq 0 ] && cl_say "cluster in $cl_dir stopped"
  return "$status"
}

# cl_stop_pids SECONDS PID...: waits for the processes to exit, then SIGKILLs those left.
cl_stop_pids() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit)) pid alive
  while :; do
    alive=()
    for pid in "$@"; do
      # A zombie has exited (its parent, PID 1 after the daemon's starter left, reaps it).
      kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] &&
        alive+=("$pid")
    done
    [ ${#alive[@]} -eq 0 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster.sh: SIGKILL to ${alive[*]} after ${limit}s" >&2
      kill -KILL "${alive[@]}" 2>/dev/null
      return 1
    fi
    sleep 0.1
  done
}

cluster_status() {
  cl_set_dir "$1" || return 1
  local name pid
  for name in munged slurmctld slurmd-n1 slurmd-n2; do
    if pid=$(cl_live_pid "$name"); then echo "$name: $pid"; else echo "$name: not running"; fi
  done
  [ -f "$cl_dir/slurm.conf" ] && SLURM_CONF=$cl_dir/slurm.conf timeout 10 sinfo -N
}

cl_usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ $# -eq 2 ] || cl_usage
  case $1 in
    start) cluster_start "$2" ;;
    stop) cluster_stop "$2" ;;
    status) cluster_status "$2" ;;
    *) cl_usage ;;
  esac
fi
