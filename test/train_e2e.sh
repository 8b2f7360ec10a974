#!/bin/bash
# End-to-end training on one rank: the loss falls, reruns are bit-identical (doc/DESIGN.md §5.2),
# stopping at step N and resuming gives bit-identical losses and a bit-identical final
# checkpoint (model, AdamW moments, resume state) to an uninterrupted run (§5.3), with the
# sequential and the shuffle sampler, and the step-0 checkpoint holds every tensor of the
# schema with its shape. The stop comes from --test-hook=signal:STEP (a real SIGUSR1 that the
# process raises on itself after that step), so it happens at a known step. First, mptrain
# --print-deck: the resolved deck or chosen keys, without data, launcher or MPI.
. "$top_srcdir/test/lib.sh"
deck=$top_srcdir/input/test-tiny.deck

# mptrain --print-deck (what the job scripts read the deck with): before any dataset exists,
# without a launcher, and where MPI could not even start (Open MPI told to use a transport
# that does not exist: the control run shows that MPI_Init then fails).
M=$MPTRAIN_BIN/mptrain
rm -f train.h5 val.h5
if "$M" "$deck" --train.steps=7 --print-deck >resolved.deck 2>pd.err && [ ! -s pd.err ] &&
  grep -qx "steps = 7" resolved.deck && "$M" resolved.deck --print-deck | cmp -s - resolved.deck; then
  pass "--print-deck: the resolved deck, overrides applied, prints itself again unchanged"
else
  fail "--print-deck: the resolved deck ($(head -c 300 pd.err))"
fi
keys=$(OMPI_MCA_pml=nonexistent "$M" "$deck" --checkpoint.dir=ck --train.steps=7 \
  --test-hook=pause:3 --print-deck=checkpoint.dir,train.steps,data.train,checkpoint.init 2>&1)
rc=$?
OMPI_MCA_pml=nonexistent timeout -k 10 120 "$M" "$deck" --train.steps=1 >no-mpi.out 2>&1
control=$?
if [ $rc -eq 0 ] && [ "$keys" = "$(printf 'checkpoint.dir=ck\ntrain.steps=7\ndata.train=train.h5\ncheckpoint.init=')" ] &&
  [ $control -ne 0 ] && [ ! -e train.h5 ] && [ ! -e ck ]; then
  pass "--print-deck=KEYS: key=value lines in order, with no dataset, no launcher and no MPI (a run there exits $control)"
else
  fail "--print-deck=KEYS exits $rc with '$keys' (a run without MPI exits $control)"
fi
for bad in --print-deck=train.step "--optim.lerning_rate=1 --print-deck" "--print-deck --test-hook=pause:x"; do
  # shellcheck disable=SC2086  # the words of $bad are separate arguments
  "$M" "$deck" $bad >pd.out 2>pd.err
  rc=$?
  if [ $rc -eq 2 ] && [ ! -s pd.out ] && [ "$(grep -c '^mptrain: error: ' pd.err)" -eq 1 ] &&
    [ "$(wc -l <pd.err)" -eq 1 ]; then
    pass "--print-deck refuses '$bad' with exit 2 and one line: $(cat pd.err)"
  else
    fail "--print-deck with '$bad': exit $rc, output '$(head -c 200 pd.out)', errors '$(head -c 300 pd.err)'"
  fi
done

make_data || { fail "mptrain-prep"; finish; }
final=step_00000012.h5  # the deck's 12 steps

OUT=a.out run_mptrain 0 "$deck" --log.metrics=a.csv --checkpoint.dir=ckA --checkpoint.save_initial=true
rc=$?
[ $rc -eq 0 ] && pass "training run exits 0" || { fail "training run exits $rc"; cat a.out; finish; }
first=$(awk -F, 'NR == 2 { print $2 }' a.csv); last=$(awk -F, 'END { print $2 }' a.csv)
if is_finite "$first" && is_finite "$last" &&
   awk -v f="$first" -v l="$last" 'BEGIN { exit !(f > 5.3 && l < f - 0.5) }'; then
  pass "loss falls from $first to $last"
else
  fail "loss does not fall enough: $first -> $last"
fi
grep -q "val " a.out && pass "validation loss reported" || fail "no validation loss in the log"

OUT=b.out run_mptrain 0 "$deck" --log.metrics=b.csv --checkpoint.dir=ckB ||
  fail "second run exits $?"
losses_identical a.csv b.csv "determinism: the same deck twice"
ckpt_identical ckA/$final ckB/$final "determinism: the same deck twice"

# Stop after step 6 (the preemption path), then resume to the end.
OUT=c1.out run_mptrain 0 "$deck" --test-hook=signal:6 --log.metrics=c.csv --checkpoint.dir=ckC
rc=$?
[ $rc -eq 3 ] && grep -q "^preemption signal received: checkpointing at step 6 " c1.out &&
  pass "preempted run stops at step 6 and exits 3" || fail "preempted run exits $rc (expected 3 at step 6)"
[ -f ckC/step_00000006.h5 ] && [ "$(cat ckC/latest 2>/dev/null)" = step_00000006.h5 ] &&
  [ "$(ls ckC)" = "$(printf 'latest\nstep_00000006.h5')" ] &&
  pass "checkpoint at step 6, named by latest, nothing else" || fail "ckC holds: $(ls ckC)"
OUT=c2.out run_mptrain 0 "$deck" --log.metrics=c.csv --checkpoint.dir=ckC
rc=$?
[ $rc -eq 0 ] && grep -q "restarted from ckC/step_00000006.h5" c2.out &&
  pass "resumed from step 6" || { fail "resume (exit $rc)"; tail -5 c2.out; }
losses_identical a.csv c.csv "exact resume: 6 + 6 steps vs 12"
ckpt_identical ckA/$final ckC/$final "exact resume: 6 + 6 steps vs 12"

# The shuffle sampler: another batch order, still resumed exactly.
OUT=s0.out run_mptrain 0 "$deck" --data.sampler=shuffle --log.metrics=s_full.csv --checkpoint.dir=ckS0 ||
  fail "shuffle run exits $?"
OUT=s1.out run_mptrain 0 "$deck" --data.sampler=shuffle --test-hook=signal:7 \
  --log.metrics=s.csv --checkpoint.dir=ckS
rc1=$?
OUT=s2.out run_mptrain 0 "$deck" --data.sampler=shuffle --log.metrics=s.csv --checkpoint.dir=ckS
rc2=$?
[ $rc1 -eq 3 ] && [ $rc2 -eq 0 ] && grep -q "restarted from ckS/step_00000007.h5" s2.out &&
  pass "shuffle sampler: stopped at step 7 (exit 3), resumed (exit 0)" ||
  fail "shuffle sampler: stop/resume exits $rc1/$rc2"
losses_identical s_full.csv s.csv "shuffle sampler: exact resume"
ckpt_identical ckS0/$final ckS/$final "shuffle sampler: exact resume"
if [ "$(compare_losses a.csv s_full.csv)" = 0.000e+00 ] || diff <(losses a.csv) <(losses s_full.csv) >/dev/null; then
  fail "shuffle sampler gives the sequential sampler's losses"
else
  pass "shuffle sampler visits batches in another order ($(compare_losses a.csv s_full.csv))"
fi

# The step-0 checkpoint: every tensor of the schema, global shapes, checksums.
if "$MPTRAIN_BIN/mptrain-ckpt" verify ckA/step_00000000.h5 >verify.out 2>&1; then
  pass "step-0 checkpoint verifies (schema, shapes, checksums)"
else
  fail "step-0 checkpoint does not verify"; cat verify.out
fi
n=$(h5ls -r ckA/step_00000000.h5 | grep -c '^/model/.*Dataset')
[ "$n" -eq $((2 + 12 * 4 + 2)) ] && pass "step-0 checkpoint has $n model tensors" ||
  fail "step-0 checkpoint has $n model tensors, expected 52"
h5ls ckA/step_00000000.h5/model | grep -q 'h.3.attn.c_attn.weight.*{96, 32}' &&
  pass "c_attn.weight stored as [3C, C]" || fail "c_attn.weight shape"
finish
