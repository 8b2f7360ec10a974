#!/bin/bash
# Runs the grid unit tests on 1 to 8 ranks: every layout of each world size. (The 600 s
# bound only catches a hang; the run takes seconds.)
. "$top_srcdir/test/lib.sh"
for np in 1 2 3 4 6 8; do
  if timeout 600 "$MPIRUN" $MPIRUN_FLAGS -np $np "$top_builddir/test/test_grid" </dev/null \
       >grid_$np.out 2>&1; then
    pass "grid tests on $np ranks"
  else
    fail "grid tests on $np ranks"; tail -20 grid_$np.out
  fi
done
finish
