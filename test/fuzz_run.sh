#!/bin/bash
# test/fuzz_run.sh -- builds the libFuzzer harnesses in test/fuzz/ with clang (AddressSanitizer
# and UndefinedBehaviorSanitizer) and runs each for a bounded time:
#   fuzz_deck        bytes -> parse_deck_text (+ overrides after a NUL byte); only InputError
#                    may escape, and a parsed deck's resolved text must round-trip
#   fuzz_dataset     bytes -> a file -> TokenDataset::load; only InputError may escape
#   fuzz_checkpoint  bytes -> a file -> the whole restart read: read_checkpoint_meta (with the
#                    /optim step), the stored deck, check_checkpoint_model, and every tensor
#                    of /model, /optim/m and /optim/v; only CheckpointError may escape
#   fuzz_safetensors bytes -> the safetensors reader, in memory and from a file; only
#                    InputError may escape, and the two readings must agree
# For each harness, in order:
#   1. the inputs that once broke mptrain (test/fuzz/regressions/NAME/) must run cleanly, and
#      where X.expect sits beside input X, be refused with a message containing its first line;
#   2. each documented HDF5 defect (test/fuzz/upstream/NAME/X.h5, described in X.txt, whose
#      "signature:" line names the failure) must still fail inside HDF5 with that signature:
#      one that runs cleanly, or fails otherwise, fails the test (the description is stale);
#   3. libFuzzer runs from the seed corpus (test/fuzz/corpus/NAME) in fork mode, so a finding
#      ends one job and not the run. Every finding is replayed (with full allocation stacks)
#      and classified by test/fuzz/classify.awk. It passes as a NOTE only when it is an HDF5
#      defect -- the faulting access and, where the report names one, the allocation both
#      inside libhdf5, under an HDF5 call that takes nothing from mptrain but names and ids --
#      AND its signature is one documented under test/fuzz/upstream/. Anything else fails the
#      test: a failure in mptrain's code or the harness, memory mptrain allocated, an escaping
#      exception, a huge allocation sized by mptrain, a timeout, and an HDF5 defect nobody has
#      triaged yet (document it: a reproducer X.h5 and X.txt in test/fuzz/upstream/NAME/, and
#      the README's list). The inputs stay in $TEST_WORKDIR/artifacts; one that broke mptrain
#      belongs in test/fuzz/regressions/NAME/ once fixed.
# The number of executions of each harness is printed.
#
# The library's sources are compiled here, with clang, into $TEST_WORKDIR (the project's own
# libmptrain is built by g++ without sanitizers, which libFuzzer cannot instrument). The MPI
# wrapper of the build (CXX in the Makefile) is pointed at clang++ with OMPI_CXX/MPICH_CXX;
# HDF5 and Boost flags come from the Makefile too, so the harnesses link what mptrain links.
#
# Without clang, libFuzzer or llvm-symbolizer (Debian: apt-get install clang libclang-rt-14-dev
# llvm-14) the test is skipped (77), unless MPTRAIN_NO_SKIP=1 (which .ci/run sets) or CI=true,
# where that is a failure.
#   MPTRAIN_FUZZ_SECONDS  seconds of fuzzing per harness (default 10). test/run-test.sh adds
#                         four times this to the test's time limit, so long runs
#                         (e.g. MPTRAIN_FUZZ_SECONDS=300) are not cut short.
#   MPTRAIN_FUZZ_ONLY     fuzz only these harnesses (e.g. "dataset checkpoint"); the replays of
#                         steps 1 and 2 still run for all
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
harnesses=(deck dataset checkpoint safetensors)
only=${MPTRAIN_FUZZ_ONLY:-${harnesses[*]}}
case $seconds in
  '' | *[!0-9]* | 0) echo "FAIL: MPTRAIN_FUZZ_SECONDS must be a positive number, not '$seconds'"; exit 1 ;;
esac

unavailable() {
  if [ "${MPTRAIN_NO_SKIP:-}" = 1 ] || [ "${CI:-}" = true ]; then
    echo "FAIL: $* (MPTRAIN_NO_SKIP=1 or CI=true: the fuzzers must run)"
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
# Triage reads function names in the sanitizers' stacks: they need llvm-symbolizer.
symbolizer=${ASAN_SYMBOLIZER_PATH:-}
if [ -z "$symbolizer" ]; then
  for c in llvm-symbolizer llvm-symbolizer-19 llvm-symbolizer-18 llvm-symbolizer-17 \
           llvm-symbolizer-16 llvm-symbolizer-15 llvm-symbolizer-14; do
    if command -v "$c" >/dev/null 2>&1; then symbolizer=$(command -v "$c"); break; fi
  done
fi
[ -n "$symbolizer" ] && [ -x "$symbolizer" ] ||
  unavailable "no llvm-symbolizer found (Debian: apt-get install llvm-14)"
export ASAN_SYMBOLIZER_PATH=$symbolizer

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
sources=(src/core/error.cpp src/core/rng.cpp src/parallel/comm.cpp src/io/h5util.cpp src/io/deck.cpp
         src/io/data.cpp src/io/safetensors.cpp)
for f in "$top_srcdir"/src/io/checkpoint*.cpp; do sources+=("src/io/${f##*/}"); done
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
# libFuzzer reports any single allocation over 256 MiB as a finding, with its stack
# (-malloc_limit_mb: the inputs are at most a few hundred KiB, so nothing legitimate comes
# near it), and a resident size over 2 GiB (-rss_limit_mb).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Replays also unwind the stacks of allocations fully (slow, but the allocation site decides
# whose memory it was; the fast unwinder stops at HDF5's frames, built without frame pointers).
replay_asan_options=$ASAN_OPTIONS:fast_unwind_on_malloc=0:malloc_context_size=64
export OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256)
# A replay's timeout only guards against a hang: a known defect's 4 GiB allocation can take
# longer than 10 s to be made and reported on a loaded machine, and must still be classified
# by what it does, not by how fast the machine is.
replay_limits=(-timeout=300 -rss_limit_mb=2048 -malloc_limit_mb=256)

# replay HARNESS INPUT LOG: runs the harness on one input; prints classify.awk's verdict line.
replay() {
  ASAN_OPTIONS=$replay_asan_options "./fuzz_$1" "${replay_limits[@]}" "$2" >"$3" 2>&1
  awk -f "$fuzz_dir/classify.awk" "$3"
}
# replay_failing HARNESS INPUT LOG: the same for an input known to fail, up to 3 times until
# it does: on a damaged file HDF5 may act on memory it never wrote, which varies between runs.
replay_failing() {
  local verdict try
  for try in 1 2 3; do
    verdict=$(replay "$@")
    [ "$verdict" != none ] && break
  done
  echo "$verdict"
}

# The documented HDF5 defects: "SIGNATURE<TAB>FILE" lines, from every harness's upstream/.
known=known-signatures.txt
: >"$known"
for d in "$fuzz_dir"/upstream/*/; do
  for txt in "$d"*.txt; do
    [ -f "$txt" ] || continue
    sig=$(sed -n 's/^signature: //p' "$txt" | head -1)
    if [ -z "$sig" ] || [ ! -f "${txt%.txt}.h5" ]; then
      echo "FAIL: ${txt#"$fuzz_dir"/}: needs a 'signature:' line and its reproducer beside it (.h5)"
      exit 1
    fi
    printf '%s\t%s\n' "$sig" "${txt#"$fuzz_dir"/}" >>"$known"
  done
done
# "SIGNATURE (via API)" -> "SIGNATURE": the HDF5 entry point is informative only.
bare() { sed -e 's/ (via [^)]*)$//'; }
documented() { cut -f1 "$known" | grep -qxF -- "$(printf '%s' "$1" | bare)"; }

status=0
upstream_found=0
mkdir -p artifacts
for h in "${harnesses[@]}"; do
  # 1. Inputs that once found a bug in mptrain: each must now run cleanly.
  for f in "$fuzz_dir/regressions/$h"/*; do
    [ -f "$f" ] || continue
    [ "${f%.expect}" != "$f" ] && continue
    verdict=$(FUZZ_SHOW_REFUSAL=1 replay "$h" "$f" replay.log)
    # FILE.expect, where present, holds text the refusal must contain: the check that caught
    # the defect is still the one that refuses it (not some later, luckier error).
    if [ "$verdict" = none ] && [ -f "${f%.*}.expect" ] &&
       ! grep -qF -- "$(head -1 "${f%.*}.expect")" replay.log; then
      echo "FAIL: fuzz_$h: regression ${f##*/} is not refused with '$(head -1 "${f%.*}.expect")':"
      grep '^refused: ' replay.log || tail -30 replay.log
      status=1
    elif [ "$verdict" = none ]; then
      echo "PASS: fuzz_$h: regression ${f##*/} runs cleanly"
    else
      echo "FAIL: fuzz_$h: regression ${f##*/} fails again: $verdict"; tail -30 replay.log; status=1
    fi
  done
  # 2. The documented HDF5 defects: each must still fail inside HDF5, as its description says.
  for f in "$fuzz_dir/upstream/$h"/*.h5; do
    [ -f "$f" ] || continue
    if [ ! -f "${f%.h5}.txt" ]; then
      echo "FAIL: fuzz_$h: HDF5 defect ${f##*/} has no description ${f%.h5}.txt"; status=1; continue
    fi
    want=$(sed -n 's/^signature: //p' "${f%.h5}.txt" | head -1)
    verdict=$(replay_failing "$h" "$f" replay.log)
    got=${verdict#hdf5   }
    if [ "$verdict" != "$got" ] && [ "$(printf '%s' "$got" | bare)" = "$want" ]; then
      echo "PASS: fuzz_$h: HDF5 defect ${f##*/} still fails inside HDF5: $want"
    elif [ "$verdict" = none ]; then
      echo "FAIL: fuzz_$h: HDF5 defect ${f##*/} now runs cleanly: move it to regressions/ and" \
           "update its description and the README"; status=1
    else
      echo "FAIL: fuzz_$h: HDF5 defect ${f##*/} no longer fails as documented ($want): $verdict"
      grep -E '^ *#[0-9]+ ' replay.log | head -12; status=1
    fi
  done

  case " $only " in *" $h "*) ;; *) continue ;; esac
  # 3. Fork mode: a crash ends one job, not the run; each finding is classified afterwards.
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
  if [ -z "$runs" ] || [ "$runs" -eq 0 ]; then
    echo "FAIL: $summary: no executions counted"; tail -30 "fuzz_$h.log"; status=1; continue
  fi
  bad=0
  for a in "artifacts/$h"/*; do
    case $a in *.log) continue ;; esac
    [ -f "$a" ] || continue
    verdict=$(replay_failing "$h" "$a" "$a.log")
    case $verdict in
      none)
        if [ "${a##*/}" != "${a##*/timeout-}" ]; then
          # Over 10 s while fuzzing, yet clean within the replay's 300 s: the machine was slow
          # (CI shares its cores), not the input; a real hang would time out again.
          echo "NOTE: fuzz_$h: a fuzzing timeout that replays cleanly: $work/$a"
          continue
        fi
        # libFuzzer saw a failure that three lone replays do not repeat: what it was cannot
        # be shown, so it is not excused.
        echo "FAIL: fuzz_$h: a finding that does not reproduce alone: $work/$a"
        grep -m3 -E 'ERROR: |runtime error:' "fuzz_$h.log"; bad=$((bad + 1)) ;;
      hdf5*)
        if documented "${verdict#hdf5   }"; then
          upstream_found=$((upstream_found + 1))
          echo "NOTE: fuzz_$h: a documented HDF5 defect: ${verdict#hdf5   }"
          echo "      reproducer: $work/$a (log: $a.log)"
        else
          echo "FAIL: fuzz_$h: an HDF5 defect not documented under test/fuzz/upstream/: ${verdict#hdf5   }"
          echo "      reproducer: $work/$a (log: $a.log); triage it, then add it with a description"
          grep -E '^ *#[0-9]+ |allocated by' "$a.log" | head -24; bad=$((bad + 1))
        fi ;;
      *)
        echo "FAIL: fuzz_$h: an input breaks mptrain's contract: ${verdict#ours   }"
        echo "      reproducer: $work/$a (log: $a.log); once fixed, add it to test/fuzz/regressions/$h/"
        grep -v 'Running [0-9]* inputs' "$a.log" | grep -m1 -E 'ERROR: |runtime error:|terminate called|fuzz_[a-z]*: '
        grep -E '^ *#[0-9]+ |allocated by' "$a.log" | head -24; bad=$((bad + 1)) ;;
    esac
  done
  if [ "$bad" -eq 0 ]; then echo "PASS: $summary"; else echo "FAIL: $summary"; status=1; fi
done
[ "$upstream_found" -eq 0 ] ||
  echo "($upstream_found finding(s) are documented HDF5 defects (test/fuzz/upstream/): noted, not failed)"
exit "$status"
