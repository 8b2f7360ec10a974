// Tensors in backend memory, and the global-coordinate description of a shard. A Buffer owns
// backend memory (RAII, element counts); a ShardSpec says which part of a global tensor a rank
// holds, in global coordinates (Megatron-style), so checkpoints store every tensor unsharded
// and any layout can read back exactly its own slice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mptrain/backend/backend.hpp"

namespace mptrain {

// Backend memory of n floats, zero-filled, released on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& backend, size_t n) : backend_(&backend), n_(n) {
    data_ = n ? backend.alloc(n) : nullptr;
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = o.backend_; data_ = o.data_; n_ = o.n_;
      o.data_ = nullptr; o.n_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return n_; }
  std::vector<float> to_host() const {
    std::vector<float> h(n_);
    if (n_) backend_->to_host(h.data(), data_, n_);
    return h;
  }

 private:
  void reset() {
    if (data_) backend_->release(data_);
    data_ = nullptr; n_ = 0;
  }
  Backend* backend_ = nullptr;
  float* data_ = nullptr;
  size_t n_ = 0;
};

// Backend memory of n int32 (token ids).
class IntBuffer {
 public:
  IntBuffer() = default;
  IntBuffer(Backend& backend, size_t n) : backend_(&backend), n_(n) {
    data_ = n ? backend.alloc_int(n) : nullptr;
  }
  IntBuffer(IntBuffer&& o) noexcept { *this = std::move(o); }
  IntBuffer& operator=(IntBuffer&& o) noexcept {
    if (this != &o) {
      if (data_) backend_->release_int(data_);
      backend_ = o.backend_; data_ = o.data_; n_ = o.n_;
      o.data_ = nullptr; o.n_ = 0;
    }
    return *this;
  }
  IntBuffer(const IntBuffer&) = delete;
  IntBuffer& operator=(const IntBuffer&) = delete;
  ~IntBuffer() { if (data_) backend_->release_int(data_); }
  int32_t* data() { return data_; }
  const int32_t* data() const { return data_; }
  size_t size() const { return n_; }

 private:
  Backend* backend_ = nullptr;
  int32_t* data_ = nullptr;
  size_t n_ = 0;
};

// A rectangle of a 2-D global tensor (1-D tensors use cols == 1 and col offsets 0) and where
// it sits in the rank's local row-major array.
struct ShardBlock {
  int64_t global_row = 0, global_col = 0;  // top-left corner in the global tensor
  int64_t local_row = 0, local_col = 0;    // top-left corner in the local array
  int64_t rows = 0, cols = 0;              // extent
};

// Which elements of one global tensor this rank holds.
struct ShardSpec {
  std::string name;                    // GPT-2 name, e.g. "h.0.attn.c_attn.weight"
  std::vector<int64_t> global_shape;   // 1 or 2 dims, PyTorch nn.Linear orientation [out, in]
  int64_t local_rows = 0, local_cols = 1;  // local row-major storage (may include padding)
  std::vector<ShardBlock> blocks;      // the rank's parts of the global tensor
  bool writer = true;  // false on replicas that hold the same blocks as a writer elsewhere

  int64_t local_size() const { return local_rows * local_cols; }
  int64_t global_size() const {
    int64_t n = 1;
    for (auto d : global_shape) n *= d;
    return n;
  }
};

}  // namespace mptrain
