#!/bin/bash
# mptrain-bench on the tiny test model for a few steps: on random tokens and on a dataset, on
# one rank and on two (dp = 2). Each run must exit 0 and print one machine-readable BENCH line
# with every expected key and sane values: consistent step statistics, the analytic parameter
# and token counts, no backend allocation inside a step, exactly the analytic communication
# bytes per axis, every memory figure equal to its analytic count. No timing thresholds
# (doc/DESIGN.md §6: performance is measured with the benchmark, never by tests).
. "$top_srcdir/test/lib.sh"
make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
quick=(--bench.warmup=1 --bench.steps=3 --bench.profile_steps=2 --bench.gemm_trials=2
       --bench.gemm_seconds=0.001)

keys="deck ranks tp pp dp threads backend data micro_batch global_batch tokens_per_step params
      gflop_per_step warmup steps ms_median ms_min ms_max ms_p25 ms_p75 tokens_per_s gflops
      sgemm_gflops pct_sgemm rss_mib_max ms_matmul ms_attention ms_layernorm ms_gelu
      ms_bias_residual ms_embedding ms_cross_entropy ms_optimizer ms_copy_fill ms_comm_world
      ms_comm_tp ms_comm_dp ms_comm_pp ms_comm_embed ms_other ms_profiled allocs_in_step
      comm_check mem_check mem_mib mem_bytes"

# run_bench LABEL NP EXPECT_RANKS ARGS...: runs mptrain-bench, then checks its BENCH line.
run_bench() {
  local label=$1 np=$2 ranks=$3; shift 3
  local out=bench_${label// /_}.out rc
  if [ "$np" -eq 0 ]; then
    timeout 300 "$MPTRAIN_BIN/mptrain-bench" "$@" </dev/null >"$out" 2>&1
  else
    timeout 300 "$MPIRUN" $MPIRUN_FLAGS -np "$np" "$MPTRAIN_BIN/mptrain-bench" "$@" </dev/null \
      >"$out" 2>&1
  fi
  rc=$?
  if [ $rc -ne 0 ]; then fail "$label: mptrain-bench exits $rc"; tail -5 "$out"; return; fi
  local n; n=$(grep -c '^BENCH ' "$out")
  [ "$n" -eq 1 ] || { fail "$label: $n BENCH lines (expected 1)"; return; }
  local line; line=$(grep '^BENCH ' "$out")
  local missing="" k
  for k in $keys; do
    echo " $line " | grep -q " $k=[^ ]" || missing="$missing $k"
  done
  [ -z "$missing" ] && pass "$label: BENCH line has every key" ||
    fail "$label: BENCH line lacks:$missing"
  # Sanity of the values (tiny model: 4 layers, n_embd 32, seq_len 16, global batch 8).
  echo "$line" | tr ' ' '\n' | awk -F= -v ranks="$ranks" -v vocab="$VOCAB" -v label="$label" '
    NF == 2 { v[$1] = $2 }
    END {
      C = 32; L = 4; T = 16
      params = vocab * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
      bad = ""
      if (v["ranks"] != ranks) bad = bad " ranks=" v["ranks"]
      if (v["params"] != params) bad = bad " params=" v["params"] "(want " params ")"
      if (v["tokens_per_step"] != 8 * T) bad = bad " tokens_per_step=" v["tokens_per_step"]
      if (!(v["ms_min"] > 0 && v["ms_min"] <= v["ms_p25"] && v["ms_p25"] <= v["ms_median"] &&
            v["ms_median"] <= v["ms_p75"] && v["ms_p75"] <= v["ms_max"]))
        bad = bad " ms_min/p25/median/p75/max=" v["ms_min"] "/" v["ms_p25"] "/" v["ms_median"] "/" v["ms_p75"] "/" v["ms_max"]
      if (!(v["tokens_per_s"] > 0 && v["gflops"] > 0 && v["sgemm_gflops"] > 0 && v["pct_sgemm"] > 0))
        bad = bad " rates tokens_per_s=" v["tokens_per_s"] " gflops=" v["gflops"] " sgemm_gflops=" v["sgemm_gflops"]
      if (!(v["ms_matmul"] > 0 && v["ms_profiled"] > 0)) bad = bad " breakdown"
      if (v["allocs_in_step"] != 0) bad = bad " allocs_in_step=" v["allocs_in_step"]
      if (v["comm_check"] != "ok") bad = bad " comm_check=" v["comm_check"]
      if (v["mem_check"] != "ok") bad = bad " mem_check=" v["mem_check"]
      if (!(v["rss_mib_max"] > 0)) bad = bad " rss_mib_max=" v["rss_mib_max"]
      if (bad != "") { print label ":" bad; exit 1 }
    }' && pass "$label: values are consistent" || fail "$label: insane values (above)"
}

VOCAB=64 run_bench "random tokens, 1 rank" 0 1 "$deck" --data.train=random --model.vocab_size=64 \
  --device.threads=2 "${quick[@]}"
VOCAB=256 run_bench "dataset, 1 rank" 0 1 "$deck" --data.train=train.h5 "${quick[@]}"
VOCAB=256 run_bench "dataset, 2 ranks dp=2" 2 2 "$deck" --data.train=train.h5 "${quick[@]}"
# ZeRO-2 with small buckets: the gradient window and the per-micro-batch reduce-scatters must
# match the analytic memory (mem_check) and traffic (comm_check) exactly.
VOCAB=256 run_bench "dataset, 2 ranks dp=2 zero=2" 2 2 "$deck" --data.train=train.h5 \
  --optim.zero=2 --parallel.bucket_mb=0.001 "${quick[@]}"
grep -q "comm wait dp" "bench_dataset,_2_ranks_dp=2.out" &&
  pass "2 ranks: the breakdown reports the DP communication" ||
  fail "2 ranks: no DP communication in the breakdown"

# A bad option is an input error (exit 2) with a message, not a crash.
timeout 60 "$MPTRAIN_BIN/mptrain-bench" "$deck" --bench.stesp=3 >bad.out 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "unknown option --bench.stesp" bad.out &&
  pass "unknown --bench option: exit 2 with a message" || fail "unknown --bench option: exit $rc"
finish
