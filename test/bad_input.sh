#!/bin/bash
# test/bad_input.sh -- failure behaviour (doc/DESIGN.md §5.5, issue 8): bad input fails fast, with one
# clear message and the same exit status on every rank, nothing hangs, and nothing is written.
# Run by test/run-test.sh (which exports MPIRUN, MPIRUN_FLAGS, TEST_WORKDIR, top_builddir and
# top_srcdir). Four parts:
#
#   1. The table test/bad_input_cases.txt: each bad deck, layout, dataset and checkpoint on one
#      rank (no launcher) and on 4 ranks. Each run must end by itself (a run still going after
#      $hard_limit seconds counts as hung and is killed; how long a refusal took is printed, not
#      judged, since the machine may be loaded), every rank must exit with the table's status,
#      the message fragment must appear in exactly one "mptrain: error:" line, printed by rank
#      0, and the checkpoint directory must be left as it was (absent, or holding the same
#      files).
#   2. The restart search: a damaged newest checkpoint is refused with its reason and the
#      previous one is used.
#   3. Numerical trouble: a NaN gradient on one rank at one step is skipped and the run
#      finishes (exit 0); non-finite gradients on max_bad_steps consecutive steps stop the run
#      with exit 4, a message, and the last good checkpoint kept.
#   4. A killed rank: kill -9 of one rank of a 4-rank job in training (paused at a known step by
#      --test-hook=pause) ends the whole job with a non-zero status by itself within 10 s (not
#      by the test's 300 s hang limit), leaves no process behind, and a restart from its newest
#      checkpoint completes.
#
# With Open MPI, 4-rank runs use --tag-output (to see which rank printed what) and run each
# rank under "sh -c" that prints its exit status, with orte_abort_on_non_zero_status=0 so that
# mpirun lets every rank finish instead of killing the others at the first non-zero exit.
# BAD_INPUT_CASES=REGEX runs only the table cases whose names match (for debugging).
# No GPU takes part: CUDA_VISIBLE_DEVICES is emptied, so [device] backend = auto resolves to the
# CPU on every machine (the table refuses tf32/bf16 precision there).
. "$top_srcdir/test/lib.sh"
export CUDA_VISIBLE_DEVICES=""

cases_file=$top_srcdir/test/bad_input_cases.txt
bad_files=${BAD_FILES:-${top_builddir:-.}/test/bad_files}
mptrain=$MPTRAIN_BIN/mptrain
hard_limit=120   # seconds after which a run counts as hung and is killed
only=${BAD_INPUT_CASES:-}

openmpi=no
"$MPIRUN" --version 2>&1 | grep -q "Open MPI" && openmpi=yes

now() { date +%s.%N; }
t0=$(now)
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- fixtures

echo "== making the fixtures (at $(elapsed "$t0")s)"
make_data || { fail "mptrain-prep could not make the datasets"; finish; }
sed -e 's/^steps = .*/steps = 2/' "$top_srcdir/input/test-tiny.deck" >base.deck
grep -q '^steps = 2$' base.deck || { fail "cannot make base.deck from input/test-tiny.deck"; finish; }

mkdir -p deckdir
: >afile
# A deck with a line that is neither a section nor key = value (line 3).
printf '# a deck\n[model]\nn_layer 4\n[data]\ntrain = train.h5\n' >malformed.deck
sed -e 's/^n_layer = 4$/n_layers = 4/' base.deck >unknown-key.deck
sed -e 's/^\[optim\]$/[optimizer]/' base.deck >section.deck
sed -e 's/^steps = 2$/steps = 2\nsteps = 3/' base.deck >twice.deck
grep -v '^train = ' base.deck >no-train.deck

fixtures_ok=yes
for kind in no-tokens float 2d out-of-range no-vocab; do
  "$bad_files" dataset "$kind" "dataset-$kind.h5" || fixtures_ok=no
done
"$bad_files" tiny-dataset short.h5 || fixtures_ok=no  # 64 tokens: less than one batch

# A good checkpoint of base.deck at step 1, and damaged copies of it.
OUT=good.out run_mptrain 0 base.deck --train.steps=1 --checkpoint.dir=good --log.metrics=
if [ $? -ne 0 ] || [ ! -f good/step_00000001.h5 ]; then
  fail "cannot make the good checkpoint"; cat good.out; finish
fi
for kind in truncated version format drop-tensor corrupt; do
  "$bad_files" checkpoint "$kind" good/step_00000001.h5 "ckpt-$kind.h5" || fixtures_ok=no
done
[ "$fixtures_ok" = yes ] || { fail "test/bad_files could not make the fixtures"; finish; }

# prep_NAME NP: makes the files of case NAME afresh before each of its runs (a run may change
# them); per rank count, since the two runs of a case may run at the same time.
prep_auto-all-refused() {
  local d=allbad-$1
  rm -rf "$d" && mkdir "$d" &&
    cp ckpt-corrupt.h5 "$d/step_00000002.h5" && cp ckpt-version.h5 "$d/step_00000001.h5" &&
    echo step_00000002.h5 >"$d/latest"
}
# "Disk full": the save's temporary file is a link to /dev/full (every write fails with
# ENOSPC), next to a complete step-1 checkpoint that must survive. (A tiny tmpfs gives the same
# failure, but mounting one needs privileges CI may not have.)
prep_ckpt-disk-full() {
  local d=full-$1
  rm -rf "$d" && mkdir "$d" && cp good/step_00000001.h5 "$d/" && echo step_00000001.h5 >"$d/latest" &&
    ln -s /dev/full "$d/.step_00000002.h5.tmp"
}

# ---------------------------------------------------------------- running one case

# The files of a checkpoint directory and their checksums, or "absent" (temporary files and
# links excluded: a failed save may leave neither, but is not judged on them here).
snapshot() {
  if [ -e "$1" ]; then
    (cd "$1" && find . -type f ! -name '.*.tmp' -print0 | sort -z | xargs -0 -r md5sum)
  else
    echo absent
  fi
}

# has_fragments OUTFILE "A && B ...": the error line holds every part.
has_fragments() {
  local line rest=$2 part
  line=$(grep -a 'mptrain: error:' "$1")
  while [ -n "$rest" ]; do
    part=${rest%% && *}
    [ "$part" = "$rest" ] && rest="" || rest=${rest#* && }
    case $line in *"$part"*) ;; *) return 1 ;; esac
  done
}

# run_case NAME NP EXPECTED_EXIT FRAGMENT ARGS...: prints PASS: or FAIL: lines ("{np}" in the
# arguments and the fragment stands for the rank count).
run_case() {
  local name=$1 np=$2 expected=$3 fragment=${4//\{np\}/$2}
  shift 4
  local args=("${@//\{np\}/$np}") dir="" metrics=no a
  for a in "${args[@]}"; do
    case $a in
      --checkpoint.dir=*) dir=${a#--checkpoint.dir=} ;;
      --log.metrics=*) metrics=yes ;;
    esac
  done
  if [ -z "$dir" ]; then
    dir=ck-$name-$np
    rm -rf "$dir"
    args+=("--checkpoint.dir=$dir")
  fi
  [ "$metrics" = yes ] || args+=("--log.metrics=metrics-$name-$np.csv")
  if declare -F "prep_$name" >/dev/null && ! "prep_$name" "$np"; then
    fail "$name on $np: cannot prepare its files"
    return
  fi
  local before out=out-$name-$np.txt label="$name on $np rank(s)"
  before=$(snapshot "$dir")
  local start codes="" status
  start=$(now)
  if [ "$np" -eq 1 ]; then
    timeout -k 5 "$hard_limit" "$mptrain" "${args[@]}" >"$out" 2>&1 </dev/null
    status=$?
    codes=$status
  elif [ "$openmpi" = yes ]; then
    # shellcheck disable=SC2016,SC2086  # $0/$@ are for sh -c; MPIRUN_FLAGS is a list of flags
    OMPI_MCA_orte_abort_on_non_zero_status=0 timeout -k 5 "$hard_limit" \
      "$MPIRUN" $MPIRUN_FLAGS --tag-output -np "$np" \
      sh -c '"$0" "$@"; c=$?; echo "mptrain-exit: $c"; exit $c' "$mptrain" "${args[@]}" \
      >"$out" 2>&1 </dev/null
    status=$?
    codes=$(sed -n 's/.*mptrain-exit: \([0-9]*\)$/\1/p' "$out" | sort | uniq -c |
            awk '{ printf "%s%sx%s", sep, $1, $2; sep = " " }')
  else
    # shellcheck disable=SC2086
    timeout -k 5 "$hard_limit" "$MPIRUN" $MPIRUN_FLAGS -np "$np" "$mptrain" "${args[@]}" \
      >"$out" 2>&1 </dev/null
    status=$?
    codes="launcher:$status"
  fi
  local seconds
  seconds=$(elapsed "$start")

  local problems=()
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    problems+=("HUNG: killed after ${hard_limit}s")
  fi
  local want
  if [ "$np" -eq 1 ]; then
    want=$expected
  elif [ "$openmpi" = yes ]; then
    want="${np}x$expected"
  else
    want="launcher:$expected"
  fi
  [ "$codes" = "$want" ] || problems+=("exit status ${codes:-none}, expected $want")
  local errors
  errors=$(grep -ac 'mptrain: error:' "$out")
  if [ "$errors" -ne 1 ]; then
    problems+=("$errors 'mptrain: error:' lines, expected 1")
  elif ! has_fragments "$out" "$fragment"; then
    problems+=("the error line lacks '$fragment'")
  elif [ "$np" -gt 1 ] && [ "$openmpi" = yes ] && ! grep -aq '^\[[0-9]*,0\]<std...>:mptrain: error:' "$out"; then
    problems+=("the error was not printed by rank 0")
  fi
  [ "$(snapshot "$dir")" = "$before" ] || problems+=("the checkpoint directory $dir changed")

  if [ ${#problems[@]} -eq 0 ]; then
    pass "$label: exit $expected in ${seconds}s: $(grep -a -m1 'mptrain: error:' "$out" | sed 's/^.*mptrain: error: //' | cut -c1-150)"
  else
    local IFS=';'
    fail "$label: ${problems[*]}"
    echo "---- $out (last 15 lines)"; tail -15 "$out"; echo "----"
  fi
}

# ---------------------------------------------------------------- 1. the table

# The runs are independent; $jobs of them run at a time (most of a refused run is waiting on
# process start-up), each writing its verdict to a file, printed in table order at the end.
jobs=${BAD_INPUT_JOBS:-2}
echo "== bad inputs (table $cases_file), $jobs runs at a time (at $(elapsed "$t0")s)"
n_runs=0
n_cases=0
verdicts=()
running=0
while IFS="|" read -r -u 3 name ranks code fragment arguments; do
  name=$(echo "$name" | xargs)
  case $name in '' | '#'*) continue ;; esac
  [ -n "$only" ] && ! [[ $name =~ $only ]] && continue
  fragment=$(echo "$fragment" | sed -e 's/^ *//' -e 's/ *$//')
  read -r -a argv <<<"$arguments"
  n_cases=$((n_cases + 1))
  for np in $ranks; do
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    verdict=verdict-$name-$np.txt
    verdicts+=("$verdict")
    run_case "$name" "$np" "$(echo "$code" | xargs)" "$fragment" "${argv[@]}" >"$verdict" 2>&1 3<&- &
    running=$((running + 1))
    n_runs=$((n_runs + 1))
  done
done 3<"$cases_file"
wait
for verdict in "${verdicts[@]}"; do
  cat "$verdict"
  failures=$((failures + $(grep -c '^FAIL: ' "$verdict")))
done
echo "== $n_cases bad-input cases, $n_runs runs (at $(elapsed "$t0")s)"
[ -n "$only" ] && finish

# ---------------------------------------------------------------- 2. restart search

echo "== a damaged newest checkpoint is refused and the previous one used (at $(elapsed "$t0")s)"
for np in 1 4; do
  rm -rf fallback && mkdir fallback && cp good/step_00000001.h5 fallback/ &&
    cp ckpt-corrupt.h5 fallback/step_00000002.h5 && echo step_00000002.h5 >fallback/latest
  OUT=fallback-$np.out run_mptrain "$([ $np -eq 1 ] && echo 0 || echo $np)" base.deck \
    --train.steps=3 --checkpoint.dir=fallback --log.metrics=
  rc=$?
  if [ $rc -eq 0 ] && grep -q 'refusing checkpoint: fallback/step_00000002.h5: .*checksum' fallback-$np.out &&
     grep -q 'restarted from fallback/step_00000001.h5 (step 1' fallback-$np.out &&
     [ "$(grep -c 'refusing checkpoint' fallback-$np.out)" -eq 1 ]; then
    pass "fallback on $np rank(s): refused step 2 (checksum, said once), resumed from step 1"
  else
    fail "fallback on $np rank(s) (exit $rc)"; tail -8 fallback-$np.out
  fi
done

# ---------------------------------------------------------------- 3. numerical trouble

echo "== one NaN gradient on one rank: the step is skipped, the run finishes (at $(elapsed "$t0")s)"
for np in 1 4; do
  launch=$([ $np -eq 1 ] && echo 0 || echo $np)
  OUT=nan-once-$np.out run_mptrain "$launch" base.deck --test-hook=nan:2:$((np - 1)) \
    --train.steps=4 --train.max_bad_steps=3 --checkpoint.dir=nan-once-$np --log.metrics=
  rc=$?
  if [ $rc -eq 0 ] && [ "$(grep -c 'step 2: non-finite gradient norm; update skipped' nan-once-$np.out)" -eq 1 ] &&
     grep -q '^step 4/4' nan-once-$np.out; then
    pass "NaN at step 2 on rank $((np - 1)) of $np: skipped once, reported once, exit 0"
  else
    fail "NaN at step 2 on rank $((np - 1)) of $np (exit $rc)"; tail -8 nan-once-$np.out
  fi
done

# Non-finite from step 3 on: on 4 ranks, rank r injects a NaN at step 3 + r (one test hook
# per rank), so steps 3, 4 and 5 are bad; on 1 rank an absurd learning rate makes the model
# blow up at step 2 and stay non-finite. A checkpoint is taken every step and only 2 are
# kept; the last good step's checkpoint must survive and be the one named latest.
echo "== non-finite gradients on max_bad_steps = 3 consecutive steps: exit 4 (at $(elapsed "$t0")s)"
check_numerical() {  # NP OUTFILE DIR RC LAST_GOOD FIRST_BAD
  local np=$1 out=$2 dir=$3 rc=$4 good=$5 bad=$6
  local label="$np rank(s), bad from step $bad"
  [ "$rc" -eq 4 ] && pass "$label: exit 4" || { fail "$label: exit $rc, expected 4"; tail -8 "$out"; }
  grep -q "stopping after 3 consecutive non-finite steps" "$out" &&
    [ "$(grep -c 'stopping after' "$out")" -eq 1 ] &&
    [ "$(grep -c 'non-finite gradient norm; update skipped' "$out")" -eq 3 ] &&
    pass "$label: 3 skipped steps and the stop reported once each" ||
    fail "$label: the skipped steps or the stop are not reported once each"
  # The third bad step (bad + 2) stops the run before its progress line.
  grep -q "^step $((bad + 2))/" "$out" && fail "$label: the run did not stop at the third bad step"
  local latest
  latest=$(cat "$dir/latest" 2>/dev/null)
  local want
  want=$(printf 'step_%08d.h5' "$good")
  if [ -f "$dir/$want" ] && [ "$latest" = "$want" ]; then
    pass "$label: the last good checkpoint ($want) is kept and named by latest"
  else
    fail "$label: the last good checkpoint $want is not kept as latest (latest: '${latest:-none}'," \
      "files: $(cd "$dir" 2>/dev/null && echo step_*))"
  fi
}
rm -rf num-1
OUT=num-1.out run_mptrain 0 base.deck --train.steps=8 --optim.lr=1e30 --optim.grad_clip=0 \
  --optim.warmup_steps=0 --train.max_bad_steps=3 --checkpoint.dir=num-1 --checkpoint.every=1 \
  --checkpoint.keep=2 --log.metrics=
check_numerical 1 num-1.out num-1 $? 1 2
rm -rf num-4
OUT=num-4.out run_mptrain 4 base.deck --test-hook=nan:3:0 --test-hook=nan:4:1 \
  --test-hook=nan:5:2 --test-hook=nan:6:3 --train.steps=8 --train.max_bad_steps=3 \
  --checkpoint.dir=num-4 --checkpoint.every=1 --checkpoint.keep=2 --log.metrics=
check_numerical 4 num-4.out num-4 $? 2 3

# ---------------------------------------------------------------- 4. a killed rank

# Rank 2 of 4 pauses after step 5 (--test-hook=pause:5:2; the checkpoint of step 4 is written,
# the other ranks wait for rank 2 in that step's flag all-reduce), and is killed there with
# SIGKILL: in the middle of training, at a known step, however fast the machine. Open MPI
# ends the job about 2 s later (measured 2.1 s: SIGTERM to the others, which mptrain takes
# as a request to stop at the next step boundary, then SIGKILL); the 10 s bound only catches
# a job that does not end.
echo "== kill -9 of one rank during training (at $(elapsed "$t0")s)"
kill_limit=10
rm -rf killed mptrain-paused.*
job_start=$(now)
# shellcheck disable=SC2086
timeout -k 5 300 "$MPIRUN" $MPIRUN_FLAGS -np 4 "$mptrain" base.deck --train.steps=8 \
  --test-hook=pause:5:2 --checkpoint.dir=killed --checkpoint.every=2 --log.metrics= \
  </dev/null >killed.out 2>&1 &
job=$!
if ! wait_for_files 120 mptrain-paused.2 || [ "$(cat killed/latest 2>/dev/null)" != step_00000004.h5 ]; then
  fail "killed rank: rank 2 did not pause after step 5 with the step-4 checkpoint written"
  tail -5 killed.out
  kill "$job" 2>/dev/null
  wait "$job" 2>/dev/null
else
  victim=$(cat mptrain-paused.2)
  start=$(now)
  kill -9 "$victim"
  wait "$job"
  rc=$?
  seconds=$(elapsed "$start")
  # The test's own 300 s bound ended it (the job hung) when timeout says so: 124, or 137 once
  # the bound has passed (137 before it is mpirun passing on the SIGKILLed rank's status).
  hung=no
  if [ "$rc" -eq 124 ] ||
     { [ "$rc" -eq 137 ] && awk -v s="$(elapsed "$job_start")" 'BEGIN { exit !(s >= 300) }'; }; then
    hung=yes
  fi
  if [ "$rc" -ne 0 ] && [ "$hung" = no ] && awk -v s="$seconds" -v l=$kill_limit 'BEGIN { exit !(s < l) }'; then
    pass "killed rank: the job ended by itself with status $rc ${seconds}s after kill -9 of rank 2 (pid $victim; bound ${kill_limit}s)"
  else
    fail "killed rank: the job ended with status $rc ${seconds}s after the kill (bound ${kill_limit}s)" \
      "$([ "$rc" -eq 0 ] && echo '(success despite a dead rank)' || { [ "$hung" = yes ] && echo '(hung: killed by the test)'; })"
  fi
  # Only this test's processes (working directory here): another build's run of this test on
  # the same machine has the same command line.
  leftovers=0
  for pid in $(pgrep -f "base.deck --train.steps=8 --test-hook=pause:5:2"); do
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$PWD" ] && leftovers=$((leftovers + 1))
  done
  [ "$leftovers" -eq 0 ] && pass "killed rank: no process of the job is left" ||
    fail "killed rank: $leftovers process(es) of the job still running"
  OUT=restart.out run_mptrain 4 base.deck --train.steps=8 --checkpoint.dir=killed --log.metrics=
  rc=$?
  if [ $rc -eq 0 ] && grep -q "restarted from killed/step_00000004.h5" restart.out &&
     grep -q "^step 8/8" restart.out; then
    pass "killed rank: restart from step 4 completes"
  else
    fail "killed rank: restart from step 4 (exit $rc)"; tail -5 restart.out
  fi
fi

finish
