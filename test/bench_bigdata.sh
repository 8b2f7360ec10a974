#!/bin/bash
# test/bench_bigdata.sh -- memory of training on a corpus far larger than a step needs (issue 13:
# a rank reads only the token spans its rows need, so memory must not grow with the corpus).
# Not in the suite: it writes about 0.8 GB and takes a few minutes on two cores.
#
# Two corpora of random uint16 tokens (vocab_size 65536, so every uint16 is a token): 200 M
# tokens (400 MB) and 1 M tokens, each imported twice with mptrain-prep: as external storage
# (--import=raw-u16: /tokens points into the raw file) and copied (--copy: chunked, Fletcher32,
# as mptrain-prep writes text). mptrain-bench runs a few steps of a small model on each, with
# the sequential and the shuffle sampler, on 1 rank and on 2 (dp = 2); its BENCH line reports
# rss_mib_max, the largest peak RSS (getrusage ru_maxrss) over the ranks. A check fails when a
# run on 200 M tokens peaks more than 50 MiB above the same run on 1 M.
#
# usage: test/bench_bigdata.sh [WORKDIR]   (from the build tree, or with top_builddir and
#        top_srcdir set; WORKDIR defaults to test/work/bench_bigdata and is kept for reuse)
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$top_builddir}
workdir=${1:-$top_builddir/test/work/bench_bigdata}
MPTRAIN_BIN=$(cd "$top_builddir/src" && pwd)
deck=$(cd "$top_srcdir/input" && pwd)/test-tiny.deck
MPIRUN=${MPIRUN:-mpirun}
MPIRUN_FLAGS=${MPIRUN_FLAGS:---oversubscribe}
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1
mkdir -p "$workdir" && cd "$workdir" || exit 1

failures=0
# make_corpus NAME TOKENS: NAME.u16 (random), NAME-ext.h5 (external) and NAME-copy.h5 (copied).
make_corpus() {
  local name=$1 tokens=$2
  [ -f "$name-copy.h5" ] && [ -f "$name-ext.h5" ] && return 0
  head -c $((2 * tokens)) /dev/urandom >"$name.u16" &&
    "$MPTRAIN_BIN/mptrain-prep" --import=raw-u16 --vocab-size=65536 -o "$name-ext.h5" \
      "$name.u16" >/dev/null &&
    "$MPTRAIN_BIN/mptrain-prep" --import=raw-u16 --vocab-size=65536 --copy -o "$name-copy.h5" \
      "$name.u16" >/dev/null
}
echo "making the corpora in $workdir"
make_corpus big 200000000 && make_corpus small 1000000 || { echo "FAIL: mptrain-prep"; exit 1; }
ls -l big.u16 big-ext.h5 big-copy.h5 small-ext.h5 small-copy.h5

# A batch of 16 x 64 tokens: the shuffle sampler keeps its epoch's order (24 bytes per batch
# while it is made), 200 M / 1024 = 195 Ki batches here.
model=(--model.seq_len=64 --train.global_batch=16 --parallel.micro_batch=8 --data.val=)
quick=(--bench.warmup=2 --bench.steps=5 --bench.profile_steps=0 --bench.gemm_trials=1
       --bench.gemm_seconds=0.001)
# rss NP DATA SAMPLER: rss_mib_max of one mptrain-bench run (empty when it failed).
rss() {
  local np=$1 data=$2 sampler=$3 out=bench-$1-$2-$3.out launcher=()
  [ "$np" -gt 1 ] && launcher=("$MPIRUN" $MPIRUN_FLAGS -np "$np")
  timeout 900 "${launcher[@]}" "$MPTRAIN_BIN/mptrain-bench" "$deck" "${model[@]}" "${quick[@]}" \
    --data.train="$data.h5" --data.sampler="$sampler" </dev/null >"$out" 2>&1 ||
    { echo "mptrain-bench failed: see $workdir/$out" >&2; return; }
  grep '^BENCH ' "$out" | tr ' ' '\n' | sed -n 's/^rss_mib_max=//p'
}

printf '%-6s %-5s %-10s %12s %12s %10s\n' ranks store sampler "1M MiB" "200M MiB" "diff MiB"
for np in 1 2; do
  for store in copy ext; do
    for sampler in sequential shuffle; do
      small_rss=$(rss $np small-$store $sampler)
      big_rss=$(rss $np big-$store $sampler)
      if [ -z "$small_rss" ] || [ -z "$big_rss" ]; then
        echo "FAIL: $np rank(s), $store, $sampler: no rss_mib_max"; failures=$((failures + 1))
        continue
      fi
      diff=$(awk -v a="$small_rss" -v b="$big_rss" 'BEGIN { printf "%.1f", b - a }')
      verdict=$(awk -v d="$diff" 'BEGIN { print (d <= 50) ? "ok" : "OVER 50 MiB" }')
      printf '%-6s %-5s %-10s %12s %12s %10s  %s\n' $np $store $sampler "$small_rss" "$big_rss" \
        "$diff" "$verdict"
      [ "$verdict" = ok ] || failures=$((failures + 1))
    done
  done
done
[ $failures -eq 0 ] && echo "all runs within 50 MiB" || { echo "$failures run(s) failed"; exit 1; }
