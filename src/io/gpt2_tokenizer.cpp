// GPT-2's byte-level BPE (gpt2_tokenizer.hpp): loading encoder.json and vocab.bpe, the
// pre-tokenizer (PCRE2), the merge loop, safe cuts. The streaming driver is gpt2_stream.cpp.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "mptrain/io/gpt2_tokenizer.hpp"

#include <pcre2.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "io/utf8.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {
namespace {

// The pre-tokenizer. \s is written out as Unicode's White_Space property, which is what
// tiktoken's engine uses (Rust regex: \s = \p{White_Space}); PCRE2's own \s would add U+180E
// (and JavaScript's, in gpt-3-encoder, adds U+FEFF and lacks U+0085). The three classes are
// complementary (whitespace, letters and numbers, the rest), so every character is matched
// and no text is ever skipped.
#define MPT_WS                                                                 \
  "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
  "\\x{202f}\\x{205f}\\x{3000}"
constexpr const char* pretokenizer_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+"
    "| ?[^" MPT_WS "\\p{L}\\p{N}]+"
    "|[" MPT_WS "]+(?![^" MPT_WS "])"
    "|[" MPT_WS "]+";
// One character's class for safe_cut(): group 1 letter, 2 number, 3 whitespace, else other.
constexpr const char* class_pattern = "(\\p{L})|(\\p{N})|([" MPT_WS "])";
#undef MPT_WS

enum class CharClass { letter, number, space, other };

// GPT-2's printable alphabet for bytes (encoder.py's bytes_to_unicode): the printable Latin-1
// bytes stand for themselves, the other 68 bytes, in order, for U+0100, U+0101, ...
std::vector<int> byte_alphabet() {
  std::vector<int> code_point(256, -1);
  auto printable = [](int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  };
  int next = 256;
  for (int b = 0; b < 256; ++b) code_point[b] = printable(b) ? b : next++;
  return code_point;
}

// Inverse of byte_alphabet(): code point (< 324) -> byte, or -1.
std::vector<int> alphabet_inverse() {
  const std::vector<int> forward = byte_alphabet();
  std::vector<int> inverse(324, -1);
  for (int b = 0; b < 256; ++b) inverse[forward[b]] = b;
  return inverse;
}

// Decodes a token written in GPT-2's byte alphabet (valid UTF-8, as the JSON parser or our
// own check guarantees) to its bytes; false when a character is outside the alphabet.
bool alphabet_to_bytes(std::string_view text, const std::vector<int>& inverse, std::string& out) {
  out.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = utf8::sequence_length(p[i]);
    if (len == 0 || len > 2 || i + len > text.size()) return false;  // alphabet is < U+0800
    const int cp = len == 1 ? p[i] : ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
    if (cp >= static_cast<int>(inverse.size()) || inverse[cp] < 0) return false;
    out.push_back(static_cast<char>(inverse[cp]));
    i += len;
  }
  return true;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(std::string(what) + " '" + path + "': cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(std::string(what) + " '" + path + "': read error");
  return text.str();
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

pcre2_code* compile_pattern(const char* pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                    PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
  MPT_CHECK(code != nullptr, "PCRE2 refuses the GPT-2 pattern at offset " + std::to_string(offset) +
                                 ": " + pcre2_message(error));
  return code;
}

}  // namespace

#ifndef MPTRAIN_PKGDATADIR
#define MPTRAIN_PKGDATADIR "/usr/local/share/mptrain"
#endif

std::string gpt2_default_file(const std::string& name) {
  const char* dir = std::getenv("MPTRAIN_GPT2_DIR");
  const bool from_env = dir != nullptr && *dir != '\0';
  const std::string path = std::string(from_env ? dir : MPTRAIN_PKGDATADIR "/gpt2") + "/" + name;
  std::ifstream probe(path);
  if (!probe) {
    throw InputError(
        "GPT-2's " + name + " is not at " + path + (from_env ? " ($MPTRAIN_GPT2_DIR)" : "") +
        ": give --encoder and --merges, or set MPTRAIN_GPT2_DIR to a directory holding "
        "encoder.json and vocab.bpe (mptrain's source tree has them in input/gpt2)");
  }
  return path;
}

// ---------------------------------------------------------------- vocabulary

Gpt2Vocab Gpt2Vocab::load(const std::string& path) {
  const std::string where = "encoder file '" + path + "': ";
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file(path, "encoder file"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + "not valid JSON: " + e.what());
  }
  if (!json.is_object() || json.empty()) {
    throw InputError(where + "expected a JSON object mapping tokens to ids (GPT-2's encoder.json)");
  }
  const std::vector<int> inverse = alphabet_inverse();
  Gpt2Vocab vocab;
  vocab.tokens_.resize(json.size());
  std::vector<bool> seen(json.size(), false);
  std::string bytes;
  for (const auto& [key, value] : json.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() >= static_cast<int64_t>(json.size())) {
      throw InputError(where + "token \"" + key + "\" has id " + value.dump() +
                       "; ids must be the integers 0.." + std::to_string(json.size() - 1) +
                       ", each once");
    }
    const auto id = value.get<int32_t>();
    if (seen[static_cast<size_t>(id)])
      throw InputError(where + "id " + std::to_string(id) + " is given to two tokens");
    if (!alphabet_to_bytes(key, inverse, bytes)) {
      throw InputError(where + "token \"" + key +
                       "\" has a character outside GPT-2's byte alphabet");
    }
    if (!vocab.ids_.emplace(bytes, id).second) {
      throw InputError(where + "token \"" + key + "\" stands for the same bytes as another token");
    }
    seen[static_cast<size_t>(id)] = true;
    vocab.tokens_[static_cast<size_t>(id)] = bytes;
  }
  for (int b = 0; b < 256; ++b) {
    const int32_t id = vocab.find(std::string(1, static_cast<char>(b)));
    if (id < 0) throw InputError(where + "no token for the single byte " + std::to_string(b));
    vocab.byte_tokens_[b] = id;
  }
  vocab.end_of_text_ = vocab.find("<|endoftext|>");
  return vocab;
}

int32_t Gpt2Vocab::find(std::string_view bytes) const {
  auto it = ids_.find(std::string(bytes));
  return it == ids_.end() ? -1 : it->second;
}

std::string Gpt2Vocab::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id < 0 || id >= size()) {
      throw InputError("cannot decode token " + std::to_string(id) +
                       ": the vocabulary has ids 0.." + std::to_string(size() - 1));
    }
    text += tokens_[static_cast<size_t>(id)];
  }
  return text;
}

std::string Gpt2Vocab::fingerprint() const {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64-bit offset basis and prime
  auto mix = [&hash](unsigned char byte) { hash = (hash ^ byte) * 0x100000001b3ull; };
  for (const std::string& token : tokens_) {
    const auto length = static_cast<uint32_t>(token.size());
    for (int shift = 0; shift < 32; shift += 8) mix(static_cast<unsigned char>(length >> shift));
    for (char c : token) mix(static_cast<unsigned char>(c));
  }
  char text[32];
  std::snprintf(text, sizeof text, "fnv1a64:%016llx", static_cast<unsigned long long>(hash));
  return text;
}

// ---------------------------------------------------------------- tokenizer

struct Gpt2Tokenizer::Impl {
  Gpt2Vocab vocab;
  // The merges: an open-addressing hash table from the pair (left id, right id) to the merge's
  // rank and the merged token's id. Sized to stay under a quarter full.
  struct Merge {
    uint64_t pair = 0;
    int32_t rank = -1;  // -1: empty slot
    int32_t merged = -1;
  };
  std::vector<Merge> table;
  uint64_t mask = 0;
  int shift = 64;  // slot = top bits of a multiplicative hash
  int n_merges = 0;
  pcre2_code* pattern = nullptr;
  pcre2_code* classes = nullptr;
  bool jit = false;

  ~Impl() {
    pcre2_code_free(pattern);
    pcre2_code_free(classes);
  }
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  size_t slot(uint64_t pair) const {
    return static_cast<size_t>((pair * 0x9E3779B97F4A7C15ull) >> shift);
  }
  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t pair = key(left, right);
    for (size_t i = slot(pair);; i = (i + 1) & mask) {
      const Merge& m = table[i];
      if (m.rank < 0) return nullptr;
      if (m.pair == pair) return &m;
    }
  }
  bool insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    const uint64_t pair = key(left, right);
    for (size_t i = slot(pair);; i = (i + 1) & mask) {
      Merge& m = table[i];
      if (m.rank >= 0 && m.pair == pair) return false;
      if (m.rank < 0) {
        m = {pair, rank, merged};
        return true;
      }
    }
  }
  void load_merges(const std::string& path);
  CharClass char_class(std::string_view text, size_t at, pcre2_match_data* match) const;
};

void Gpt2Tokenizer::Impl::load_merges(const std::string& path) {
  const std::string where = "merges file '" + path + "'";
  const std::string text = read_file(path, "merges file");
  if (!utf8::check(text).ok(text.size())) throw InputError(where + ": not valid UTF-8");
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.emplace_back(text.data() + start, end - start);
    start = end + 1;
  }
  size_t capacity = 1024;
  shift = 54;
  while (capacity < 4 * lines.size()) capacity *= 2, --shift;
  table.assign(capacity, Merge{});
  mask = capacity - 1;
  const std::vector<int> inverse = alphabet_inverse();
  std::string left, right;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // encoder.py skips the first line ("#version: 0.2") and the empty one after the last '\n'.
    if (line.empty() || (i == 0 && line.rfind("#version", 0) == 0)) continue;
    const std::string at = where + " line " + std::to_string(i + 1) + ": ";
    const size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      throw InputError(at + "expected two tokens separated by one space, got \"" +
                       std::string(line) + "\"");
    }
    if (!alphabet_to_bytes(line.substr(0, space), inverse, left) ||
        !alphabet_to_bytes(line.substr(space + 1), inverse, right)) {
      throw InputError(at + "a character outside GPT-2's byte alphabet");
    }
    const int32_t l = vocab.find(left), r = vocab.find(right), m = vocab.find(left + right);
    if (l < 0 || r < 0 || m < 0) {
      throw InputError(
          at + "\"" + std::string(line) +
          "\": " + (l < 0 || r < 0 ? "a part" : "the merged token") +
          " is not in the encoder's vocabulary (encoder.json and vocab.bpe must belong together)");
    }
    if (!insert(l, r, n_merges, m))
      throw InputError(at + "the merge \"" + std::string(line) + "\" is listed twice");
    ++n_merges;
  }
  if (n_merges == 0) throw InputError(where + ": no merges");
}

CharClass Gpt2Tokenizer::Impl::char_class(std::string_view text, size_t at,
                                          pcre2_match_data* match) const {
  const int rc = pcre2_match(classes, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at,
                             PCRE2_NO_UTF_CHECK, match, nullptr);
  if (rc < 0) return CharClass::other;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
  if (ov[2] != PCRE2_UNSET) return CharClass::letter;
  if (ov[4] != PCRE2_UNSET) return CharClass::number;
  return CharClass::space;
}

Gpt2Tokenizer::Gpt2Tokenizer() : impl_(std::make_unique<Impl>()) {}
Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer::~Gpt2Tokenizer() = default;

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& encoder_json_path,
                                  const std::string& merges_path) {
  Gpt2Tokenizer tokenizer;
  Impl& impl = *tokenizer.impl_;
  impl.vocab = Gpt2Vocab::load(encoder_json_path);
  impl.load_merges(merges_path);
  impl.pattern = compile_pattern(pretokenizer_pattern);
  impl.classes = compile_pattern(class_pattern);
  // Without JIT support (some platforms) the interpreter gives the same matches, slower.
  impl.jit = pcre2_jit_compile(impl.pattern, PCRE2_JIT_COMPLETE) == 0;
  return tokenizer;
}

const Gpt2Vocab& Gpt2Tokenizer::vocab() const { return impl_->vocab; }
int Gpt2Tokenizer::merges() const { return impl_->n_merges; }

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  const utf8::Check check = utf8::check(text);
  if (!check.ok(text.size())) {
    throw InputError("invalid UTF-8 at byte offset " + std::to_string(check.valid) + ": " +
                     utf8::describe_error(text, check.valid));
  }
  std::vector<int32_t> ids;
  Gpt2Encoder(*this).encode(text, ids);
  return ids;
}

size_t Gpt2Tokenizer::safe_cut(std::string_view text, size_t begin, size_t limit) const {
  if (text.empty()) return 0;
  limit = std::min(limit, text.size() - 1);
  // Walks back over character boundaries from `limit`, so the cut found is the nearest one.
  // ASCII is classified here (letters, digits, White_Space, the rest: as PCRE2's tables have
  // it), anything else by PCRE2, with match data made only if needed.
  pcre2_match_data* match = nullptr;
  auto classify = [&](size_t at) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c < 0x80) {
      if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CharClass::letter;
      if (c >= '0' && c <= '9') return CharClass::number;
      return c == ' ' || (c >= '\t' && c <= '\r') ? CharClass::space : CharClass::other;
    }
    if (match == nullptr) match = pcre2_match_data_create_from_pattern(impl_->classes, nullptr);
    MPT_CHECK(match != nullptr, "out of memory for PCRE2 match data");
    return impl_->char_class(text, at, match);
  };
  auto is_boundary = [&](size_t p) { return (static_cast<unsigned char>(text[p]) & 0xC0) != 0x80; };
  size_t found = 0;
  size_t p = limit;
  while (p > begin && !is_boundary(p)) --p;
  CharClass after = p > begin ? classify(p) : CharClass::other;
  while (p > begin) {
    size_t q = p - 1;  // start of the character before the cut
    while (q > begin && !is_boundary(q)) --q;
    if (!is_boundary(q)) break;  // begin is inside a character: no whole character before p
    const CharClass before = classify(q);
    const bool apostrophe_letter = text[q] == '\'' && after == CharClass::letter;
    if (before != CharClass::space && before != after && !apostrophe_letter) {
      found = p;
      break;
    }
    after = before;
    p = q;
  }
  pcre2_match_data_free(match);  // accepts nullptr
  return found;
}

// ---------------------------------------------------------------- encoder

// Words already encoded (bytes -> ids), per thread: most words of a text recur, and a lookup
// here is far cheaper than the merge loop. Open addressing over a flat table, the words and
// their ids in two pools; emptied when half full (a bounded cache, not a growing one).
class WordCache {
 public:
  static constexpr size_t max_word = 64;  // longer words are rare and seldom repeat

  static uint64_t hash(std::string_view word) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ word.size();
    size_t i = 0;
    for (; i + 8 <= word.size(); i += 8) {
      uint64_t block;
      std::memcpy(&block, word.data() + i, 8);
      h = (h ^ block) * 0xff51afd7ed558ccdull;
      h ^= h >> 32;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, word.data() + i, word.size() - i);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
  }
  // Appends the cached ids of `word` to out and returns true, or returns false.
  bool lookup(std::string_view word, uint64_t h, std::vector<int32_t>& out) const {
    if (slots_.empty()) return false;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.word_length == 0) return false;
      if (slot.hash == h && slot.word_length == word.size() &&
          std::memcmp(words_.data() + slot.word, word.data(), word.size()) == 0) {
        out.insert(out.end(), ids_.begin() + slot.ids, ids_.begin() + slot.ids + slot.id_count);
        return true;
      }
    }
  }
  void insert(std::string_view word, uint64_t h, std::span<const int32_t> ids) {
    if (slots_.empty()) slots_.resize(capacity);  // on first use: short-lived encoders stay cheap
    if (used_ >= capacity / 2) {
      std::fill(slots_.begin(), slots_.end(), Slot{});
      words_.clear();
      ids_.clear();
      used_ = 0;
    }
    size_t i = h & mask;
    while (slots_[i].word_length != 0) i = (i + 1) & mask;
    slots_[i] = {h, static_cast<uint32_t>(words_.size()), static_cast<uint32_t>(ids_.size()),
                 static_cast<uint16_t>(word.size()), static_cast<uint16_t>(ids.size())};
    words_.append(word);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    ++used_;
  }

 private:
  static constexpr size_t capacity = size_t{1} << 17;
  static constexpr size_t mask = capacity - 1;
  struct Slot {
    uint64_t hash = 0;
    uint32_t word = 0, ids = 0;              // offsets into words_ and ids_
    uint16_t word_length = 0, id_count = 0;  // word_length 0: empty slot
  };
  std::vector<Slot> slots_;
  std::string words_;
  std::vector<int32_t> ids_;
  size_t used_ = 0;
};

struct Gpt2Encoder::State {
  const Gpt2Tokenizer::Impl& impl;
  pcre2_match_data* match = nullptr;
  WordCache cache;
  // Scratch for the merge loop: symbol ids and a doubly linked list over symbol positions.
  std::vector<int32_t> symbol, prev, next;
  struct Candidate {
    int32_t rank, position, left, right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : position > o.position;
    }
  };
  std::vector<Candidate> heap, batch;
  std::vector<int32_t> touched;

  explicit State(const Gpt2Tokenizer::Impl& i) : impl(i) {
    match = pcre2_match_data_create_from_pattern(impl.pattern, nullptr);
    MPT_CHECK(match != nullptr, "out of memory for PCRE2 match data");
  }
  ~State() { pcre2_match_data_free(match); }
  void push(int32_t left_position, int32_t right_position);
  void merge_word(std::string_view word, std::vector<int32_t>& out);
  void encode_word(std::string_view word, std::vector<int32_t>& out);
};

void Gpt2Encoder::State::push(int32_t a, int32_t b) {
  if (a < 0 || b < 0) return;
  const auto* m = impl.find(symbol[static_cast<size_t>(a)], symbol[static_cast<size_t>(b)]);
  if (m == nullptr) return;
  heap.push_back({m->rank, a, symbol[static_cast<size_t>(a)], symbol[static_cast<size_t>(b)]});
  std::push_heap(heap.begin(), heap.end(), std::greater<>());
}

// encoder.py's bpe(): repeatedly take the lowest-ranked adjacent pair and merge all of its
// non-overlapping occurrences, left to right. Here in O(n log n): a heap of candidate pairs
// ordered by (rank, position); all candidates of the lowest rank are merged as one batch in
// position order, skipping those a merge has consumed, and only then are the pairs the batch
// created added, so a new pair is never merged before the old ones of the same sweep.
void Gpt2Encoder::State::merge_word(std::string_view word, std::vector<int32_t>& out) {
  const auto n = static_cast<int32_t>(word.size());
  symbol.resize(word.size());
  prev.resize(word.size());
  next.resize(word.size());
  for (int32_t i = 0; i < n; ++i) {
    symbol[static_cast<size_t>(i)] =
        impl.vocab.byte_token(static_cast<unsigned char>(word[static_cast<size_t>(i)]));
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);
  while (!heap.empty()) {
    const int32_t rank = heap.front().rank;
    batch.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      batch.push_back(heap.back());
      heap.pop_back();
    }
    touched.clear();
    for (const Candidate& c : batch) {  // in position order
      const auto a = static_cast<size_t>(c.position);
      const int32_t b = next[a];
      // Stale: a merge since has consumed the left symbol (its id is then -1) or changed
      // either symbol.
      if (b < 0 || symbol[a] != c.left || symbol[static_cast<size_t>(b)] != c.right) continue;
      symbol[a] = impl.find(c.left, c.right)->merged;
      const int32_t after = next[static_cast<size_t>(b)];
      next[a] = after;
      if (after >= 0) prev[static_cast<size_t>(after)] = c.position;
      next[static_cast<size_t>(b)] = -1;
      prev[static_cast<size_t>(b)] = -2;  // marks b as consumed
      symbol[static_cast<size_t>(b)] = -1;
      touched.push_back(c.position);
    }
    for (int32_t t : touched) {
      const auto i = static_cast<size_t>(t);
      if (prev[i] == -2) continue;  // consumed later in the same batch
      push(prev[i], t);
      push(t, next[i]);
    }
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)])
    out.push_back(symbol[static_cast<size_t>(i)]);
}

void Gpt2Encoder::State::encode_word(std::string_view word, std::vector<int32_t>& out) {
  if (word.size() == 1) {
    out.push_back(impl.vocab.byte_token(static_cast<unsigned char>(word[0])));
    return;
  }
  if (word.size() > WordCache::max_word) {
    merge_word(word, out);
    return;
  }
  const uint64_t h = WordCache::hash(word);
  if (cache.lookup(word, h, out)) return;
  const size_t start = out.size();
  merge_word(word, out);
  cache.insert(word, h, std::span<const int32_t>(out).subspan(start));
}

Gpt2Encoder::Gpt2Encoder(const Gpt2Tokenizer& tokenizer)
    : state_(std::make_unique<State>(*tokenizer.impl_)) {}
Gpt2Encoder::Gpt2Encoder(Gpt2Encoder&&) noexcept = default;
Gpt2Encoder::~Gpt2Encoder() = default;

void Gpt2Encoder::encode(std::string_view text, std::vector<int32_t>& out) {
  State& s = *state_;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.match);
  size_t position = 0;
  while (position < text.size()) {
    // Anchored at `position` (the pattern is compiled anchored): every character starts a match.
    const int rc = s.impl.jit ? pcre2_jit_match(s.impl.pattern, subject, text.size(), position, 0,
                                                s.match, nullptr)
                              : pcre2_match(s.impl.pattern, subject, text.size(), position,
                                            PCRE2_NO_UTF_CHECK, s.match, nullptr);
    MPT_CHECK(rc > 0 && ov[0] == position && ov[1] > position,
              "the GPT-2 pre-tokenizer matched nothing at byte " + std::to_string(position) +
                  (rc < 0 ? ": " + pcre2_message(rc) : std::string()));
    s.encode_word(text.substr(position, ov[1] - position), out);
    position = ov[1];
  }
}

}  // namespace mptrain
