// Token files made by other tools, for mptrain-prep --import=FORMAT (doc/DESIGN.md §7):
//
//   llmc     llm.c's shards (dev/data/*.bin): a header of 256 little-endian int32 -- magic
//            20240520, version 1, the token count, the rest unused -- then the tokens as
//            little-endian uint16. GPT-2 tokens (vocabulary 50257).
//   raw-u16  a bare array of little-endian uint16 tokens, as nanoGPT's prepare.py writes
//            train.bin / val.bin; the vocabulary size must be given.
//
// Each file is checked once, completely (header, size, every token below the vocabulary
// size), and described as a TokenSegment: where its tokens lie. The segments then become a
// dataset whose /tokens refers to them without a copy (write_external_token_dataset) or, on
// request, a copy (read_segments into a TokenDatasetWriter).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mptrain/io/data.hpp"

namespace mptrain {

enum class TokenFileFormat { llmc, raw_u16 };

// "llmc" or "raw-u16"; throws InputError naming the formats there are.
TokenFileFormat parse_token_file_format(const std::string& name);

inline constexpr int32_t llmc_magic = 20240520;
inline constexpr int32_t llmc_version = 1;
inline constexpr uint64_t llmc_header_bytes = 256 * 4;
inline constexpr int llmc_vocab_size = 50257;  // GPT-2's

// Checks that `path` is a well-formed token file of `format` whose every token is below
// vocab_size, reading it once in blocks, and returns where its tokens are. Throws InputError
// naming the file and the problem: unreadable, a wrong magic number or version, a count that
// disagrees with the file's size, an odd number of bytes (raw-u16), a token >= vocab_size
// (with its index).
TokenSegment inspect_token_file(const std::string& path, TokenFileFormat format, int vocab_size);

// Splits a stream of segments at token `at` (0 <= at <= total): tokens [0, at) and [at, total).
std::pair<std::vector<TokenSegment>, std::vector<TokenSegment>> split_segments(
    std::span<const TokenSegment> segments, uint64_t at);

// Reads the segments' tokens in order, a block at a time, handing each block to `sink`.
// Throws InputError naming the file for a read error.
void read_segments(std::span<const TokenSegment> segments,
                   const std::function<void(std::span<const int32_t>)>& sink);

}  // namespace mptrain
