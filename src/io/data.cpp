// Token datasets and the sequential sampler (data.hpp, DESIGN §4).
//
// A dataset is an HDF5 file holding a 1-D integer dataset /tokens whose `vocab_size` attribute
// bounds every token. Training reads it collectively through MPI-IO: every rank makes the same
// HDF5 calls in the same order (the access list asks for collective metadata operations) and
// reads all the tokens, since any rank may need any span. Every check below sees the same file
// on every rank and so fails identically everywhere, which is why problems are InputErrors.
//
// Writing (mptrain-prep, io/token_writer.cpp) is serial and uses the plain POSIX driver. Tokens
// are stored as uint16 when the vocabulary allows it (half the bytes of int32), chunked, with
// the Fletcher32 checksum filter so a damaged file is refused on read rather than trained on;
// or, imported from token files made elsewhere, left in those files (HDF5 external storage),
// which this reader checks are all there before reading.
#include "mptrain/io/data.hpp"

#include <algorithm>
#include <filesystem>
#include <limits>

#include "io/h5util.hpp"
#include "io/dataset_format.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/core/rng.hpp"

namespace mptrain {
namespace {

using dataset_format::tokens_path;
using dataset_format::vocab_attr;

std::string dataset_prefix(const std::string& path) { return "token dataset '" + path + "': "; }

// The vocabulary size: an integer attribute on /tokens (where write_token_dataset puts it) or,
// as other tools may write it, on the file's root group.
int read_vocab_size(const std::string& path, hid_t file, hid_t tokens) {
  hid_t holder = h5::has_attr(tokens, vocab_attr) ? tokens
                 : h5::has_attr(file, vocab_attr) ? file
                                                  : H5I_INVALID_HID;
  if (holder == H5I_INVALID_HID) {
    throw InputError(dataset_prefix(path) +
                     "no vocab_size attribute (on /tokens or the root group); the file must say "
                     "how many distinct tokens exist");
  }
  int64_t vocab = 0;
  try {
    vocab = h5::read_int_attr(holder, vocab_attr);
  } catch (const h5::Error& e) {
    throw InputError(dataset_prefix(path) + "bad vocab_size attribute: " + e.reason() +
                     " (expected one positive integer)");
  }
  if (vocab < 1 || vocab > std::numeric_limits<int32_t>::max()) {
    throw InputError(dataset_prefix(path) + "bad vocab_size " + std::to_string(vocab) +
                     " (must be in [1, 2147483647])");
  }
  return static_cast<int>(vocab);
}

const char* type_class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_FLOAT:
      return "floating-point";
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "variable-length";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_BITFIELD:
      return "bitfield";
    case H5T_REFERENCE:
      return "reference";
    case H5T_TIME:
      return "time";
    default:
      return "non-integer";
  }
}

// The tokenizer attributes; files from other tools have none ("unknown").
TokenizerInfo read_tokenizer(const std::string& path, hid_t tokens) {
  TokenizerInfo info;
  try {
    if (h5::has_attr(tokens, dataset_format::tokenizer_attr))
      info.name = h5::read_string_attr(tokens, dataset_format::tokenizer_attr);
    if (h5::has_attr(tokens, dataset_format::tokenizer_vocab_attr))
      info.vocab = h5::read_string_attr(tokens, dataset_format::tokenizer_vocab_attr);
  } catch (const h5::Error& e) {
    throw InputError(dataset_prefix(path) + "bad tokenizer attribute: " + e.reason() +
                     " (expected a string)");
  }
  return info;
}

// For /tokens kept in external files (imported token files): each file must still hold its
// segment, and together they must hold all n tokens, since HDF5 reads zeros past the end of a
// short file. Relative names are relative to the dataset file's directory, as the reader's
// access list says (${ORIGIN}). Returns false when /tokens is stored in the HDF5 file itself.
bool check_external_storage(const std::string& path, hid_t tokens, hsize_t n, size_t element) {
  h5::PropList dcpl(h5::check(H5Dget_create_plist(tokens), "creation properties of /tokens"));
  const int count = h5::check(H5Pget_external_count(dcpl), "external files of /tokens");
  if (count == 0) return false;
  if (n > std::numeric_limits<hsize_t>::max() / element)
    throw InputError(dataset_prefix(path) + "/tokens declares an impossible " + std::to_string(n) +
                     " tokens");
  hsize_t needed = n * element;  // bytes
  for (int i = 0; i < count && needed > 0; ++i) {
    char name[4096] = "";
    off_t offset = 0;
    hsize_t size = 0;
    h5::check(H5Pget_external(dcpl, static_cast<unsigned>(i), sizeof name, name, &offset, &size),
              "external file of /tokens");
    std::filesystem::path file(name);
    if (file.is_relative()) file = std::filesystem::path(path).parent_path() / file;
    const hsize_t used = std::min(size, needed);
    std::error_code ec;
    const std::string where = dataset_prefix(path) + "/tokens is stored in '" + file.string() + "'";
    if (!std::filesystem::is_regular_file(file, ec))
      throw InputError(where + ", which " +
                       (std::filesystem::exists(file, ec) ? "is not a regular file" : "is missing"));
    const uintmax_t bytes = std::filesystem::file_size(file, ec);
    if (ec || offset < 0 || bytes < static_cast<uintmax_t>(offset) ||
        bytes - static_cast<uintmax_t>(offset) < used)
      throw InputError(where + ", which holds " + std::to_string(bytes) + " bytes; bytes [" +
                       std::to_string(offset) + ", " +
                       std::to_string(static_cast<uintmax_t>(offset) + used) +
                       ") are needed (a truncated or replaced token file: import it again)");
    needed -= used;
  }
  if (needed > 0)
    throw InputError(dataset_prefix(path) + "/tokens declares " + std::to_string(n) +
                     " tokens but its external files hold " + std::to_string(needed) +
                     " bytes fewer");
  return true;
}

}  // namespace

TokenDataset TokenDataset::from_tokens(std::string name, int vocab_size,
                                       std::vector<int32_t> tokens) {
  if (vocab_size <= 0)
    throw InputError(dataset_prefix(name) + "vocab_size must be > 0, got " +
                     std::to_string(vocab_size));
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab_size)
      throw InputError(dataset_prefix(name) + "token " + std::to_string(t) + " outside [0, " +
                       std::to_string(vocab_size) + ")");
  TokenDataset out;
  out.path_ = std::move(name);
  out.vocab_size_ = vocab_size;
  out.tokens_ = std::move(tokens);
  return out;
}

TokenDataset TokenDataset::load(const Comm& comm, const std::string& path) {
  // Checked before HDF5 so the common mistakes get plain words rather than MPI-IO's, and
  // agreed on, since the open below is collective (a file only some nodes see must not hang).
  std::error_code ec;
  const char* problem = !std::filesystem::exists(path, ec)            ? "no such file"
                        : !std::filesystem::is_regular_file(path, ec) ? "not a regular file"
                                                                      : nullptr;
  agree_or_throw<InputError>(comm, problem ? dataset_prefix(path) + problem : "");

  h5::quiet();
  h5::PropList fapl(comm.make_hdf5_mpio_fapl());
  h5::File file;
  try {
    file = h5::open_file(path, H5F_ACC_RDONLY, fapl);
  } catch (const h5::Error& e) {
    if (e.reason().find("signature") != std::string::npos) {
      throw InputError(dataset_prefix(path) + "not an HDF5 file (make one with mptrain-prep)");
    }
    throw InputError(dataset_prefix(path) + "cannot open: " + e.reason());
  }

  TokenDataset out;
  out.path_ = path;
  try {
    if (!h5::link_exists(file, tokens_path)) {
      throw InputError(dataset_prefix(path) +
                       "no /tokens dataset (expected a 1-D integer dataset /tokens)");
    }
    {
      h5::Object object(h5::check(H5Oopen(file, tokens_path, H5P_DEFAULT), "open /tokens"));
      if (H5Iget_type(object) != H5I_DATASET) {
        throw InputError(dataset_prefix(path) + "/tokens is a group, not a dataset");
      }
    }
    // External token files named relatively are found next to the dataset file.
    h5::PropList dapl(h5::check(H5Pcreate(H5P_DATASET_ACCESS), "dataset access list"));
    h5::check(H5Pset_efile_prefix(dapl, "${ORIGIN}"), "set the external file prefix");
    h5::Dataset tokens(h5::check(H5Dopen2(file, tokens_path, dapl), "open /tokens"));

    h5::Datatype type(h5::check(H5Dget_type(tokens), "type of /tokens"));
    H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_INTEGER) {
      throw InputError(dataset_prefix(path) + "/tokens has a " + type_class_name(cls) +
                       " type; token ids must be integers");
    }
    h5::Dataspace space(h5::check(H5Dget_space(tokens), "dataspace of /tokens"));
    int rank = h5::check(H5Sget_simple_extent_ndims(space), "rank of /tokens");
    if (rank != 1) {
      std::vector<hsize_t> dims(std::max(rank, 1));
      h5::check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "shape of /tokens");
      std::string shape;
      for (int i = 0; i < rank; ++i) shape += (i ? " x " : "") + std::to_string(dims[i]);
      throw InputError(dataset_prefix(path) + "/tokens is " + std::to_string(rank) + "-D (" +
                       (shape.empty() ? "scalar" : shape) + "); it must be 1-D");
    }
    hsize_t n = 0;
    h5::check(H5Sget_simple_extent_dims(space, &n, nullptr), "shape of /tokens");
    if (n == 0) throw InputError(dataset_prefix(path) + "/tokens is empty");

    out.vocab_size_ = read_vocab_size(path, file, tokens);
    out.tokenizer_ = read_tokenizer(path, tokens);

    // A damaged or hostile file can declare any extent and any integer size: refuse sizes it
    // does not store before allocating for them (mptrain-prep's files are uncompressed), and
    // a stored size beyond the file's own (the chunk index claims it). Tokens in external
    // files (mptrain-prep --import) are checked against those files instead.
    const size_t element = H5Tget_size(type);
    if (element < 1 || element > sizeof(int64_t))
      throw InputError(dataset_prefix(path) + "/tokens has " + std::to_string(element) +
                       "-byte integers; token ids must be 1- to 8-byte integers");
    const bool external = check_external_storage(path, tokens, n, element);
    const hsize_t stored = external ? n * element : H5Dget_storage_size(tokens);
    if (!external && stored > h5::file_size_of(file))
      throw InputError(dataset_prefix(path) + "/tokens claims " + std::to_string(stored) +
                       " bytes of storage, more than the file holds (damaged file)");
    if (stored / element < n)
      throw InputError(dataset_prefix(path) + "/tokens declares " + std::to_string(n) +
                       " tokens but stores only " + std::to_string(stored) + " bytes of " +
                       std::to_string(element) + "-byte integers (damaged or compressed file)");

    out.tokens_.resize(n);
    // HDF5 converts whatever integer type is stored (uint16 from mptrain-prep, int64 from numpy)
    // to int32; values beyond int32 saturate and then fail the range check below.
    h5::check(H5Dread(tokens, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.tokens_.data()),
              "read /tokens");
  } catch (const h5::Error& e) {
    throw InputError(dataset_prefix(path) + e.what());
  }

  auto bad = std::find_if(out.tokens_.begin(), out.tokens_.end(),
                          [&](int32_t t) { return t < 0 || t >= out.vocab_size_; });
  if (bad != out.tokens_.end()) {
    throw InputError(dataset_prefix(path) + "token " + std::to_string(*bad) + " at index " +
                     std::to_string(bad - out.tokens_.begin()) +
                     " is outside [0, vocab_size = " + std::to_string(out.vocab_size_) + ")");
  }
  return out;
}

SequentialSampler::SequentialSampler(size_t n_tokens, long global_batch, int seq_len)
    : n_tokens_(n_tokens), global_batch_(global_batch), seq_len_(seq_len) {
  if (!fits(n_tokens, global_batch, seq_len)) {
    throw InputError("the dataset's " + std::to_string(n_tokens) +
                     " tokens do not hold one global batch: [train] global_batch (" +
                     std::to_string(global_batch) + ") x [model] seq_len (" +
                     std::to_string(seq_len) + ") + 1 tokens are needed");
  }
}

bool SequentialSampler::fits(size_t n_tokens, long global_batch, int seq_len) {
  if (global_batch < 1 || seq_len < 1) return false;
  // G*T + 1 <= N, written to avoid overflow for absurd G and T.
  const size_t g = static_cast<size_t>(global_batch);
  const size_t t = static_cast<size_t>(seq_len);
  return n_tokens >= 1 && g <= (n_tokens - 1) / t && g * t + 1 <= n_tokens;
}

void SequentialSampler::rows(const TokenDataset& data, long row_begin, long rows,
                             std::vector<int32_t>& inputs, std::vector<int32_t>& targets) const {
  const size_t T = static_cast<size_t>(seq_len_);
  const size_t span = static_cast<size_t>(global_batch_) * T + 1;
  MPT_CHECK(data.size() == n_tokens_, "sampler used with a dataset of another size");
  MPT_CHECK(row_begin >= 0 && rows >= 0 && row_begin + rows <= global_batch_,
            "sampler rows [" + std::to_string(row_begin) + ", " + std::to_string(row_begin + rows) +
                ") outside the global batch of " + std::to_string(global_batch_));
  MPT_CHECK(position_ + span <= n_tokens_,
            "sampler position " + std::to_string(position_) + " leaves no room for a batch");
  inputs.resize(static_cast<size_t>(rows) * T);
  targets.resize(static_cast<size_t>(rows) * T);
  const int32_t* tokens = data.data();
  for (size_t r = 0; r < static_cast<size_t>(rows); ++r) {
    // Row i of the batch is span[i*T, i*T + T); its targets are the next token of each.
    const int32_t* row = tokens + position_ + (static_cast<size_t>(row_begin) + r) * T;
    std::copy(row, row + T, inputs.begin() + static_cast<std::ptrdiff_t>(r * T));
    std::copy(row + 1, row + T + 1, targets.begin() + static_cast<std::ptrdiff_t>(r * T));
  }
}

void SequentialSampler::advance() {
  const size_t step = static_cast<size_t>(global_batch_) * static_cast<size_t>(seq_len_);
  position_ += step;
  if (position_ + step + 1 > n_tokens_) position_ = 0;  // wrap: the next span would not fit
  ++draws_;
}

void SequentialSampler::restore(uint64_t draws, size_t position) {
  draws_ = draws;
  position_ = position;
}

ShuffleSampler::ShuffleSampler(size_t n_tokens, long global_batch, int seq_len, uint64_t seed)
    : SequentialSampler(n_tokens, global_batch, seq_len), seed_(seed) {
  // Spans [k*G*T, k*G*T + G*T + 1) that fit: k <= (N - 1 - G*T) / (G*T).
  batches_per_epoch_ = (n_tokens - 1 - batch_tokens()) / batch_tokens() + 1;
  seek();
}

void ShuffleSampler::seek() {
  const uint64_t epoch = draws() / batches_per_epoch_;
  if (epoch != cached_epoch_) {
    // A seeded permutation: sort the batch indices by counter-based random keys.
    std::vector<std::pair<double, uint64_t>> keyed(batches_per_epoch_);
    const uint64_t stream = name_stream("shuffle-sampler") ^ epoch;
    for (uint64_t k = 0; k < batches_per_epoch_; ++k) keyed[k] = {uniform_at(seed_, stream, k), k};
    std::sort(keyed.begin(), keyed.end());
    order_.resize(batches_per_epoch_);
    for (uint64_t k = 0; k < batches_per_epoch_; ++k) order_[k] = keyed[k].second;
    cached_epoch_ = epoch;
  }
  set_position(order_[draws() % batches_per_epoch_] * batch_tokens());
}

void ShuffleSampler::advance() {
  SequentialSampler::advance();
  seek();
}

void ShuffleSampler::restore(uint64_t draws, size_t position) {
  SequentialSampler::restore(draws, position);
  seek();
}

}  // namespace mptrain
