#!/bin/bash
# End-to-end test of mptrain-prep: byte-level datasets from several text files, the train /
# validation split at the end of the concatenated bytes, the one-line summary, and each kind of
# mistake refused with a message and exit status 2. Then GPT-2 BPE datasets (the ids of
# test/gpt2/corpus.txt equal the golden test/gpt2/corpus.ids made by OpenAI's tiktoken, with
# <|endoftext|> after each file or not, on 1 and 2 threads, split for validation, the tokenizer
# recorded; invalid UTF-8 refused with the file and byte offset) and imported token files
# (llm.c shards and raw uint16: the same tokens read back, referred to or copied; every kind of
# malformed file refused; a short training run on an imported dataset). Run by
# test/run-test.sh (in its own work directory); the token values, the filter and the file
# format are checked with h5dump (hdf5-tools; without it that part is skipped, or fails under
# MPTRAIN_NO_SKIP=1). The library's reading of datasets is covered by test_data and
# test_token_import.
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
expect_error "no input files" -o x.h5
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
expect_error "both an input and an output" -o a.txt a.txt
[ "$(cat a.txt)" = "hello world" ] || fail "a.txt was overwritten"

# ---------------------------------------------------------------- GPT-2 BPE
gpt2=${top_srcdir:-.}/input/gpt2
corpus=${top_srcdir:-.}/test/gpt2/corpus.txt
golden=$(cat "${top_srcdir:-.}/test/gpt2/corpus.ids")
bpe=(--tokenizer=gpt2 --encoder="$gpt2/encoder.json" --merges="$gpt2/vocab.bpe")
# stored_ids FILE: the tokens of FILE's /tokens, space-separated.
stored_ids() {
  h5dump -d /tokens -y -w 0 "$1" | awk '/DATA \{/ { inside = 1; next } inside && /\}/ { exit } inside' |
    tr -s ' ,\n' ' ' | sed -e 's/^ //' -e 's/ $//'
}
# attribute FILE NAME: the value of /tokens' attribute NAME (strings without quotes).
attribute() {
  h5dump -a "/tokens/$2" "$1" | awk '/\(0\)/ { sub(/.*\(0\): */, ""); gsub(/"/, ""); print; exit }'
}
have_h5dump=no
command -v h5dump >/dev/null 2>&1 && have_h5dump=yes

cp "$corpus" c1.txt
cp "$corpus" c2.txt
"$prep" "${bpe[@]}" -o g.h5 c1.txt c2.txt >summary.txt || fail "gpt2 prep failed: $(cat summary.txt)"
n=$(echo "$golden" | wc -w)
grep -qF "g.h5: $((2 * n + 2)) train tokens (tokenizer gpt2, vocab_size 50257" summary.txt ||
  fail "unexpected gpt2 summary: $(cat summary.txt)"
"$prep" "${bpe[@]}" --no-eot --threads 2 -o g2.h5 c1.txt >summary.txt || fail "gpt2 --no-eot prep failed"
grep -qF "g2.h5: $n train tokens" summary.txt || fail "unexpected --no-eot summary: $(cat summary.txt)"
"$prep" "${bpe[@]}" -o gt.h5 --val-output gv.h5 --val-fraction 0.25 c1.txt c2.txt >summary.txt ||
  fail "gpt2 prep with --val-output failed"
total=$((2 * n + 2)) val=$(((2 * n + 2 + 2) / 4))
grep -qF "gt.h5: $((total - val)) train tokens, gv.h5: $val val tokens" summary.txt ||
  fail "unexpected gpt2 split summary: $(cat summary.txt)"
MPTRAIN_GPT2_DIR=$gpt2 "$prep" --tokenizer=gpt2 -o gd.h5 c1.txt >/dev/null ||
  fail "gpt2 prep with MPTRAIN_GPT2_DIR and no --encoder/--merges failed"
if [ $have_h5dump = yes ]; then
  [ "$(stored_ids g.h5)" = "$golden 50256 $golden 50256" ] ||
    fail "g.h5 does not hold the golden ids of corpus.txt, <|endoftext|>, twice"
  [ "$(stored_ids g2.h5)" = "$golden" ] || fail "g2.h5 (--no-eot, 2 threads) is not the golden ids"
  [ "$(stored_ids gt.h5) $(stored_ids gv.h5)" = "$golden 50256 $golden 50256" ] ||
    fail "gt.h5 + gv.h5 are not the whole token stream"
  [ "$(stored_ids gd.h5)" = "$golden 50256" ] || fail "gd.h5 (default GPT-2 files) differs"
  [ "$(attribute g.h5 tokenizer)" = gpt2 ] || fail "g.h5: tokenizer attribute '$(attribute g.h5 tokenizer)'"
  [ "$(attribute gv.h5 tokenizer_vocab)" = fnv1a64:477131cd7ffe948a ] ||
    fail "gv.h5: tokenizer_vocab '$(attribute gv.h5 tokenizer_vocab)'"
  [ "$(attribute gv.h5 vocab_size)" = 50257 ] || fail "gv.h5: vocab_size '$(attribute gv.h5 vocab_size)'"
  [ "$(attribute all.h5 tokenizer)" = bytes ] || fail "all.h5: tokenizer '$(attribute all.h5 tokenizer)'"
fi

printf 'caf\xc3\xa9 ok\n' >good.txt
printf 'line one\nbad \xc3\x28 here\n' >bad.txt
expect_error "'bad.txt': invalid UTF-8 at byte offset 13" "${bpe[@]}" -o bad.h5 good.txt bad.txt
[ ! -e bad.h5 ] || fail "a failed run left bad.h5 behind"
printf 'ends inside \xe2\x82' >cut.txt
expect_error "'cut.txt': invalid UTF-8 at byte offset 12: sequence e2 82 cut short" "${bpe[@]}" -o x.h5 cut.txt
expect_error "encoder file 'nope.json': cannot read" --tokenizer=gpt2 --encoder=nope.json \
  --merges="$gpt2/vocab.bpe" -o x.h5 c1.txt
expect_error "merges file 'b.txt' line 1: expected two tokens" --tokenizer=gpt2 \
  --encoder="$gpt2/encoder.json" --merges=b.txt -o x.h5 c1.txt
MPTRAIN_GPT2_DIR=$PWD expect_error "GPT-2's encoder.json is not at $PWD/encoder.json (\$MPTRAIN_GPT2_DIR)" \
  --tokenizer=gpt2 -o x.h5 a.txt
expect_error "--tokenizer=words: unknown tokenizer" --tokenizer=words -o x.h5 a.txt
expect_error "--no-eot applies to --tokenizer=gpt2" --no-eot -o x.h5 a.txt
expect_error "--encoder applies to --tokenizer=gpt2" --encoder=e.json -o x.h5 a.txt

# ---------------------------------------------------------------- imported token files
# u16 V...: little-endian uint16 values; le32 V...: little-endian int32 values (as printf escapes).
u16() { for v; do printf '\\x%02x\\x%02x' $((v & 255)) $((v >> 8 & 255)); done; }
le32() { for v; do printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)); done; }
# shard FILE MAGIC VERSION COUNT TOKEN...: an llm.c shard (256 int32 of header, then uint16 tokens).
shard() {
  local file=$1 magic=$2 version=$3 count=$4
  shift 4
  { printf "$(le32 "$magic" "$version" "$count")"; head -c 1012 /dev/zero; printf "$(u16 "$@")"; } >"$file"
}
shard s1.bin 20240520 1 5 50256 15496 995 0 50255
shard s2.bin 20240520 1 3 50256 31373 11
printf "$(u16 1 2 3 65535 7)" >r.u16
"$prep" --import=llmc -o l.h5 s1.bin s2.bin >summary.txt || fail "--import=llmc failed: $(cat summary.txt)"
grep -qF "2 files, 8 tokens (left in place) -> l.h5: 8 train tokens (tokenizer gpt2, vocab_size 50257)" \
  summary.txt || fail "unexpected import summary: $(cat summary.txt)"
"$prep" --import=llmc --copy -o lc.h5 --val-output lv.h5 --val-fraction 0.25 s1.bin s2.bin >summary.txt ||
  fail "--import=llmc --copy failed"
grep -qF "lc.h5: 6 train tokens, lv.h5: 2 val tokens" summary.txt || fail "unexpected: $(cat summary.txt)"
"$prep" --import=raw-u16 --vocab-size=65536 -o r.h5 r.u16 >/dev/null || fail "--import=raw-u16 failed"
if [ $have_h5dump = yes ]; then
  [ "$(stored_ids l.h5)" = "50256 15496 995 0 50255 50256 31373 11" ] || fail "l.h5 holds $(stored_ids l.h5)"
  h5dump -p -H l.h5 | grep -q "FILENAME .*s2.bin SIZE 6 OFFSET 1024" || fail "l.h5 does not refer to s2.bin"
  [ "$(stored_ids lc.h5) / $(stored_ids lv.h5)" = "50256 15496 995 0 50255 50256 / 31373 11" ] ||
    fail "lc.h5 / lv.h5 hold $(stored_ids lc.h5) / $(stored_ids lv.h5)"
  h5dump -p -H lc.h5 | grep -q "FLETCHER32" || fail "the --copy dataset lacks the checksum filter"
  [ "$(stored_ids r.h5)" = "1 2 3 65535 7" ] || fail "r.h5 holds $(stored_ids r.h5)"
  [ "$(attribute r.h5 tokenizer)" = unknown ] || fail "r.h5: tokenizer '$(attribute r.h5 tokenizer)'"
fi

shard magic.bin 20240326 1 1 5
shard version.bin 20240520 2 1 5
shard count.bin 20240520 1 4 5 6 7
shard big.bin 20240520 1 2 5 50257
printf '\x01\x02\x03' >odd.u16
expect_error "token file 'magic.bin': magic number 20240326, not 20240520" --import=llmc -o x.h5 magic.bin
expect_error "token file 'version.bin': llm.c shard version 2" --import=llmc -o x.h5 version.bin
expect_error "token file 'count.bin': the header says 4 tokens, but the file holds 6 bytes" \
  --import=llmc -o x.h5 count.bin
expect_error "token file 'big.bin': token 50257 at index 1" --import=llmc -o x.h5 big.bin
expect_error "token file 'r.u16': token 65535 at index 3" --import=raw-u16 --vocab-size=1000 -o x.h5 r.u16
expect_error "token file 'odd.u16': holds an odd number of bytes (3)" --import=raw-u16 --vocab-size=9 \
  -o x.h5 odd.u16
expect_error "--import=raw-u16 needs --vocab-size" --import=raw-u16 -o x.h5 r.u16
expect_error "--vocab-size 70000: uint16 tokens" --import=llmc --vocab-size=70000 -o x.h5 s1.bin
expect_error "--import=npy: unknown format" --import=npy -o x.h5 r.u16
expect_error "--vocab-size applies to --import only" --vocab-size=5 -o x.h5 a.txt
expect_error "--copy applies to --import only" --copy -o x.h5 a.txt
[ ! -e x.h5 ] || fail "a refused import left x.h5 behind"

# A short training run (2 ranks, MPI-IO) on a dataset whose tokens stay in an llm.c shard.
mptrain=${top_builddir:-.}/src/mptrain
if [ -x "$mptrain" ] && [ -n "${MPIRUN:-}" ]; then
  ids=$(for i in $(seq 0 299); do echo $(((i * 7919) % 50257)); done)
  # shellcheck disable=SC2086  # one token per word
  shard train.bin 20240520 1 300 $ids
  "$prep" --import=llmc -o imported.h5 --val-output imported-val.h5 --val-fraction 0.2 train.bin >/dev/null ||
    fail "import for training failed"
  # shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of flags
  if timeout -k 10 300 "$MPIRUN" ${MPIRUN_FLAGS:-} -np 2 "$mptrain" "${top_srcdir:-.}/input/test-tiny.deck" \
    --data.train=imported.h5 --data.val=imported-val.h5 --train.steps=2 --train.global_batch=2 \
    --data.val_every=2 --data.val_batches=1 --log.metrics=imported.csv --checkpoint.restart=none \
    --checkpoint.dir=ck --checkpoint.every=2 </dev/null >train.out 2>&1; then
    [ "$(awk -F, 'END { print $1 }' imported.csv)" = 2 ] || fail "training on imported tokens logged no step 2"
  else
    fail "training on an imported llm.c shard failed: $(tail -3 train.out)"
  fi
  # Sampling from its checkpoint: a 50257-token model is taken for GPT-2 (prompt encoded,
  # tokens decoded with the GPT-2 files); the same seed gives the same text.
  ckpt=${top_builddir:-.}/src/mptrain-ckpt
  MPTRAIN_GPT2_DIR=$gpt2 "$ckpt" sample ck/step_00000002.h5 --tokens 6 --prompt "Hello, world" \
    --seed 3 >sample1.txt 2>&1 || fail "sample (gpt2) failed: $(cat sample1.txt)"
  "$ckpt" sample ck/step_00000002.h5 --tokens 6 --prompt "Hello, world" --seed 3 --tokenizer gpt2 \
    --encoder "$gpt2/encoder.json" --merges "$gpt2/vocab.bpe" >sample2.txt 2>&1 || fail "sample (--encoder) failed"
  grep -q "^Hello, world" sample1.txt || fail "the sample does not start with its prompt: $(cat sample1.txt)"
  cmp -s sample1.txt sample2.txt || fail "the same seed gave different samples"
  "$ckpt" sample ck/step_00000002.h5 --tokenizer words >sample3.txt 2>&1
  [ $? -eq 2 ] && grep -q "bytes or gpt2" sample3.txt || fail "sample --tokenizer words: $(cat sample3.txt)"
  # The checkpoint carries the dataset's tokenizer (gpt2 and the vocabulary's fingerprint), and
  # sample compares the encoder it loads with it: one whose ids 0 and 1 are swapped is refused.
  "$ckpt" info ck/step_00000002.h5 >info.txt 2>&1
  grep -q "^tokenizer *gpt2 fnv1a64:477131cd7ffe948a$" info.txt ||
    fail "the checkpoint does not record the dataset's tokenizer: $(grep tokenizer info.txt)"
  mkdir -p swapped && cp "$gpt2/vocab.bpe" swapped/ &&
    sed -e '1s/^{"!": 0, "\\"": 1,/{"!": 1, "\\"": 0,/' "$gpt2/encoder.json" >swapped/encoder.json
  cmp -s "$gpt2/encoder.json" swapped/encoder.json && fail "could not make the swapped encoder.json"
  MPTRAIN_GPT2_DIR=swapped "$ckpt" sample ck/step_00000002.h5 --tokens 2 >sample4.txt 2>&1
  [ $? -eq 2 ] && grep -q "trained on the GPT-2 vocabulary fnv1a64:477131cd7ffe948a, but swapped/encoder.json is fnv1a64:" sample4.txt ||
    fail "sample with another vocabulary: $(cat sample4.txt)"
fi

if [ "$failures" -ne 0 ]; then
  echo "prep_cli.sh: $failures failure(s)" >&2
  exit 1
fi
echo "prep_cli.sh: all checks passed"
