// Host staging of sends from memory MPI may not read (parallel/device_collectives.hpp), tested
// on the CPU with a fake device backend: its memory is plain host memory, but it says it is not
// host-accessible, so every send goes through the staging pool as on a GPU without CUDA-aware
// MPI. One process sends to itself (MPI_COMM_SELF) messages large enough that MPI reads the
// sender's buffer only when the receive is posted (rendezvous), so a staging buffer reused
// while its send is in flight shows up as wrong data received.
//  - Two sends with the same tag in flight together (the pipeline's forward and backward sends
//    of one micro-batch) each deliver their own data, also when the device memory they came
//    from is overwritten before the receives.
//  - Tags 64 apart (the old pool's slot key) do not share a buffer either.
//  - Finished sends give their buffers back: the pool grows only to the number of sends in
//    flight at once, and none is held after the requests completed.
//  - With host-accessible memory nothing is staged.
#define BOOST_TEST_MODULE staging
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "mpi_fixture.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/parallel/device_collectives.hpp"

using namespace mptrain;

namespace {

// Memory ops on host memory; MPI is told not to touch it. The compute ops are never called.
class FakeDeviceBackend final : public Backend {
 public:
  explicit FakeDeviceBackend(bool host_accessible) : host_accessible_(host_accessible) {}
  std::string name() const override { return "fake-device"; }
  int threads() const override { return 1; }
  float* alloc(size_t n) override { return new float[n](); }
  void release(float* p) override { delete[] p; }
  int32_t* alloc_int(size_t n) override { return new int32_t[n](); }
  void release_int(int32_t* p) override { delete[] p; }
  void to_host(float* host, const float* dev, size_t n) override {
    ++to_host_calls;
    std::memcpy(host, dev, n * sizeof(float));
  }
  void to_device(float* dev, const float* host, size_t n) override {
    std::memcpy(dev, host, n * sizeof(float));
  }
  void to_device_int(int32_t* dev, const int32_t* host, size_t n) override {
    std::memcpy(dev, host, n * sizeof(int32_t));
  }
  void copy(float* dst, const float* src, size_t n) override {
    std::memcpy(dst, src, n * sizeof(float));
  }
  void fill(float* x, float value, size_t n) override {
    for (size_t i = 0; i < n; ++i) x[i] = value;
  }
  void synchronize() override {}
  bool host_accessible() const override { return host_accessible_; }

  void gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
            int) override { unused(); }
  void add_bias(float*, const float*, int, int) override { unused(); }
  void bias_backward(float*, const float*, int, int) override { unused(); }
  void axpy(float*, const float*, float, size_t) override { unused(); }
  void add(float*, const float*, const float*, size_t) override { unused(); }
  void scale(float*, float, size_t) override { unused(); }
  void gelu_forward(float*, const float*, size_t) override { unused(); }
  void gelu_backward(float*, const float*, const float*, size_t) override { unused(); }
  void layernorm_forward(float*, float*, float*, const float*, const float*, const float*, int,
                         int) override { unused(); }
  void layernorm_backward(float*, float*, float*, const float*, const float*, const float*,
                          const float*, const float*, int, int) override { unused(); }
  void attention_forward(float*, float*, const float*, int, int, int, int) override { unused(); }
  void attention_backward(float*, float*, const float*, const float*, const float*, int, int,
                          int, int) override { unused(); }
  void embedding_forward(float*, const int32_t*, const float*, int, int, int, int) override {
    unused();
  }
  void embedding_backward(float*, const float*, const int32_t*, int, int, int, int) override {
    unused();
  }
  void position_forward(float*, const float*, int, int, int) override { unused(); }
  void position_backward(float*, const float*, int, int, int) override { unused(); }
  void ce_row_max(float*, const float*, int, int, int) override { unused(); }
  void ce_row_sumexp(float*, const float*, const float*, int, int, int) override { unused(); }
  void ce_target_logit(float*, const float*, const int32_t*, int, int, int, int) override {
    unused();
  }
  void ce_losses(float*, const float*, const float*, const float*, int) override { unused(); }
  void ce_backward(float*, const float*, const float*, const float*, const int32_t*, int, int,
                   int, int, float) override { unused(); }
  void adamw(float*, const float*, float*, float*, size_t, float, float, float, float, float,
             long) override { unused(); }
  double sum_squares(const float*, size_t) override { unused(); }
  double sum(const float*, size_t) override { unused(); }

  int to_host_calls = 0;

 private:
  [[noreturn]] static void unused() { throw std::logic_error("not part of the staging test"); }
  bool host_accessible_;
};

// 4 MiB per message: far above any MPI eager limit, so the data moves when the receive is
// posted, from whatever the send buffer holds then.
constexpr size_t n = size_t{1} << 20;

std::vector<float> filled(float value) { return std::vector<float>(n, value); }

// How many elements of `got` differ from `value`.
size_t wrong(const std::vector<float>& got, float value) {
  size_t count = 0;
  for (float x : got) count += x != value;
  return count;
}

}  // namespace

BOOST_AUTO_TEST_CASE(same_tag_sends_in_flight_keep_their_own_data) {
  FakeDeviceBackend device(/*host_accessible=*/false);
  DeviceCollectives dc(device);
  const Comm self = Comm::self();
  Buffer activations(device, n);  // device memory the two sends are staged from
  device.fill(activations.data(), 1.0f, n);
  Request forward = dc.isend(self, activations.data(), n, 0, /*tag=*/7);
  device.fill(activations.data(), 2.0f, n);  // the next op overwrites the device buffer
  Request backward = dc.isend(self, activations.data(), n, 0, /*tag=*/7);
  device.fill(activations.data(), 3.0f, n);
  BOOST_TEST(device.to_host_calls == 2);
  BOOST_TEST(dc.send_staging_buffers() == 2u);
  BOOST_TEST(dc.send_staging_in_use() == 2u);

  // MPI matches same-tag messages from one source in send order.
  std::vector<float> first = filled(-1.0f), second = filled(-1.0f);
  dc.recv(self, first.data(), n, 0, 7);  // host_accessible() false: staged too; fine
  dc.recv(self, second.data(), n, 0, 7);
  forward.wait();
  backward.wait();
  BOOST_TEST(wrong(first, 1.0f) == 0u, "the first send delivered another send's data");
  BOOST_TEST(wrong(second, 2.0f) == 0u);
  BOOST_TEST(dc.send_staging_in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(tags_64_apart_do_not_share_a_buffer) {
  FakeDeviceBackend device(false);
  DeviceCollectives dc(device);
  const Comm self = Comm::self();
  Buffer a(device, n), b(device, n);
  device.fill(a.data(), 5.0f, n);
  device.fill(b.data(), 6.0f, n);
  Request ra = dc.isend(self, a.data(), n, 0, 3);
  Request rb = dc.isend(self, b.data(), n, 0, 3 + 64);
  std::vector<float> got_b = filled(-1.0f), got_a = filled(-1.0f);
  dc.recv(self, got_b.data(), n, 0, 3 + 64);  // out of send order: matched by tag
  dc.recv(self, got_a.data(), n, 0, 3);
  ra.wait();
  rb.wait();
  BOOST_TEST(wrong(got_a, 5.0f) == 0u);
  BOOST_TEST(wrong(got_b, 6.0f) == 0u);
}

BOOST_AUTO_TEST_CASE(finished_sends_return_their_buffers) {
  FakeDeviceBackend device(false);
  DeviceCollectives dc(device);
  const Comm self = Comm::self();
  Buffer x(device, n);
  std::vector<float> got = filled(0.0f);
  // A 1F1B-like pattern: at most two sends in flight at any time, 50 sends in all.
  Request previous;
  for (int i = 0; i < 50; ++i) {
    device.fill(x.data(), float(i), n);
    Request current = dc.isend(self, x.data(), n, 0, i);
    BOOST_TEST(dc.send_staging_in_use() <= 2u);
    if (i > 0) {
      dc.recv(self, got.data(), n, 0, i - 1);
      previous.wait();
      BOOST_TEST(wrong(got, float(i - 1)) == 0u, "send " << i - 1);
    }
    previous = std::move(current);
  }
  dc.recv(self, got.data(), n, 0, 49);
  previous.wait();
  BOOST_TEST(wrong(got, 49.0f) == 0u);
  BOOST_TEST(dc.send_staging_buffers() == 2u);  // reused, not one per send
  BOOST_TEST(dc.send_staging_in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(a_destroyed_request_returns_its_buffer) {
  FakeDeviceBackend device(false);
  DeviceCollectives dc(device);
  const Comm self = Comm::self();
  Buffer x(device, 16);
  device.fill(x.data(), 4.0f, 16);
  std::vector<float> got(16, 0.0f);
  {
    Request r = dc.isend(self, x.data(), 16, 0, 1);  // small: completes eagerly
    BOOST_TEST(dc.send_staging_in_use() == 1u);
    dc.recv(self, got.data(), 16, 0, 1);
  }  // the destructor waits and lets go
  BOOST_TEST(dc.send_staging_in_use() == 0u);
  BOOST_TEST(wrong(got, 4.0f) == 0u);
}

BOOST_AUTO_TEST_CASE(host_accessible_memory_is_sent_in_place) {
  FakeDeviceBackend host(/*host_accessible=*/true);
  DeviceCollectives dc(host);
  const Comm self = Comm::self();
  Buffer x(host, 16);
  host.fill(x.data(), 8.0f, 16);
  std::vector<float> got(16, 0.0f);
  Request r = dc.isend(self, x.data(), 16, 0, 2);
  dc.recv(self, got.data(), 16, 0, 2);
  r.wait();
  BOOST_TEST(host.to_host_calls == 0);
  BOOST_TEST(dc.send_staging_buffers() == 0u);
  for (float v : got) BOOST_TEST(v == 8.0f);
}
