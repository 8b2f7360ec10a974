// HDF5 helpers (see h5util.hpp): turning HDF5's error stack into exceptions with a useful
// reason, opening and creating files, and reading/writing the scalar attributes datasets and
// checkpoints carry.
#include "io/h5util.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "mptrain/parallel/comm.hpp"

namespace mptrain::h5 {

Error::Error(std::string operation, std::string reason)
    : std::runtime_error(reason.empty() ? operation : operation + ": " + reason),
      operation_(std::move(operation)),
      reason_(std::move(reason)) {}

void quiet() {
  // Failures are reported by the exceptions we throw; HDF5's own multi-line stack dump on every
  // rank would only bury that message.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

namespace {

// Collects the description of the first frame visited by an upward walk, which HDF5 defines as
// the innermost one: where the failure was detected, the most specific text on the stack.
herr_t take_innermost(unsigned n, const H5E_error2_t* frame, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (n != 0 || frame == nullptr) return 0;
  if (frame->desc != nullptr && frame->desc[0] != '\0') {
    *out = frame->desc;
  }
  // The minor message classifies the failure ("file signature not found", "object not found")
  // and often says more than the description alone.
  char minor[256] = {0};
  if (H5Eget_msg(frame->min_num, nullptr, minor, sizeof minor) > 0 && minor[0] != '\0') {
    if (out->empty()) {
      *out = minor;
    } else if (out->find(minor) == std::string::npos) {
      *out += std::string(" (") + minor + ")";
    }
  }
  return 0;
}

}  // namespace

std::string last_error() {
  std::string innermost;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &innermost);
  return innermost;
}

void throw_error(const std::string& what) { throw Error(what, last_error()); }

PropList mpio_file_access(const Comm& comm) {
  PropList fapl(check(H5Pcreate(H5P_FILE_ACCESS), "file access list"));
  // hdf5.h of a parallel build brings mpi.h: the handle is an MPI_Comm.
  const MPI_Comm mpi_comm = *static_cast<const MPI_Comm*>(comm.native_handle());
  check(H5Pset_fapl_mpio(fapl, mpi_comm, MPI_INFO_NULL), "MPI-IO file access");
  // Metadata reads and writes as collectives: one rank reads, all receive (scales with ranks).
  check(H5Pset_all_coll_metadata_ops(fapl, true), "collective metadata reads");
  check(H5Pset_coll_metadata_write(fapl, true), "collective metadata writes");
  return fapl;
}

File open_file(const std::string& path, unsigned flags, hid_t fapl) {
  quiet();
  return File(check(H5Fopen(path.c_str(), flags, fapl), "open " + path));
}

File create_file(const std::string& path, hid_t fapl) {
  quiet();
  // The HDF5 1.8 file format (superblock and object headers version 2) instead of the oldest
  // one: its metadata carries checksums, so a damaged header is refused when it is loaded,
  // before HDF5 decodes its messages (which HDF5 1.10 does without bounds checks). Readable
  // by HDF5 1.8 and later.
  PropList access(check(fapl == H5P_DEFAULT ? H5Pcreate(H5P_FILE_ACCESS) : H5Pcopy(fapl),
                        "file access list for " + path));
  check(H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_V18),
        "file format bounds for " + path);
  return File(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access), "create " + path));
}

bool link_exists(hid_t loc, const std::string& path) {
  // H5Lexists fails (rather than answering false) when an intermediate group is missing, so
  // walk the path one component at a time.
  std::string prefix;
  size_t start = 0;
  if (!path.empty() && path[0] == '/') {
    prefix = "/";
    start = 1;
  }
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!part.empty()) {
      prefix += part;
      htri_t there = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
      if (there <= 0) return false;
      prefix += "/";
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

uint64_t file_size_of(hid_t obj) {
  File file(check(H5Iget_file_id(obj), "file of object"));
  hsize_t size = 0;
  check(H5Fget_filesize(file, &size), "size of file");
  return size;
}

std::string read_chunk_layout(hid_t dataset, ChunkLayout& layout) {
  layout = ChunkLayout{};
  PropList dcpl(check(H5Dget_create_plist(dataset), "dataset creation list"));
  if (H5Pget_layout(dcpl) != H5D_CHUNKED) return "";
  layout.chunked = true;
  Dataspace space(check(H5Dget_space(dataset), "get dataspace"));
  const int rank = check(H5Sget_simple_extent_ndims(space), "dataspace rank");
  std::vector<hsize_t> dims(size_t(std::max(rank, 0))), max_dims(dims.size());
  layout.chunk.resize(dims.size());
  check(H5Sget_simple_extent_dims(space, dims.data(), max_dims.data()), "dataspace dims");
  if (check(H5Pget_chunk(dcpl, rank, layout.chunk.data()), "chunk dims") != rank)
    return "a chunk layout of another rank";
  Datatype type(check(H5Dget_type(dataset), "dataset type"));
  layout.chunk_bytes = H5Tget_size(type);
  // A chunk is no longer than its dimension, except along one that may grow (a file written
  // as a stream, e.g. by mptrain-prep), where it may be, up to a sane size: HDF5 allocates a
  // whole chunk to read any part of it.
  constexpr uint64_t max_growing_chunk_bytes = uint64_t(64) << 20;
  uint64_t chunks_needed = 1;
  bool beyond_extent = false;
  for (int i = 0; i < rank; ++i) {
    const hsize_t c = layout.chunk[size_t(i)], d = dims[size_t(i)];
    const bool grows = max_dims[size_t(i)] > d;
    if (c == 0 || (c > std::max<hsize_t>(d, 1) && (!grows || c > max_growing_chunk_bytes)))
      return "chunks of " + std::to_string(c) + " elements along a dimension of " +
             std::to_string(d);
    beyond_extent = beyond_extent || c > d;
    layout.chunk_bytes *= c;
    chunks_needed *= (d + c - 1) / c;
  }
  if (beyond_extent && layout.chunk_bytes > max_growing_chunk_bytes)
    return "chunks of " + std::to_string(layout.chunk_bytes) + " bytes, beyond the extent";
  // HDF5 1.10 takes no H5S_ALL here: the file dataspace, whole, selects every chunk.
  hsize_t chunks = 0;
  check(H5Dget_num_chunks(dataset, space, &chunks), "count chunks");
  if (chunks > chunks_needed)
    return std::to_string(chunks) + " chunks stored where " + std::to_string(chunks_needed) +
           " hold every element";
  layout.file_size = file_size_of(dataset);
  return "";
}

namespace {
std::string check_chunk(const ChunkLayout& layout, haddr_t address, hsize_t size,
                        const std::string& which) {
  constexpr uint64_t filter_slack = 64;  // Fletcher32 adds 4 bytes to a chunk
  if (address == HADDR_UNDEF) return "";  // not written: reads as the fill value
  if (size > layout.chunk_bytes + filter_slack || address > layout.file_size ||
      size > layout.file_size - address)
    return "chunk " + which + " claims " + std::to_string(size) + " bytes at " +
           std::to_string(address) + " (chunks hold " + std::to_string(layout.chunk_bytes) +
           " bytes; the file has " + std::to_string(layout.file_size) + ")";
  return "";
}
}  // namespace

std::string damaged_chunk(hid_t dataset, const ChunkLayout& layout, const hsize_t* offset) {
  if (!layout.chunked) return "";
  unsigned filter_mask = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t size = 0;
  check(H5Dget_chunk_info_by_coord(dataset, offset, &filter_mask, &address, &size),
        "chunk info");
  return check_chunk(layout, address, size, "at element " + std::to_string(offset[0]));
}

std::string damaged_chunks(hid_t dataset) {
  ChunkLayout layout;
  if (std::string damage = read_chunk_layout(dataset, layout); !damage.empty() || !layout.chunked)
    return damage;
  Dataspace space(check(H5Dget_space(dataset), "get dataspace"));
  hsize_t chunks = 0;
  check(H5Dget_num_chunks(dataset, space, &chunks), "count chunks");
  std::vector<hsize_t> offset(layout.chunk.size());
  for (hsize_t i = 0; i < chunks; ++i) {
    unsigned filter_mask = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t size = 0;
    check(H5Dget_chunk_info(dataset, space, i, offset.data(), &filter_mask, &address, &size),
          "chunk info");
    if (std::string damage = check_chunk(layout, address, size, std::to_string(i));
        !damage.empty())
      return damage;
  }
  return "";
}

bool has_attr(hid_t obj, const std::string& name) {
  return check(H5Aexists(obj, name.c_str()), "check attribute " + name) > 0;
}

namespace {

// Creates (replacing any existing one) a scalar attribute of the given file type.
Attribute create_scalar_attr(hid_t obj, const std::string& name, hid_t file_type) {
  if (has_attr(obj, name)) {
    check(H5Adelete(obj, name.c_str()), "replace attribute " + name);
  }
  Dataspace scalar(check(H5Screate(H5S_SCALAR), "create dataspace for attribute " + name));
  return Attribute(check(H5Acreate2(obj, name.c_str(), file_type, scalar, H5P_DEFAULT, H5P_DEFAULT),
                         "create attribute " + name));
}

// Opens an attribute that must hold exactly one element of the given type class.
Attribute open_single_attr(hid_t obj, const std::string& name, H5T_class_t want,
                           const char* want_text, Datatype& stored_type) {
  Attribute attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name));
  stored_type = Datatype(check(H5Aget_type(attr), "type of attribute " + name));
  if (H5Tget_class(stored_type) != want) {
    throw Error("read attribute " + name, std::string("not ") + want_text);
  }
  Dataspace space(check(H5Aget_space(attr), "dataspace of attribute " + name));
  hssize_t n = check(H5Sget_simple_extent_npoints(space), "size of attribute " + name);
  if (n != 1) {
    throw Error("read attribute " + name,
                "holds " + std::to_string(n) + " values, expected a single " + want_text);
  }
  return attr;
}

template <class T>
void write_number_attr(hid_t obj, const std::string& name, T value, hid_t file_type,
                       hid_t mem_type) {
  Attribute attr = create_scalar_attr(obj, name, file_type);
  check(H5Awrite(attr, mem_type, &value), "write attribute " + name);
}

template <class T>
T read_number_attr(hid_t obj, const std::string& name, hid_t mem_type) {
  Datatype stored;
  Attribute attr = open_single_attr(obj, name, H5T_INTEGER, "an integer", stored);
  // Only the integer types a writer can produce (1 to 8 bytes) are converted; a damaged type
  // message can claim any size.
  const size_t size = H5Tget_size(stored);
  if (size < 1 || size > sizeof(int64_t))
    throw Error("read attribute " + name, "a " + std::to_string(size) + "-byte integer type");
  T value{};
  // HDF5 converts whatever integer width/sign is stored to the requested native type.
  check(H5Aread(attr, mem_type, &value), "read attribute " + name);
  return value;
}

}  // namespace

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
  // Fixed-length, NUL-padded: a zero-size string type is not allowed, so "" is stored as one
  // NUL byte and read back as "".
  Datatype type(check(H5Tcopy(H5T_C_S1), "string type for attribute " + name));
  check(H5Tset_size(type, value.empty() ? 1 : value.size()), "string size for attribute " + name);
  check(H5Tset_strpad(type, H5T_STR_NULLPAD), "string padding for attribute " + name);
  Attribute attr = create_scalar_attr(obj, name, type);
  std::string buffer = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr, type, buffer.data()), "write attribute " + name);
}

std::string read_string_attr(hid_t obj, const std::string& name) {
  Datatype stored;
  Attribute attr = open_single_attr(obj, name, H5T_STRING, "a string", stored);
  htri_t variable = check(H5Tis_variable_str(stored), "string kind of attribute " + name);
  Datatype mem(check(H5Tcopy(H5T_C_S1), "string type for attribute " + name));
  if (variable > 0) {
    check(H5Tset_size(mem, H5T_VARIABLE), "string size for attribute " + name);
    char* text = nullptr;
    check(H5Aread(attr, mem, &text), "read attribute " + name);
    std::string value = text != nullptr ? std::string(text) : std::string();
    if (text != nullptr) H5free_memory(text);
    return value;
  }
  size_t size = H5Tget_size(stored);
  if (size == 0) throw_error("size of attribute " + name);
  // The buffer is sized by the file: a damaged type message must not make us allocate more
  // than the whole file could hold.
  if (size > file_size_of(obj))
    throw Error("read attribute " + name, "a " + std::to_string(size) +
                                              "-byte string, larger than the file");
  check(H5Tset_size(mem, size), "string size for attribute " + name);
  check(H5Tset_strpad(mem, H5T_STR_NULLPAD), "string padding for attribute " + name);
  std::vector<char> buffer(size, '\0');
  check(H5Aread(attr, mem, buffer.data()), "read attribute " + name);
  // Stored strings may be NUL-terminated or NUL-padded; either way the text ends at the first NUL.
  return std::string(buffer.data(), strnlen(buffer.data(), size));
}

void write_int_attr(hid_t obj, const std::string& name, int64_t value) {
  write_number_attr(obj, name, value, H5T_STD_I64LE, H5T_NATIVE_INT64);
}

int64_t read_int_attr(hid_t obj, const std::string& name) {
  return read_number_attr<int64_t>(obj, name, H5T_NATIVE_INT64);
}

void write_uint_attr(hid_t obj, const std::string& name, uint64_t value) {
  write_number_attr(obj, name, value, H5T_STD_U64LE, H5T_NATIVE_UINT64);
}

uint64_t read_uint_attr(hid_t obj, const std::string& name) {
  return read_number_attr<uint64_t>(obj, name, H5T_NATIVE_UINT64);
}

}  // namespace mptrain::h5
