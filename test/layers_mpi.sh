#!/bin/bash
# Runs the tensor-parallel layer tests with TP groups of 2 and 4 ranks. (The 600 s bound only
# catches a hang.)
. "$top_srcdir/test/lib.sh"
for np in 2 4; do
  if timeout 600 "$MPIRUN" $MPIRUN_FLAGS -np $np "$top_builddir/test/test_layers" </dev/null \
       >layers_$np.out 2>&1; then
    pass "parallel layers vs 1 rank, tp=$np"
  else
    fail "parallel layers vs 1 rank, tp=$np"; tail -30 layers_$np.out
  fi
done
finish
