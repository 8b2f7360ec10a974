#!/bin/bash
# test/fuzz_run.sh -- builds the libFuzzer harnesses in test/fuzz/ with clang (AddressSanitizer
# and UndefinedBehaviorSanitizer) and runs each for a bounded time:
#   fuzz_deck        bytes -> parse_deck_text (+ overrides after a NUL byte); only InputError
#                    may escape, and a parsed deck's resolved text must round-trip
#   fuzz_dataset     bytes -> a file -> TokenDataset::load; only InputError may escape
#   fuzz_checkpoint  bytes -> a file -> read_checkpoint_meta, the stored deck, the /model
#                    tensors; only CheckpointError may escape
# Each starts from its seed corpus (test/fuzz/corpus/NAME), after replaying the inputs that
# once broke mptrain (test/fuzz/regressions/NAME: each must now run cleanly) and those that
# crash HDF5 itself (test/fuzz/upstream/NAME: noted, not failed). The fuzzing runs in libFuzzer's
# fork mode, so a finding ends one job and not the run; every finding is then replayed and
# blamed by its stack: on mptrain (a crash or sanitizer report in the project's code or the
# harness, an escaping exception, an out-of-memory caused by the project's own allocation: the
# test fails) or on HDF5/MPI (the failure happens inside the library on a malformed file: a
# NOTE, since mptrain cannot fix it there). The inputs stay in $TEST_WORKDIR/artifacts; one that
# broke mptrain belongs in test/fuzz/regressions/NAME/ once fixed. The number of executions
# of each harness is printed.
#
# The library's sources are compiled here, with clang, into $TEST_WORKDIR (the project's own
# libmptrain is built by g++ without sanitizers, which libFuzzer cannot instrument). The MPI
# wrapper of the build (CXX in the Makefile) is pointed at clang++ with OMPI_CXX/MPICH_CXX;
# HDF5 and Boost flags come from the Makefile too, so the harnesses link what mptrain links.
#
# Without clang or libFuzzer (Debian: apt-get install clang libclang-rt-14-dev) the test is
# skipped (77), unless CI=true, where that is a failure.
#   MPTRAIN_FUZZ_SECONDS  seconds per harness (default 10)
#   MPTRAIN_FUZZ_SEED     libFuzzer's -seed (default 1)
#   MPTRAIN_FUZZ_CXX      the clang++ to use (default: clang++, then clang++-19 ... -14)
set -u

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
work=${TEST_WORKDIR:-$(mktemp -d)}
cd "$work" || exit 99
seconds=${MPTRAIN_FUZZ_SECONDS:-10}
seed=${MPTRAIN_FUZZ_SEED:-1}
fuzz_dir=$top_srcdir/test/fuzz
harnesses=(deck dataset checkpoint)

unavailable() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: $* (CI=true: the fuzzers must run in CI)"
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}

# ---------------------------------------------------------------- the compiler

clangxx=${MPTRAIN_FUZZ_CXX:-}
if [ -z "$clangxx" ]; then
  for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then clangxx=$c; break; fi
  done
fi
[ -n "$clangxx" ] || unavailable "no clang++ found (Debian: apt-get install clang libclang-rt-14-dev)"

# A value from the configured Makefile (libtool's -R DIR becomes an rpath for the compiler).
makefile=$top_builddir/Makefile
make_var() {
  [ -f "$makefile" ] || return 0
  sed -n "s/^$1 = //p" "$makefile" | head -1 | sed -e 's/-R *\([^ ]*\)/-Wl,-rpath,\1/g'
}
# CXX may carry flags (configure can append -std=c++20): a command and its arguments.
read -r -a mpicxx <<<"$(make_var CXX)"
[ ${#mpicxx[@]} -gt 0 ] || mpicxx=(mpicxx)
hdf5_cppflags=$(make_var HDF5_CPPFLAGS)
hdf5_ldflags=$(make_var HDF5_LDFLAGS)
hdf5_libs=$(make_var HDF5_LIBS)
if [ ! -f "$makefile" ] && command -v pkg-config >/dev/null 2>&1 && pkg-config --exists hdf5-openmpi; then
  hdf5_cppflags=$(pkg-config --cflags-only-I hdf5-openmpi)
  hdf5_ldflags=$(pkg-config --libs-only-L hdf5-openmpi)
  hdf5_libs=$(pkg-config --libs-only-l hdf5-openmpi)
fi
hdf5_libs=${hdf5_libs:--lhdf5}
boost_cppflags=$(make_var BOOST_CPPFLAGS)
boost_ldflags=$(make_var BOOST_LDFLAGS)
boost_libs=$(make_var BOOST_PROGRAM_OPTIONS_LIBS)
boost_libs=${boost_libs:--lboost_program_options}
project_cppflags=$(make_var MPTRAIN_CPPFLAGS)

# The MPI wrapper driving clang: Open MPI reads OMPI_CXX, MPICH reads MPICH_CXX.
export OMPI_CXX=$clangxx MPICH_CXX=$clangxx
if ! "${mpicxx[@]}" --version 2>/dev/null | grep -qi clang; then
  unavailable "the MPI wrapper '${mpicxx[*]}' does not switch to $clangxx (OMPI_CXX/MPICH_CXX)"
fi

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"
# -O0 compiles fastest (Boost.Program_options is heavy); line tables are enough for stacks.
cxxflags="-std=c++20 -O0 -gline-tables-only -fno-omit-frame-pointer $sanitize"
# shellcheck disable=SC2086  # flag lists
cppflags="-I$top_srcdir/include -I$top_srcdir/src $project_cppflags $hdf5_cppflags $boost_cppflags"
# shellcheck disable=SC2086
ldlibs="$hdf5_ldflags $hdf5_libs $boost_ldflags $boost_libs"

echo "== compiler: ${mpicxx[*]} -> $("${mpicxx[@]}" --version | head -1)"
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >probe.cpp
# shellcheck disable=SC2086
if ! "${mpicxx[@]}" $cxxflags -fsanitize=fuzzer probe.cpp -o probe >probe.log 2>&1; then
  cat probe.log
  unavailable "clang cannot link -fsanitize=fuzzer (Debian: apt-get install libclang-rt-14-dev)"
fi

# ---------------------------------------------------------------- building

# The library sources the harnesses exercise, compiled with the sanitizers and coverage (all
# checkpoint*.cpp: the reader may be split). Anything else they happen to reference comes,
# uninstrumented, from the build's own libmptrain, linked after them as a fallback (the
# definitions in the objects take precedence).
sources=(src/error.cpp src/comm.cpp src/h5util.cpp src/deck.cpp src/data.cpp src/init.cpp)
for f in "$top_srcdir"/src/checkpoint*.cpp; do sources+=("src/${f##*/}"); done
fallback=()
libs_dir=$top_builddir/.libs
if [ -f "$libs_dir/libmptrain.so" ]; then
  fallback=("-L$libs_dir" -lmptrain "-Wl,-rpath,$libs_dir")
elif [ -f "$libs_dir/libmptrain.a" ]; then
  # shellcheck disable=SC2206  # a flag list
  fallback=("$libs_dir/libmptrain.a" $(make_var BLAS_LIBS) -lgomp)
fi

echo "== compiling ${#sources[@]} library sources and ${#harnesses[@]} harnesses (ASan + UBSan + coverage)"
started=$SECONDS
mkdir -p obj
build_failed=no
compile() {  # SOURCE OBJECT EXTRA_FLAGS
  # shellcheck disable=SC2086
  "${mpicxx[@]}" $cxxflags $3 $cppflags -c "$1" -o "$2" >"$2.log" 2>&1 || { cat "$2.log"; return 1; }
}
pids=()
objects=()
for s in "${sources[@]}"; do
  o=obj/$(basename "$s" .cpp).o
  objects+=("$o")
  compile "$top_srcdir/$s" "$o" -fsanitize=fuzzer-no-link &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || build_failed=yes; pids=("${pids[@]:1}"); fi
done
for h in "${harnesses[@]}"; do
  compile "$fuzz_dir/fuzz_$h.cpp" "obj/fuzz_$h.o" -fsanitize=fuzzer-no-link &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || build_failed=yes; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || build_failed=yes; done
if [ "$build_failed" = no ]; then
  for h in "${harnesses[@]}"; do
    # shellcheck disable=SC2086
    "${mpicxx[@]}" $cxxflags -fsanitize=fuzzer "obj/fuzz_$h.o" "${objects[@]}" "${fallback[@]}" $ldlibs -o "fuzz_$h" \
      >"link_$h.log" 2>&1 || { cat "link_$h.log"; build_failed=yes; }
  done
fi
if [ "$build_failed" = yes ]; then
  echo "FAIL: the harnesses do not build with $clangxx"
  exit 1
fi
echo "== built in $((SECONDS - started))s"

# ---------------------------------------------------------------- running

# Open MPI leaks by design: leak checking is off. UBSan stops at the first report
# (-fno-sanitize-recover). A failed allocation returns null (HDF5 checks), instead of aborting.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048)

# whose LOG: who is to blame for the failure a replay log reports: "ours" (the project's code
# or the harness), "upstream" (the first frame that is neither a sanitizer, libFuzzer nor libc
# frame lies in HDF5 or MPI: a defect of that library on a malformed file), or "none".
whose() {
  awk '
    /runtime error:/ { print "ours"; found = 1; exit }
    /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)/ { trace = 1; next }
    /terminate called|uncaught exception/ { print "ours"; found = 1; exit }
    trace && /^ *#[0-9]+ / {
      if ($0 ~ /__interceptor_|__asan|__sanitizer|__ubsan|fuzzer::|libclang_rt|compiler-rt|libc\.so|libc_start|sysdeps\/|__GI_|__mem[a-z_]*|__str[a-z_]*|[( ]raise|[( ]abort|[( ]malloc|[( ]calloc|[( ]realloc|operator new|libstdc\+\+|__cxa_|__gnu_cxx::__verbose|std::terminate/) next
      print ($0 ~ /libhdf5|libmpi|libopen-pal|libopen-rte|mca_/) ? "upstream" : "ours"
      found = 1; exit
    }
    END { if (!found) print "none" }' "$1"
}

status=0
upstream_found=0
mkdir -p artifacts
for h in "${harnesses[@]}"; do
  # Inputs that once found a bug in mptrain: each must now run cleanly.
  for f in "$fuzz_dir/regressions/$h"/*; do
    [ -f "$f" ] || continue
    if "./fuzz_$h" "${limits[@]}" "$f" >replay.log 2>&1; then
      echo "PASS: fuzz_$h: regression ${f##*/} runs cleanly"
    else
      echo "FAIL: fuzz_$h: regression ${f##*/} fails again:"; tail -30 replay.log; status=1
    fi
  done
  # Inputs that crash HDF5 itself (test/fuzz/upstream/NAME): still crashing there is noted;
  # a failure in mptrain's own code is not.
  for f in "$fuzz_dir/upstream/$h"/*; do
    [ -f "$f" ] || continue
    if "./fuzz_$h" "${limits[@]}" "$f" >replay.log 2>&1; then
      echo "NOTE: fuzz_$h: upstream case ${f##*/} is now refused cleanly (move it to regressions/)"
    elif [ "$(whose replay.log)" = upstream ]; then
      echo "NOTE: fuzz_$h: upstream case ${f##*/} still fails inside HDF5/MPI: $(grep -m1 -E 'ERROR: |SUMMARY: ' replay.log)"
    else
      echo "FAIL: fuzz_$h: upstream case ${f##*/} now fails in mptrain:"; tail -30 replay.log; status=1
    fi
  done

  # Fork mode: a crash ends one job, not the run; each finding is classified afterwards.
  rm -rf "corpus_$h" "artifacts/$h" && mkdir "corpus_$h" "artifacts/$h"
  "./fuzz_$h" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -print_funcs=0 \
    -max_total_time="$seconds" "${limits[@]}" -seed="$seed" -artifact_prefix="artifacts/$h/" \
    "corpus_$h" "$fuzz_dir/corpus/$h" >"fuzz_$h.log" 2>&1
  rc=$?
  runs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "fuzz_$h.log" | tail -1)
  cov=$(sed -n 's/^#[0-9]*: \(cov: [0-9]*\).*/\1/p' "fuzz_$h.log" | tail -1)
  summary="fuzz_$h: ${runs:-?} executions in ${seconds}s (${cov:-cov: ?}, $(ls "corpus_$h" | wc -l) new inputs)"
  # A job that found something makes libFuzzer exit non-zero even in fork mode: only an exit
  # without any finding means libFuzzer itself failed.
  if [ "$rc" -ne 0 ] && [ -z "$(ls "artifacts/$h")" ]; then
    echo "FAIL: $summary; libFuzzer exited $rc:"; tail -30 "fuzz_$h.log"; status=1; continue
  fi
  ours=0
  for a in "artifacts/$h"/*; do
    [ -f "$a" ] || continue
    "./fuzz_$h" "${limits[@]}" "$a" >"$a.log" 2>&1
    blame=$(whose "$a.log")
    what=$(grep -v 'Running [0-9]* inputs' "$a.log" | grep -m1 -E 'ERROR: |runtime error:|terminate called|fuzz_[a-z]*: ')
    if [ "$blame" = upstream ]; then
      upstream_found=$((upstream_found + 1))
      echo "NOTE: fuzz_$h: an input crashes HDF5/MPI itself (upstream): $what"
      echo "      reproducer: $work/$a (log: $a.log)"
    else
      ours=$((ours + 1))
      echo "FAIL: fuzz_$h: an input breaks mptrain's contract: ${what:-see the log}"
      echo "      reproducer: $work/$a (log: $a.log); once fixed, add it to test/fuzz/regressions/$h/"
      grep -E '^ *#[0-9]+ ' "$a.log" | head -12
    fi
  done
  if [ "$ours" -eq 0 ]; then echo "PASS: $summary"; else echo "FAIL: $summary"; status=1; fi
done
[ "$upstream_found" -eq 0 ] ||
  echo "($upstream_found input(s) crash HDF5/MPI, not mptrain: noted above, not counted as failures)"
exit "$status"
