// The safetensors file format (Hugging Face), read and written without the reference library:
// an 8-byte little-endian header length N, N bytes of JSON -- an object mapping each tensor's
// name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets into the data section)
// plus an optional "__metadata__" object of string values -- then the raw little-endian data.
// The reader validates everything before any tensor is used and refuses a malformed file with
// an InputError naming the file and the defect: a header length beyond the file, bad JSON,
// duplicate names, an unknown dtype, a shape whose size disagrees with its offsets, offsets
// outside the data, overlapping or leaving gaps (the tensors must tile the data section, as
// the reference implementation requires). Float tensors stored as F16 or BF16 are converted to
// float32 on reading (exactly: every such value is a float32); other dtypes are refused where
// floats are needed. The writer produces what the reference writer does: the header padded
// with spaces to a multiple of 8 bytes, tensors stored in the order given, back to back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mptrain::safetensors {

// Bytes per element of a dtype of the format ("F32", "BF16", "I64", ...); 0 when unknown.
size_t dtype_size(const std::string& dtype);

// One tensor of a header. Offsets are bytes, relative to the start of the data section.
struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
  int64_t elements() const;
};

// A validated header.
struct Header {
  std::vector<TensorEntry> tensors;            // in data order
  std::map<std::string, std::string> metadata;  // "__metadata__", if any
  uint64_t data_start = 0;                      // file offset of the data section (8 + N)
  const TensorEntry* find(const std::string& name) const;  // null when absent
};

// The most header bytes accepted (the reference implementation's limit as well).
inline constexpr uint64_t max_header_bytes = 100'000'000;

// Parses and validates the JSON header of a file whose data section holds `data_bytes` bytes.
// `origin` names the file in messages. Throws InputError.
Header parse_header(std::string_view json, uint64_t data_bytes, const std::string& origin);

// A tensor's raw bytes (exactly its offsets' span) as float32: F32 copied, F16 and BF16
// widened exactly. Throws InputError for any other dtype.
std::vector<float> to_float32(const TensorEntry& tensor, std::span<const std::byte> raw,
                              const std::string& origin);

// Reads a safetensors file from disk; the header is read and checked on construction, each
// tensor only when asked for (memory: one tensor at a time).
class Reader {
 public:
  explicit Reader(const std::string& path);  // throws InputError
  const std::string& path() const { return path_; }
  const Header& header() const { return header_; }
  // The tensor as float32 (see to_float32). Throws InputError when absent or not a float.
  std::vector<float> read_float32(const std::string& name);

 private:
  std::string path_;
  std::ifstream in_;
  Header header_;
};

// A whole file held in memory (e.g. a fuzzer's input): the header checked against its size.
Header parse_bytes(std::string_view file, const std::string& origin);

// ---------------------------------------------------------------- writing

// A tensor to write: its dtype, shape and exactly dtype_size * elements bytes.
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};

// Writes `tensors` in the order given, with `metadata` as "__metadata__" (omitted when empty).
// Throws InputError for a bad name (empty, duplicate, "__metadata__"), an unknown dtype, a
// byte count that disagrees with the shape, or a failed write (naming the file and errno).
void write_file(const std::string& path, std::span<const RawTensor> tensors,
                const std::map<std::string, std::string>& metadata);

// Float32 tensors produced one at a time: `fill(i, out)` writes tensor i's elements into
// `out` (sized to its shape), so a large model needs no second copy in memory.
struct Float32Spec {
  std::string name;
  std::vector<int64_t> shape;
};
void write_float32_file(const std::string& path, std::span<const Float32Spec> tensors,
                        const std::map<std::string, std::string>& metadata,
                        const std::function<void(size_t index, std::span<float> out)>& fill);

}  // namespace mptrain::safetensors
