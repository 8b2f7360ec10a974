// GPT-2's byte-level BPE tokenizer: text (UTF-8) to GPT-2 token ids and back, giving the same
// ids as OpenAI's encoder (tiktoken's "gpt2"/r50k_base encoding) on any valid UTF-8 text.
//
// Encoding has two stages. A pre-tokenizer splits the text into pieces with GPT-2's pattern
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (PCRE2 with JIT, \s spelled out as Unicode's White_Space set, as tiktoken's regex engine reads
// it); then each piece's bytes are merged pairwise, lowest merge rank first, as vocab.bpe
// lists them. (Letters and numbers are as PCRE2's Unicode tables say: Unicode 14 in PCRE2
// 10.42. A character assigned in a later Unicode version could be classed differently by
// another encoder's tables; none of test/gpt2/'s probes of such characters showed a
// difference.) Decoding concatenates the tokens' bytes. The files are OpenAI's `encoder.json`
// (token -> id, keys in GPT-2's printable byte alphabet) and `vocab.bpe` (the merges in rank
// order); the project ships them in input/gpt2/.
//
// Text is never run through the pattern across document boundaries; within a document it may
// be cut into pieces that are encoded separately (streaming, threads), but only at safe cuts:
// positions where the pre-tokenization of the whole equals the concatenation of the parts'.
// Gpt2Tokenizer::safe_cut() finds them; Gpt2StreamEncoder uses it to encode a stream of any
// size in bounded memory on several OpenMP threads, with the same ids as one whole encode().
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mptrain {

// The vocabulary of a byte-level BPE: each token id's bytes, from encoder.json. Enough to
// decode; Gpt2Tokenizer adds the merges to encode.
class Gpt2Vocab {
 public:
  // Throws InputError naming the file for: an unreadable file, bad JSON, a key with a
  // character outside GPT-2's byte alphabet, two keys for the same bytes, ids that are not
  // 0..n-1 each once, or a missing single-byte token.
  static Gpt2Vocab load(const std::string& encoder_json_path);

  int size() const { return static_cast<int>(tokens_.size()); }
  // The id of "<|endoftext|>", or -1 when the vocabulary has no such token.
  int32_t end_of_text() const { return end_of_text_; }
  // The bytes of token `id` (0 <= id < size()).
  std::string_view bytes(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  // The id of the token made of exactly `bytes`, or -1.
  int32_t find(std::string_view bytes) const;
  // The id of the single-byte token for byte b.
  int32_t byte_token(unsigned char b) const { return byte_tokens_[b]; }

  // The concatenated bytes of the tokens: the exact inverse of encoding for valid UTF-8 text
  // (a sampled sequence may of course end inside a character). Throws InputError for an id
  // outside [0, size()).
  std::string decode(std::span<const int32_t> ids) const;

  // "fnv1a64:" and 16 hex digits: FNV-1a over every token's length and bytes in id order. Two
  // encoder.json files give the same fingerprint exactly when they define the same tokens,
  // whatever their JSON formatting; datasets record it so a decoder can check its vocabulary.
  std::string fingerprint() const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  int32_t byte_tokens_[256] = {};
  int32_t end_of_text_ = -1;
};

// Gpt2Vocab::fingerprint() of OpenAI's GPT-2 encoder.json (50257 tokens, as shipped in
// input/gpt2/): what datasets of GPT-2 tokens made elsewhere (llm.c shards) are labelled with.
inline constexpr const char* gpt2_vocab_fingerprint = "fnv1a64:477131cd7ffe948a";

// Where the GPT-2 file `name` ("encoder.json" or "vocab.bpe") is when no option names it:
// $MPTRAIN_GPT2_DIR/name if that variable is set, else the copy installed with mptrain
// (DATADIR/mptrain/gpt2/name, from the project's input/gpt2/). Throws InputError, saying
// what to do, when the file is not there.
std::string gpt2_default_file(const std::string& name);

class Gpt2Encoder;

// The vocabulary, the merge table and the compiled pre-tokenizer. Immutable after load(), so
// one tokenizer serves any number of threads, each through its own Gpt2Encoder.
class Gpt2Tokenizer {
 public:
  // Throws InputError naming the file for a bad encoder.json (see Gpt2Vocab::load) or a bad
  // vocab.bpe: a line that is not two tokens separated by one space, or a merge whose parts
  // or result are not in the vocabulary.
  static Gpt2Tokenizer load(const std::string& encoder_json_path, const std::string& merges_path);
  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;
  ~Gpt2Tokenizer();

  const Gpt2Vocab& vocab() const;
  int merges() const;

  // Encodes one whole text (convenience for short texts; one thread). Throws InputError for
  // invalid UTF-8, naming the byte offset.
  std::vector<int32_t> encode(std::string_view text) const;

  // The largest position p with begin < p <= limit (and p < text.size(), since the cut must
  // see the byte after it; the scan goes back from limit) at which `text` may be cut:
  // pre-tokenizing text[0, p) and text[p, end) separately gives the same pieces as pre-tokenizing
  // the whole. 0 when there is none. text[begin, limit] must be valid UTF-8 or end inside a
  // character only after limit.
  //
  // A cut is safe when the character before it is not whitespace and no alternative of the
  // pattern can match across it: between two characters of different classes among letter,
  // number, whitespace and other, except an apostrophe followed by a letter (the contractions).
  // Since no alternative looks behind its start, the text after such a cut pre-tokenizes as
  // it does inside the whole; since only a whitespace run looks ahead (one character past its
  // end), the text before it does too. A cut after whitespace is never safe: "x  y" splits as
  // "x", " ", " y", but cut after its spaces as "x", "  " and "y".
  size_t safe_cut(std::string_view text, size_t begin, size_t limit) const;

 private:
  friend class Gpt2Encoder;
  struct Impl;
  Gpt2Tokenizer();
  std::unique_ptr<Impl> impl_;
};

// One thread's encoding state: the regex match data and a cache of encoded words. Not
// thread-safe; make one per thread. Its tokenizer must outlive it.
class Gpt2Encoder {
 public:
  explicit Gpt2Encoder(const Gpt2Tokenizer& tokenizer);
  Gpt2Encoder(Gpt2Encoder&&) noexcept;
  ~Gpt2Encoder();

  // Appends the ids of `text` to `out`. `text` must be valid UTF-8 (the caller has checked:
  // the pattern matcher is told not to) and a whole document or a piece between safe cuts.
  void encode(std::string_view text, std::vector<int32_t>& out);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Encodes streams (files) of any size in bounded memory: reads pieces of about piece_bytes,
// cuts them at safe cuts, encodes up to `threads` pieces at a time in parallel, and hands the
// ids on in text order. The result equals Gpt2Tokenizer::encode() of the whole stream for any
// piece size (test_gpt2 proves it with tiny pieces). Memory is about threads * piece_bytes *
// 5 bytes, more only when a single pre-token is longer than a piece (a run of letters,
// digits, punctuation or whitespace with no safe cut inside).
class Gpt2StreamEncoder {
 public:
  struct Options {
    size_t piece_bytes = size_t{1} << 20;
    int threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS)
  };
  using Sink = std::function<void(std::span<const int32_t>)>;

  Gpt2StreamEncoder(const Gpt2Tokenizer& tokenizer, Options options);
  ~Gpt2StreamEncoder();

  // Reads `in` to its end as one document and calls sink with its ids, in order (the end of
  // text token is the caller's business). `name` names the stream in messages. Returns the
  // number of bytes read. Throws InputError for invalid UTF-8, naming `name`, the byte offset
  // and what is wrong, or for a read error.
  uint64_t encode(std::istream& in, const std::string& name, const Sink& sink);

 private:
  const Gpt2Tokenizer& tokenizer_;
  Options options_;
  std::vector<Gpt2Encoder> encoders_;  // one per thread, kept so their caches stay warm
};

}  // namespace mptrain
