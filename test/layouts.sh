#!/bin/bash
# Layout invariance (doc/DESIGN.md §5.1): the tiny deck for 8 steps on every layout with
# dp·tp·pp <= 8 against the 1-rank run: per-step losses within 1e-7 relative, the trained
# model within 1e-5 per element, and the step-0 checkpoints identical. Also determinism
# (§5.2) on a 3-axis layout (losses and final checkpoint bit for bit), ZeRO-1 against plain
# DP, and every rank's communication against the analytic count for its place in the grid.
#
# The tolerances, from what the arithmetic does. Layouts sum the same terms in another order
# (TP all-reduces of partial products, DP sums of gradients, micro-batch accumulation), so
# float32 rounding differs by ~1e-7 relative per operation; measured over 8 steps, the losses
# of all layouts below stay within 5.8e-9 relative of the 1-rank run (8.5e-9 after the 12
# steps of resume_layouts.sh), and the trained weights within 2.2e-6 absolute (AdamW divides by sqrt(v): elements with tiny gradients, such as the
# key bias, whose gradient is zero in exact arithmetic, turn rounding noise into updates of
# ~1e-7 to 1e-6). The bugs these tolerances must catch are far above that: a layout that
# dropped weight decay moves the losses by 1.4e-6 and the weights by 1.3e-4; eps x 100 moves
# them by 4.1e-5 and 1.1e-2; beta2 0.95 -> 0.951 by 3.7e-5 and 2.9e-5. Hence losses 1e-7
# (17x the noise, 14x below the smallest of those bugs) and weights 1e-5 (absolute or
# relative per element; 4.5x the noise, 3x below the smallest of those bugs).
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
common="--checkpoint.save_initial=true --train.steps=8"
final=step_00000008.h5
loss_tol=1e-7 model_tol=1e-5

# shellcheck disable=SC2086  # $common is a list of options
OUT=ref.out run_mptrain 0 "$deck" $common --log.metrics=ref.csv --checkpoint.dir=ck_ref ||
  { fail "1-rank reference run"; cat ref.out; finish; }

# name tp pp dp [extra]
while read -r name tp pp dp extra; do
  [ -z "$name" ] && continue
  np=$((tp * pp * dp))
  # shellcheck disable=SC2086
  OUT=$name.out run_mptrain $np "$deck" $common --parallel.tp=$tp --parallel.pp=$pp \
    --parallel.dp=$dp $extra --log.metrics=$name.csv --checkpoint.dir=ck_$name
  rc=$?
  if [ $rc -ne 0 ]; then fail "$name: exit $rc"; tail -5 $name.out; continue; fi
  losses_within ref.csv $name.csv $loss_tol "$name ($np ranks) vs 1 rank"
  ckpt_within ck_ref/$final ck_$name/$final $model_tol "$name: trained model vs 1 rank" --model-only
  if "$MPTRAIN_BIN/mptrain-ckpt" diff --model-only --tol 0 ck_ref/step_00000000.h5 \
       ck_$name/step_00000000.h5 >diff_$name.out 2>&1; then
    pass "$name: step-0 checkpoint identical to the 1-rank one"
  else
    fail "$name: step-0 checkpoint differs"; head -5 diff_$name.out
  fi
  grep -q "comm-check: ok" $name.out && pass "$name: every rank sent the analytic byte count" ||
    { fail "$name: communication differs from the analytic count"; grep -A6 "communication per" $name.out; }
done <<'LAYOUTS'
dp2 1 1 2
tp2 2 1 1
pp2 1 2 1
dp2tp2 2 1 2
tp2pp2 2 2 1
dp2pp2 1 2 2
dp2tp2pp2 2 2 2
tp4 4 1 1
pp4mb2 1 4 1 --parallel.micro_batch=2
dp2zero 1 1 2 --optim.zero=1
dp2tp2pp2zero 2 2 2 --optim.zero=1
dp4bucket 1 1 4 --parallel.bucket_mb=0.001
LAYOUTS

# shellcheck disable=SC2086
OUT=again.out run_mptrain 8 "$deck" $common --parallel.tp=2 --parallel.pp=2 --parallel.dp=2 \
  --log.metrics=again.csv --checkpoint.dir=ck_again || fail "dp2·tp2·pp2 again: exit $?"
losses_identical dp2tp2pp2.csv again.csv "determinism: dp2·tp2·pp2 twice"
ckpt_identical ck_dp2tp2pp2/$final ck_again/$final "determinism: dp2·tp2·pp2 twice"

# ZeRO-1 updates each DP shard with exactly the arithmetic of the full update, and on dp = 2
# its reduce-scatter adds the same two numbers as the all-reduce: bit for bit the same run.
losses_identical dp2.csv dp2zero.csv "zero=1 vs zero=0 on dp2"
ckpt_identical ck_dp2/$final ck_dp2zero/$final "zero=1 vs zero=0 on dp2"
# With pp > 1 the tied embedding's gradient is summed over the first and last stage as well,
# and the order differs: zero=0 sums over DP in the overlapped buckets during backward and
# then over the two stages, (f0 + f1) + (l0 + l1); zero=1 sums over the stages first, then
# reduce-scatters over DP, (f0 + l0) + (f1 + l1). Different rounding, so the layout tolerances.
losses_within dp2tp2pp2.csv dp2tp2pp2zero.csv $loss_tol "zero=1 vs zero=0 on dp2·tp2·pp2"
ckpt_within ck_dp2tp2pp2/$final ck_dp2tp2pp2zero/$final $model_tol \
  "zero=1 vs zero=0 on dp2·tp2·pp2: trained model" --model-only
finish
