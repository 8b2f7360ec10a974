// Checkpoint files (see checkpoint.hpp and doc/DESIGN.md §4). Every rank holds some blocks of some
// global tensors; the file stores each tensor once, unsharded, as a chunked float32 dataset
// with the Fletcher32 checksum filter. Writing and reading are collective over one
// communicator with parallel HDF5 (MPI-IO): the ranks first agree on the union of the tensors
// any of them lists, then walk that list in one sorted order, every rank creating/opening each
// dataset and taking part in one collective transfer in which it selects its own blocks (or
// nothing). Parallel writes through a filter are only possible as collective I/O, which is why
// even ranks with nothing to write join every transfer.
//
// Errors are agreed on: after each step that can fail, the ranks compare notes with Comm::agree
// and, if any rank failed, all of them throw the same CheckpointError (the lowest failing
// rank's message), so no rank is left waiting in a collective its peers abandoned.
// CheckpointDir (src/io/checkpoint_dir.cpp) adds the atomic-save protocol on top.
#include "mptrain/io/checkpoint.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "io/checkpoint_internal.hpp"
#include "io/h5util.hpp"

namespace mptrain {

using checkpoint_detail::agree;
using checkpoint_detail::agree_on_tensor_list;
using checkpoint_detail::attempt;
using checkpoint_detail::check_local_tensors;
using checkpoint_detail::GlobalTensor;
using checkpoint_detail::nonempty_blocks;

namespace {

// ---------------------------------------------------------------- moving one tensor's data

// One row of one block: `count` elements at (row, col) in the file and at `local` in the array.
struct RowSegment {
  int64_t row, col, local, count;
};

// HDF5 pairs the selected file elements with the selected memory elements in row-major order
// of each space. Local and file blocks correspond element for element when the blocks occupy
// disjoint row ranges in both spaces and come in the same row order in both (true of row,
// column and q|k|v splits); otherwise the data goes through a buffer in file order.
bool local_order_matches_file_order(std::vector<ShardBlock> blocks) {
  std::sort(blocks.begin(), blocks.end(),
            [](const ShardBlock& a, const ShardBlock& b) { return a.global_row < b.global_row; });
  for (size_t i = 0; i + 1 < blocks.size(); ++i) {
    if (blocks[i].global_row + blocks[i].rows > blocks[i + 1].global_row) return false;
    if (blocks[i].local_row + blocks[i].rows > blocks[i + 1].local_row) return false;
  }
  return true;
}

void select_blocks(hid_t space, const std::vector<ShardBlock>& blocks, bool in_file, int ndims) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& b = blocks[i];
    std::array<hsize_t, 2> start{}, count{};
    start[0] = static_cast<hsize_t>(in_file ? b.global_row : b.local_row);
    start[1] = static_cast<hsize_t>(in_file ? b.global_col : b.local_col);
    count[0] = static_cast<hsize_t>(b.rows);
    count[1] = static_cast<hsize_t>(b.cols);
    if (ndims == 1) count[1] = 1;  // 1-D: cols is 1 and the second entry unused
    h5::check(H5Sselect_hyperslab(space, i == 0 ? H5S_SELECT_SET : H5S_SELECT_OR, start.data(),
                                  nullptr, count.data(), nullptr),
              "select block");
  }
}

// Collective over the file's communicator (a collective H5Dwrite/H5Dread): moves this rank's
// blocks of `io` between its host array and `dataset`; selects nothing when `io` is null or,
// when writing, the rank is a replica.
void transfer(hid_t dataset, hid_t dxpl, const TensorIO* io, bool writing) {
  h5::Dataspace file_space(h5::check(H5Dget_space(dataset), "get dataspace"));
  const int ndims = h5::check(H5Sget_simple_extent_ndims(file_space), "get dataspace rank");
  std::vector<ShardBlock> blocks;
  if (io != nullptr && (!writing || io->spec.writer)) blocks = nonempty_blocks(io->spec);

  auto move_data = [&](hid_t mem_space, float* data) {
    if (writing) {
      h5::check(H5Dwrite(dataset, H5T_NATIVE_FLOAT, mem_space, file_space, dxpl, data), "H5Dwrite");
    } else {
      h5::check(H5Dread(dataset, H5T_NATIVE_FLOAT, mem_space, file_space, dxpl, data), "H5Dread");
    }
  };

  if (blocks.empty()) {
    h5::check(H5Sselect_none(file_space), "select nothing");
    const hsize_t one = 1;
    h5::Dataspace mem_space(h5::check(H5Screate_simple(1, &one, nullptr), "memory dataspace"));
    h5::check(H5Sselect_none(mem_space), "select nothing");
    float unused = 0.0f;  // HDF5 wants a buffer even when nothing moves
    move_data(mem_space, &unused);
    return;
  }
  select_blocks(file_space, blocks, /*in_file=*/true, ndims);

  const ShardSpec& spec = io->spec;
  if (local_order_matches_file_order(blocks)) {
    const std::array<hsize_t, 2> local_dims{static_cast<hsize_t>(spec.local_rows),
                                            static_cast<hsize_t>(spec.local_cols)};
    h5::Dataspace mem_space(h5::check(H5Screate_simple(2, local_dims.data(), nullptr),
                                      "memory dataspace"));
    select_blocks(mem_space, blocks, /*in_file=*/false, 2);
    move_data(mem_space, io->host);
    return;
  }

  std::vector<RowSegment> segments;
  for (const auto& b : blocks) {
    for (int64_t r = 0; r < b.rows; ++r) {
      segments.push_back({b.global_row + r, b.global_col,
                          (b.local_row + r) * spec.local_cols + b.local_col, b.cols});
    }
  }
  std::sort(segments.begin(), segments.end(), [](const RowSegment& a, const RowSegment& b) {
    return a.row != b.row ? a.row < b.row : a.col < b.col;
  });
  int64_t total = 0;
  for (const auto& s : segments) total += s.count;
  std::vector<float> in_file_order(static_cast<size_t>(total));
  if (writing) {
    int64_t at = 0;
    for (const auto& s : segments) {
      std::copy_n(io->host + s.local, s.count, in_file_order.data() + at);
      at += s.count;
    }
  }
  const hsize_t n = static_cast<hsize_t>(total);
  h5::Dataspace mem_space(h5::check(H5Screate_simple(1, &n, nullptr), "memory dataspace"));
  move_data(mem_space, in_file_order.data());
  if (!writing) {
    int64_t at = 0;
    for (const auto& s : segments) {
      std::copy_n(in_file_order.data() + at, s.count, io->host + s.local);
      at += s.count;
    }
  }
}

h5::PropList collective_transfer_list() {
  h5::PropList dxpl(h5::check(H5Pcreate(H5P_DATASET_XFER), "create transfer property list"));
  h5::check(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio");
  return dxpl;
}

// Chunks of whole rows (or of up to 256 Ki columns of one row), at most about 1 MiB each: small
// enough for HDF5's default chunk cache, large enough to keep the chunk index short.
std::vector<hsize_t> chunk_dims(const std::vector<int64_t>& shape) {
  constexpr int64_t chunk_elements = (1 << 20) / sizeof(float);
  if (shape.size() == 1) return {static_cast<hsize_t>(std::min(shape[0], chunk_elements))};
  const int64_t cols = std::min(shape[1], chunk_elements);
  const int64_t rows = std::clamp<int64_t>(chunk_elements / cols, 1, shape[0]);
  return {static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)};
}

// Collective: creates the dataset of one global tensor (every rank, same arguments).
h5::Dataset create_tensor_dataset(hid_t file, const GlobalTensor& t) {
  std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
  h5::Dataspace space(h5::check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(),
                                                 nullptr), "dataspace"));
  h5::PropList dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dataset creation list"));
  const auto chunk = chunk_dims(t.shape);
  h5::check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
  h5::check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32");
  return h5::Dataset(h5::check(H5Dcreate2(file, t.path().c_str(), H5T_IEEE_F32LE, space,
                                          H5P_DEFAULT, dcpl, H5P_DEFAULT), "H5Dcreate2"));
}

// ---------------------------------------------------------------- root attributes

// Collective: rank 0's metadata on every rank, so all ranks write identical attributes (a
// parallel HDF5 requirement) even if callers disagree.
CheckpointMeta meta_from_rank0(const Comm& comm, const CheckpointMeta& meta) {
  CheckpointMeta out;
  out.deck_text = comm.bcast_string(meta.deck_text, 0);    // collective
  out.model_text = comm.bcast_string(meta.model_text, 0);  // collective
  out.layout = comm.bcast_string(meta.layout, 0);          // collective
  out.tokenizer = comm.bcast_string(meta.tokenizer, 0);    // collective
  out.tokenizer_vocab = comm.bcast_string(meta.tokenizer_vocab, 0);  // collective
  std::array<int64_t, 6> numbers{meta.step, meta.tokens_seen,
                                 std::bit_cast<int64_t>(meta.sampler_position),
                                 std::bit_cast<int64_t>(meta.rng_seed),
                                 std::bit_cast<int64_t>(meta.rng_offset), meta.adam_step};
  comm.bcast(numbers, 0);  // collective
  out.step = numbers[0];
  out.tokens_seen = numbers[1];
  out.sampler_position = std::bit_cast<uint64_t>(numbers[2]);
  out.rng_seed = std::bit_cast<uint64_t>(numbers[3]);
  out.rng_offset = std::bit_cast<uint64_t>(numbers[4]);
  out.adam_step = numbers[5];
  return out;
}

// Rank 0: refuses to start a save that cannot fit on the file system (the data plus a
// margin for metadata), so a full disk is reported before anything is written.
std::string check_free_space(const Comm& comm, const std::string& path,
                             const std::vector<GlobalTensor>& list) {
  if (comm.rank() != 0) return "";
  uint64_t needed = 1 << 20;
  for (const GlobalTensor& t : list) needed += t.bytes() + t.bytes() / 20;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  struct statvfs fs {};
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs) != 0) return "";  // unknown: try anyway
  const uint64_t available = uint64_t(fs.f_bavail) * fs.f_frsize;
  if (available >= needed) return "";
  return path + ": not enough space for the checkpoint: it needs about " +
         std::to_string(needed >> 20) + " MiB and " + std::to_string(available >> 20) +
         " MiB are free";
}

// Collective (metadata writes): the root attributes and the groups.
void write_meta(hid_t file, const CheckpointMeta& meta) {
  h5::write_string_attr(file, "format", checkpoint_format);
  h5::write_int_attr(file, "format_version", checkpoint_format_version);
  h5::write_int_attr(file, "step", meta.step);
  h5::write_int_attr(file, "tokens_seen", meta.tokens_seen);
  h5::write_string_attr(file, "deck", meta.deck_text);
  h5::write_string_attr(file, "model_deck", meta.model_text);
  h5::write_string_attr(file, "layout", meta.layout);
  h5::write_uint_attr(file, "sampler_position", meta.sampler_position);
  h5::write_uint_attr(file, "rng_seed", meta.rng_seed);
  h5::write_uint_attr(file, "rng_offset", meta.rng_offset);
  h5::write_string_attr(file, "tokenizer", meta.tokenizer);
  h5::write_string_attr(file, "tokenizer_vocab", meta.tokenizer_vocab);
  for (const char* name : {"/model", "/optim", "/optim/m", "/optim/v"}) {
    h5::Group group(h5::check(H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                              std::string("create group ") + name));
    if (std::string(name) == "/optim") h5::write_int_attr(group, "step", meta.adam_step);
  }
}

// Collective (metadata reads): the root attributes, after checking format and version.
CheckpointMeta read_meta(hid_t file, const std::string& path) {
  if (!h5::has_attr(file, "format") ||
      h5::read_string_attr(file, "format") != checkpoint_format) {
    throw CheckpointError(path + ": not an mptrain checkpoint (no format = \"" +
                          std::string(checkpoint_format) + "\" attribute)");
  }
  if (!h5::has_attr(file, "format_version")) {
    throw CheckpointError(path + ": missing attribute format_version");
  }
  const int64_t version = h5::read_int_attr(file, "format_version");
  if (version != checkpoint_format_version) {
    throw CheckpointError(path + ": format version " + std::to_string(version) +
                          ", this build reads " + std::to_string(checkpoint_format_version));
  }
  for (const char* name : {"step", "tokens_seen", "deck", "model_deck", "layout",
                           "sampler_position", "rng_seed", "rng_offset"}) {
    if (!h5::has_attr(file, name)) {
      throw CheckpointError(path + ": missing attribute " + std::string(name));
    }
  }
  CheckpointMeta meta;
  meta.step = h5::read_int_attr(file, "step");
  meta.tokens_seen = h5::read_int_attr(file, "tokens_seen");
  meta.deck_text = h5::read_string_attr(file, "deck");
  meta.model_text = h5::read_string_attr(file, "model_deck");
  meta.layout = h5::read_string_attr(file, "layout");
  meta.sampler_position = h5::read_uint_attr(file, "sampler_position");
  meta.rng_seed = h5::read_uint_attr(file, "rng_seed");
  meta.rng_offset = h5::read_uint_attr(file, "rng_offset");
  if (h5::has_attr(file, "tokenizer")) meta.tokenizer = h5::read_string_attr(file, "tokenizer");
  if (h5::has_attr(file, "tokenizer_vocab"))
    meta.tokenizer_vocab = h5::read_string_attr(file, "tokenizer_vocab");
  // AdamW's own step count (differs from `step` once a non-finite step was skipped).
  if (!h5::link_exists(file, "/optim"))
    throw CheckpointError(path + ": missing group /optim");
  h5::Group optim(h5::check(H5Gopen2(file, "/optim", H5P_DEFAULT), "open group /optim"));
  if (!h5::has_attr(optim, "step")) throw CheckpointError(path + ": missing attribute /optim step");
  meta.adam_step = h5::read_int_attr(optim, "step");
  return meta;
}

// Collective: opens `path` read-only with MPI-IO on comm; every rank throws the same
// CheckpointError when it cannot.
h5::File open_for_reading(const Comm& comm, const std::string& path) {
  h5::PropList fapl = h5::mpio_file_access(comm);  // collective
  h5::File file;
  agree(comm, attempt(path, [&] {
          try {
            file = h5::open_file(path, H5F_ACC_RDONLY, fapl);
          } catch (const h5::Error& e) {  // e.what() would repeat the path
            throw CheckpointError(path + ": cannot open checkpoint (missing, truncated or not "
                                  "HDF5): " + e.reason());
          }
        }));
  return file;
}

}  // namespace

// ---------------------------------------------------------------- shared with checkpoint_dir.cpp

namespace checkpoint_detail {

uint64_t write_checkpoint(const Comm& comm, const std::string& path,
                          const CheckpointMeta& meta_in, const CheckpointTensors& tensors,
                          bool kill_midway) {
  agree(comm, check_local_tensors(tensors, path));
  const std::vector<GlobalTensor> list =
      agree_on_tensor_list(comm, tensors, path, /*check_writers=*/true);
  const CheckpointMeta meta = meta_from_rank0(comm, meta_in);
  agree(comm, check_free_space(comm, path, list));

  h5::PropList fapl = h5::mpio_file_access(comm);  // collective
  h5::File file;  // declared before every object in it, so closed after them
  agree(comm, attempt(path, [&] {
          try {
            file = h5::create_file(path, fapl);
          } catch (const h5::Error& e) {
            throw CheckpointError(path + ": cannot create checkpoint: " + e.reason());
          }
        }));
  agree(comm, attempt(path + ": cannot write attributes", [&] { write_meta(file, meta); }));
  h5::PropList dxpl = collective_transfer_list();

  uint64_t bytes = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (kill_midway && i == list.size() / 2 && comm.rank() == 0) std::raise(SIGKILL);
    const GlobalTensor& t = list[i];
    agree(comm, attempt(path + ": cannot write tensor " + t.path(), [&] {
            h5::Dataset dataset = create_tensor_dataset(file, t);  // collective
            transfer(dataset, dxpl, t.local, /*writing=*/true);    // collective
            dataset.close("close dataset");
          }));
    bytes += t.bytes();
  }
  // Close (collective), then make the data durable with a plain fsync on rank 0 before the
  // caller renames the file into place. (An H5Fflush here syncs through MPI_File_sync, which
  // hangs the other ranks when it fails on one, e.g. on a full disk.)
  agree(comm, attempt(path + ": cannot finish writing the checkpoint", [&] {
          file.close("close file");  // collective
        }));
  std::string error;
  if (comm.rank() == 0) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0 || ::fsync(fd) != 0)
      error = path + ": cannot flush the checkpoint to storage: " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
  }
  agree(comm, error);
  return bytes;
}

}  // namespace checkpoint_detail

// ---------------------------------------------------------------- public functions

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

void write_checkpoint_file(const Comm& comm, const std::string& path, const CheckpointMeta& meta,
                           const CheckpointTensors& tensors) {
  checkpoint_detail::write_checkpoint(comm, path, meta, tensors, /*kill_midway=*/false);
}

CheckpointMeta read_checkpoint_meta(const Comm& comm, const std::string& path) {
  h5::File file = open_for_reading(comm, path);
  CheckpointMeta meta;
  agree(comm, attempt(path + ": cannot read checkpoint attributes",
                      [&] { meta = read_meta(file, path); }));
  return meta;
}

void read_checkpoint_tensors(const Comm& comm, const std::string& path,
                             const CheckpointTensors& tensors) {
  agree(comm, check_local_tensors(tensors, path));
  const std::vector<GlobalTensor> list =
      agree_on_tensor_list(comm, tensors, path, /*check_writers=*/false);
  h5::File file = open_for_reading(comm, path);
  agree(comm, attempt(path + ": cannot read checkpoint attributes",
                      [&] { read_meta(file, path); }));
  h5::PropList dxpl = collective_transfer_list();

  for (const GlobalTensor& t : list) {
    const std::string what = path + ": tensor " + t.path();
    agree(comm, attempt(what, [&] {
            if (!h5::link_exists(file, t.path())) throw CheckpointError(what + " is missing");
            h5::Dataset dataset(h5::check(H5Dopen2(file, t.path().c_str(), H5P_DEFAULT),
                                          "open dataset"));
            h5::Dataspace space(h5::check(H5Dget_space(dataset), "get dataspace"));
            const int ndims = h5::check(H5Sget_simple_extent_ndims(space), "dataspace rank");
            std::vector<hsize_t> dims(std::max(ndims, 0));
            h5::check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "dataspace dims");
            const std::vector<int64_t> stored(dims.begin(), dims.end());
            if (stored != t.shape) {
              throw CheckpointError(what + " has shape " + shape_text(stored) + ", expected " +
                                    shape_text(t.shape));
            }
            // float32 as written; float64 converts too. A damaged type message may claim
            // any class and size, which HDF5's conversions are not meant to meet.
            h5::Datatype type(h5::check(H5Dget_type(dataset), "dataset type"));
            const size_t type_size = H5Tget_size(type);
            if (H5Tget_class(type) != H5T_FLOAT || (type_size != 4 && type_size != 8))
              throw CheckpointError(what + " is not stored as float32 or float64");
            if (const std::string damage = h5::damaged_chunks(dataset); !damage.empty())
              throw CheckpointError(what + " is damaged: " + damage);
            try {
              transfer(dataset, dxpl, t.local, /*writing=*/false);  // collective
            } catch (const h5::Error& e) {
              const bool checksum = e.reason().find("Fletcher32") != std::string::npos ||
                                    e.reason().find("checksum") != std::string::npos;
              throw CheckpointError(what + (checksum ? ": checksum failed, the file is damaged ("
                                                     : ": read failed, the file may be damaged (") +
                                    e.what() + ")");
            }
          }));
  }
}

}  // namespace mptrain
