#!/bin/bash
# Not part of the suite (it measures): the planner's predictions against mptrain-bench on this
# machine (doc/PLANNING.md, "Validation"). For each deck and rank count, every (tp, pp, dp)
# split with micro_batch = min(4, global_batch / dp), zero = 0, is benchmarked; the output has
# one line per layout: measured median ms/step and peak RSS, predicted ms_step and rss_mib.
#   test/plan_validate.sh MACHINE_FILE OUT_DIR [DECK...]
# Run from the build tree root; uses mpirun --oversubscribe --bind-to none, 1 thread per rank.
set -u
machine=$1; out=$2; shift 2
decks=${*:-input/bench-small.deck input/bench-wide.deck input/bench-vocab.deck}
G=8
mkdir -p "$out"
export OMP_NUM_THREADS=1
for deck in $decks; do
  name=$(basename "$deck" .deck)
  for np in 2 4; do
    src/mptrain-plan "$deck" --ranks $np --machine "$machine" --train.global_batch=$G \
      --device.threads=1 >"$out/plan_${name}_$np.txt"
    # the splits: zero 0, recompute none, micro_batch min(4, G/dp)
    grep '^PLAN .* zero=0 recompute=none ' "$out/plan_${name}_$np.txt" |
      awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
             mb = 8 / v["dp"]; if (mb > 4) mb = 4
             if (v["micro_batch"] == mb) print v["tp"], v["pp"], v["dp"], mb, v["ms_step"], v["rss_mib"] }' |
    while read -r tp pp dp mb ms rss; do
      log=$out/bench_${name}_${np}_tp${tp}pp${pp}dp${dp}.txt
      timeout 900 mpirun --oversubscribe --bind-to none -np $np src/mptrain-bench "$deck" \
        --train.global_batch=$G --parallel.tp=$tp --parallel.pp=$pp --parallel.micro_batch=$mb \
        --device.threads=1 --bench.warmup=2 --bench.steps=8 --bench.profile_steps=2 \
        --bench.gemm_trials=2 </dev/null >"$log" 2>&1
      b=$(grep '^BENCH' "$log")
      med=$(echo " $b " | tr ' ' '\n' | sed -n 's/^ms_median=//p')
      peak=$(echo " $b " | tr ' ' '\n' | sed -n 's/^rss_mib_max=//p')
      mem=$(echo " $b " | tr ' ' '\n' | sed -n 's/^mem_mib=//p')
      echo "$name np=$np tp=$tp pp=$pp dp=$dp mb=$mb measured_ms=$med predicted_ms=$ms measured_rss_mib=$peak predicted_rss_mib=$rss buffers_mib=$mem"
    done
  done
done | tee "$out/summary.txt"
