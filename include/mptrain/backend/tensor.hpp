// Tensors in backend memory: a Buffer owns n floats of a backend's memory (RAII, element
// counts), an IntBuffer n int32 (token ids). Which part of a global tensor a rank holds is plain
// data of the core (core/shard.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
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

}  // namespace mptrain
