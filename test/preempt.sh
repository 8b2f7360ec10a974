#!/bin/bash
# Preemption and damage (DESIGN §5.5): a real SIGUSR1 delivered to one rank only stops every
# rank at the same step with a checkpoint and exit code 3, and the restart finishes with the
# losses of an uninterrupted run; a run killed while writing a checkpoint leaves the previous
# one intact and restarts from it; a corrupted or truncated newest checkpoint is refused and
# restart = auto falls back to the older whole one.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
lay="--parallel.tp=2 --parallel.dp=2 --train.steps=60 --data.val_every=0"

OUT=ref.out run_mptrain 4 "$deck" $lay --log.metrics=ref.csv --checkpoint.restart=none ||
  { fail "uninterrupted reference run"; finish; }

# 1. SIGUSR1 to one rank's process only, while it trains.
timeout 300 "$MPIRUN" $MPIRUN_FLAGS -np 4 "$MPTRAIN_BIN/mptrain" "$deck" $lay \
  --log.metrics=sig.csv --checkpoint.dir=ck_sig </dev/null >sig1.out 2>&1 &
launcher=$!
signalled=no
for _ in $(seq 1 600); do
  if [ -f sig.csv ] && [ "$(wc -l <sig.csv)" -ge 4 ]; then
    rank_pid=$(pgrep -P $launcher | tail -n 1)
    [ -n "$rank_pid" ] && kill -USR1 "$rank_pid" && signalled=yes
    break
  fi
  sleep 0.05
done
wait $launcher; rc=$?
if [ $signalled = yes ] && [ $rc -eq 3 ] && grep -q "preemption signal received" sig1.out; then
  pass "SIGUSR1 to one rank: the job checkpoints and exits 3"
else
  fail "SIGUSR1 to one rank: signalled=$signalled exit=$rc"; tail -5 sig1.out
fi
step=$(sed -n 's/^step_0*\([0-9]*\)\.h5$/\1/p' ck_sig/latest 2>/dev/null)
[ -n "$step" ] && [ "$step" -lt 60 ] && pass "checkpoint written at step $step" ||
  fail "no mid-run checkpoint (latest: $(cat ck_sig/latest 2>/dev/null))"
OUT=sig2.out run_mptrain 4 "$deck" $lay --log.metrics=sig.csv --checkpoint.dir=ck_sig
rc=$?
[ $rc -eq 0 ] && pass "restart after the signal exits 0" || fail "restart exits $rc"
losses_identical ref.csv sig.csv "signal + restart vs uninterrupted"

# 2. Killed (SIGKILL, test hook) while writing the step-8 checkpoint: step 4 survives.
few="--train.steps=12 --checkpoint.every=4"
OUT=kill.out MPTRAIN_TEST_KILL_IN_SAVE=8 run_mptrain 4 "$deck" $lay $few --log.metrics=kill.csv \
  --checkpoint.dir=ck_kill
rc=$?
[ $rc -ne 0 ] && pass "run killed during the step-8 save exits $rc" || fail "kill hook did not fire"
[ "$(cat ck_kill/latest 2>/dev/null)" = step_00000004.h5 ] && [ ! -f ck_kill/step_00000008.h5 ] &&
  pass "latest still names the step-4 checkpoint; no step-8 file" ||
  fail "after the kill: latest=$(cat ck_kill/latest 2>/dev/null), files: $(ls ck_kill)"
OUT=kill2.out run_mptrain 4 "$deck" $lay $few --log.metrics=kill.csv --checkpoint.dir=ck_kill
rc=$?
[ $rc -eq 0 ] && grep -q "restarted from ck_kill/step_00000004.h5" kill2.out &&
  pass "restart after the kill resumes from step 4" || { fail "restart after kill ($rc)"; tail -3 kill2.out; }
OUT=kref.out run_mptrain 4 "$deck" $lay $few --log.metrics=kref.csv --checkpoint.restart=none
losses_identical kref.csv kill.csv "killed-during-save + restart vs uninterrupted"

# 3. Damaged newest checkpoint: corrupted bytes, then a truncated file.
for damage in corrupt truncate; do
  rm -rf ck_$damage
  OUT=$damage.out run_mptrain 4 "$deck" $lay $few --log.metrics=$damage.csv --checkpoint.dir=ck_$damage
  f=ck_$damage/step_00000012.h5
  size=$(stat -c %s $f)
  if [ $damage = corrupt ]; then
    # Overwrite 4 KiB in the middle of the file: tensor data there fails its checksum.
    dd if=/dev/urandom of=$f bs=1 seek=$((size / 2)) count=4096 conv=notrunc status=none
  else
    truncate -s $((size / 2)) $f
  fi
  OUT=$damage-2.out run_mptrain 4 "$deck" $lay --train.steps=16 --checkpoint.every=4 \
    --log.metrics=$damage.csv --checkpoint.dir=ck_$damage
  rc=$?
  if [ $rc -eq 0 ] && grep -q "refusing checkpoint: ck_$damage/step_00000012.h5" $damage-2.out &&
     grep -q "fell back to ck_$damage/step_00000008.h5" $damage-2.out; then
    pass "$damage: newest checkpoint refused, fell back to step 8"
  else
    fail "$damage: exit $rc"; grep -E "refus|fell|restart|error" $damage-2.out | head -5
  fi
  grep "refusing" $damage-2.out | head -1
done
finish
