// Writing token datasets (data.hpp): TokenDatasetWriter streams tokens into /tokens a chunk at
// a time; write_external_token_dataset makes a /tokens that refers to token files made
// elsewhere instead of copying them. Serial HDF5 (the sec2 driver): one process writes.
//
// The streaming writer holds back the first chunk's worth of tokens before it creates the
// dataset, so a small dataset gets one chunk of exactly its size (no file padded to a full
// 64 Ki-token chunk), while a large one gets full chunks, each with its Fletcher32 checksum.
#include <algorithm>
#include <filesystem>

#include "io/h5util.hpp"
#include "io/dataset_format.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {
namespace {

namespace fmt = dataset_format;

std::string prefix(const std::string& path) { return "token dataset '" + path + "': "; }

void write_attributes(hid_t dataset, int vocab_size, const TokenizerInfo& tokenizer) {
  h5::write_int_attr(dataset, fmt::vocab_attr, vocab_size);
  h5::write_string_attr(dataset, fmt::tokenizer_attr, tokenizer.name);
  if (!tokenizer.vocab.empty())
    h5::write_string_attr(dataset, fmt::tokenizer_vocab_attr, tokenizer.vocab);
}

void check_vocab(const std::string& path, int vocab_size) {
  if (vocab_size < 1) {
    throw InputError(prefix(path) + "cannot write vocab_size " + std::to_string(vocab_size) +
                     " (must be >= 1)");
  }
}

}  // namespace

struct TokenDatasetWriter::Impl {
  std::string path;
  int vocab_size = 0;
  TokenizerInfo tokenizer;
  h5::File file;
  h5::Dataset dataset;          // created by the first full chunk, or by finish()
  std::vector<int32_t> buffer;  // tokens not written yet (fewer than a chunk once created)
  uint64_t written = 0;         // tokens in the dataset
  bool finished = false;

  void create_dataset(hsize_t chunk);
  void write_buffer();
  void read(uint64_t begin, uint64_t count, std::vector<int32_t>& out) const;
};

void TokenDatasetWriter::Impl::create_dataset(hsize_t chunk) {
  const hsize_t zero = 0, unlimited = H5S_UNLIMITED;
  h5::Dataspace space(h5::check(H5Screate_simple(1, &zero, &unlimited), "dataspace"));
  h5::PropList dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dataset creation list"));
  h5::check(H5Pset_chunk(dcpl, 1, &chunk), "set chunk size");
  h5::check(H5Pset_fletcher32(dcpl), "add the Fletcher32 filter");
  const hid_t stored = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_I32LE;
  dataset = h5::Dataset(
      h5::check(H5Dcreate2(file, fmt::tokens_path, stored, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                "create /tokens"));
}

void TokenDatasetWriter::Impl::write_buffer() {
  if (buffer.empty()) return;
  const hsize_t start = written, count = buffer.size(), total = written + buffer.size();
  h5::check(H5Dset_extent(dataset, &total), "extend /tokens");
  h5::Dataspace file_space(h5::check(H5Dget_space(dataset), "dataspace of /tokens"));
  h5::check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr),
            "select");
  h5::Dataspace memory(h5::check(H5Screate_simple(1, &count, nullptr), "memory dataspace"));
  h5::check(H5Dwrite(dataset, H5T_NATIVE_INT32, memory, file_space, H5P_DEFAULT, buffer.data()),
            "write /tokens");
  written = total;
  buffer.clear();
}

void TokenDatasetWriter::Impl::read(uint64_t begin, uint64_t count,
                                    std::vector<int32_t>& out) const {
  out.resize(count);
  const hsize_t start = begin, n = count;
  h5::Dataspace file_space(h5::check(H5Dget_space(dataset), "dataspace of /tokens"));
  h5::check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &n, nullptr),
            "select");
  h5::Dataspace memory(h5::check(H5Screate_simple(1, &n, nullptr), "memory dataspace"));
  h5::check(H5Dread(dataset, H5T_NATIVE_INT32, memory, file_space, H5P_DEFAULT, out.data()),
            "read /tokens back");
}

TokenDatasetWriter::TokenDatasetWriter(std::string path, int vocab_size, TokenizerInfo tokenizer)
    : impl_(std::make_unique<Impl>()) {
  check_vocab(path, vocab_size);
  impl_->path = std::move(path);
  impl_->vocab_size = vocab_size;
  impl_->tokenizer = std::move(tokenizer);
  try {
    impl_->file = h5::create_file(impl_->path);  // serial sec2 driver
  } catch (const h5::Error& e) {
    throw InputError(prefix(impl_->path) + e.what());
  }
}

TokenDatasetWriter::TokenDatasetWriter(TokenDatasetWriter&&) noexcept = default;

TokenDatasetWriter::~TokenDatasetWriter() {
  if (!impl_ || impl_->finished) return;
  impl_->dataset.reset();
  impl_->file.reset();
  std::error_code ignored;
  std::filesystem::remove(impl_->path, ignored);
}

uint64_t TokenDatasetWriter::size() const { return impl_->written + impl_->buffer.size(); }

void TokenDatasetWriter::append(std::span<const int32_t> tokens) {
  Impl& w = *impl_;
  const int vocab = w.vocab_size;
  auto bad = std::find_if(tokens.begin(), tokens.end(),
                          [vocab](int32_t t) { return t < 0 || t >= vocab; });
  if (bad != tokens.end()) {
    throw InputError(prefix(w.path) + "cannot write token " + std::to_string(*bad) + " at index " +
                     std::to_string(size() + static_cast<uint64_t>(bad - tokens.begin())) +
                     ": outside [0, vocab_size = " + std::to_string(vocab) + ")");
  }
  try {
    while (!tokens.empty()) {
      const size_t room = fmt::chunk_tokens - w.buffer.size();
      const size_t take = std::min(room, tokens.size());
      w.buffer.insert(w.buffer.end(), tokens.begin(),
                      tokens.begin() + static_cast<std::ptrdiff_t>(take));
      tokens = tokens.subspan(take);
      if (w.buffer.size() == fmt::chunk_tokens) {
        if (!w.dataset.valid()) w.create_dataset(fmt::chunk_tokens);
        w.write_buffer();
      }
    }
  } catch (const h5::Error& e) {
    throw InputError(prefix(w.path) + e.what());
  }
}

void TokenDatasetWriter::split_tail(const std::string& other_path, uint64_t count) {
  Impl& w = *impl_;
  MPT_CHECK(count <= size(),
            "split_tail of " + std::to_string(count) + " tokens from " + std::to_string(size()));
  TokenDatasetWriter other(other_path, w.vocab_size, w.tokenizer);
  if (count <= w.buffer.size()) {
    const auto keep = static_cast<std::ptrdiff_t>(w.buffer.size() - count);
    other.append(std::span<const int32_t>(w.buffer).subspan(static_cast<size_t>(keep)));
    w.buffer.resize(static_cast<size_t>(keep));
  } else {
    // The tail starts inside the written part: copy it a chunk at a time, then shrink.
    const uint64_t begin = size() - count;
    std::vector<int32_t> block;
    try {
      for (uint64_t at = begin; at < w.written; at += fmt::chunk_tokens) {
        w.read(at, std::min<uint64_t>(fmt::chunk_tokens, w.written - at), block);
        other.append(block);
      }
      other.append(w.buffer);
      w.buffer.clear();
      const hsize_t shrunk = begin;
      h5::check(H5Dset_extent(w.dataset, &shrunk), "shrink /tokens");
      w.written = begin;
    } catch (const h5::Error& e) {
      throw InputError(prefix(w.path) + e.what());
    }
  }
  other.finish();
}

void TokenDatasetWriter::finish() {
  Impl& w = *impl_;
  try {
    if (!w.dataset.valid())
      w.create_dataset(std::clamp<hsize_t>(w.buffer.size(), 1, fmt::chunk_tokens));
    w.write_buffer();
    write_attributes(w.dataset, w.vocab_size, w.tokenizer);
    w.dataset.close("close /tokens");
    w.file.close("close " + w.path);  // reports a failed final flush (e.g. a full disk)
  } catch (const h5::Error& e) {
    throw InputError(prefix(w.path) + e.what());
  }
  w.finished = true;
}

void write_token_dataset(const std::string& path, std::span<const int32_t> tokens, int vocab_size,
                         const TokenizerInfo& tokenizer) {
  TokenDatasetWriter writer(path, vocab_size, tokenizer);
  writer.append(tokens);
  writer.finish();
}

void write_external_token_dataset(const std::string& path, std::span<const TokenSegment> segments,
                                  int vocab_size, const TokenizerInfo& tokenizer) {
  check_vocab(path, vocab_size);
  if (vocab_size > 65536) {
    throw InputError(prefix(path) + "vocab_size " + std::to_string(vocab_size) +
                     " does not fit the uint16 tokens of an external token file");
  }
  hsize_t total = 0;
  for (const TokenSegment& s : segments) total += s.count;
  if (total == 0)
    throw InputError(prefix(path) + "the token files hold no tokens; nothing to write");
  try {
    h5::File file = h5::create_file(path);
    {
      h5::PropList dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dataset creation list"));
      for (const TokenSegment& s : segments) {
        if (s.count == 0) continue;
        const std::string name = std::filesystem::absolute(s.file).lexically_normal().string();
        h5::check(H5Pset_external(dcpl, name.c_str(), static_cast<off_t>(s.offset), s.count * 2),
                  "add external file " + name);
      }
      h5::Dataspace space(h5::check(H5Screate_simple(1, &total, nullptr), "dataspace"));
      h5::Dataset dataset(h5::check(
          H5Dcreate2(file, fmt::tokens_path, H5T_STD_U16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
          "create /tokens"));
      write_attributes(dataset, vocab_size, tokenizer);
    }
    file.close("close " + path);
  } catch (const h5::Error& e) {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    throw InputError(prefix(path) + e.what());
  }
}

}  // namespace mptrain
