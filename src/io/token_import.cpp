// Token files made by other tools (token_import.hpp): llm.c shards and raw uint16 arrays.
// Values are assembled from little-endian bytes, so the host's byte order does not matter.
#include "mptrain/io/token_import.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "mptrain/core/error.hpp"

namespace mptrain {
namespace {

constexpr size_t block_tokens = size_t{1} << 20;

std::string where(const std::string& path) { return "token file '" + path + "': "; }

std::ifstream open_token_file(const std::string& path, uint64_t& size) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InputError(where(path) + "is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(where(path) + "cannot read: " + std::strerror(errno));
  size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(where(path) + "cannot tell its size: " + ec.message());
  return in;
}

int32_t little_int32(const unsigned char* p) {
  return static_cast<int32_t>(uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
                              uint32_t{p[3]} << 24);
}

// Reads `count` uint16 tokens from `in` (positioned at the first) in blocks, calling
// visit(block, index of its first token).
void read_tokens(std::ifstream& in, const std::string& path, uint64_t count,
                 const std::function<void(std::span<const int32_t>, uint64_t)>& visit) {
  std::vector<unsigned char> bytes;
  std::vector<int32_t> tokens;
  for (uint64_t done = 0; done < count;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(block_tokens, count - done));
    bytes.resize(2 * n);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (static_cast<size_t>(in.gcount()) != bytes.size()) {
      throw InputError(where(path) + "read error or file shortened at token " +
                       std::to_string(done + static_cast<uint64_t>(in.gcount()) / 2));
    }
    tokens.resize(n);
    for (size_t i = 0; i < n; ++i) tokens[i] = bytes[2 * i] | bytes[2 * i + 1] << 8;
    visit(tokens, done);
    done += n;
  }
}

// The llm.c header: where the tokens start and how many there are, checked against the size.
TokenSegment read_llmc_header(std::ifstream& in, const std::string& path, uint64_t size) {
  if (size < llmc_header_bytes) {
    throw InputError(where(path) + "holds " + std::to_string(size) + " bytes, fewer than llm.c's " +
                     std::to_string(llmc_header_bytes) + "-byte header: not an llm.c token shard");
  }
  unsigned char header[12];
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (in.gcount() != sizeof header) throw InputError(where(path) + "read error in the header");
  const int32_t magic = little_int32(header), version = little_int32(header + 4),
                count = little_int32(header + 8);
  if (magic != llmc_magic) {
    throw InputError(where(path) + "magic number " + std::to_string(magic) + ", not " +
                     std::to_string(llmc_magic) + ": not an llm.c token shard" +
                     (magic == 20240326 ? " (20240326 marks an llm.c model file)" : ""));
  }
  if (version != llmc_version) {
    throw InputError(where(path) + "llm.c shard version " + std::to_string(version) +
                     "; only version " + std::to_string(llmc_version) +
                     " (GPT-2 tokens as uint16) can be imported");
  }
  const uint64_t body = size - llmc_header_bytes;
  if (count < 0 || body != 2 * static_cast<uint64_t>(count)) {
    throw InputError(where(path) + "the header says " + std::to_string(count) +
                     " tokens, but the file holds " + std::to_string(body) +
                     " bytes after the header" +
                     (body % 2 ? "" : " (" + std::to_string(body / 2) + " tokens)") +
                     ": truncated or not an llm.c shard");
  }
  in.seekg(static_cast<std::streamoff>(llmc_header_bytes));
  return {path, llmc_header_bytes, static_cast<uint64_t>(count)};
}

}  // namespace

TokenFileFormat parse_token_file_format(const std::string& name) {
  if (name == "llmc") return TokenFileFormat::llmc;
  if (name == "raw-u16") return TokenFileFormat::raw_u16;
  throw InputError("--import=" + name +
                   ": unknown format (llmc: llm.c token shards; raw-u16: bare " +
                   "little-endian uint16 tokens, as nanoGPT writes them)");
}

TokenSegment inspect_token_file(const std::string& path, TokenFileFormat format, int vocab_size) {
  uint64_t size = 0;
  std::ifstream in = open_token_file(path, size);
  TokenSegment segment{path, 0, 0};
  if (format == TokenFileFormat::llmc) {
    segment = read_llmc_header(in, path, size);
  } else {
    if (size % 2 != 0) {
      throw InputError(where(path) + "holds an odd number of bytes (" + std::to_string(size) +
                       "): not an array of uint16 tokens");
    }
    segment.count = size / 2;
  }
  read_tokens(in, path, segment.count, [&](std::span<const int32_t> tokens, uint64_t first) {
    auto bad = std::find_if(tokens.begin(), tokens.end(),
                            [vocab_size](int32_t t) { return t >= vocab_size; });
    if (bad != tokens.end()) {
      const uint64_t index = first + static_cast<uint64_t>(bad - tokens.begin());
      throw InputError(
          where(path) + "token " + std::to_string(*bad) + " at index " + std::to_string(index) +
          " (byte offset " + std::to_string(segment.offset + 2 * index) +
          ") is not below the vocabulary size " + std::to_string(vocab_size) + " (--vocab-size)");
    }
  });
  return segment;
}

std::pair<std::vector<TokenSegment>, std::vector<TokenSegment>> split_segments(
    std::span<const TokenSegment> segments, uint64_t at) {
  std::vector<TokenSegment> head, tail;
  uint64_t start = 0;  // index of the segment's first token in the stream
  for (const TokenSegment& s : segments) {
    if (start + s.count <= at) {
      head.push_back(s);
    } else if (start >= at) {
      tail.push_back(s);
    } else {
      const uint64_t first = at - start;
      head.push_back({s.file, s.offset, first});
      tail.push_back({s.file, s.offset + 2 * first, s.count - first});
    }
    start += s.count;
  }
  return {head, tail};
}

void read_segments(std::span<const TokenSegment> segments,
                   const std::function<void(std::span<const int32_t>)>& sink) {
  for (const TokenSegment& s : segments) {
    uint64_t size = 0;
    std::ifstream in = open_token_file(s.file, size);
    in.seekg(static_cast<std::streamoff>(s.offset));
    read_tokens(in, s.file, s.count,
                [&](std::span<const int32_t> tokens, uint64_t) { sink(tokens); });
  }
}

}  // namespace mptrain
