#!/bin/bash
# How training reads its tokens (io/data.hpp, train/batches.hpp): nothing at open, then each
# rank reads the span its rows of each batch need and checks every token it reads.
#
#   1. test_data on 3 ranks: every rank reads its own ranges, a different number of times
#      (independent reads: a read that waited for the other ranks would hang).
#   2. A dataset whose only bad token lies where no batch span reaches is trained on without
#      complaint, by both samplers on 1 and 4 ranks: the tokens no batch needs are never read
#      (the reader used to refuse such a file at open). The token just before it is the last
#      target of the last span, and a dataset with the bad token there fails at exactly the
#      step whose batch holds it.
#   3. A bad token that one rank alone reads (a DP rank's last target, read only by its last
#      stage) stops every rank of a dp2·pp2 run with exit 2 and one clear error printed by rank
#      0, at that step and not before; a bad token in the validation data the same.
#
# The datasets (test/bad_files bad-token N INDEX): N = 1000 tokens, vocab_size 256, a token 300
# at INDEX. With global_batch 4 and seq_len 15 a batch spans 61 tokens and moves on 60: the
# spans start at 0, 60, ..., 900 (16 batches; 900 + 61 = 961 <= 1000 < 960 + 61), so tokens
# 0..960 are read and 961..999 never are.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
bad_files=${top_builddir:-.}/test/bad_files
deck=$top_srcdir/input/test-tiny.deck
small="--train.global_batch=4 --model.seq_len=15 --data.val= --checkpoint.dir="

# 1.
if timeout -k 10 300 "$MPIRUN" $MPIRUN_FLAGS -np 3 "${top_builddir:-.}/test/test_data" \
     </dev/null >test_data3.out 2>&1; then
  pass "test_data on 3 ranks"
else
  fail "test_data on 3 ranks"; tail -20 test_data3.out
fi

for index in 961 960 240 100; do
  "$bad_files" bad-token 1000 $index bad$index.h5 || { fail "bad_files bad-token"; finish; }
done

# 2. 20 steps: more than the 16 batches of an epoch, so both samplers visit every span.
# name ranks sampler layout
while read -r name np sampler layout; do
  # shellcheck disable=SC2086  # option lists
  OUT=$name.out run_mptrain $np "$deck" $small $layout --train.steps=20 \
    --data.sampler=$sampler --data.train=bad961.h5 --log.metrics=$name.csv
  rc=$?
  if [ $rc -eq 0 ] && [ "$(awk 'END { print $1 + 0 }' FS=, $name.csv)" = 20 ]; then
    pass "$name: 20 steps on a dataset whose unread tail holds a bad token"
  else
    fail "$name: exit $rc"; tail -5 $name.out
  fi
done <<'RUNS'
tail-seq-1 0 sequential
tail-shuffle-1 0 shuffle
tail-shuffle-dp2pp2 4 shuffle --parallel.dp=2 --parallel.pp=2
tail-seq-tp2dp2 4 sequential --parallel.dp=2 --parallel.tp=2
RUNS

# expect_stop NAME NP STEPS_DONE FRAGMENT ARGS...: the run exits 2 on every rank with one
# "mptrain: error:" line (from rank 0 under Open MPI) holding FRAGMENT, after STEPS_DONE steps.
expect_stop() {
  local name=$1 np=$2 done_steps=$3 fragment=$4 codes want errors
  shift 4
  if [ "$np" -eq 0 ]; then
    OUT=$name.out run_mptrain 0 "$@" --log.metrics=$name.csv
    codes=$? want=2
  else
    # shellcheck disable=SC2016,SC2086  # $0/$@ are for sh -c; MPIRUN_FLAGS is a list
    OMPI_MCA_orte_abort_on_non_zero_status=0 timeout -k 10 300 "$MPIRUN" $MPIRUN_FLAGS \
      --tag-output -np "$np" sh -c '"$0" "$@"; c=$?; echo "mptrain-exit: $c"; exit $c' \
      "$MPTRAIN_BIN/mptrain" "$@" --log.metrics=$name.csv >$name.out 2>&1 </dev/null
    codes=$(sed -n 's/.*mptrain-exit: \([0-9]*\)$/\1/p' $name.out | sort | uniq -c |
            awk '{ printf "%s%sx%s", sep, $1, $2; sep = " " }')
    want="${np}x2"
  fi
  errors=$(grep -ac 'mptrain: error:' $name.out)
  if [ "$codes" != "$want" ]; then
    fail "$name: exit status $codes, expected $want"; tail -8 $name.out
  elif [ "$errors" -ne 1 ] || ! grep -a 'mptrain: error:' $name.out | grep -qF "$fragment"; then
    fail "$name: $errors error line(s), expected one with '$fragment'"; tail -8 $name.out
  elif [ "$np" -gt 0 ] && "$MPIRUN" --version 2>&1 | grep -q "Open MPI" &&
       ! grep -aq '^\[[0-9]*,0\]<std...>:mptrain: error:' $name.out; then
    fail "$name: the error was not printed by rank 0"; tail -8 $name.out
  elif [ "$(awk -F, 'END { print NR - 1 }' $name.csv)" != "$done_steps" ]; then
    fail "$name: $(awk -F, 'END { print NR - 1 }' $name.csv) steps logged, expected $done_steps"
  else
    pass "$name: every rank stops with exit 2 after $done_steps steps: $(grep -a 'mptrain: error:' $name.out | sed 's/.*mptrain: error: //' | cut -c1-120)"
  fi
}

# Token 960 is the last target of batch 15 (span [900, 961)): steps 1-15 train.
# shellcheck disable=SC2086
expect_stop last-span 0 15 "bad960.h5': token 300 at index 960 is outside [0, vocab_size = 256)" \
  "$deck" $small --train.steps=20 --data.train=bad960.h5

# 3. Token 240 is the last target of batch 3 (span [180, 241)): of dp2·pp2, DP rank 1 holds rows
# 2-3, whose inputs are [210, 240) (its first stage) and targets [211, 241) (its last stage),
# so one rank of four reads it. Batches 0-2 (tokens 0..180) train.
# shellcheck disable=SC2086
expect_stop one-reader 4 3 "bad240.h5': token 300 at index 240 is outside" \
  "$deck" $small --train.steps=6 --parallel.dp=2 --parallel.pp=2 --data.train=bad240.h5
# Validation (every 2 steps, 2 batches from the start: spans [0, 61) and [60, 121)) reads token
# 100 in its second batch, at step 2: step 1 is logged, step 2's row never written.
# shellcheck disable=SC2086
expect_stop validation 4 1 "bad100.h5': token 300 at index 100 is outside" \
  "$deck" $small --train.steps=6 --parallel.dp=2 --parallel.pp=2 --data.train=bad961.h5 \
  --data.val=bad100.h5 --data.val_every=2 --data.val_batches=2
finish
