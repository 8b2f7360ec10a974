#!/bin/bash
# Checkpoints across layouts (DESIGN §5.3): exact resume on multi-rank layouts, and a
# checkpoint written on dp2·tp2 restarted on tp4, pp2·dp2, 1x1x1 and with ZeRO toggled,
# each staying within the layout-invariance tolerance of an uninterrupted run.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck

OUT=ref.out run_mptrain 0 "$deck" --log.metrics=ref.csv --checkpoint.restart=none ||
  { fail "reference run"; finish; }

# Exact resume on the same layout: uninterrupted vs stopped at step 5 and resumed.
while read -r name tp pp dp extra; do
  [ -z "$name" ] && continue
  np=$((tp * pp * dp)); lay="--parallel.tp=$tp --parallel.pp=$pp --parallel.dp=$dp $extra"
  OUT=$name-full.out run_mptrain $np "$deck" $lay --log.metrics=$name-full.csv --checkpoint.restart=none
  OUT=$name-1.out MPTRAIN_TEST_SIGNAL_STEP=5 run_mptrain $np "$deck" $lay --log.metrics=$name.csv \
    --checkpoint.dir=ck_$name
  rc1=$?
  OUT=$name-2.out run_mptrain $np "$deck" $lay --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc2=$?
  [ $rc1 -eq 3 ] && [ $rc2 -eq 0 ] && pass "$name: stop (exit 3) and resume (exit 0)" ||
    fail "$name: stop/resume exits $rc1/$rc2"
  losses_identical $name-full.csv $name.csv "$name: exact resume"
done <<'LAYOUTS'
dp2tp2 2 1 2
pp2 1 2 1 --parallel.micro_batch=2
dp2zero 1 1 2 --optim.zero=1
LAYOUTS

# Resharding: save on dp2·tp2 at step 5, resume on other layouts.
OUT=src.out MPTRAIN_TEST_SIGNAL_STEP=5 run_mptrain 4 "$deck" --parallel.tp=2 --parallel.dp=2 \
  --log.metrics=src.csv --checkpoint.dir=ck_src
[ -f ck_src/step_00000005.h5 ] && pass "dp2·tp2 wrote step 5" || fail "no step-5 checkpoint"
while read -r name tp pp dp extra; do
  [ -z "$name" ] && continue
  np=$((tp * pp * dp))
  rm -rf ck_$name; cp -r ck_src ck_$name; cp src.csv $name.csv
  OUT=$name.out run_mptrain $np "$deck" --parallel.tp=$tp --parallel.pp=$pp --parallel.dp=$dp \
    $extra --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc=$?
  if [ $rc -eq 0 ] && grep -q "written with tp=2 pp=1 dp=2" $name.out; then
    pass "$name: restarted from the dp2·tp2 checkpoint"
  else
    fail "$name: restart exits $rc"; tail -5 $name.out
  fi
  losses_within ref.csv $name.csv 1e-4 "$name: resharded resume vs uninterrupted"
done <<'LAYOUTS'
to_tp4 4 1 1
to_pp2dp2 1 2 2
to_1x1x1 1 1 1
to_zero 2 1 2 --optim.zero=1
to_dp4zero 1 1 4 --optim.zero=1
LAYOUTS
finish
