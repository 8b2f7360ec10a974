// Tests of the GPT-2 tokenizer (io/gpt2_tokenizer.hpp) against ids made by encoders that are
// not ours: test/gpt2/golden.json (46 texts: contractions, whitespace runs, digits,
// punctuation, many scripts, emoji sequences, Unicode spaces, control characters, long words)
// and test/gpt2/corpus.ids (test/gpt2/corpus.txt), both made once by test/gpt2/make_golden.js
// with OpenAI's tiktoken ("gpt2" encoding) and cross-checked with gpt-3-encoder. Also: decoding
// inverts encoding; the streaming encoder gives the whole-text ids for every piece size and
// thread count (tiny pieces force cuts everywhere); every cut safe_cut() proposes really is
// safe, while a cut after whitespace is not; invalid UTF-8 is refused with the stream's name
// and the byte offset; malformed encoder.json / vocab.bpe files are refused. One process, no
// MPI; the GPT-2 files are the shipped input/gpt2/ ones.
#define BOOST_TEST_MODULE gpt2
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/gpt2_tokenizer.hpp"
#include "io/utf8.hpp"
#include "mptrain/core/error.hpp"

using namespace mptrain;
namespace fs = std::filesystem;

namespace {

std::string source(const std::string& relative) {
  const char* top = std::getenv("top_srcdir");
  return (fs::path(top != nullptr ? top : ".") / relative).string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BOOST_REQUIRE_MESSAGE(in, "cannot read " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const Gpt2Tokenizer& tokenizer() {
  static const Gpt2Tokenizer t =
      Gpt2Tokenizer::load(source("input/gpt2/encoder.json"), source("input/gpt2/vocab.bpe"));
  return t;
}

std::vector<int32_t> read_ids(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

std::vector<int32_t> stream_encode(const std::string& text, size_t piece, int threads,
                                   const std::string& name = "text") {
  std::istringstream in(text);
  Gpt2StreamEncoder encoder(tokenizer(), {piece, threads});
  std::vector<int32_t> ids;
  const uint64_t bytes = encoder.encode(in, name, [&](std::span<const int32_t> part) {
    ids.insert(ids.end(), part.begin(), part.end());
  });
  BOOST_TEST(bytes == text.size());
  return ids;
}

// The message of the InputError `run` throws ("" when it throws none).
std::string input_error(const std::function<void()>& run) {
  try {
    run();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& fragment) {
  return text.find(fragment) != std::string::npos;
}

// Every case text of golden.json, one after another, then the corpus: a long, varied text.
std::string everything() {
  const nlohmann::json golden = nlohmann::json::parse(read_file(source("test/gpt2/golden.json")));
  std::string text;
  for (const auto& c : golden.at("cases")) text += c.at("text").get<std::string>();
  return text + read_file(source("test/gpt2/corpus.txt"));
}

// Texts that stress the streaming cuts: runs with no safe cut inside, text without ASCII
// spaces (the Unicode-class cuts), and cuts next to apostrophes.
std::string hard_text() {
  std::string text = "x" + std::string(3000, ' ') + "y" + std::string(2000, 'a') + "\n\n\n \t ";
  for (int i = 0; i < 300; ++i) text += "\u6211\u80fd\u541e";  // letters, no cut inside
  text += "\u3002\u4e0d\u4f24123\u201c\u4f60\u201d!!'s'S'tt's9'''d";
  for (int i = 0; i < 200; ++i) text += "ab'sx'tq,\u00e9\u0301\U0001F600";
  return text + std::string(500, '\n') + "end  ";
}

}  // namespace

BOOST_AUTO_TEST_CASE(shipped_vocabulary) {
  const Gpt2Vocab& vocab = tokenizer().vocab();
  BOOST_TEST(vocab.size() == 50257);
  BOOST_TEST(tokenizer().merges() == 50000);
  BOOST_TEST(vocab.end_of_text() == 50256);
  BOOST_TEST(vocab.bytes(50256) == "<|endoftext|>");
  BOOST_TEST(vocab.byte_token('!') == 0);    // GPT-2's first token
  BOOST_TEST(vocab.byte_token(' ') == 220);  // "Ġ"
  BOOST_TEST(vocab.bytes(198) == "\n");
  BOOST_TEST(vocab.fingerprint() == gpt2_vocab_fingerprint);
}

BOOST_AUTO_TEST_CASE(golden_cases) {
  const nlohmann::json golden = nlohmann::json::parse(read_file(source("test/gpt2/golden.json")));
  BOOST_TEST_MESSAGE("reference: " << golden.at("reference").get<std::string>());
  const auto& cases = golden.at("cases");
  BOOST_TEST(cases.size() >= 40u);
  for (const auto& c : cases) {
    const std::string name = c.at("name"), text = c.at("text");
    const std::vector<int32_t> expected = c.at("ids").get<std::vector<int32_t>>();
    BOOST_TEST_CONTEXT("case '" << name << "'") {
      const std::vector<int32_t> ids = tokenizer().encode(text);
      BOOST_TEST(ids == expected, boost::test_tools::per_element());
      BOOST_TEST(tokenizer().vocab().decode(ids) == text);
    }
  }
}

BOOST_AUTO_TEST_CASE(golden_corpus) {
  const std::string text = read_file(source("test/gpt2/corpus.txt"));
  const std::vector<int32_t> expected = read_ids(source("test/gpt2/corpus.ids"));
  BOOST_TEST(expected.size() > 1000u);
  BOOST_TEST(tokenizer().encode(text) == expected, boost::test_tools::per_element());
  BOOST_TEST(stream_encode(text, 64, 2) == expected, boost::test_tools::per_element());
  BOOST_TEST(tokenizer().vocab().decode(expected) == text);
}

BOOST_AUTO_TEST_CASE(stream_equals_whole_for_any_piece_size) {
  for (const std::string& text : {everything(), hard_text()}) {
    const std::vector<int32_t> whole = tokenizer().encode(text);
    for (size_t piece : {1, 2, 3, 7, 61, 4096, 1 << 20}) {
      for (int threads : {1, 3}) {
        BOOST_TEST_CONTEXT("piece " << piece << " bytes, " << threads << " threads") {
          BOOST_TEST(stream_encode(text, piece, threads) == whole,
                     boost::test_tools::per_element());
        }
      }
    }
  }
  BOOST_TEST(stream_encode("", 5, 2).empty());
}

BOOST_AUTO_TEST_CASE(safe_cuts_are_safe) {
  // Every cut proposed for every limit splits the text into parts whose ids concatenate to
  // the whole text's; the character before a cut is never whitespace.
  for (const std::string& text : {read_file(source("test/gpt2/corpus.txt")), hard_text()}) {
    const std::vector<int32_t> whole = tokenizer().encode(text);
    size_t last = 0, distinct = 0, wrong = 0;
    for (size_t limit = 1; limit < text.size(); limit += 1 + limit / 256) {
      const size_t p = tokenizer().safe_cut(text, 0, limit);
      if (p == 0 || p == last) continue;
      last = p;
      ++distinct;
      BOOST_TEST(p <= limit);
      std::vector<int32_t> parts = tokenizer().encode(text.substr(0, p));
      const std::vector<int32_t> rest = tokenizer().encode(text.substr(p));
      parts.insert(parts.end(), rest.begin(), rest.end());
      if (parts != whole) {
        ++wrong;
        BOOST_ERROR("the cut at byte " << p << " changes the ids");
      }
      BOOST_TEST(!std::isspace(static_cast<unsigned char>(text[p - 1])));
    }
    BOOST_TEST(distinct > 50u);
    BOOST_TEST(wrong == 0u);
  }
  // The hazard the rule avoids: a cut after whitespace changes the ids ("x  y" is "x", " ",
  // " y", but "x  " ends in a whitespace run of its own).
  std::vector<int32_t> cut = tokenizer().encode("x  ");
  const std::vector<int32_t> y = tokenizer().encode("y");
  cut.insert(cut.end(), y.begin(), y.end());
  BOOST_TEST(cut != tokenizer().encode("x  y"));
  // No cut between an apostrophe and a letter ('s is one piece), nor inside a run of letters
  // or after whitespace.
  const std::string quotes = "ab's";
  BOOST_TEST(tokenizer().safe_cut(quotes, 0, 3) == 2u);  // after "ab", before "'s"
  BOOST_TEST(tokenizer().safe_cut("abcdef", 0, 5) == 0u);
  BOOST_TEST(tokenizer().safe_cut("a     ", 0, 5) == 1u);
  BOOST_TEST(tokenizer().safe_cut("      a", 0, 6) == 0u);
}

BOOST_AUTO_TEST_CASE(decode_refuses_unknown_ids) {
  const Gpt2Vocab& vocab = tokenizer().vocab();
  BOOST_TEST(contains(input_error([&] { vocab.decode(std::vector<int32_t>{1, 50257}); }), "50257"));
  BOOST_TEST(contains(input_error([&] { vocab.decode(std::vector<int32_t>{-1}); }), "-1"));
  BOOST_TEST(vocab.decode(std::vector<int32_t>{}).empty());
}

BOOST_AUTO_TEST_CASE(invalid_utf8_names_the_stream_and_offset) {
  struct Bad {
    std::string text;
    size_t offset;
    std::string why;
  };
  const std::vector<Bad> bad{
      {"abc\xff", 3, "0xff"},
      {"ok \xc3(", 3, "lacks continuation"},
      {"\xe0\x80\xaf", 0, "overlong"},
      {"\xc0\xaf", 0, "0xc0"},
      {"\xed\xa0\x80", 0, "surrogate"},
      {"\xf4\x90\x80\x80", 0, "above U+10FFFF"},
      {"abc\xe2\x82", 3, "cut short by the end"},
      {"x\x80", 1, "continuation byte"},
      {std::string(5000, 'a') + " \xfe", 5001, "0xfe"},
  };
  for (const Bad& b : bad) {
    for (size_t piece : {3, 1 << 20}) {
      const std::string message = input_error([&] { stream_encode(b.text, piece, 2, "bad.txt"); });
      BOOST_TEST_CONTEXT("'" << message << "'") {
        BOOST_TEST(contains(message, "'bad.txt'"));
        BOOST_TEST(contains(message, "byte offset " + std::to_string(b.offset) + ":"));
        BOOST_TEST(contains(message, b.why));
      }
    }
    BOOST_TEST(contains(input_error([&] { tokenizer().encode(b.text); }),
                        "byte offset " + std::to_string(b.offset)));
  }
}

BOOST_AUTO_TEST_CASE(utf8_check_boundaries) {
  // The first and last code point of each sequence length are valid...
  for (const char* ok : {"\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                         "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
    BOOST_TEST(utf8::check(ok).ok(std::string_view(ok).size()), "valid: " << ok);
  }
  // ...a sequence cut short is incomplete (more bytes could finish it), not wrong...
  const utf8::Check tail = utf8::check("ab\xf0\x9f\x98");
  BOOST_TEST(tail.valid == 2u);
  BOOST_TEST(tail.incomplete_tail);
  // ...and one that cannot be finished is wrong.
  const utf8::Check wrong = utf8::check("ab\xf0\x9f(");
  BOOST_TEST(wrong.valid == 2u);
  BOOST_TEST(!wrong.incomplete_tail);
}

BOOST_AUTO_TEST_CASE(bad_tokenizer_files_are_refused) {
  const char* workdir = std::getenv("TEST_WORKDIR");
  const fs::path dir =
      fs::path(workdir != nullptr ? workdir : fs::temp_directory_path().string()) / "gpt2-bad";
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  const std::string encoder = source("input/gpt2/encoder.json"),
                    merges = source("input/gpt2/vocab.bpe");
  struct Bad {
    std::string encoder_text, merges_text, fragment;
  };
  // A tiny vocabulary: the 256 byte tokens of GPT-2's alphabet would be needed; these fail first.
  const std::vector<Bad> bad{
      {"{not json", "", "not valid JSON"},
      {"[1, 2]", "", "expected a JSON object"},
      {"{\"a\": 1}", "", "ids must be the integers 0..0"},
      {"{\"a\": 0, \"b\": \"1\"}", "", "token \"b\" has id \"1\""},
      {"{\"\xe4\xb8\x80\": 0}", "", "outside GPT-2's byte alphabet"},
      {"{\"a\": 0, \"b\": 0}", "", "id 0 is given to two tokens"},
      {"{\"a\": 0}", "", "no token for the single byte 0"},
  };
  for (const Bad& b : bad) {
    const std::string path = write("encoder.json", b.encoder_text);
    const std::string message = input_error([&] { Gpt2Tokenizer::load(path, merges); });
    BOOST_TEST(contains(message, path), message);
    BOOST_TEST(contains(message, b.fragment), message << " (expected '" << b.fragment << "')");
  }
  const std::vector<std::pair<std::string, std::string>> bad_merges{
      {"#version: 0.2\nG a b\n", "line 2: expected two tokens"},
      {"#version: 0.2\nt h\nzzzzqx zzzzqy\n", "line 3: \"zzzzqx zzzzqy\": a part is not in"},
      {"#version: 0.2\nt h\nt h\n", "listed twice"},
      {"#version: 0.2\n", "no merges"},
  };
  for (const auto& [text, fragment] : bad_merges) {
    const std::string path = write("vocab.bpe", text);
    const std::string message = input_error([&] { Gpt2Tokenizer::load(encoder, path); });
    BOOST_TEST(contains(message, path), message);
    BOOST_TEST(contains(message, fragment), message << " (expected '" << fragment << "')");
  }
  BOOST_TEST(
      contains(input_error([&] { Gpt2Tokenizer::load((dir / "missing.json").string(), merges); }),
               "cannot read"));
}
