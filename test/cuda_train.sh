#!/bin/bash
# test/cuda_train.sh -- end-to-end training on a GPU against the CPU (built only with CUDA).
# Skipped (exit 77) where no NVIDIA GPU answers `nvidia-smi -L`. With one:
#   1. 20 steps of the tiny deck on the CPU and on CUDA: per-step losses within 1e-4 relative;
#   2. the CUDA run repeated: bit-identical losses (the backend is deterministic);
#   3. CUDA with tp=2 pp=2 on 4 ranks sharing the device (host-staged collectives): within 1e-4;
#   4. a checkpoint written on the GPU (stopped at step 10 by --test-hook=signal:10,
#      exit 3) resumed on the CPU, and a CPU checkpoint resumed on the GPU: within 1e-4 of the
#      uninterrupted CPU run;
#   5. TF32 products ([device] precision = tf32): within 2e-2 of fp32;
#   6. bf16 products with fp32 master weights ([device] precision = bf16): within 5e-2.
# Run by test/run-test.sh (it exports MPIRUN, MPIRUN_FLAGS, TEST_WORKDIR and top_builddir).
# shellcheck source=test/lib.sh disable=SC2154  # top_srcdir: exported by run-test.sh
. "$top_srcdir/test/lib.sh"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no CUDA device (nvidia-smi -L): skipping"
  exit 77
fi
nvidia-smi -L

make_data || { fail "mptrain-prep"; finish; }
deck=$top_srcdir/input/test-tiny.deck
common=(--train.steps=20 --parallel.micro_batch=2 --checkpoint.restart=none)

OUT=cpu.out run_mptrain 0 "$deck" "${common[@]}" --device.backend=cpu --log.metrics=cpu.csv ||
  { fail "CPU reference run"; tail -5 cpu.out; finish; }

# 1. CUDA against the CPU.
if OUT=gpu.out run_mptrain 0 "$deck" "${common[@]}" --device.backend=cuda --log.metrics=gpu.csv &&
  grep -q "backend cuda (" gpu.out; then
  pass "20 steps on CUDA"
else
  fail "CUDA run"; tail -5 gpu.out
fi
losses_within cpu.csv gpu.csv 1e-4 "CUDA vs CPU, 20 steps"

# 2. Determinism.
OUT=gpu2.out run_mptrain 0 "$deck" "${common[@]}" --device.backend=cuda --log.metrics=gpu2.csv ||
  fail "second CUDA run"
losses_identical gpu.csv gpu2.csv "CUDA rerun"

# 3. Several ranks on one device.
if OUT=gpu4.out run_mptrain 4 "$deck" "${common[@]}" --device.backend=cuda --parallel.tp=2 \
  --parallel.pp=2 --log.metrics=gpu4.csv; then
  pass "CUDA tp=2 pp=2 on 4 ranks"
else
  fail "CUDA tp=2 pp=2 run"; tail -5 gpu4.out
fi
losses_within cpu.csv gpu4.csv 1e-4 "CUDA tp=2 pp=2 vs CPU"

# 4. Checkpoints cross the device boundary both ways.
while read -r name first second; do
  [ -z "$name" ] && continue
  ck=ck_$name csv=$name.csv
  OUT=$name-1.out run_mptrain 0 "$deck" --test-hook=signal:10 --train.steps=20 \
    --parallel.micro_batch=2 --device.backend="$first" --checkpoint.dir="$ck" \
    --log.metrics="$csv"
  rc1=$?
  OUT=$name-2.out run_mptrain 0 "$deck" --train.steps=20 --parallel.micro_batch=2 \
    --device.backend="$second" --checkpoint.dir="$ck" --log.metrics="$csv"
  rc2=$?
  if [ $rc1 -eq 3 ] && [ $rc2 -eq 0 ] && [ -f "$ck/step_00000010.h5" ] &&
    grep -q "restarted from .*step_00000010.h5" "$name-2.out"; then
    pass "$name: stopped at step 10 on $first (exit 3), resumed on $second"
  else
    fail "$name: stop/resume exits $rc1/$rc2"; tail -5 "$name-1.out" "$name-2.out"
  fi
  losses_within cpu.csv "$csv" 1e-4 "$name: $first checkpoint resumed on $second"
done <<'CASES'
gpu_to_cpu cuda cpu
cpu_to_gpu cpu cuda
CASES

# 5. TF32 tensor-core products stay close to fp32.
OUT=tf32.out run_mptrain 0 "$deck" "${common[@]}" --device.backend=cuda --device.precision=tf32 \
  --log.metrics=tf32.csv || fail "TF32 run"
losses_within gpu.csv tf32.csv 2e-2 "CUDA TF32 vs fp32"

# 6. Mixed precision: bf16 operands, fp32 master weights and AdamW state.
OUT=bf16.out run_mptrain 0 "$deck" "${common[@]}" --device.backend=cuda --device.precision=bf16 \
  --log.metrics=bf16.csv || fail "bf16 run"
losses_within gpu.csv bf16.csv 5e-2 "CUDA bf16 vs fp32"

finish
