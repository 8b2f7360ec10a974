# test/lib.sh -- helpers shared by the end-to-end shell tests (sourced, not run).
# They drive the real programs in $MPTRAIN_BIN (default: $top_builddir/src) inside
# $TEST_WORKDIR, the scratch directory test/run-test.sh gives every test.
set -u
MPTRAIN_BIN=${MPTRAIN_BIN:-${top_builddir:-.}/src}
MPIRUN=${MPIRUN:-mpirun}
MPIRUN_FLAGS=${MPIRUN_FLAGS:---oversubscribe}
top_srcdir=${top_srcdir:-.}
cd "${TEST_WORKDIR:-.}"

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
finish() {
  if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
  echo "all checks passed"; exit 0
}

# Byte-level datasets from licence texts every Debian machine has.
make_data() {
  [ -f train.h5 ] && return 0
  "$MPTRAIN_BIN/mptrain-prep" -o train.h5 --val-output val.h5 \
    /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 >/dev/null
}

# run_mptrain NP ARGS... : runs mptrain on NP ranks (NP=0: without a launcher), output to the
# file named by $OUT (default run.out); returns mptrain's exit code.
run_mptrain() {
  local np=$1; shift
  if [ "$np" -eq 0 ]; then
    timeout -k 10 300 "$MPTRAIN_BIN/mptrain" "$@" </dev/null >"${OUT:-run.out}" 2>&1
  else
    # mpirun forwards stdin to rank 0: keep it away from the caller's (a `while read` loop).
    timeout -k 10 300 "$MPIRUN" $MPIRUN_FLAGS -np "$np" "$MPTRAIN_BIN/mptrain" "$@" </dev/null \
      >"${OUT:-run.out}" 2>&1
  fi
}

# losses CSV: the step and loss columns of a metrics file, "step,loss" one a line.
losses() { awk -F, 'NR > 1 { print $1 "," $2 }' "$1"; }

# compare_losses A.csv B.csv: the largest relative difference between the loss columns
# (|a - b| / |b|, or |a - b| where b = 0), or why there is none: "missing" (a file is absent
# or empty), "nonfinite" (a loss or step is not a finite number: nan, inf, empty), "length"
# (the files hold different steps, or no step at all).
compare_losses() {
  if [ ! -s "$1" ] || [ ! -s "$2" ]; then echo missing; return; fi
  awk -F, '
    function finite(x) { return x ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
    FNR == 1 { next }
    !finite($1) || !finite($2) { nonfinite = 1; next }
    NR == FNR { if ($1 in a) dup = 1; a[$1] = $2; na++; next }
    { nb++; if (!($1 in a) || ($1 in b)) { bad = 1; next }
      b[$1] = 1; d = a[$1] - $2; if (d < 0) d = -d
      r = $2 == 0 ? d : d / ($2 < 0 ? -$2 : $2); if (r > m) m = r }
    END {
      if (nonfinite) print "nonfinite"
      else if (dup || bad || na != nb || na == 0) print "length"
      else printf "%.3e\n", m + 0 }' "$1" "$2"
}

# losses_within A.csv B.csv TOL LABEL: the same steps, every loss finite, and the largest
# relative difference <= TOL.
losses_within() {
  local d; d=$(compare_losses "$1" "$2")
  case $d in
    missing | nonfinite | length) fail "$4 (losses: $d; $1 vs $2)"; return 1 ;;
  esac
  if awk -v d="$d" -v t="$3" 'BEGIN { exit !(d <= t) }'; then
    pass "$4 (max relative loss difference $d <= $3)"
  else
    fail "$4 (max relative loss difference $d > tolerance $3)"; return 1
  fi
}

# losses_identical A.csv B.csv LABEL: the same steps, every loss finite, the loss columns
# byte for byte the same (as printed: %.9g; pair it with ckpt_identical, which compares the
# trained state bit for bit).
losses_identical() {
  local d; d=$(compare_losses "$1" "$2")
  case $d in
    missing | nonfinite | length) fail "$3 (losses: $d; $1 vs $2)"; return 1 ;;
  esac
  if diff <(losses "$1") <(losses "$2") >/dev/null; then
    pass "$3 (losses bit-identical, $(($(wc -l <"$1") - 1)) steps)"
  else
    fail "$3 (losses differ, max relative difference $d)"; diff <(losses "$1") <(losses "$2") | head -5
    return 1
  fi
}

# ckpt_identical A.h5 B.h5 LABEL: every tensor of the model and of the AdamW state
# (/model, /optim/m, /optim/v), and the resume state (step, tokens, sampler, RNG, AdamW
# step), bit for bit (mptrain-ckpt diff --tol 0 --state).
ckpt_identical() {
  local out; out=ckdiff-$(printf '%s' "$3" | tr -c 'A-Za-z0-9' _ | cut -c1-60).out
  if [ -f "$1" ] && [ -f "$2" ] &&
     "$MPTRAIN_BIN/mptrain-ckpt" diff --tol 0 --state "$1" "$2" >"$out" 2>&1; then
    pass "$3 (checkpoints bit-identical: $(grep '^MATCH' "$out"))"
  else
    fail "$3 (checkpoints $1 and $2 differ, see $out)"
    grep -E 'DIFFERS|only in|^DIFFERENT|error' "$out" | head -5
    return 1
  fi
}

# ckpt_within A.h5 B.h5 TOL LABEL [DIFF_OPTIONS]: every element within TOL, absolute or
# relative (mptrain-ckpt diff --tol TOL); prints the largest absolute difference.
ckpt_within() {
  local out; out=ckdiff-$(printf '%s' "$4" | tr -c 'A-Za-z0-9' _ | cut -c1-60).out
  local a=$1 b=$2 tol=$3 label=$4
  shift 4
  if [ -f "$a" ] && [ -f "$b" ] &&
     "$MPTRAIN_BIN/mptrain-ckpt" diff --tol "$tol" "$@" "$a" "$b" >"$out" 2>&1; then
    pass "$label (checkpoints within $tol: max |a-b| $(ckpt_max_abs "$out"))"
  else
    fail "$label (checkpoints beyond $tol: max |a-b| $(ckpt_max_abs "$out"), see $out)"
    grep -E 'DIFFERS|only in|^DIFFERENT|error' "$out" | head -5
    return 1
  fi
}

# ckpt_max_abs DIFF_OUTPUT: the largest max_abs column of an mptrain-ckpt diff report.
ckpt_max_abs() {
  awk '$1 ~ /^\// && $3 != "-" { if ($3 + 0 > m) m = $3 + 0; n++ }
       END { if (n) printf "%.3e", m; else printf "none" }' "$1"
}

# is_finite X: X is a finite decimal number (not nan, inf or empty).
is_finite() { [[ $1 =~ ^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]]; }

# wait_for_files SECONDS FILE...: waits until every FILE exists (the markers of ranks paused
# by --test-hook=pause: waiting for a stopped run, never racing a running one); the bound
# only catches a run that never gets there.
wait_for_files() {
  local limit=$1 f
  shift
  local deadline=$((SECONDS + limit))
  for f in "$@"; do
    until [ -s "$f" ]; do
      [ "$SECONDS" -ge "$deadline" ] && return 1
      sleep 0.1
    done
  done
}

# running PID...: true while any PID is a live process (a zombie awaiting its reaping by
# PID 1 has ended and does not count).
running() {
  local p state
  for p in "$@"; do
    state=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && return 0
  done
  return 1
}
