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

# losses CSV: the loss column of a metrics file, one per line.
losses() { awk -F, 'NR > 1 { print $1 "," $2 }' "$1"; }

# max_rel_diff A.csv B.csv: the largest relative difference between the loss columns, or
# "length" when the files hold different steps.
max_rel_diff() {
  if [ ! -s "$1" ] || [ ! -s "$2" ]; then echo missing; return; fi
  awk -F, 'NR == FNR { if (FNR > 1) a[$1] = $2; next }
           FNR > 1 { n++; if (!($1 in a)) { bad = 1; next }
                     d = a[$1] - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2);
                     if (r > m) m = r; seen++ }
           END { if (bad || seen != n || n != length(a)) print "length"; else printf "%.3e\n", m + 0 }' "$1" "$2"
}

# losses_within A.csv B.csv TOL LABEL
losses_within() {
  local d; d=$(max_rel_diff "$1" "$2")
  if [ "$d" != length ] && [ "$d" != missing ] && awk -v d="$d" -v t="$3" 'BEGIN { exit !(d <= t) }'; then
    pass "$4 (max relative loss difference $d <= $3)"
  else
    fail "$4 (max relative loss difference $d, tolerance $3)"
  fi
}

# losses_identical A.csv B.csv LABEL: byte-identical loss columns.
losses_identical() {
  if [ -s "$1" ] && diff <(losses "$1") <(losses "$2") >/dev/null; then
    pass "$3 (losses bit-identical)"
  else
    fail "$3 (losses differ)"; diff <(losses "$1") <(losses "$2") | head -5
  fi
}
