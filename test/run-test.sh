#!/bin/bash
# test/run-test.sh -- the automake LOG_COMPILER for every mptrain test (Makefile.am: TESTS).
# Called by the test driver as: run-test.sh TEST [ARGS...]
#
# What it guarantees each test:
#   * How it is run. A shell script (*.sh) runs with bash; anything else (a compiled Boost.Test
#     program, possibly a libtool wrapper) runs directly as one process, relying on MPI's
#     singleton initialisation. Multi-rank tests are shell scripts that launch their own jobs:
#         "$MPIRUN" $MPIRUN_FLAGS -np 4 "$top_builddir/test/test_foo"
#   * MPI that works on a CI box. MPIRUN_FLAGS (exported) holds --oversubscribe for Open MPI,
#     so 8 ranks run on 2 cores, plus whatever MPIRUN_FLAGS held already;
#     OMPI_MCA_rmaps_base_oversubscribe=1 does the same for launches without the flag; and as
#     root, OMPI_ALLOW_RUN_AS_ROOT{,_CONFIRM}=1 lift Open MPI's refusal to run. None of this is
#     baked into the build: configure only records the launcher's path (MPIRUN).
#   * Nothing left outside the build tree, even by jobs the tests kill on purpose: Open MPI's
#     session directories (orte_tmpdir_base, normally /tmp) and shared-memory segments
#     (btl_vader_backing_directory, normally /dev/shm), which a killed job cannot remove, go
#     to $TEST_WORKDIR/mpi (unless those MCA variables are set already).
#   * A scratch directory of its own: $top_builddir/test/work/NAME, emptied first, exported as
#     TEST_WORKDIR and made the current directory. Tests write only there; under
#     "make distcheck" the source tree is read-only. ("make clean" removes test/work.)
#   * Absolute top_srcdir and top_builddir (set by Makefile.am), for data and programs.
#   * A wall-clock limit, so nothing can hang CI: MPTRAIN_TEST_TIMEOUT seconds (default 900),
#     plus, for a test whose running time the user chooses, that time: test/fuzz_run.sh gets
#     4 x MPTRAIN_FUZZ_SECONDS more (it fuzzes four harnesses that long each). On expiry the
#     test and every process it started get SIGTERM, then SIGKILL 30 s later, and the test
#     fails with status 124.
# The exit status is the test's own: 0 pass, 77 skip, 99 hard error, anything else fail.
set -u

if [ $# -lt 1 ]; then
  echo "usage: $0 TEST [ARGS...]" >&2
  exit 99
fi
test_path=$1
shift

# The driver passes a path relative to the build directory; the test runs elsewhere.
case $test_path in
  /*) ;;
  *) test_path=$PWD/$test_path ;;
esac
if [ ! -e "$test_path" ]; then
  echo "run-test.sh: no such test: $test_path" >&2
  exit 99
fi

name=$(basename "$test_path")
name=${name%.sh}
top_builddir=${top_builddir:-$PWD}
top_srcdir=${top_srcdir:-$top_builddir}
export top_builddir top_srcdir

TEST_WORKDIR=$top_builddir/test/work/$name
rm -rf "$TEST_WORKDIR"
if ! mkdir -p "$TEST_WORKDIR"; then
  echo "run-test.sh: cannot create $TEST_WORKDIR" >&2
  exit 99
fi
export TEST_WORKDIR

# MPI launch environment.
MPIRUN=${MPIRUN:-mpirun}
export MPIRUN
MPIRUN_FLAGS=${MPIRUN_FLAGS:-}
if "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then
  case " $MPIRUN_FLAGS " in
    *" --oversubscribe "*) ;;
    *) MPIRUN_FLAGS="--oversubscribe${MPIRUN_FLAGS:+ $MPIRUN_FLAGS}" ;;
  esac
fi
export MPIRUN_FLAGS
export OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mkdir -p "$TEST_WORKDIR/mpi" || exit 99
export OMPI_MCA_orte_tmpdir_base=${OMPI_MCA_orte_tmpdir_base:-$TEST_WORKDIR/mpi}
export OMPI_MCA_btl_vader_backing_directory=${OMPI_MCA_btl_vader_backing_directory:-$TEST_WORKDIR/mpi}
# Boost.Test colours its output for terminals; the logs are files.
export BOOST_TEST_COLOR_OUTPUT=${BOOST_TEST_COLOR_OUTPUT:-no}

case $test_path in
  *.sh) command=(bash "$test_path" "$@") ;;
  *) command=("$test_path" "$@") ;;
esac

limit=${MPTRAIN_TEST_TIMEOUT:-900}
case $limit in
  '' | *[!0-9]*)
    echo "run-test.sh: MPTRAIN_TEST_TIMEOUT must be a number of seconds, not '$limit'" >&2
    exit 99 ;;
esac

case $name in
  fuzz_run)
    fuzz_seconds=${MPTRAIN_FUZZ_SECONDS:-10}
    # A value that is not a number is the test's to refuse; the limit stays the base one.
    case $fuzz_seconds in
      '' | *[!0-9]*) ;;
      *) limit=$((limit + 4 * fuzz_seconds)) ;;
    esac ;;
esac

echo "run-test.sh: $name: ${command[*]}"
echo "run-test.sh: workdir $TEST_WORKDIR, time limit ${limit}s, MPIRUN_FLAGS='$MPIRUN_FLAGS'"
cd "$TEST_WORKDIR" || exit 99

if command -v timeout >/dev/null 2>&1; then
  # timeout puts the test in a process group of its own and signals the whole group, so
  # mpirun and its ranks go too.
  started=$SECONDS
  timeout --kill-after=30 "$limit" "${command[@]}"
  status=$?
  # 124: stopped by SIGTERM; 137: needed the SIGKILL (or was killed by someone else, which
  # the elapsed time tells apart).
  if [ "$status" -eq 124 ] || { [ "$status" -eq 137 ] && [ $((SECONDS - started)) -ge "$limit" ]; }; then
    echo "run-test.sh: $name: killed after exceeding the ${limit}s time limit" \
         "(MPTRAIN_TEST_TIMEOUT)" >&2
    status=124
  fi
else
  echo "run-test.sh: warning: coreutils timeout not found; running without a time limit" >&2
  "${command[@]}"
  status=$?
fi
exit "$status"
