// Small helpers for the HDF5 C API, shared by the dataset and checkpoint code (private to the
// library, not installed). What it gives:
//
//   * RAII handles: h5::File, Group, Dataset, Dataspace, Attribute, PropList, Datatype, Object.
//     Each owns one hid_t, closes it on destruction, is move-only, converts implicitly to hid_t
//     (so it passes straight to H5* calls) and has close() for when a failed close must be
//     reported (it throws; the destructor cannot). Wrap an id right after checking it:
//         h5::File file(h5::check(H5Fopen(path, H5F_ACC_RDONLY, fapl), "open " + path));
//     Declare the file first and its objects after it, so they are closed before it (the MPI-IO
//     driver refuses to close a file whose objects are still open).
//   * h5::check(ret, what): returns ret, or throws h5::Error when ret < 0. The error carries
//     `what` and the innermost HDF5 error description (the place the failure was first
//     detected, e.g. "unable to open file: ... No such file or directory"), so the caller can
//     rethrow it as InputError or CheckpointError with the file name in front.
//     MPT_H5_CHECK(expr) is the same with the expression's text as `what`.
//   * h5::quiet(): turns off HDF5's own printing of its error stack for this thread (we report
//     errors ourselves). open_file()/create_file() call it; code whose first HDF5 call is
//     something else should call it first.
//   * Attribute helpers on any object (file, group, dataset): write/read of string and integer
//     attributes, has_attr(), and link_exists() for a path in a file.
//
// Including this header includes <hdf5.h>, which (parallel build) includes <mpi.h> itself; the
// code using it never calls MPI: parallel access goes through mpio_file_access(), which only hands Comm's handle on.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include <utility>

namespace mptrain {
class Comm;
}

namespace mptrain::h5 {

// A failed HDF5 call: what() is "<operation>: <HDF5 reason>"; both parts are kept apart too.
class Error : public std::runtime_error {
 public:
  Error(std::string operation, std::string reason);
  const std::string& operation() const { return operation_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string operation_;
  std::string reason_;
};

// Stops HDF5 printing its error stack to stderr (for the calling thread's default stack).
void quiet();

// The innermost description on HDF5's current error stack ("" when the stack is empty). Must be
// called right after the failing call: the next HDF5 call clears the stack.
std::string last_error();

// Throws Error(what, last_error()) when ret is negative; otherwise returns ret unchanged.
[[noreturn]] void throw_error(const std::string& what);
template <class T>
T check(T ret, const std::string& what) {
  if (ret < 0) throw_error(what);
  return ret;
}

// One owned hid_t closed with Close. Invalid (id < 0) when default-constructed or moved from.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: passing to H5* calls is the point
  bool valid() const { return id_ >= 0; }

  // Closes now and throws Error when HDF5 reports a failure (e.g. a flush at file close).
  void close(const std::string& what = "close HDF5 object") {
    if (id_ < 0) return;
    hid_t id = std::exchange(id_, H5I_INVALID_HID);
    check(Close(id), what);
  }
  // Closes now, ignoring failures (destructor path).
  void reset() {
    if (id_ >= 0) Close(std::exchange(id_, H5I_INVALID_HID));
  }
  // Gives up ownership.
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Attribute = Handle<H5Aclose>;
using PropList = Handle<H5Pclose>;
using Datatype = Handle<H5Tclose>;
using Object = Handle<H5Oclose>;  // from H5Oopen, when the kind of object is not known yet

// Collective over comm: a file-access property list for collective parallel access through
// MPI-IO on comm (H5Pset_fapl_mpio), with collective metadata reads and writes.
PropList mpio_file_access(const Comm& comm);

// Files. fapl = H5P_DEFAULT gives the serial (sec2) driver; pass mpio_file_access(comm) for
// collective parallel access. Both call quiet() first and throw
// Error("open FILE" / "create FILE", reason).
File open_file(const std::string& path, unsigned flags /* H5F_ACC_RDONLY or _RDWR */,
               hid_t fapl = H5P_DEFAULT);
File create_file(const std::string& path, hid_t fapl = H5P_DEFAULT);  // truncates

// True when `path` (e.g. "/tokens", "/model/wte") names an existing link; every group on the
// way must exist or the answer is false (not an error).
bool link_exists(hid_t loc, const std::string& path);
bool has_attr(hid_t obj, const std::string& name);
// The size in bytes of the file holding `obj` (any object id, or the file itself): a bound for
// anything whose size the file's own metadata claims.
uint64_t file_size_of(hid_t obj);
// Damaged chunked storage. HDF5 1.10 trusts a chunked dataset's layout and chunk index
// (version 1 B-tree records carry no checksum, in either file format) and allocates what a
// damaged record claims before reading it: a 1.2 GB malloc from a 137 KB checkpoint
// (fuzz_checkpoint). These checks refuse such claims first; each returns "" when nothing is
// wrong, else what is. Contiguous and external datasets have no chunks (their reads are bounded
// by the extent) and always pass.
struct ChunkLayout {
  bool chunked = false;
  std::vector<hsize_t> chunk;  // chunk dimensions
  uint64_t chunk_bytes = 0;    // bytes of one chunk's elements, unfiltered
  uint64_t file_size = 0;
};
// The layout: chunk dimensions within the extent and no more chunks than the extent needs.
std::string read_chunk_layout(hid_t dataset, ChunkLayout& layout);
// One chunk, given its first element's coordinates: inside the file and no larger than its
// elements (plus a filter's few bytes). For reads of a few chunks of a large dataset.
std::string damaged_chunk(hid_t dataset, const ChunkLayout& layout, const hsize_t* offset);
// The layout and every chunk (for datasets of few chunks, such as checkpoint tensors).
std::string damaged_chunks(hid_t dataset);

// Attributes (scalar). Strings are stored as fixed-length ASCII strings; reading also accepts
// variable-length strings (as h5py writes them). Integers are stored as 64-bit; reading accepts
// any integer type of 1 to 8 bytes, and throws Error when the attribute is not one integer (or
// not a string, or claims a fixed-length string larger than its file).
void write_string_attr(hid_t obj, const std::string& name, const std::string& value);
std::string read_string_attr(hid_t obj, const std::string& name);
void write_int_attr(hid_t obj, const std::string& name, int64_t value);
int64_t read_int_attr(hid_t obj, const std::string& name);
void write_uint_attr(hid_t obj, const std::string& name, uint64_t value);
uint64_t read_uint_attr(hid_t obj, const std::string& name);

}  // namespace mptrain::h5

#define MPT_H5_CHECK(expr) ::mptrain::h5::check((expr), #expr)
