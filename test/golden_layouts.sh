#!/bin/bash
# The golden reference (test/test_golden.cpp, test/golden/README) on parallel layouts: the
# same PyTorch numbers must come out of tp2, tp4 (vocabulary 67 padded to 68), pp2 (4
# micro-batches through 1F1B), dp2, dp2 with ZeRO-1, dp4 with one-tensor buckets and
# tp2·pp2·dp2 -- and, in the same runs, each rank's communication against the analytic count
# (include/mptrain/model/analytic.hpp). (The 1-rank case is test/test_golden itself.)
. "$top_srcdir/test/lib.sh"
while read -r name np overrides; do
  [ -z "$name" ] && continue
  mkdir -p "$name"
  if (cd "$name" && timeout -k 10 300 "$MPIRUN" $MPIRUN_FLAGS -np "$np" \
        "$top_builddir/test/test_golden" -- $overrides </dev/null >golden.out 2>&1); then
    pass "$name ($np ranks) matches the golden numbers"
  else
    fail "$name ($np ranks) differs from the golden numbers"; grep -v "^step " "$name/golden.out" | tail -30
  fi
  grep "^golden:" "$name/golden.out"
  # train() ends with the run summary: every rank's traffic against traffic.hpp's formulas.
  grep -q "^comm-check: ok" "$name/golden.out" && pass "$name: every rank sent the analytic byte count" ||
    { fail "$name: communication differs from the analytic count"; grep -A6 "^communication per" "$name/golden.out"; }
done <<'LAYOUTS'
tp2 2 --parallel.tp=2
tp4 4 --parallel.tp=4
pp2 2 --parallel.pp=2
dp2 2 --parallel.dp=2
dp2zero 2 --parallel.dp=2 --optim.zero=1
dp4bucket 4 --parallel.dp=4 --parallel.bucket_mb=0.0001
dp2tp2pp2 8 --parallel.tp=2 --parallel.pp=2 --parallel.dp=2
LAYOUTS
finish
