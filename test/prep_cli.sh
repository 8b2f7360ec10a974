#!/bin/bash
# End-to-end test of mptrain-prep: byte-level datasets from several text files, the train /
# validation split at the end of the concatenated bytes, the one-line summary, and each kind of
# mistake refused with a message and exit status 2. Run by test/run-test.sh (in its own work
# directory); the token values, the filter and the file format are checked with h5dump
# (hdf5-tools; without it that part is skipped, or fails under MPTRAIN_NO_SKIP=1). The
# library's reading of datasets is covered by test_data.
set -u

prep=${top_builddir:-.}/src/mptrain-prep
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_error FRAGMENT ARGS...: mptrain-prep ARGS must exit 2 printing FRAGMENT on stderr.
expect_error() {
  local fragment=$1
  shift
  "$prep" "$@" >stdout.txt 2>stderr.txt
  local status=$?
  if [ "$status" -ne 2 ]; then
    fail "mptrain-prep $* exited $status, expected 2"
  elif ! grep -qF -- "$fragment" stderr.txt; then
    fail "mptrain-prep $*: stderr lacks '$fragment': $(cat stderr.txt)"
  fi
}

printf 'hello world\n' >a.txt             # 12 bytes
printf 'second file, more text\n' >b.txt  # 23 bytes
: >empty.txt

# Train only: every byte of both files.
if "$prep" -o all.h5 a.txt b.txt >summary.txt; then
  grep -qF "2 files, 35 bytes -> all.h5: 35 train tokens" summary.txt ||
    fail "unexpected summary: $(cat summary.txt)"
else
  fail "mptrain-prep -o all.h5 a.txt b.txt failed"
fi

# 20% of 35 bytes = 7 validation tokens: the last 7 bytes, " text\n" preceded by "e".
if "$prep" -o train.h5 --val-output val.h5 --val-fraction 0.2 a.txt b.txt >summary.txt; then
  grep -qF "train.h5: 28 train tokens, val.h5: 7 val tokens" summary.txt ||
    fail "unexpected summary: $(cat summary.txt)"
else
  fail "mptrain-prep with --val-output failed"
fi

# The default fraction is 0.1: 35 * 0.1 = 3.5 rounds to 4.
"$prep" -o t10.h5 --val-output v10.h5 a.txt b.txt >summary.txt || fail "default fraction run failed"
grep -qF "31 train tokens, v10.h5: 4 val tokens" summary.txt ||
  fail "unexpected default-fraction summary: $(cat summary.txt)"

if command -v h5dump >/dev/null 2>&1; then
  # The stored values: bytes of "e text\n" = 101 32 116 101 120 116 10, with vocab_size 256.
  # (the first DATA block is the dataset's; the attribute's comes after it)
  values=$(h5dump -d /tokens -y -w 0 val.h5 |
    awk '/DATA \{/ { inside = 1; next } inside && /\}/ { exit } inside' | tr -s ' ,\n' ' ')
  [ "$(echo $values)" = "101 32 116 101 120 116 10" ] || fail "val.h5 holds '$values'"
  h5dump -a /tokens/vocab_size val.h5 | grep -q "256" || fail "val.h5 lacks vocab_size 256"
  h5dump -p -H val.h5 | grep -q "FLETCHER32" || fail "val.h5 lacks the Fletcher32 filter"
  # The HDF5 1.8 format, whose metadata carries checksums (README: damaged files).
  h5dump -B -H val.h5 | grep -q "SUPERBLOCK_VERSION 2" || fail "val.h5 is not in the HDF5 1.8 format"
elif [ "${MPTRAIN_NO_SKIP:-}" = 1 ]; then
  fail "h5dump not found (hdf5-tools): the stored values cannot be checked (MPTRAIN_NO_SKIP=1)"
else
  echo "SKIP: h5dump not found (hdf5-tools): not checking the stored values"
fi

expect_error "cannot read 'missing.txt'" -o x.h5 missing.txt
expect_error "cannot read '.'" -o x.h5 .
expect_error "no bytes" -o x.h5 empty.txt
expect_error "no input text files" -o x.h5
expect_error "-o/--output FILE is required" a.txt
expect_error "strictly between 0 and 1" -o x.h5 --val-output y.h5 --val-fraction 1.5 a.txt
expect_error "strictly between 0 and 1" -o x.h5 --val-output y.h5 --val-fraction=0 a.txt
expect_error "--val-fraction" -o x.h5 --val-output y.h5 --val-fraction abc a.txt
expect_error "needs --val-output" -o x.h5 --val-fraction 0.5 a.txt
expect_error "leaves no validation tokens" -o x.h5 --val-output y.h5 --val-fraction 0.01 a.txt
expect_error "same file" -o x.h5 --val-output x.h5 a.txt
expect_error "unrecognised option" -o x.h5 --bogus a.txt
expect_error "no-such-dir/x.h5" -o no-such-dir/x.h5 a.txt

"$prep" --help >help.txt || fail "--help failed"
grep -qF "usage: mptrain-prep" help.txt || fail "--help prints no usage"

if [ "$failures" -ne 0 ]; then
  echo "prep_cli.sh: $failures failure(s)" >&2
  exit 1
fi
echo "prep_cli.sh: all checks passed"
