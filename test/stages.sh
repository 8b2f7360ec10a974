#!/bin/bash
# Pipeline stages of unequal size ([parallel] stage_layers; doc/DESIGN.md §2.4, §7).
#   1. test/test_stages on 2 and 4 ranks: the model each stage of a split builds holds exactly
#      its blocks, with the analytic parameter count and the whole model's initial values.
#   2. A split changes where activations cross between stages, not the arithmetic: every
#      block computes what it computes on any stage, the tied embedding's gradient is the
#      first stage's sum plus the last stage's, and the loss comes from the last stage, the
#      same sums in the same order. So pp2 with 1,3 gives the losses and the final checkpoint
#      (model, AdamW moments, resume state) of pp2 with the equal split bit for bit. (The
#      squared gradient norm is summed in double per rank before the all-reduce, so the
#      grouping of its terms differs; that reaches the float clip factor only through the last
#      bits of a double, and this deck shows none.) Against one rank, splits are layouts like
#      any other: losses within 1e-7 relative, the model within 1e-5 (test/layouts.sh says why),
#      the step-0 checkpoint identical. pp3 over 4 blocks (impossible without a split) with
#      auto, and tp2·pp2 with 3,1 as well; every rank sends exactly its analytic byte count.
#   3. Checkpoints are interchangeable between splits: the step-4 checkpoint of pp2 with the
#      equal split resumed on pp2 with 1,3 ends bit for bit where the uninterrupted equal-split
#      run ends; resumed on one rank, within the layout tolerances of the 1-rank run.
# Refused values are cases of test/bad_input_cases.txt.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
common="--checkpoint.save_initial=true --train.steps=8 --checkpoint.every=4"
final=step_00000008.h5
loss_tol=1e-7 model_tol=1e-5

# 1. The model of each stage.
for np in 2 4; do
  if timeout 600 "$MPIRUN" $MPIRUN_FLAGS -np $np "$top_builddir/test/test_stages" </dev/null \
       >stages_$np.out 2>&1; then
    pass "each stage of a split holds exactly its blocks, on $np ranks"
  else
    fail "the stages' models on $np ranks"; tail -20 stages_$np.out
  fi
done

# 2. Training on splits. name np stage_layers [extra]
# shellcheck disable=SC2086  # $common is a list of options
OUT=one.out run_mptrain 0 "$deck" $common --log.metrics=one.csv --checkpoint.dir=ck_one ||
  { fail "1-rank reference run: exit $?"; tail -5 one.out; finish; }
while read -r name np split extra; do
  [ -z "$name" ] && continue
  [ "$split" = equal ] && split=
  # shellcheck disable=SC2086
  OUT=$name.out run_mptrain $np "$deck" $common --parallel.stage_layers=$split $extra \
    --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc=$?
  if [ $rc -ne 0 ]; then fail "$name: exit $rc"; tail -5 $name.out; continue; fi
  grep -q "comm-check: ok" $name.out && pass "$name: every rank sent the analytic byte count" ||
    fail "$name: communication differs from the analytic count"
  losses_within one.csv $name.csv $loss_tol "$name vs 1 rank"
  ckpt_within ck_one/$final ck_$name/$final $model_tol "$name: trained model vs 1 rank" --model-only
  "$MPTRAIN_BIN/mptrain-ckpt" diff --model-only --tol 0 ck_one/step_00000000.h5 \
    ck_$name/step_00000000.h5 >diff0_$name.out 2>&1 &&
    pass "$name: step-0 checkpoint identical to the 1-rank one" ||
    fail "$name: step-0 checkpoint differs"
done <<'RUNS'
pp2 2 equal --parallel.pp=2
pp2s13 2 1,3 --parallel.pp=2
pp3auto 3 auto --parallel.pp=3
tp2pp2s31 4 3,1 --parallel.pp=2 --parallel.tp=2
RUNS

losses_identical pp2.csv pp2s13.csv "pp2: split 1,3 vs the equal split"
ckpt_identical ck_pp2/$final ck_pp2s13/$final "pp2: split 1,3 vs the equal split"
# The header names the split and each stage's blocks.
grep -q "^mptrain: 2 ranks, layout tp=1 pp=2 dp=1 zero=0 stages=1,3," pp2s13.out &&
  grep -q "^  stage 0: blocks 0-0 + embedding," pp2s13.out &&
  grep -q "^  stage 1: blocks 1-3 + head," pp2s13.out &&
  pass "pp2s13: the header shows the split" || { fail "pp2s13: header"; head -4 pp2s13.out; }
auto=$(sed -n 's/^pipeline: 3 stages of \([0-9,]*\) blocks (\[parallel\] stage_layers auto)$/\1/p' pp3auto.out)
if [ -n "$auto" ] && [ "$(echo "$auto" | tr , '\n' | awk '$1 >= 1 { s += $1; n++ } END { print n, s }')" = "3 4" ]; then
  pass "pp3auto: auto placed the 4 blocks on 3 stages as $auto"
else
  fail "pp3auto: no valid split in the header ('$auto')"; head -5 pp3auto.out
fi

# 3. Resuming across splits: the equal split's step-4 checkpoint on pp2 1,3 and on one rank.
while read -r name np split extra; do
  [ -z "$name" ] && continue
  rm -rf ck_$name && mkdir ck_$name && cp ck_pp2/step_00000004.h5 ck_$name/ &&
    echo step_00000004.h5 >ck_$name/latest && cp pp2.csv $name.csv
  # shellcheck disable=SC2086
  OUT=$name.out run_mptrain $np "$deck" $common --parallel.stage_layers=$split $extra \
    --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc=$?
  if [ $rc -eq 0 ] && grep -q "^restarted from ck_$name/step_00000004.h5 (step 4, written with tp=1 pp=2 dp=1 zero=0)" $name.out; then
    pass "$name: restarted from the equal split's step-4 checkpoint"
  else
    fail "$name: restart exits $rc"; tail -5 $name.out
  fi
done <<'RUNS'
to_s13 2 1,3 --parallel.pp=2
to_one 0 4
RUNS
losses_identical pp2.csv to_s13.csv "pp2 equal split resumed on 1,3 vs uninterrupted equal split"
ckpt_identical ck_pp2/$final ck_to_s13/$final "pp2 equal split resumed on 1,3 vs uninterrupted equal split"
losses_within one.csv to_one.csv $loss_tol "pp2 equal split resumed on 1 rank vs uninterrupted 1 rank"
ckpt_within ck_one/$final ck_to_one/$final $model_tol "pp2 resumed on 1 rank: final model vs 1 rank" --model-only
finish
