#!/bin/bash
# test/slurm_submit.sh -- jobs/mptrain-cpu.sbatch on a real (private) Slurm with two nodes.
# The tiny deck is submitted three times at once, each job over both nodes with 2 ranks per
# node: launched the default way (srun --mpi=pmix), with MPTRAIN_LAUNCH=mpirun, and through
# jobs/mptrain-gpu.sbatch (its CPU side: no GPUs here). Every job must complete (COMPLETED,
# exit 0:0), span both nodes, run the threads Slurm gave each rank, and write bit for bit the
# losses and the final checkpoint (model, AdamW state, resume state) of the same deck run
# directly with mpirun on 4 ranks: the launcher does not change the arithmetic.
# Skipped (77) without Slurm/munge/root, except under CI=true or MPTRAIN_NO_SKIP=1, where that
# is a failure.
# Run by test/run-test.sh; the cluster lives in $TEST_WORKDIR/slurm.
. "$top_srcdir/test/lib.sh"
. "$top_srcdir/test/slurm/lib.sh"
slurm_require

deck=$top_srcdir/input/test-tiny.deck
script=$top_srcdir/jobs/mptrain-cpu.sbatch
make_data || { echo "FAIL: mptrain-prep"; exit 1; }

# The nodes run the three jobs side by side: each takes 2 ranks x 1 CPU on both nodes.
SLURM_TEST_CPUS=8 slurm_start 0

# The reference: the same deck, 4 ranks under mpirun, the transport the jobs use.
OUT=ref.out run_mptrain 4 "$deck" --log.metrics=ref.csv --checkpoint.dir=ref ||
  { cat ref.out; fail "the reference run"; finish; }

# name: how it is submitted (the launcher, or the GPU script run on CPUs: these nodes have no
# GPUs, so --gpus-per-node=0 and a --device.backend=cpu override after the script's cuda).
runs=(srun mpirun gpu-script)
jobs=()
for name in "${runs[@]}"; do
  mkdir -p "$name"
  ln -sf ../train.h5 ../val.h5 "$name/"
  launch=$name script_args=("$script") deck_args=() flags=''
  # The two fake nodes share this machine's cores: binding each node's ranks to "its" cores
  # would pile them onto the same ones.
  [ "$name" = mpirun ] && flags='--bind-to none'
  if [ "$name" = gpu-script ]; then
    launch=srun
    script_args=(--gpus-per-node=0 "$top_srcdir/jobs/mptrain-gpu.sbatch")
    deck_args=(--device.backend=cpu)
  fi
  job=$(MPTRAIN_LAUNCH=$launch MPTRAIN_LAUNCH_FLAGS=$flags sbatch --parsable -D "$name" -N 2 --ntasks-per-node=2 \
    --cpus-per-task=1 --time=5 "${script_args[@]}" "$deck" --checkpoint.dir=ckpt "${deck_args[@]}") ||
    { fail "sbatch ($name)"; finish; }
  echo "submitted job $job ($name)"
  jobs+=("$job")
done

i=0
for name in "${runs[@]}"; do
  job=${jobs[i]}
  i=$((i + 1))
  state=$(wait_job "$job" 120 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY)
  exit_code=$(job_field "$job" ExitCode)
  if [ "$state" = COMPLETED ] && [ "$exit_code" = 0:0 ]; then
    pass "$name: job $job completed (exit $exit_code)"
  else
    fail "$name: job $job ended $state, exit code $exit_code"
    show_job "$job"
    continue
  fi
  out=$(job_field "$job" StdOut)
  launch=srun
  [ "$name" = mpirun ] && launch=mpirun
  if grep -q "on 2 node(s) \[n\[1-2\]\]: 4 ranks x 1 threads, launcher $launch" "$out" &&
    grep -q "^mptrain: 4 ranks, .*(1 threads/rank)" "$out"; then
    pass "$name: 4 ranks over nodes n1 and n2, threads per rank from --cpus-per-task"
  else
    fail "$name: the job did not run 4 ranks over both nodes"
    show_job "$job"
  fi
  losses_identical "$name/metrics.csv" ref.csv "$name: the job's losses vs a direct mpirun"
  ckpt_identical "$name/ckpt/step_00000012.h5" ref/step_00000012.h5 \
    "$name: the job's final checkpoint vs a direct mpirun"
done
finish
