// Serial, read-only access to one checkpoint file, tensor by tensor: the tensors a group holds
// (name and stored shape) and each one read whole as float32, through HDF5's serial driver, on
// one process, with no communicator and no model. mptrain-ckpt's info, verify, diff and sample
// use it, and so can tests and tools that look inside a file. Nothing is checked against a
// model here (read_checkpoint_tensors in checkpoint.hpp does that for training); a damaged
// tensor fails its Fletcher32 checksum when it is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mptrain/io/checkpoint.hpp"  // checkpoint_groups, shape_text, CheckpointError

namespace mptrain {

// One dataset of a checkpoint file as stored.
struct StoredTensor {
  std::string path;            // e.g. /model/h.0.attn.c_attn.weight
  std::vector<int64_t> shape;  // the stored global shape, e.g. [96,32]
  int64_t elements() const;
};

class CheckpointReader {
 public:
  // Opens `path` read-only. Throws CheckpointError ("PATH: cannot open: REASON").
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::string& path() const { return path_; }
  // The datasets directly in `group` (e.g. "/optim/m"), in name order; none when the group is
  // missing. Throws CheckpointError when the group cannot be listed.
  std::vector<StoredTensor> list(const std::string& group) const;
  // The whole tensor as float. Throws CheckpointError naming the file and the tensor, and
  // saying so when the checksum failed (a damaged file).
  std::vector<float> read(const StoredTensor& tensor) const;

 private:
  struct File;  // the open HDF5 file (src/io/checkpoint_reader.cpp)
  std::string path_;
  std::unique_ptr<File> file_;
};

}  // namespace mptrain
