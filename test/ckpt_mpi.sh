#!/bin/bash
# test/ckpt_mpi.sh -- the checkpoint tests on several ranks, plus a save killed half way.
# Run by test/run-test.sh (which exports MPIRUN, MPIRUN_FLAGS, TEST_WORKDIR and top_builddir).
# The ranks are local, so they inherit the environment variables set here.
#   1. test/test_checkpoint on 3 and on 4 ranks: uneven splits, replicas, tensors held by some
#      ranks only, several ranks writing into one chunk, errors agreed on by every rank.
#   2. A job on 3 ranks saves step 1, then dies in the middle of saving step 2 (rank 0 raises
#      SIGKILL through CheckpointDir's kill-in-save test hook); a second job (4 ranks: another
#      sharding) finds step 1 intact and first, and step 2 never became a checkpoint.
set -u

MPIRUN=${MPIRUN:-mpirun}
MPIRUN_FLAGS=${MPIRUN_FLAGS:-}
top_builddir=${top_builddir:-.}
work=${TEST_WORKDIR:-$(mktemp -d)}
program=$top_builddir/test/test_checkpoint
status=0

for np in 3 4; do
  echo "== test_checkpoint on $np ranks"
  # shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of flags
  if ! "$MPIRUN" $MPIRUN_FLAGS -np "$np" "$program"; then
    echo "FAIL: test_checkpoint on $np ranks" >&2
    status=1
  fi
done

echo "== a save killed half way (the job is expected to die)"
kill_dir=$work/killed
rm -rf "$kill_dir"
# shellcheck disable=SC2086
MPTRAIN_CKPT_KILL_DIR=$kill_dir \
  "$MPIRUN" $MPIRUN_FLAGS -np 3 "$program" --run_test=kill_in_save
killed=$?
if [ "$killed" -eq 0 ]; then
  echo "FAIL: the job saving step 2 was not killed" >&2
  status=1
fi
echo "== after the kill (exit status $killed): restart view on 4 ranks"
# shellcheck disable=SC2086
if ! MPTRAIN_CKPT_KILL_DIR=$kill_dir \
  "$MPIRUN" $MPIRUN_FLAGS -np 4 "$program" --run_test=after_kill; then
  echo "FAIL: the checkpoint before the killed save is not intact" >&2
  status=1
fi
exit "$status"
