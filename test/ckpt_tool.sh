#!/bin/bash
# test/ckpt_tool.sh -- mptrain-ckpt info, verify and diff on GPT-2-shaped checkpoints.
# Run by test/run-test.sh (which exports MPIRUN, MPIRUN_FLAGS, TEST_WORKDIR and top_builddir).
# test/test_checkpoint writes the files on 2 ranks (its tool_fixtures case, see there): a good
# one, one with equal tensors, one element perturbed, a NaN, a missing tensor, a flipped byte.
# Each check runs the tool and compares its exit status and a line of its output.
set -u

MPIRUN=${MPIRUN:-mpirun}
MPIRUN_FLAGS=${MPIRUN_FLAGS:-}
top_builddir=${top_builddir:-.}
work=${TEST_WORKDIR:-$(mktemp -d)}
tool=$top_builddir/src/mptrain-ckpt
dir=$work/tool_files
failures=0

# shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of flags
if ! MPTRAIN_CKPT_TOOL_DIR=$dir "$MPIRUN" $MPIRUN_FLAGS -np 2 \
  "$top_builddir/test/test_checkpoint" --run_test=tool_fixtures; then
  echo "FAIL: could not write the test checkpoints" >&2
  exit 1
fi

# expect STATUS PATTERN ARGS...: runs the tool with ARGS; its exit status must be STATUS and
# its output (stdout and stderr) must contain a line matching the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2
  shift 2
  local output status
  output=$("$tool" "$@" 2>&1)
  status=$?
  if [ "$status" -ne "$want" ] || ! grep -Eq -- "$pattern" <<<"$output"; then
    echo "FAIL: mptrain-ckpt $* -> status $status (want $want), output:" >&2
    echo "$output" | sed 's/^/    /' >&2
    echo "    (expected a line matching: $pattern)" >&2
    failures=$((failures + 1))
  else
    echo "ok: mptrain-ckpt $* -> $status"
  fi
}

expect 0 '^step +20 \(optimizer step 19\)$' info "$dir/good.h5"
expect 0 '^  /model/h\.1\.mlp\.c_proj\.weight +\[8,32\] +256$' info "$dir/good.h5"
expect 0 '^total +84 tensors, 6864 elements, 27456 bytes' info "$dir/good.h5"
expect 0 '^  n_embd = 8$' info "$dir/good.h5"
expect 0 '^OK ' verify "$dir/good.h5"
expect 2 '/optim/v/wpe: 1 non-finite' verify "$dir/nan.h5"
expect 2 '/model/h\.1\.ln_2\.bias: missing' verify "$dir/missing.h5"
expect 2 'h\.0\.mlp\.c_fc\.weight: checksum failed' verify "$dir/corrupt.h5"
expect 0 '^MATCH: 0 of 84 tensors differ' diff "$dir/good.h5" "$dir/same.h5"
# --state: same.h5 holds the same tensors at another step (20 vs 21, AdamW step 19 vs 20).
expect 1 '^state /optim step +19 +20  DIFFERS$' diff "$dir/good.h5" "$dir/same.h5" --state
expect 1 '^DIFFERENT: 0 of 84 tensors differ \(tolerance 0\); 2 of 6 state values differ$' \
  diff "$dir/good.h5" "$dir/same.h5" --state
expect 0 '^MATCH: 0 of 84 tensors differ \(tolerance 0\); 0 of 6 state values differ$' \
  diff "$dir/good.h5" "$dir/good.h5" --state
expect 1 '^/model/h\.1\.mlp\.c_fc\.weight .*DIFFERS \(1 element\)' \
  diff "$dir/good.h5" "$dir/perturbed.h5"
expect 0 '^MATCH: 0 of 28 tensors differ' \
  diff "$dir/good.h5" "$dir/perturbed.h5" --tol 1e-2 --model-only
expect 1 '^/model/h\.1\.ln_2\.bias .*only in A' diff "$dir/good.h5" "$dir/missing.h5"
expect 2 'checksum failed' diff "$dir/good.h5" "$dir/corrupt.h5"
expect 2 "$dir/absent\.h5: cannot open" info "$dir/absent.h5"
expect 2 'unknown command' frobnicate
expect 2 'must be a number' diff "$dir/good.h5" "$dir/same.h5" --tol abc

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all mptrain-ckpt checks passed"
