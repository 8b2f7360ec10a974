// UTF-8 validation for the text readers (the GPT-2 tokenizer and mptrain-prep). Text is
// validated once, here, so that the regular-expression engine can be told to skip its own
// check (which it would otherwise repeat over the whole subject at every match). Valid means
// what RFC 3629 and PCRE2 agree on: shortest-form sequences of code points up to U+10FFFF,
// with no surrogates (U+D800..U+DFFF).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mptrain::utf8 {

// The result of checking a piece of text.
struct Check {
  // Bytes [0, valid) are whole, valid UTF-8 sequences.
  size_t valid = 0;
  // True when the text is valid up to `valid` and the rest (fewer than 4 bytes) is the
  // beginning of a sequence that more bytes could complete: not an error when more text
  // follows (a stream cut mid-character), an error at the end of the input.
  bool incomplete_tail = false;
  // True when every byte is valid (valid == size, nothing incomplete).
  bool ok(size_t size) const { return valid == size; }
};

// Checks `text`. On an error, `valid` is the byte offset of the first byte of the offending
// sequence.
Check check(std::string_view text);

// The length (1..4) of the sequence starting with lead byte `lead`, or 0 for a byte that cannot
// start one (a continuation byte 0x80..0xBF, or 0xC0, 0xC1, 0xF5..0xFF).
size_t sequence_length(unsigned char lead);

// What is wrong with the sequence at `text[offset]` (the `valid` of a failed check), for
// messages: e.g. "byte 0xff cannot start a character", "overlong encoding e0 80 af".
std::string describe_error(std::string_view text, size_t offset);

}  // namespace mptrain::utf8
