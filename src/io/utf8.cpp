// UTF-8 validation (utf8.hpp): the table of RFC 3629 §4, byte by byte, with a fast path that
// skips eight ASCII bytes at a time (most text is mostly ASCII).
#include "io/utf8.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mptrain::utf8 {
namespace {

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// The allowed range of the second byte after `lead` (RFC 3629 §4): narrower than 80..BF after
// E0 (no overlong 3-byte forms), ED (no surrogates), F0 (no overlong 4-byte forms) and F4
// (nothing above U+10FFFF).
void second_byte_range(unsigned char lead, unsigned char& lo, unsigned char& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (lead == 0xE0)
    lo = 0xA0;
  else if (lead == 0xED)
    hi = 0x9F;
  else if (lead == 0xF0)
    lo = 0x90;
  else if (lead == 0xF4)
    hi = 0x8F;
}

enum class Verdict { valid, invalid, incomplete };

// Checks the sequence starting at p (avail bytes available, avail >= 1).
Verdict check_sequence(const unsigned char* p, size_t avail, size_t& length) {
  length = sequence_length(p[0]);
  if (length == 0) return Verdict::invalid;
  if (length == 1) return Verdict::valid;
  unsigned char lo, hi;
  second_byte_range(p[0], lo, hi);
  for (size_t i = 1; i < length; ++i) {
    if (i >= avail) return Verdict::incomplete;
    const bool fits = i == 1 ? (p[1] >= lo && p[1] <= hi) : is_continuation(p[i]);
    if (!fits) return Verdict::invalid;
  }
  return Verdict::valid;
}

std::string hex_bytes(std::string_view text, size_t offset, size_t count) {
  std::string out;
  for (size_t i = offset; i < text.size() && i < offset + count; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%s%02x", out.empty() ? "" : " ",
                  static_cast<unsigned char>(text[i]));
    out += hex;
  }
  return out;
}

}  // namespace

size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;  // continuation byte, or C0/C1 (always overlong)
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

Check check(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time: no byte has its top bit set.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, bytes + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    if (bytes[i] < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    switch (check_sequence(bytes + i, n - i, length)) {
      case Verdict::valid:
        i += length;
        break;
      case Verdict::invalid:
        return {i, false};
      case Verdict::incomplete:
        return {i, true};
    }
  }
  return {n, false};
}

std::string describe_error(std::string_view text, size_t offset) {
  if (offset >= text.size()) return "no error";
  const auto* p = reinterpret_cast<const unsigned char*>(text.data()) + offset;
  const size_t avail = text.size() - offset;
  char first[8];
  std::snprintf(first, sizeof first, "0x%02x", p[0]);
  size_t length = sequence_length(p[0]);
  if (length == 0) {
    if (is_continuation(p[0])) return std::string("stray continuation byte ") + first;
    return std::string("byte ") + first + " cannot occur in UTF-8";
  }
  size_t checked = 0;
  if (check_sequence(p, avail, checked) == Verdict::incomplete) {
    return "sequence " + hex_bytes(text, offset, avail) + " cut short by the end of the text";
  }
  unsigned char lo, hi;
  second_byte_range(p[0], lo, hi);
  if (avail > 1 && is_continuation(p[1]) && (p[1] < lo || p[1] > hi)) {
    const char* why = p[0] == 0xED   ? "a UTF-16 surrogate (U+D800..U+DFFF)"
                      : p[0] == 0xF4 ? "a code point above U+10FFFF"
                                     : "an overlong encoding";
    return "sequence " + hex_bytes(text, offset, length) + " is " + why;
  }
  return "sequence " + hex_bytes(text, offset, length) + " lacks continuation bytes";
}

}  // namespace mptrain::utf8
