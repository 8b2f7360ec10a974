#!/bin/bash
# test/weights.sh -- GPT-2 weights in and out through the programs (doc/DESIGN.md §7), on the
# fixtures of test/weights/ (written by make_fixtures.py with PyTorch, see there):
#   1. mptrain-ckpt import of the three fixture forms (Hugging Face, legacy Hugging Face,
#      llm.c) gives checkpoints that verify and hold identical model tensors;
#   2. HF -> mptrain -> HF and llm.c -> mptrain -> llm.c reproduce the files byte for byte;
#   3. mptrain -> HF -> mptrain and mptrain -> llm.c -> mptrain keep every model tensor;
#   4. [checkpoint] init: the step-1 loss of the imported model equals PyTorch's (golden.json),
#      on 1 rank and on tp=2 x pp=2, and the two layouts agree over 3 steps;
#   5. init and restart: a run with init that is stopped resumes from its own checkpoint (init
#      not used) and gives the losses of an uninterrupted run, bit for bit;
#   6. refusals: init of another model or of a missing file (1 and 4 ranks, exit 2, one
#      message), a malformed safetensors header, a wrong llm.c magic, a bad export format.
. "$top_srcdir/test/lib.sh"
fx=$top_srcdir/test/weights
ckpt=$MPTRAIN_BIN/mptrain-ckpt

# expect_tool STATUS PATTERN ARGS...: mptrain-ckpt ARGS exits STATUS, output matching PATTERN.
expect_tool() {
  local want=$1 pattern=$2 output status
  shift 2
  output=$("$ckpt" "$@" 2>&1)
  status=$?
  if [ "$status" -eq "$want" ] && grep -Eq -- "$pattern" <<<"$output"; then
    pass "mptrain-ckpt $* -> $status"
  else
    fail "mptrain-ckpt $* -> $status (want $want, matching: $pattern):"
    echo "$output" | sed 's/^/    /'
  fi
}

# ---------------------------------------------------------------- 1. import
expect_tool 0 '^wrote hf\.h5: step 0' import "$fx/hf-tiny" hf.h5
expect_tool 0 '^wrote legacy\.h5: step 0' import "$fx/hf-tiny-legacy" legacy.h5
expect_tool 0 '^wrote llmc\.h5: step 0' import "$fx/gpt2-tiny.bin" llmc.h5
expect_tool 0 '^OK hf\.h5: 84 tensors' verify hf.h5
expect_tool 0 '^OK llmc\.h5: 84 tensors' verify llmc.h5
expect_tool 0 '^  n_positions|^  seq_len = 64$' info hf.h5
expect_tool 0 '^MATCH: 0 of 84 tensors differ \(tolerance 0\)' diff hf.h5 legacy.h5
expect_tool 0 '^MATCH: 0 of 84 tensors differ \(tolerance 0\)' diff hf.h5 llmc.h5

# ---------------------------------------------------------------- 2. foreign -> mptrain -> foreign
expect_tool 0 'exported hf\.h5' export hf.h5 hf-out --format=hf
expect_tool 0 'exported llmc\.h5' export llmc.h5 out.bin --format llmc
for f in model.safetensors config.json; do
  cmp -s "$fx/hf-tiny/$f" "hf-out/$f" && pass "HF -> mptrain -> HF: $f byte-identical" ||
    fail "HF -> mptrain -> HF: $f differs"
done
cmp -s "$fx/gpt2-tiny.bin" out.bin && pass "llm.c -> mptrain -> llm.c: byte-identical" ||
  fail "llm.c -> mptrain -> llm.c: the files differ"

# ---------------------------------------------------------------- 3. mptrain -> foreign -> mptrain
make_data || { fail "mptrain-prep"; finish; }
OUT=trained.out run_mptrain 0 "$top_srcdir/input/test-tiny.deck" --train.steps=3 \
  --checkpoint.dir=trained --log.metrics= --data.val= ||
  { fail "training the model to export"; cat trained.out; finish; }
trained=trained/step_00000003.h5
expect_tool 0 'exported' export "$trained" trained-hf --format=hf
expect_tool 0 'exported' export "$trained" trained.bin --format=llmc
expect_tool 0 'wrote' import trained-hf back-hf.h5
expect_tool 0 'wrote' import trained.bin back-llmc.h5
expect_tool 0 '^MATCH: 0 of 52 tensors differ \(tolerance 0\)' diff "$trained" back-hf.h5 --model-only
expect_tool 0 '^MATCH: 0 of 52 tensors differ \(tolerance 0\)' diff "$trained" back-llmc.h5 --model-only

# ---------------------------------------------------------------- 4. init against PyTorch
"$MPTRAIN_BIN/mptrain-prep" -o golden.h5 "$fx/golden-text.txt" >/dev/null || fail "mptrain-prep golden"
cat >tiny.deck <<'EOF'
# make_fixtures.py's model on the golden text; seq_len 16 < the 64 stored positions
[model]
n_layer = 2
n_head = 4
n_embd = 16
seq_len = 16
vocab_size = 300
[train]
global_batch = 4
steps = 3
[optim]
lr = 1e-3
warmup_steps = 1
[data]
train = golden.h5
[checkpoint]
init = hf.h5
[log]
metrics = one.csv
[device]
threads = 1
EOF
OUT=one.out run_mptrain 0 tiny.deck || { fail "init run on 1 rank"; cat one.out; }
grep -q '^initialised the model from hf.h5 (step 0' one.out && pass "init announced" ||
  fail "no 'initialised the model' line"
OUT=four.out run_mptrain 4 tiny.deck --parallel.tp=2 --parallel.pp=2 --log.metrics=four.csv ||
  { fail "init run on tp=2 x pp=2"; tail -5 four.out; }
# The golden loss: the first case of golden.json (rows 4, seq_len 16).
reference=$(grep -o '"loss": [-0-9.e]*' "$fx/golden.json" | head -1 | cut -d' ' -f2)
for csv in one.csv four.csv; do
  step1=$(awk -F, 'NR == 2 { print $2 }' "$csv")
  if awk -v a="$step1" -v r="$reference" 'BEGIN { d = (a - r) / r; if (d < 0) d = -d;
                                                  printf "  %.3e\n", d; exit !(d <= 1e-6) }'; then
    pass "$csv: step-1 loss $step1 equals PyTorch's $reference (relative deviation above)"
  else
    fail "$csv: step-1 loss $step1, PyTorch $reference"
  fi
done
losses_within one.csv four.csv 1e-7 "init: 1 rank and tp=2 x pp=2 agree (the layout tolerance of layouts.sh)"

# ---------------------------------------------------------------- 5. init and restart
OUT=whole.out run_mptrain 0 tiny.deck --train.steps=4 --log.metrics=whole.csv \
  --checkpoint.dir=whole_ck
OUT=part1.out run_mptrain 0 tiny.deck --test-hook=signal:2 --train.steps=4 \
  --log.metrics=parts.csv --checkpoint.dir=ft
rc=$?
[ $rc -eq 3 ] && grep -q '^initialised the model' part1.out && pass "fine-tuning run stopped at step 2" ||
  fail "fine-tuning run: exit $rc (expected 3)"
OUT=part2.out run_mptrain 0 tiny.deck --train.steps=4 --log.metrics=parts.csv --checkpoint.dir=ft
grep -q '^restarted from ft/step_00000002.h5' part2.out &&
  grep -q '^\[checkpoint\] init = hf.h5 not used: the run resumed' part2.out &&
  ! grep -q '^initialised the model' part2.out &&
  pass "the restarted run resumes its own checkpoint and does not use init" ||
  { fail "restart with init"; grep -E 'restarted|init' part2.out; }
losses_identical whole.csv parts.csv "init, stop at 2, resume to 4 vs 4 steps"
ckpt_identical whole_ck/step_00000004.h5 ft/step_00000004.h5 "init, stop at 2, resume to 4: final checkpoint"

# ---------------------------------------------------------------- 6. refusals
for np in 0 4; do
  ranks=$([ "$np" -eq 0 ] && echo "1 rank" || echo "$np ranks")
  OUT=wrong.out run_mptrain "$np" tiny.deck --model.n_embd=32 --log.metrics=
  rc=$?
  n=$(grep -c 'mptrain: error:' wrong.out)
  if [ $rc -eq 2 ] && [ "$n" -eq 1 ] && grep -q 'mptrain: error: \[checkpoint\] init = hf.h5: written for a different model: \[model\] n_embd = 16 in the checkpoint, 32 in the deck' wrong.out; then
    pass "init of another model refused on $ranks, exit 2, one message"
  else
    fail "init of another model on $ranks: exit $rc, $n error lines"; tail -5 wrong.out
  fi
  OUT=missing.out run_mptrain "$np" tiny.deck --checkpoint.init=nosuch.h5 --log.metrics=
  rc=$?
  [ $rc -eq 2 ] && grep -q 'mptrain: error: \[checkpoint\] init = nosuch.h5: nosuch.h5: cannot open' missing.out &&
    pass "init of a missing file refused on $ranks" ||
    { fail "init of a missing file on $ranks: exit $rc"; tail -3 missing.out; }
done
OUT=long.out run_mptrain 0 tiny.deck --model.seq_len=128 --train.global_batch=2 --log.metrics=
grep -q 'seq_len = 128 exceeds the 64 positions the checkpoint holds' long.out &&
  pass "seq_len beyond the stored positions refused" || { fail "seq_len 128 not refused"; tail -3 long.out; }

mkdir -p bad-hf
cp "$fx/hf-tiny/config.json" bad-hf/
printf '\x0c\0\0\0\0\0\0\0{"a": nope }' >bad-hf/model.safetensors
expect_tool 2 'bad-hf/model.safetensors: the safetensors header is not valid JSON' import bad-hf x.h5
printf '\x40\0\0\0\0\0\0\0{}' >bad-hf/model.safetensors
expect_tool 2 'header length 64 runs past the end of the file \(10 bytes\)' import bad-hf x.h5
head -c 1024 /dev/zero >bad.bin
expect_tool 2 'bad\.bin: not an llm.c GPT-2 model file: magic number 0, expected 20240326' import bad.bin x.h5
[ ! -e x.h5 ] && [ ! -e x.h5.tmp ] && pass "nothing written by a refused import" ||
  fail "a refused import left a file"
expect_tool 2 'must be hf .* or llmc' export hf.h5 y --format=onnx
expect_tool 2 'cannot open' export nosuch.h5 y --format=hf
finish
