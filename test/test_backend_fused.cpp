// Unit tests of the compute backend, part 3: the fused ops (bias + GELU, GELU backward + bias
// gradient, residual + LayerNorm, bias + residual, the fused AdamW step). Each is defined as a
// sequence of basic ops (the Backend base class implements it that way); the CPU backend's
// fused version must give the same bits as that sequence, for 1 and 2 threads, on shapes that
// take the parallel paths and several row chunks. The basic ops themselves are checked against
// references in part 1 and 2.
#define BOOST_TEST_DYN_LINK
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <vector>

#include "backend_test_support.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"

using mptrain::Buffer;
using namespace support;
namespace bdata = boost::unit_test::data;

namespace {
const auto kThreadCounts = bdata::make({2, 1});
// (rows, cols): one row chunk and a ragged column count; several chunks, the parallel path.
struct Shape {
  int rows, cols;
};
const Shape kShapes[] = {{7, 13}, {200, 160}};
}  // namespace

BOOST_DATA_TEST_CASE(fused_bias_gelu_forward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (const Shape s : kShapes) {
    const size_t n = size_t(s.rows) * s.cols;
    const auto pre = ref::random_floats(n, 300, -4.0f, 4.0f), bias = ref::random_floats(s.cols, 301);
    Buffer B = upload(*be, bias);
    Buffer P1 = upload(*be, pre), O1(*be, n), P2 = upload(*be, pre), O2(*be, n);
    be->bias_gelu_forward(P1.data(), O1.data(), B.data(), s.rows, s.cols);
    be->Backend::bias_gelu_forward(P2.data(), O2.data(), B.data(), s.rows, s.cols);
    BOOST_TEST(bit_identical(P1.to_host(), P2.to_host()), "pre += bias");
    BOOST_TEST(bit_identical(O1.to_host(), O2.to_host()), "gelu(pre)");
  }
}

BOOST_DATA_TEST_CASE(fused_gelu_bias_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (const Shape s : kShapes) {
    const size_t n = size_t(s.rows) * s.cols;
    const auto pre = ref::random_floats(n, 310, -4.0f, 4.0f), dout = ref::random_floats(n, 311);
    const auto db0 = ref::random_floats(s.cols, 312);  // "+=" onto a prefilled gradient
    Buffer P = upload(*be, pre);
    Buffer D1 = upload(*be, dout), G1(*be, n), DB1 = upload(*be, db0);
    Buffer D2 = upload(*be, dout), G2(*be, n), DB2 = upload(*be, db0);
    be->gelu_bias_backward(G1.data(), DB1.data(), P.data(), D1.data(), s.rows, s.cols);
    be->Backend::gelu_bias_backward(G2.data(), DB2.data(), P.data(), D2.data(), s.rows, s.cols);
    BOOST_TEST(bit_identical(G1.to_host(), G2.to_host()), "dinp");
    BOOST_TEST(bit_identical(DB1.to_host(), DB2.to_host()), "dbias");
    // In place (dinp == dout), as src/model/layers.cpp calls it.
    Buffer DB3 = upload(*be, db0);
    be->gelu_bias_backward(D1.data(), DB3.data(), P.data(), D1.data(), s.rows, s.cols);
    BOOST_TEST(bit_identical(D1.to_host(), G2.to_host()), "dinp aliasing dout");
    BOOST_TEST(bit_identical(DB3.to_host(), DB2.to_host()), "dbias, dinp aliasing dout");
  }
}

BOOST_DATA_TEST_CASE(fused_residual_layernorm_forward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (const Shape s : kShapes) {
    const size_t n = size_t(s.rows) * s.cols;
    const auto res = ref::random_floats(n, 320), x = ref::random_floats(n, 321, -3.0f, 5.0f);
    const auto br = ref::random_floats(s.cols, 322), w = ref::random_floats(s.cols, 323),
               b = ref::random_floats(s.cols, 324);
    Buffer X = upload(*be, x), BR = upload(*be, br), W = upload(*be, w), Bb = upload(*be, b);
    Buffer R1 = upload(*be, res), O1(*be, n), M1(*be, s.rows), S1(*be, s.rows);
    Buffer R2 = upload(*be, res), O2(*be, n), M2(*be, s.rows), S2(*be, s.rows);
    be->residual_layernorm_forward(R1.data(), O1.data(), M1.data(), S1.data(), X.data(), BR.data(),
                                   W.data(), Bb.data(), s.rows, s.cols);
    be->Backend::residual_layernorm_forward(R2.data(), O2.data(), M2.data(), S2.data(), X.data(),
                                            BR.data(), W.data(), Bb.data(), s.rows, s.cols);
    BOOST_TEST(bit_identical(R1.to_host(), R2.to_host()), "residual");
    BOOST_TEST(bit_identical(O1.to_host(), O2.to_host()), "LayerNorm output");
    BOOST_TEST(bit_identical(M1.to_host(), M2.to_host()), "mean");
    BOOST_TEST(bit_identical(S1.to_host(), S2.to_host()), "rstd");
  }
}

BOOST_DATA_TEST_CASE(fused_add_bias_residual, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (const Shape s : kShapes) {
    const size_t n = size_t(s.rows) * s.cols;
    const auto out = ref::random_floats(n, 330), res = ref::random_floats(n, 331);
    Buffer B = upload(*be, ref::random_floats(s.cols, 332)), R = upload(*be, res);
    Buffer O1 = upload(*be, out), O2 = upload(*be, out);
    be->add_bias_residual(O1.data(), B.data(), R.data(), s.rows, s.cols);
    be->Backend::add_bias_residual(O2.data(), B.data(), R.data(), s.rows, s.cols);
    BOOST_TEST(bit_identical(O1.to_host(), O2.to_host()));
  }
}

BOOST_DATA_TEST_CASE(fused_adamw_step, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const size_t n = 70001;  // above the parallel threshold, not a multiple of the chunk
  const auto p = ref::random_floats(n, 340), g = ref::random_floats(n, 341);
  const auto m = ref::random_floats(n, 342, -0.1f, 0.1f), v = ref::random_floats(n, 343, 0.0f, 0.1f);
  for (const float scale : {1.0f, 0.37f})
    for (const bool zero : {true, false}) {
      Buffer P1 = upload(*be, p), G1 = upload(*be, g), M1 = upload(*be, m), V1 = upload(*be, v);
      Buffer P2 = upload(*be, p), G2 = upload(*be, g), M2 = upload(*be, m), V2 = upload(*be, v);
      be->adamw_step(P1.data(), G1.data(), M1.data(), V1.data(), n, 3e-3f, 0.9f, 0.95f, 1e-8f,
                     0.1f, 4, scale, zero);
      be->Backend::adamw_step(P2.data(), G2.data(), M2.data(), V2.data(), n, 3e-3f, 0.9f, 0.95f,
                              1e-8f, 0.1f, 4, scale, zero);
      BOOST_TEST(bit_identical(P1.to_host(), P2.to_host()), "param, scale " << scale);
      BOOST_TEST(bit_identical(M1.to_host(), M2.to_host()), "m, scale " << scale);
      BOOST_TEST(bit_identical(V1.to_host(), V2.to_host()), "v, scale " << scale);
      BOOST_TEST(bit_identical(G1.to_host(), G2.to_host()), "grad, zero " << zero);
    }
}
