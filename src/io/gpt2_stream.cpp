// Gpt2StreamEncoder (gpt2_tokenizer.hpp): a stream of any size encoded in bounded memory on
// several OpenMP threads. Each round reads text until the buffer holds about threads * piece
// bytes, checks it is UTF-8, cuts it at safe cuts into at most `threads` pieces, encodes the
// pieces in parallel and hands their ids on in order; the text after the last cut waits for
// the next round. A buffer without any safe cut (one pre-token longer than the buffer) grows.
#include <omp.h>

#include <algorithm>
#include <exception>
#include <istream>

#include "mptrain/io/gpt2_tokenizer.hpp"
#include "io/utf8.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {

Gpt2StreamEncoder::Gpt2StreamEncoder(const Gpt2Tokenizer& tokenizer, Options options)
    : tokenizer_(tokenizer), options_(options) {
  if (options_.threads <= 0) options_.threads = omp_get_max_threads();
  options_.piece_bytes = std::max<size_t>(options_.piece_bytes, 1);
  for (int t = 0; t < options_.threads; ++t) encoders_.emplace_back(tokenizer_);
}

Gpt2StreamEncoder::~Gpt2StreamEncoder() = default;

namespace {

struct Piece {
  size_t begin, end;
};

// Reads from `in` until `text` holds `want` bytes or the stream ends; returns true at the end.
bool fill(std::istream& in, const std::string& name, std::string& text, size_t want) {
  while (text.size() < want) {
    const size_t old = text.size();
    text.resize(want);
    in.read(text.data() + old, static_cast<std::streamsize>(want - old));
    text.resize(old + static_cast<size_t>(in.gcount()));
    if (in.bad()) throw InputError("'" + name + "': read error");
    if (text.size() < want) return true;
  }
  return false;
}

}  // namespace

uint64_t Gpt2StreamEncoder::encode(std::istream& in, const std::string& name, const Sink& sink) {
  const size_t threads = encoders_.size();
  const size_t piece = options_.piece_bytes;
  const size_t round = threads * piece;
  std::string text;  // text not encoded yet; text[0] is byte `base` of the stream
  uint64_t base = 0;
  size_t checked = 0;  // text[0, checked) is valid UTF-8 and ends at a character boundary
  size_t want = round;
  bool at_end = false;
  std::vector<Piece> pieces;
  std::vector<std::vector<int32_t>> ids(threads);
  while (true) {
    if (!at_end) at_end = fill(in, name, text, want);
    const utf8::Check check = utf8::check(std::string_view(text).substr(checked));
    checked += check.valid;
    if (checked < text.size() && (at_end || !check.incomplete_tail)) {
      throw InputError(
          "'" + name + "': invalid UTF-8 at byte offset " + std::to_string(base + checked) + ": " +
          utf8::describe_error(text, checked) +
          " (the GPT-2 tokenizer reads UTF-8 text; convert the file, e.g. with iconv)");
    }
    if (at_end && text.empty()) break;

    // Cut: pieces of at most `piece` bytes where a safe cut allows, the rest carried over.
    const std::string_view valid(text.data(), checked);
    pieces.clear();
    size_t start = 0;
    while (pieces.size() < threads && start < checked) {
      if (at_end && checked - start <= piece) {
        pieces.push_back({start, checked});
        start = checked;
        break;
      }
      size_t cut = tokenizer_.safe_cut(valid, start, start + piece);
      if (cut == 0 && pieces.empty())
        cut = tokenizer_.safe_cut(valid, start, checked);  // a longer piece
      if (cut == 0) break;
      pieces.push_back({start, cut});
      start = cut;
    }
    if (pieces.empty()) {
      if (!at_end) {  // no safe cut anywhere: one pre-token fills the buffer; read more
        want = 2 * std::max(want, text.size());
        continue;
      }
      pieces.push_back({0, checked});  // the end of the stream is always a safe cut
    }

    std::exception_ptr failure;
#pragma omp parallel for num_threads(static_cast <int>(threads)) schedule(dynamic, 1)
    for (size_t k = 0; k < pieces.size(); ++k) {
      try {
        ids[k].clear();
        encoders_[static_cast<size_t>(omp_get_thread_num())].encode(
            valid.substr(pieces[k].begin, pieces[k].end - pieces[k].begin), ids[k]);
      } catch (...) {
#pragma omp critical(mptrain_gpt2_stream_failure)
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    for (size_t k = 0; k < pieces.size(); ++k) sink(ids[k]);

    const size_t consumed = pieces.back().end;
    text.erase(0, consumed);
    base += consumed;
    checked -= consumed;
    want = round;
  }
  return base;
}

}  // namespace mptrain
