#!/bin/bash
# test/install.sh -- `make install` gives programs that work (issue 12: an installed mptrain
# once failed to start for want of libmptrain.so.0). It installs the build into
# $TEST_WORKDIR/inst with DESTDIR (nothing is written outside the test's directory, so it runs
# under make distcheck too) and then runs every installed program from a bare environment:
# env -i with PATH=/usr/bin:/bin and no LD_LIBRARY_PATH (only Open MPI's session directory,
# kept in the test's directory, and as root its permission to run, are passed on). It checks:
#   * the files installed: the four programs, GPT-2's files in pkgdatadir (the source's own),
#     and no library of ours; ldd of each program names no libmptrain and finds every library;
#   * --help of each program (exit 0, its usage line);
#   * a 2-step training run of input/test-tiny.deck on one process and on 2 ranks under
#     mpirun, on a dataset the installed mptrain-prep wrote; the one-process losses equal, bit
#     for bit, those of the build tree's mptrain; mptrain-ckpt info and verify on its checkpoint;
#   * mptrain-prep --tokenizer=gpt2 with the installed GPT-2 files (found through
#     MPTRAIN_GPT2_DIR, since pkgdatadir is compiled in and DESTDIR moves the files): the same
#     tokens as the build tree's mptrain-prep with the source's files; and that the compiled-in
#     default is pkgdatadir (the files are found there after a real install, or the message
#     names that path).
# Run by test/run-test.sh; Makefile.am passes bindir and pkgdatadir as install_bindir and
# install_pkgdatadir.
. "$top_srcdir/test/lib.sh"

inst=$TEST_WORKDIR/inst
bin=$inst${install_bindir:?Makefile.am passes install_bindir}
data=$inst${install_pkgdatadir:?Makefile.am passes install_pkgdatadir}
programs="mptrain mptrain-prep mptrain-ckpt mptrain-bench"
mkdir -p "$TEST_WORKDIR/mpi"
bare=(env -i PATH=/usr/bin:/bin OMP_NUM_THREADS=1
  OMPI_MCA_orte_tmpdir_base="$TEST_WORKDIR/mpi"
  OMPI_MCA_btl_vader_backing_directory="$TEST_WORKDIR/mpi")
if [ "$(id -u)" = 0 ]; then bare+=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1); fi

# ---- make install (a make of its own: not the jobserver of the make that runs the tests)
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$top_builddir" install DESTDIR="$inst" \
     >install.log 2>&1; then
  pass "make install DESTDIR=$inst"
else
  fail "make install (install.log):"; tail -20 install.log; finish
fi

# ---- what was installed
for p in $programs; do
  if [ ! -x "$bin/$p" ]; then fail "$p is not installed in $bin"; continue; fi
  ldd "$bin/$p" >"ldd.$p" 2>&1
  if grep -q libmptrain "ldd.$p" || grep -q "not found" "ldd.$p"; then
    fail "$p needs a library it cannot find or one of ours: $(grep -E 'libmptrain|not found' "ldd.$p")"
  else
    pass "$p: ldd names no libmptrain and finds every library"
  fi
done
ours=$(find "$inst" -name 'libmptrain*')
[ -z "$ours" ] && pass "no library of ours installed" || fail "installed: $ours"
for f in encoder.json vocab.bpe LICENSE; do
  cmp -s "$data/gpt2/$f" "$top_srcdir/input/gpt2/$f" && pass "GPT-2's $f installed in pkgdatadir" ||
    fail "$data/gpt2/$f is missing or differs from input/gpt2/$f"
done

# ---- each program from a bare environment
for p in $programs; do
  "${bare[@]}" "$bin/$p" --help >"help.$p" 2>&1
  rc=$?
  [ $rc -eq 0 ] && grep -q "^usage: $p" "help.$p" && pass "$p --help" ||
    { fail "$p --help exits $rc"; head -5 "help.$p"; }
done

texts=(/usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0)
"${bare[@]}" "$bin/mptrain-prep" -o train.h5 --val-output val.h5 "${texts[@]}" >prep.out 2>&1 &&
  pass "installed mptrain-prep writes the datasets" || { fail "mptrain-prep"; cat prep.out; finish; }
deck=$top_srcdir/input/test-tiny.deck
train=(--train.steps=2 --checkpoint.dir=ck --log.metrics=installed.csv)
"${bare[@]}" "$bin/mptrain" "$deck" "${train[@]}" >run.out 2>&1
rc=$?
[ $rc -eq 0 ] && [ -f ck/step_00000002.h5 ] && [ "$(wc -l <installed.csv)" -eq 3 ] &&
  pass "installed mptrain trains 2 steps on one process" ||
  { fail "installed mptrain exits $rc"; tail -5 run.out; }
"$MPTRAIN_BIN/mptrain" "$deck" --train.steps=2 --checkpoint.dir=ck_build \
  --log.metrics=build.csv >build.out 2>&1 || fail "the build tree's mptrain exits $?"
losses_identical build.csv installed.csv "installed and build-tree mptrain"
# shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of flags
"${bare[@]}" "$MPIRUN" $MPIRUN_FLAGS -np 2 "$bin/mptrain" "$deck" --parallel.tp=2 --train.steps=2 \
  --checkpoint.dir=ck2 </dev/null >run2.out 2>&1
rc=$?
[ $rc -eq 0 ] && [ -f ck2/step_00000002.h5 ] && pass "installed mptrain trains 2 steps on 2 ranks" ||
  { fail "installed mptrain on 2 ranks exits $rc"; tail -5 run2.out; }
"${bare[@]}" "$bin/mptrain-ckpt" info ck/step_00000002.h5 >info.out 2>&1 &&
  grep -Eq '^step +2 ' info.out && pass "installed mptrain-ckpt info" ||
  { fail "mptrain-ckpt info"; head -5 info.out; }
"${bare[@]}" "$bin/mptrain-ckpt" verify ck2/step_00000002.h5 >verify.out 2>&1 &&
  grep -q '^OK ' verify.out && pass "installed mptrain-ckpt verify" || { fail "verify"; cat verify.out; }

# ---- GPT-2 BPE with the installed files
corpus=$top_srcdir/test/gpt2/corpus.txt
"${bare[@]}" MPTRAIN_GPT2_DIR="$data/gpt2" "$bin/mptrain-prep" --tokenizer=gpt2 -o g.h5 "$corpus" \
  >g.out 2>&1 || fail "installed mptrain-prep --tokenizer=gpt2 exits $?: $(cat g.out)"
"$MPTRAIN_BIN/mptrain-prep" --tokenizer=gpt2 --encoder="$top_srcdir/input/gpt2/encoder.json" \
  --merges="$top_srcdir/input/gpt2/vocab.bpe" -o g.h5 "$corpus" >g_build.out 2>&1 ||
  fail "the build tree's mptrain-prep --tokenizer=gpt2 exits $?"
summary() { sed 's/; [0-9.]* s, [0-9.]* MB\/s//' "$1"; }  # without the timing
if grep -q "(tokenizer gpt2, vocab_size 50257" g.out && [ "$(summary g.out)" = "$(summary g_build.out)" ]; then
  pass "installed GPT-2 files: $(summary g.out)"
else
  fail "installed GPT-2 files: '$(cat g.out)' vs the build tree's '$(cat g_build.out)'"
fi
"${bare[@]}" "$bin/mptrain-prep" --tokenizer=gpt2 -o g2.h5 "$corpus" >default.out 2>&1
rc=$?
default=$install_pkgdatadir/gpt2/encoder.json
if [ -f "$default" ]; then  # mptrain is really installed with this prefix
  [ $rc -eq 0 ] && pass "the compiled-in GPT-2 files ($default) are found" ||
    fail "mptrain-prep does not find $default: $(cat default.out)"
else
  [ $rc -eq 2 ] && grep -qF "is not at $default" default.out &&
    pass "the compiled-in GPT-2 directory is pkgdatadir ($default; not installed there)" ||
    fail "the compiled-in GPT-2 directory is not pkgdatadir: exit $rc, $(cat default.out)"
fi
finish
