#!/bin/bash
# Activation recomputation ([train] recompute) changes what a block keeps for backward, never
# the arithmetic: the recomputed tensors come from the same ops on the same inputs as in
# forward. So selective and full must give bit for bit the losses and the final checkpoint
# (model, AdamW state, resume state) of none, on one rank and on the layouts that split the
# work differently: tp2 (full recomputation repeats the attention's TP all-reduce), pp2 (the
# 1F1B schedule keeps two micro-batches in flight, which share the recomputation scratch) and
# dp2. Every rank's communication must also match the analytic count, which includes the
# repeated all-reduces (comm-check).
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
common="--train.steps=4 --data.val_every=2 --checkpoint.every=4"
final=step_00000004.h5

# name ranks tp pp dp
while read -r name np tp pp dp; do
  [ -z "$name" ] && continue
  for mode in none selective full; do
    run=${name}_$mode
    # shellcheck disable=SC2086  # $common is a list of options
    OUT=$run.out run_mptrain "$np" "$deck" $common --parallel.tp="$tp" --parallel.pp="$pp" \
      --parallel.dp="$dp" --train.recompute=$mode --log.metrics=$run.csv --checkpoint.dir=ck_$run
    rc=$?
    if [ $rc -ne 0 ]; then fail "$run: exit $rc"; tail -5 "$run.out"; continue; fi
    grep -qx "recompute = $mode" "$run.out" || fail "$run: the resolved deck lacks recompute = $mode"
    if [ "$np" -gt 1 ]; then
      grep -q "comm-check: ok" "$run.out" && pass "$run: every rank sent the analytic byte count" ||
        { fail "$run: communication differs from the analytic count"; grep -A6 "communication per" "$run.out"; }
    fi
    [ $mode = none ] && continue
    losses_identical ${name}_none.csv $run.csv "$name: recompute=$mode vs none"
    ckpt_identical ck_${name}_none/$final ck_$run/$final "$name: recompute=$mode vs none"
  done
done <<'LAYOUTS'
one 0 1 1 1
tp2 2 2 1 1
pp2 2 1 2 1
dp2 2 1 1 2
LAYOUTS
finish
