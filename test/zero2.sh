#!/bin/bash
# ZeRO-2 ([optim] zero = 2, doc/DESIGN.md §2.5): the same training as zero = 0 and 1, and
# checkpoints interchangeable between the three.
#
# What must be bit for bit, and why. ZeRO-2 reduce-scatters each gradient bucket but the bottom
# one in every micro-batch and adds the results into an fp32 shard accumulator, so an element's
# gradient is sum_m (sum_d g[d][m]), where zero = 0 and 1 accumulate the micro-batches locally
# first, sum_d (sum_m g[d][m]). The two orders give the same bits when there is one term to
# reorder: one micro-batch per rank and step (M = 1) on dp = 2 (a + b is commutative, and
# 0 + s = s), or a single bucket (bucket_mb above the stage's size: ZeRO-2 then reduces once per
# step, like ZeRO-1). With pp > 1 the tied embedding is summed over the two stages before the
# DP reduce-scatter, as under ZeRO-1, so those runs are compared bit for bit with ZeRO-1, not
# zero = 0 (test/layouts.sh shows that zero = 1 and 0 differ there by rounding). Everything else
# (M > 1 with small buckets, dp = 4, whose MPI reduce-scatter and all-reduce may associate the
# four terms differently) is a reordering of the same float32 sums, the kind layouts differ
# by, so the layout tolerances of test/layouts.sh apply: losses 1e-7 relative, model 1e-5.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
loss_tol=1e-7 model_tol=1e-5
small=--parallel.bucket_mb=0.001  # 262 floats: a bucket per tensor or two, windows reused

# zrun NAME NP ARGS...: a run into NAME.csv and ck_NAME, checked for exit 0 and comm-check.
zrun() {
  local name=$1 np=$2; shift 2
  OUT=$name.out run_mptrain "$np" "$deck" "$@" --log.metrics=$name.csv --checkpoint.dir=ck_$name
  local rc=$?
  if [ $rc -ne 0 ]; then fail "$name: exit $rc"; tail -5 $name.out; return 1; fi
  grep -q "comm-check: ok" $name.out || {
    fail "$name: communication differs from the analytic count"; grep -A6 "communication per" $name.out; }
}

# 1. The same training. 8 steps of global batch 8: M = 4 micro-batches per rank on dp = 2.
s8="--train.steps=8"
zrun dp2 2 $s8 --parallel.dp=2
zrun dp2z2one 2 $s8 --parallel.dp=2 --optim.zero=2
zrun dp2z2 2 $s8 --parallel.dp=2 --optim.zero=2 $small
f8=step_00000008.h5
losses_identical dp2.csv dp2z2one.csv "zero=2 (one bucket) vs zero=0 on dp2, M=4"
ckpt_identical ck_dp2/$f8 ck_dp2z2one/$f8 "zero=2 (one bucket) vs zero=0 on dp2, M=4"
losses_within dp2.csv dp2z2.csv $loss_tol "zero=2 (small buckets) vs zero=0 on dp2, M=4"
ckpt_within ck_dp2/$f8 ck_dp2z2/$f8 $model_tol "zero=2 (small buckets) vs zero=0 on dp2, M=4: model" --model-only
# M = 1 (global batch 2 on dp = 2): bit for bit even with small buckets.
g2="--train.global_batch=2"
zrun dp2g2 2 $s8 $g2 --parallel.dp=2
zrun dp2g2z2 2 $s8 $g2 --parallel.dp=2 --optim.zero=2 $small
losses_identical dp2g2.csv dp2g2z2.csv "zero=2 (small buckets) vs zero=0 on dp2, M=1"
ckpt_identical ck_dp2g2/$f8 ck_dp2g2z2/$f8 "zero=2 (small buckets) vs zero=0 on dp2, M=1"
# Three axes (tied embedding over the stages, TP shards, 1F1B with M = 4), and dp = 4.
lay3="--parallel.tp=2 --parallel.pp=2 --parallel.dp=2"
zrun dp2tp2pp2z1 8 $s8 $lay3 --optim.zero=1
zrun dp2tp2pp2z2 8 $s8 $lay3 --optim.zero=2 $small
losses_within dp2tp2pp2z1.csv dp2tp2pp2z2.csv $loss_tol "zero=2 vs zero=1 on dp2·tp2·pp2"
ckpt_within ck_dp2tp2pp2z1/$f8 ck_dp2tp2pp2z2/$f8 $model_tol "zero=2 vs zero=1 on dp2·tp2·pp2: model" --model-only
zrun dp4 4 $s8 --parallel.dp=4
zrun dp4z2 4 $s8 --parallel.dp=4 --optim.zero=2 $small
losses_within dp4.csv dp4z2.csv $loss_tol "zero=2 vs zero=0 on dp4"
ckpt_within ck_dp4/$f8 ck_dp4z2/$f8 $model_tol "zero=2 vs zero=0 on dp4: model" --model-only

# 2. Checkpoints: written by one zero stage, resumed by another. Runs of 10 steps saving at 5
# and 10, M = 1, so that the stages agree bit for bit (above); the step-5 file of one run is
# resumed with another stage and must end where the uninterrupted run ends: losses and the
# final checkpoint (model, AdamW moments gathered from the shards, resume state) bit for bit.
# resume NAME FROM NP ARGS...: copies FROM's step-5 checkpoint and metrics into NAME and resumes.
resume() {
  local name=$1 from=$2 np=$3; shift 3
  rm -rf ck_$name && mkdir ck_$name && cp ck_$from/step_00000005.h5 ck_$name/ &&
    echo step_00000005.h5 >ck_$name/latest && cp $from.csv $name.csv
  zrun $name $np "$@" && grep -q "^restarted from ck_$name/step_00000005.h5 (step 5, written with .* zero=" $name.out &&
    pass "$name: restarted from $from's step-5 checkpoint" || fail "$name: no restart from step 5"
}
f10=step_00000010.h5
c10="--train.steps=10 --checkpoint.every=5 $g2"
# NAME RANKS REFERENCE-STAGE LAYOUT: the reference is zero = 0 on dp2; on dp2·pp2 zero = 1 (the
# tied sum's order).
while read -r L np ref opts; do
  [ -z "$L" ] && continue
  # shellcheck disable=SC2086
  zrun ${L}r $np $c10 $opts --optim.zero=$ref
  # shellcheck disable=SC2086
  zrun ${L}s $np $c10 $opts --optim.zero=2 $small
  losses_identical ${L}r.csv ${L}s.csv "$L: zero=2 vs zero=$ref, uninterrupted"
  ckpt_identical ck_${L}r/$f10 ck_${L}s/$f10 "$L: zero=2 vs zero=$ref, uninterrupted"
  # zero = 2's checkpoint resumed by zero = 0 and 1, and zero = $ref's by zero = 2.
  for to in 0 1; do
    # shellcheck disable=SC2086
    resume ${L}_2to$to ${L}s $np $c10 $opts --optim.zero=$to
    if [ $to = $ref ] || [ $L = dp2 ]; then
      losses_identical ${L}r.csv ${L}_2to$to.csv "$L: saved with zero=2, resumed with zero=$to"
      ckpt_identical ck_${L}r/$f10 ck_${L}_2to$to/$f10 "$L: saved with zero=2, resumed with zero=$to"
    else  # zero = 0 on pp2 sums the tied embedding in the other order
      losses_within ${L}r.csv ${L}_2to$to.csv $loss_tol "$L: saved with zero=2, resumed with zero=$to"
      ckpt_within ck_${L}r/$f10 ck_${L}_2to$to/$f10 $model_tol "$L: saved with zero=2, resumed with zero=$to" --model-only
    fi
  done
  # shellcheck disable=SC2086
  resume ${L}_${ref}to2 ${L}r $np $c10 $opts --optim.zero=2 $small
  losses_identical ${L}r.csv ${L}_${ref}to2.csv "$L: saved with zero=$ref, resumed with zero=2"
  ckpt_identical ck_${L}r/$f10 ck_${L}_${ref}to2/$f10 "$L: saved with zero=$ref, resumed with zero=2"
done <<'LAYOUTS'
dp2 2 0 --parallel.dp=2
dp2pp2 4 1 --parallel.dp=2 --parallel.pp=2
LAYOUTS
finish
