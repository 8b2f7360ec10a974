#!/bin/bash
# Preemption and damage (doc/DESIGN.md §5.5), on dp2·tp2 (4 ranks), 12 steps of the tiny deck:
#   1. A real SIGUSR1 sent from outside (kill) to ONE rank's process only, at a known step:
#      --test-hook=pause:5:2 stops rank 2 after step 5 (the others wait for it in the step's
#      flag all-reduce) and the test signals that PID. Only rank 2 received it (rank 0 reports
#      1 of 4 ranks, the lowest being 2), every rank stops at step 5 and exits 3, the step-5
#      checkpoint is the only one, and the restart ends bit for bit where an uninterrupted run
#      ends (losses, and the final checkpoint: model, AdamW moments, resume state).
#   2. A run killed (SIGKILL of rank 0, --test-hook=kill-in-save:8) half way through writing
#      its step-8 checkpoint leaves the step-4 one named by latest and no step-8 file; the
#      restart resumes from step 4 and ends bit for bit where the uninterrupted run ends.
#   3. A corrupted or truncated newest checkpoint is refused and restart = auto falls back to
#      the older whole one.
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
lay="--parallel.tp=2 --parallel.dp=2 --data.val_every=0"
final=step_00000012.h5

# shellcheck disable=SC2086  # $lay is a list of options
OUT=ref.out run_mptrain 4 "$deck" $lay --log.metrics=ref.csv --checkpoint.dir=ck_ref ||
  { fail "uninterrupted reference run"; finish; }

# 1. SIGUSR1 to one rank's process only, while the others wait at the step boundary. With Open
# MPI every rank runs under "sh -c" that prints its exit status, and mpirun lets every rank
# finish (orte_abort_on_non_zero_status=0) instead of killing the others at the first exit 3.
echo "== SIGUSR1 to rank 2 only, after step 5"
wrap=()
"$MPIRUN" --version 2>&1 | grep -q "Open MPI" &&
  wrap=(--tag-output sh -c '"$0" "$@"; c=$?; echo "mptrain-exit: $c"; exit $c')
rm -f mptrain-paused.*
# shellcheck disable=SC2086
OMPI_MCA_orte_abort_on_non_zero_status=0 timeout -k 10 300 "$MPIRUN" $MPIRUN_FLAGS -np 4 \
  "${wrap[@]}" "$MPTRAIN_BIN/mptrain" "$deck" $lay --test-hook=pause:5:2 \
  --log.metrics=sig.csv --checkpoint.dir=ck_sig </dev/null >sig1.out 2>&1 &
launcher=$!
if wait_for_files 120 mptrain-paused.2; then
  rank_pid=$(cat mptrain-paused.2)
  kill -USR1 "$rank_pid" && pass "rank 2 paused after step 5; SIGUSR1 sent to its PID $rank_pid only"
else
  fail "rank 2 never paused"; rank_pid=''
fi
wait $launcher
rc=$?
line=$(grep -a "preemption signal received" sig1.out)
# mpirun's own status is the ranks' (3) unless orte_abort_on_non_zero_status=0 made it 0.
if { [ $rc -eq 3 ] || { [ ${#wrap[@]} -gt 0 ] && [ $rc -eq 0 ]; }; } && [ -n "$rank_pid" ] &&
   grep -aq "test hook: rank 2 (pid $rank_pid) paused after step 5" sig1.out &&
   [[ $line == *"checkpointing at step 5 and exiting (code 3); the signal reached 1 of 4 rank(s), the lowest being rank 2" ]]; then
  pass "only rank 2 received the signal; all ranks agreed to stop at step 5 (mpirun exits $rc)"
else
  fail "the signal to rank 2: exit $rc, ${line:-no preemption message}"; tail -5 sig1.out
fi
if [ ${#wrap[@]} -gt 0 ]; then
  codes=$(grep -ao '^\[1,[0-9]*\]<stdout>:mptrain-exit: [0-9]*' sig1.out | sort | sed 's/.*: //' | tr '\n' ' ')
  [ "$codes" = "3 3 3 3 " ] && pass "every rank exited 3" || fail "exit statuses of the ranks: ${codes:-none}"
fi
[ "$(ls ck_sig 2>/dev/null | tr '\n' ' ')" = "latest step_00000005.h5 " ] &&
  [ "$(cat ck_sig/latest)" = step_00000005.h5 ] &&
  pass "the one checkpoint is step 5, named by latest" ||
  fail "after the signal: latest=$(cat ck_sig/latest 2>/dev/null), files: $(ls -A ck_sig 2>/dev/null)"
# shellcheck disable=SC2086
OUT=sig2.out run_mptrain 4 "$deck" $lay --log.metrics=sig.csv --checkpoint.dir=ck_sig
rc=$?
[ $rc -eq 0 ] && grep -q "^restarted from ck_sig/step_00000005.h5" sig2.out &&
  pass "restart after the signal resumes from step 5 and exits 0" ||
  fail "restart after the signal: exit $rc, $(grep -c '^restarted from ck_sig/step_00000005.h5' sig2.out) resume(s) from step 5"
losses_identical ref.csv sig.csv "signal + restart vs uninterrupted"
ckpt_identical ck_ref/$final ck_sig/$final "signal + restart vs uninterrupted"

# 2. Killed (SIGKILL of rank 0, test hook) while writing the step-8 checkpoint: step 4 survives.
echo "== SIGKILL half way through the step-8 save"
few="--checkpoint.every=4"
# shellcheck disable=SC2086
OUT=kill.out run_mptrain 4 "$deck" $lay $few --test-hook=kill-in-save:8 --log.metrics=kill.csv \
  --checkpoint.dir=ck_kill
rc=$?
[ $rc -ne 0 ] && grep -q "signal 9" kill.out && pass "run killed during the step-8 save exits $rc" ||
  fail "kill hook did not fire (exit $rc)"
[ "$(cat ck_kill/latest 2>/dev/null)" = step_00000004.h5 ] && [ ! -e ck_kill/step_00000008.h5 ] &&
  [ -f ck_kill/.step_00000008.h5.tmp ] &&
  pass "latest still names the step-4 checkpoint; the step-8 save stayed a temporary file" ||
  fail "after the kill: latest=$(cat ck_kill/latest 2>/dev/null), files: $(ls -A ck_kill)"
# shellcheck disable=SC2086
OUT=kill2.out run_mptrain 4 "$deck" $lay $few --log.metrics=kill.csv --checkpoint.dir=ck_kill
rc=$?
[ $rc -eq 0 ] && grep -q "^restarted from ck_kill/step_00000004.h5" kill2.out &&
  [ ! -e ck_kill/.step_00000008.h5.tmp ] &&
  pass "restart after the kill resumes from step 4 (and the stale temporary file is gone)" ||
  { fail "restart after kill ($rc)"; tail -3 kill2.out; }
losses_identical ref.csv kill.csv "killed-during-save + restart vs uninterrupted"
ckpt_identical ck_ref/$final ck_kill/$final "killed-during-save + restart vs uninterrupted"

# 3. Damaged newest checkpoint (step 12 of part 2's directory): corrupted bytes, then a
# truncated file. restart = auto must refuse it and resume from step 8.
for damage in corrupt truncate; do
  echo "== $damage the newest checkpoint"
  rm -rf ck_$damage && cp -r ck_kill ck_$damage
  f=ck_$damage/$final
  size=$(stat -c %s $f)
  if [ $damage = corrupt ]; then
    # Overwrite 4 KiB in the middle of the file: tensor data fails its checksum, HDF5
    # metadata its own checks; either way the file is refused.
    head -c 4096 /dev/zero | tr '\0' '\245' | dd of=$f bs=1 seek=$((size / 2)) conv=notrunc status=none
  else
    truncate -s $((size / 2)) $f
  fi
  # shellcheck disable=SC2086
  OUT=$damage.out run_mptrain 4 "$deck" $lay --train.steps=16 $few \
    --log.metrics=$damage.csv --checkpoint.dir=ck_$damage
  rc=$?
  if [ $rc -eq 0 ] && grep -q "refusing checkpoint: ck_$damage/$final" $damage.out &&
     grep -q "fell back to ck_$damage/step_00000008.h5" $damage.out &&
     [ "$(cat ck_$damage/latest)" = step_00000016.h5 ]; then
    pass "$damage: newest checkpoint refused ($(grep -o 'refusing checkpoint: [^(]*' $damage.out | head -c 120)), fell back to step 8, ran to 16"
  else
    fail "$damage: exit $rc"; grep -E "refus|fell|restart|error" $damage.out | head -5
  fi
done
finish
