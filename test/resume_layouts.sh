#!/bin/bash
# Checkpoints across layouts (doc/DESIGN.md §5.3).
#   1. Exact resume on multi-rank layouts: a run stopped after step 5 by a real SIGUSR1 on
#      ONE rank (--test-hook=signal:5:RANK; the others learn of it from the flag all-reduce)
#      and resumed gives bit-identical losses and a bit-identical final checkpoint (model,
#      AdamW moments, resume state) to an uninterrupted run on the same layout.
#   2. Resharding: the dp2·tp2 step-5 checkpoint resumed on tp4, pp2·dp2, 1 rank and dp4 with
#      ZeRO-1 ends within the layout-invariance tolerances of the uninterrupted 1-rank run
#      (losses, and the final model); resumed on dp2·tp2 with ZeRO-1 it ends bit for bit where
#      the uninterrupted dp2·tp2 run without ZeRO ends (dp = 2: the same sums in the same order).
# Tolerances (see test/layouts.sh for the measurements): losses 1e-7 relative, final model
# 1e-5 (absolute or relative, per element).
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
final=step_00000012.h5  # the deck's 12 steps
loss_tol=1e-7 model_tol=1e-5

OUT=ref.out run_mptrain 0 "$deck" --log.metrics=ref.csv --checkpoint.dir=ck_ref ||
  { fail "reference run"; finish; }

# 1. Exact resume on the same layout: uninterrupted vs stopped after step 5 and resumed.
while read -r name tp pp dp extra; do
  [ -z "$name" ] && continue
  np=$((tp * pp * dp)) signalled=$((tp * pp * dp - 1))
  lay="--parallel.tp=$tp --parallel.pp=$pp --parallel.dp=$dp $extra"
  # shellcheck disable=SC2086  # $lay is a list of options
  OUT=$name-full.out run_mptrain $np "$deck" $lay --log.metrics=$name-full.csv --checkpoint.dir=ck_$name-full ||
    fail "$name: uninterrupted run exits $?"
  # shellcheck disable=SC2086
  OUT=$name-1.out run_mptrain $np "$deck" $lay --test-hook=signal:5:$signalled --log.metrics=$name.csv \
    --checkpoint.dir=ck_$name
  rc1=$?
  cp $name.csv $name-stopped.csv 2>/dev/null
  # shellcheck disable=SC2086
  OUT=$name-2.out run_mptrain $np "$deck" $lay --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc2=$?
  if [ $rc1 -eq 3 ] && [ $rc2 -eq 0 ] && grep -q "^preemption signal received: checkpointing at step 5 .* the signal reached 1 of $np rank(s), the lowest being rank $signalled$" $name-1.out &&
     grep -q "^restarted from ck_$name/step_00000005.h5" $name-2.out; then
    pass "$name: SIGUSR1 on rank $signalled only stopped all $np ranks after step 5 (exit 3); resumed (exit 0)"
  else
    fail "$name: stop/resume exits $rc1/$rc2"; grep -E "preemption|restarted|error" $name-1.out $name-2.out | head -4
  fi
  losses_identical $name-full.csv $name.csv "$name: exact resume"
  ckpt_identical ck_$name-full/$final ck_$name/$final "$name: exact resume"
done <<'LAYOUTS'
dp2tp2 2 1 2
pp2 1 2 1 --parallel.micro_batch=2
dp2zero 1 1 2 --optim.zero=1
LAYOUTS

# 2. Resharding: the dp2·tp2 checkpoint of step 5 (from part 1), resumed on other layouts.
[ -f ck_dp2tp2/step_00000005.h5 ] && pass "dp2·tp2 wrote step 5" || { fail "no step-5 checkpoint"; finish; }
while read -r name tp pp dp extra; do
  [ -z "$name" ] && continue
  np=$((tp * pp * dp))
  rm -rf ck_$name && mkdir ck_$name && cp ck_dp2tp2/step_00000005.h5 ck_$name/ &&
    echo step_00000005.h5 >ck_$name/latest && cp dp2tp2-stopped.csv $name.csv
  # shellcheck disable=SC2086
  OUT=$name.out run_mptrain $np "$deck" --parallel.tp=$tp --parallel.pp=$pp --parallel.dp=$dp \
    $extra --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc=$?
  if [ $rc -eq 0 ] && grep -q "^restarted from ck_$name/step_00000005.h5 (step 5, written with tp=2 pp=1 dp=2 zero=0)" $name.out; then
    pass "$name: restarted from the dp2·tp2 checkpoint"
  else
    fail "$name: restart exits $rc"; tail -5 $name.out
  fi
  if [ "$name" = to_zero ]; then
    losses_identical dp2tp2-full.csv $name.csv "$name: resharded resume vs uninterrupted dp2·tp2"
    ckpt_identical ck_dp2tp2-full/$final ck_$name/$final "$name: resharded resume vs uninterrupted dp2·tp2"
  else
    losses_within ref.csv $name.csv $loss_tol "$name: resharded resume vs uninterrupted 1 rank"
    ckpt_within ck_ref/$final ck_$name/$final $model_tol "$name: final model vs uninterrupted 1 rank" --model-only
  fi
done <<'LAYOUTS'
to_tp4 4 1 1
to_pp2dp2 1 2 2
to_1x1x1 1 1 1
to_zero 2 1 2 --optim.zero=1
to_dp4zero 1 1 4 --optim.zero=1
LAYOUTS
finish
