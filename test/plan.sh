#!/bin/bash
# mptrain-plan (doc/PLANNING.md), without any timing:
#  1. its memory per rank (PLAN mem_bytes and each kind) equals what mptrain-bench measures
#     of the buffers the run allocated (BENCH mem_bytes, the largest rank; mem_check=ok says
#     each equals its analytic count) for layouts with tp, pp, dp and ZeRO on 2 and 4 ranks;
#  2. the layouts it lists for 4 ranks are exactly the valid ones, derived here from the
#     rules (tp | n_head, pp | n_layer, dp = 4 / (tp pp) | global_batch, micro-batches the
#     powers of two dividing global_batch / dp and the deck's, zero 0-2 when dp > 1,
#     recompute none/selective/full), each once; the deck's own layout is marked;
#  3. fits= follows --mem-per-rank: all no (and RECOMMEND none) under a tiny limit, and
#     under a middle limit yes exactly where the line's rss_mib is within it; the
#     recommended layout is the fastest that fits;
#  4. --measure under mpirun -np 2 writes a machine file the planner reads back; the built-in
#     machine is input/machines/devbox-2core.machine;
#  5. bad input is refused with exit 2 and a message naming what is wrong (table below).
. "$top_srcdir/test/lib.sh"

# n_head 2: tp = 4 is invalid; n_layer 2: pp = 4 is invalid; global_batch 12 with the deck's
# micro_batch 3 (not a power of two).
cat >plan.deck <<'EOF'
[model]
n_layer = 2
n_head = 2
n_embd = 64
seq_len = 16
vocab_size = 97
[parallel]
micro_batch = 3
[train]
global_batch = 12
[data]
train = random
EOF

plan() { timeout 60 "$MPTRAIN_BIN/mptrain-plan" "$@" </dev/null; }

# ---- 1. memory: PLAN against BENCH for the same layout
# field LINE KEY: the value of KEY= in a key=value line.
field() { echo " $1 " | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
plan4=$(plan plan.deck --ranks 4) || fail "plan on 4 ranks exits $?"
plan2=$(plan plan.deck --ranks 2) || fail "plan on 2 ranks exits $?"
quick=(--bench.warmup=0 --bench.steps=1 --bench.profile_steps=0 --bench.gemm_trials=1
       --bench.gemm_seconds=0.0001)
# compare_memory NP TP PP DP MB ZERO
compare_memory() {
  local np=$1 tp=$2 pp=$3 dp=$4 mb=$5 zero=$6 label="tp=$2 pp=$3 dp=$4 micro_batch=$5 zero=$6"
  local plans; [ "$np" -eq 4 ] && plans=$plan4 || plans=$plan2
  local p; p=$(echo "$plans" | grep "^PLAN $label recompute=none ")
  [ -n "$p" ] || { fail "memory $label: no PLAN line"; return; }
  timeout 300 "$MPIRUN" $MPIRUN_FLAGS -np "$np" "$MPTRAIN_BIN/mptrain-bench" plan.deck \
    --parallel.tp="$tp" --parallel.pp="$pp" --parallel.micro_batch="$mb" --optim.zero="$zero" \
    "${quick[@]}" </dev/null >"bench_${np}_${tp}${pp}${dp}${mb}${zero}.out" 2>&1
  local b; b=$(grep '^BENCH ' "bench_${np}_${tp}${pp}${dp}${mb}${zero}.out")
  [ -n "$b" ] || { fail "memory $label: mptrain-bench gave no BENCH line"; return; }
  [ "$(field "$b" mem_check)" = ok ] || fail "memory $label: mptrain-bench mem_check is not ok"
  local k bad=""
  for k in mem_bytes mem_mib mem_params_mib mem_grads_mib mem_optimizer_mib \
           mem_activations_mib mem_buffers_mib; do
    local pv bv; pv=$(field "$p" $k); bv=$(field "$b" $k)
    [ -n "$pv" ] && [ "$pv" = "$bv" ] || bad="$bad $k plan=$pv bench=$bv"
  done
  [ -z "$bad" ] && pass "memory $label on $np ranks: PLAN = BENCH ($(field "$p" mem_bytes) bytes)" ||
    fail "memory $label on $np ranks:$bad"
}
compare_memory 2 2 1 1 3 0
compare_memory 2 1 2 1 2 0
compare_memory 2 1 1 2 3 1
compare_memory 4 2 2 1 4 0
compare_memory 4 1 2 2 2 1

# ---- 2. the layout set for 4 ranks
expected=$(awk 'BEGIN {
  n_head = 2; n_layer = 2; G = 12; deck_mb = 3; N = 4
  split("none selective full", rc, " ")
  for (tp = 1; tp <= N; tp++) for (pp = 1; pp <= N; pp++) {
    if (N % (tp * pp) || n_head % tp || n_layer % pp) continue
    dp = N / (tp * pp); if (G % dp) continue
    rows = G / dp
    for (mb = 1; mb <= rows; mb++) {
      pow2 = 1; for (x = mb; x > 1; x /= 2) if (x % 2) pow2 = 0
      if (rows % mb || !(pow2 || mb == deck_mb)) continue
      for (z = 0; z <= (dp > 1 ? 2 : 0); z++) for (r = 1; r <= 3; r++)
        print "tp=" tp " pp=" pp " dp=" dp " micro_batch=" mb " zero=" z " recompute=" rc[r]
    }
  }}' | sort)
listed=$(echo "$plan4" | sed -n 's/^PLAN \(tp=[0-9]* pp=[0-9]* dp=[0-9]* micro_batch=[0-9]* zero=[0-9] recompute=[a-z]*\) .*/\1/p' | sort)
if [ -n "$expected" ] && [ "$expected" = "$listed" ]; then
  pass "4 ranks: the $(echo "$listed" | wc -l) PLAN layouts are exactly the valid ones"
else
  fail "4 ranks: layouts differ from the valid set: $(diff <(echo "$expected") <(echo "$listed") | head -5 | tr '\n' ' ')"
fi
[ "$(echo "$listed" | uniq -d)" = "" ] || fail "4 ranks: a layout is listed twice"
n_deck=$(echo "$plan4" | grep -c '^PLAN tp=1 pp=1 dp=4 micro_batch=3 zero=0 recompute=none .* deck=yes')
[ "$(echo "$plan4" | grep -c ' deck=yes')" -eq 1 ] && [ "$n_deck" -eq 1 ] &&
  pass "4 ranks: the deck's own layout is marked" || fail "4 ranks: deck= marks wrong"
echo "$plan4" | grep -q '^PLAN .* mem_mib=[0-9.]* ms_step=[0-9.e+]* fits=yes' &&
  pass "PLAN lines have the contract's keys in order" || fail "PLAN line format"

# ---- 3. fits under --mem-per-rank, and the recommendation
tiny=$(plan plan.deck --ranks 4 --mem-per-rank 0.001)
[ "$(echo "$tiny" | grep -c '^PLAN .* fits=yes')" -eq 0 ] &&
  [ "$(echo "$tiny" | grep -c '^PLAN .* fits=no')" -eq "$(echo "$listed" | wc -l)" ] &&
  echo "$tiny" | grep -q '^RECOMMEND none' &&
  pass "--mem-per-rank 0.001: every layout fits=no, RECOMMEND none" ||
  fail "--mem-per-rank 0.001: fits or RECOMMEND wrong"
# A limit between two layouts' rss_mib near the middle, well clear of both (the line prints
# rss_mib to 0.001 MiB).
limit=$(echo "$plan4" | grep '^PLAN' | while read -r l; do field "$l" rss_mib; done |
        sort -gu | awk '{ v[NR] = $1 } END {
          for (k = int(NR / 2); k < NR; k++) if (v[k + 1] - v[k] >= 0.01) break
          printf "%.6f", (v[k] + v[k + 1]) / 2 / 1024 }')
mid=$(plan plan.deck --ranks 4 --mem-per-rank "$limit")
bad=$(echo "$mid" | grep '^PLAN' | while read -r l; do
  awk -v r="$(field "$l" rss_mib)" -v f="$(field "$l" fits)" -v lim="$limit" \
    'BEGIN { want = r <= lim * 1024 ? "yes" : "no"; if (want != f) print "x" }'
done | wc -l)
nyes=$(echo "$mid" | grep -c '^PLAN .* fits=yes'); nno=$(echo "$mid" | grep -c '^PLAN .* fits=no')
[ "$bad" -eq 0 ] && [ "$nyes" -gt 0 ] && [ "$nno" -gt 0 ] &&
  pass "--mem-per-rank $limit: fits=yes exactly where rss_mib is within ($nyes yes, $nno no)" ||
  fail "--mem-per-rank $limit: $bad wrong fits ($nyes yes, $nno no)"
first_fit=$(echo "$mid" | grep -m1 '^PLAN .* fits=yes' | sed 's/^PLAN \(.* recompute=[a-z]*\) .*/\1/')
echo "$mid" | grep -q "^RECOMMEND $first_fit " &&
  pass "RECOMMEND is the first (fastest) layout that fits" || fail "RECOMMEND is not the first fitting layout"

# ---- 4. --measure writes a machine file the planner reads
timeout 300 "$MPIRUN" $MPIRUN_FLAGS -np 2 "$MPTRAIN_BIN/mptrain-plan" --measure -o machine.txt \
  --name "test machine" </dev/null >measure.out 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -s machine.txt ]; then
  pass "--measure on 2 ranks writes machine.txt"
  out=$(plan plan.deck --ranks 2 --machine machine.txt)
  [ $? -eq 0 ] && echo "$out" | grep -q '^machine: test machine (machine.txt)' &&
    [ "$(echo "$out" | grep -c '^PLAN ')" -gt 0 ] &&
    pass "the planner reads the measured machine file" ||
    fail "the planner does not read the measured machine file"
else
  fail "--measure exits $rc"; tail -5 measure.out
fi

# The built-in machine is input/machines/devbox-2core.machine.
diff <(plan plan.deck --ranks 4 | grep '^PLAN') \
     <(plan plan.deck --ranks 4 --machine "$top_srcdir/input/machines/devbox-2core.machine" | grep '^PLAN') \
  >/dev/null && pass "the built-in machine plans as input/machines/devbox-2core.machine" ||
  fail "the built-in machine differs from input/machines/devbox-2core.machine"

# ---- 5. bad input: exit 2 and the message
good_machine() {
  printf '%s\n' "name = m" "backend = cpu" "cores_per_node = 2" "measured_threads = 1" \
    "gemm_gflops = 64:10 512:20" "attention_gflops = 5" "stream_gbs = 5" "loss_glogits = 0.5" \
    "intra_alpha_us = 1" "intra_beta_gbs = 5" "inter_alpha_us = 2" "inter_beta_gbs = 1"
}
good_machine >good.machine
good_machine | grep -v stream_gbs >missing.machine
good_machine | sed 's/^gemm_gflops = .*/gemm_gflops = 512:20 64:10/' >order.machine
{ good_machine | head -2; echo "frequency = 3"; good_machine | tail -n +3; } >unknown.machine
good_machine | sed 's/^backend = cpu/backend = tpu/' >backend.machine
sed 's/^vocab_size = 97/vocab_size = 0/' plan.deck >novocab.deck
plan plan.deck --ranks 2 --machine good.machine >/dev/null && pass "a complete machine file is read" ||
  fail "a complete machine file is refused"
# expected message | arguments (word-split)
while IFS='|' read -r message args; do
  [ -z "$message" ] && continue
  message=${message% }
  # shellcheck disable=SC2086
  plan $args >bad.out 2>&1
  rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$message" bad.out; then
    pass "refused ($args): $message"
  else
    fail "($args): exit $rc, expected 2 and '$message'; got: $(head -c 300 bad.out)"
  fi
done <<'EOF'
--ranks = "0": must be a whole number >= 1 | plan.deck --ranks 0
--ranks = "abc": must be a whole number >= 1 | plan.deck --ranks abc
--ranks = "-4": must be a whole number >= 1 | plan.deck --ranks=-4
--ranks = "2.5": must be a whole number >= 1 | plan.deck --ranks 2.5
--ranks N is required | plan.deck
no deck file given | --ranks 2
no valid layout for 7 ranks | plan.deck --ranks 7
unknown option '--frobnicate' | plan.deck --ranks 2 --frobnicate
unknown option '--rank=2' | plan.deck --rank=2
--ranks-per-node = "0" | plan.deck --ranks 2 --ranks-per-node 0
--mem-per-rank = "0": must be a number > 0 | plan.deck --ranks 2 --mem-per-rank 0
unknown key [model] n_lyer | plan.deck --ranks 2 --model.n_lyer=3
cannot open deck file 'absent.deck' | absent.deck --ranks 2
[model] vocab_size = 0 | novocab.deck --ranks 2
cannot open machine file 'absent.machine' | plan.deck --ranks 2 --machine absent.machine
missing.machine: missing key 'stream_gbs' | plan.deck --ranks 2 --machine missing.machine
order.machine:5: gemm_gflops = "512:20 64:10": must be DIM:GFLOPS pairs | plan.deck --ranks 2 --machine order.machine
unknown.machine:3: unknown key 'frequency' | plan.deck --ranks 2 --machine unknown.machine
backend.machine:2: backend = "tpu": must be cpu or cuda | plan.deck --ranks 2 --machine backend.machine
--measure needs -o FILE | --measure
EOF
finish
