// Reading token datasets (data.hpp, doc/DESIGN.md §4); the samplers are in sampler.cpp, the writers
// in token_writer.cpp.
//
// A dataset is an HDF5 file holding a 1-D integer dataset /tokens whose `vocab_size` attribute
// bounds every token. Training opens it collectively through MPI-IO: every rank makes the same
// HDF5 calls in the same order (the access list asks for collective metadata operations, so
// one rank reads the file's metadata and the others receive it). Every check at open sees the
// same file on every rank and so fails identically everywhere, which is why problems are
// InputErrors. The tokens are not read at open: each rank later reads the ranges its rows of
// each batch need, independently (read()), and checks every token it reads against the
// vocabulary; the layer that calls it turns one rank's failure into everyone's.
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
#include <memory>

#include "io/h5util.hpp"
#include "io/dataset_format.hpp"
#include "mptrain/core/error.hpp"

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

// Checked before HDF5 so the common mistakes get plain words rather than MPI-IO's, and
// agreed on, since the open below is collective (a file only some nodes see must not hang).
h5::File open_file(const Comm& comm, const std::string& path) {
  std::error_code ec;
  const char* problem = !std::filesystem::exists(path, ec)            ? "no such file"
                        : !std::filesystem::is_regular_file(path, ec) ? "not a regular file"
                                                                      : nullptr;
  agree_or_throw<InputError>(comm, problem ? dataset_prefix(path) + problem : "");  // collective
  h5::quiet();
  h5::PropList fapl = h5::mpio_file_access(comm);
  try {
    return h5::open_file(path, H5F_ACC_RDONLY, fapl);
  } catch (const h5::Error& e) {
    if (e.reason().find("signature") != std::string::npos)
      throw InputError(dataset_prefix(path) + "not an HDF5 file (make one with mptrain-prep)");
    throw InputError(dataset_prefix(path) + "cannot open: " + e.reason());
  }
}

// /tokens, which must be a dataset. External token files named relatively are found next to
// the dataset file. Its metadata reads are independent: the ranks read their ranges at
// different times, and a read that needs a node of the chunk index must not wait for the others.
h5::Dataset open_tokens(const std::string& path, hid_t file) {
  if (!h5::link_exists(file, tokens_path))
    throw InputError(dataset_prefix(path) +
                     "no /tokens dataset (expected a 1-D integer dataset /tokens)");
  {
    h5::Object object(h5::check(H5Oopen(file, tokens_path, H5P_DEFAULT), "open /tokens"));
    if (H5Iget_type(object) != H5I_DATASET)
      throw InputError(dataset_prefix(path) + "/tokens is a group, not a dataset");
  }
  h5::PropList dapl(h5::check(H5Pcreate(H5P_DATASET_ACCESS), "dataset access list"));
  h5::check(H5Pset_efile_prefix(dapl, "${ORIGIN}"), "set the external file prefix");
  h5::check(H5Pset_all_coll_metadata_ops(dapl, false), "set independent metadata reads");
  return h5::Dataset(h5::check(H5Dopen2(file, tokens_path, dapl), "open /tokens"));
}

// The number of tokens and the size of each (bytes): /tokens must be a non-empty 1-D dataset
// of 1- to 8-byte integers.
std::pair<hsize_t, size_t> token_shape(const std::string& path, hid_t tokens) {
  h5::Datatype type(h5::check(H5Dget_type(tokens), "type of /tokens"));
  const H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER)
    throw InputError(dataset_prefix(path) + "/tokens has a " + type_class_name(cls) +
                     " type; token ids must be integers");
  h5::Dataspace space(h5::check(H5Dget_space(tokens), "dataspace of /tokens"));
  const int rank = h5::check(H5Sget_simple_extent_ndims(space), "rank of /tokens");
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
  const size_t element = H5Tget_size(type);
  if (element < 1 || element > sizeof(int64_t))
    throw InputError(dataset_prefix(path) + "/tokens has " + std::to_string(element) +
                     "-byte integers; token ids must be 1- to 8-byte integers");
  return {n, element};
}

// A damaged or hostile file can declare any extent: refuse sizes it does not store before
// reading them (mptrain-prep's files are uncompressed), and a stored size beyond the file's
// own (the chunk index claims it). Tokens in external files (mptrain-prep --import) are
// checked against those files instead.
void check_storage(const std::string& path, hid_t file, hid_t tokens, hsize_t n, size_t element) {
  const bool external = check_external_storage(path, tokens, n, element);
  const hsize_t stored = external ? n * element : H5Dget_storage_size(tokens);
  if (!external && stored > h5::file_size_of(file))
    throw InputError(dataset_prefix(path) + "/tokens claims " + std::to_string(stored) +
                     " bytes of storage, more than the file holds (damaged file)");
  if (stored / element < n)
    throw InputError(dataset_prefix(path) + "/tokens declares " + std::to_string(n) +
                     " tokens but stores only " + std::to_string(stored) + " bytes of " +
                     std::to_string(element) + "-byte integers (damaged or compressed file)");
}

// The first token outside [0, vocab): InputError naming it and its index (`first` is the
// index of tokens[0] in the dataset).
void check_range(const std::string& path, int vocab, uint64_t first,
                 std::span<const int32_t> tokens) {
  auto bad = std::find_if(tokens.begin(), tokens.end(),
                          [vocab](int32_t t) { return t < 0 || t >= vocab; });
  if (bad != tokens.end())
    throw InputError(dataset_prefix(path) + "token " + std::to_string(*bad) + " at index " +
                     std::to_string(first + uint64_t(bad - tokens.begin())) +
                     " is outside [0, vocab_size = " + std::to_string(vocab) + ")");
}

}  // namespace

struct TokenDataset::Stored {
  h5::File file;  // declared first: closed after the dataset
  h5::Dataset tokens;
  h5::ChunkLayout chunks;  // checked at open; each read checks the chunks it touches
};

TokenDataset TokenDataset::from_tokens(std::string name, int vocab_size,
                                       std::vector<int32_t> tokens) {
  if (vocab_size <= 0)
    throw InputError(dataset_prefix(name) + "vocab_size must be > 0, got " +
                     std::to_string(vocab_size));
  check_range(name, vocab_size, 0, tokens);
  TokenDataset out;
  out.path_ = std::move(name);
  out.vocab_size_ = vocab_size;
  out.size_ = tokens.size();
  out.memory_ = std::make_shared<const std::vector<int32_t>>(std::move(tokens));
  return out;
}

TokenDataset TokenDataset::open(const Comm& comm, const std::string& path) {
  auto stored = std::make_shared<Stored>();
  stored->file = open_file(comm, path);  // collective
  TokenDataset out;
  out.path_ = path;
  try {
    stored->tokens = open_tokens(path, stored->file);
    const auto [n, element] = token_shape(path, stored->tokens);
    out.vocab_size_ = read_vocab_size(path, stored->file, stored->tokens);
    out.tokenizer_ = read_tokenizer(path, stored->tokens);
    check_storage(path, stored->file, stored->tokens, n, element);
    if (const std::string damage = h5::read_chunk_layout(stored->tokens, stored->chunks);
        !damage.empty())
      throw InputError(dataset_prefix(path) + "/tokens is damaged: " + damage);
    out.size_ = n;
  } catch (const h5::Error& e) {
    throw InputError(dataset_prefix(path) + e.what());
  }
  out.stored_ = std::move(stored);
  return out;
}

void TokenDataset::read(uint64_t begin, std::span<int32_t> out) const {
  MPT_CHECK(begin <= size_ && out.size() <= size_ - begin,
            "read of tokens [" + std::to_string(begin) + ", " +
                std::to_string(begin + out.size()) + ") of " + path_ + "'s " +
                std::to_string(size_));
  if (out.empty()) return;
  if (memory_) {
    std::copy_n(memory_->begin() + static_cast<std::ptrdiff_t>(begin), out.size(), out.begin());
    return;  // checked when made
  }
  const hsize_t start = begin, count = out.size();
  try {
    // The chunks this read touches, before HDF5 allocates what their index records claim.
    if (stored_->chunks.chunked) {
      const hsize_t length = stored_->chunks.chunk[0];
      for (hsize_t c = start / length; c <= (start + count - 1) / length; ++c) {
        const hsize_t first = c * length;
        if (const std::string damage = h5::damaged_chunk(stored_->tokens, stored_->chunks, &first);
            !damage.empty())
          throw InputError(dataset_prefix(path_) + "/tokens is damaged: " + damage);
      }
    }
    h5::Dataspace file_space(h5::check(H5Dget_space(stored_->tokens), "dataspace of /tokens"));
    h5::check(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr),
              "select tokens");
    h5::Dataspace memory(h5::check(H5Screate_simple(1, &count, nullptr), "memory dataspace"));
    // An independent transfer (the default): no other rank takes part. HDF5 converts whatever
    // integer type is stored (uint16 from mptrain-prep, int64 from numpy) to int32; values
    // beyond int32 saturate and then fail the range check.
    h5::check(H5Dread(stored_->tokens, H5T_NATIVE_INT32, memory, file_space, H5P_DEFAULT,
                      out.data()),
              "read /tokens [" + std::to_string(begin) + ", " +
                  std::to_string(begin + out.size()) + ")");
  } catch (const h5::Error& e) {
    throw InputError(dataset_prefix(path_) + e.what());
  }
  check_range(path_, vocab_size_, begin, out);
}

}  // namespace mptrain
