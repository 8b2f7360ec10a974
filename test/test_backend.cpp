// Unit tests of the compute backend (the CPU backend, with 2 threads and with 1), part 1: memory,
// GEMM and the layer ops. Every forward is checked against the double-precision references of
// backend_test_support.hpp on small awkward shapes, every backward against central finite
// differences of L = sum(out * R) taken through those references. Part 2
// (test_backend_loss.cpp) covers cross-entropy, AdamW, reductions and determinism. Tests only go
// through the Backend interface (to_device / to_host), so nothing here is CPU-specific beyond
// make_cpu_backend().
#define BOOST_TEST_MODULE backend
#define BOOST_TEST_DYN_LINK
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend_test_support.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"

using mptrain::Buffer;
using mptrain::IntBuffer;
using ref::Vec;
using namespace support;
namespace bdata = boost::unit_test::data;

namespace {
const auto kThreadCounts = bdata::make({2, 1});
}  // namespace

BOOST_DATA_TEST_CASE(memory_and_copies, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  BOOST_TEST(be->name() == "cpu");
  BOOST_TEST(be->threads() == threads);
  BOOST_TEST(be->host_accessible());

  const size_t n = 40000;  // above the parallel threshold of fill()
  float* p = be->alloc(n);
  int32_t* q = be->alloc_int(37);
  BOOST_TEST(reinterpret_cast<uintptr_t>(p) % 64 == 0u);
  BOOST_TEST(reinterpret_cast<uintptr_t>(q) % 64 == 0u);
  std::vector<float> h(n, 1.0f);
  be->to_host(h.data(), p, n);
  BOOST_TEST(ref::worst_error(h, Vec(n, 0.0)) == 0.0);
  for (int i = 0; i < 37; i++) BOOST_TEST(q[i] == 0);  // host_accessible: readable directly

  const auto src = ref::random_floats(n, 1);
  be->to_device(p, src.data(), n);
  Buffer dst(*be, n);
  be->copy(dst.data(), p, n);
  BOOST_TEST(bit_identical(dst.to_host(), src));
  be->fill(p, 3.5f, n);
  be->synchronize();
  be->to_host(h.data(), p, n);
  BOOST_TEST(ref::worst_error(h, Vec(n, 3.5)) == 0.0);

  const auto toks = ref::random_ints(37, 2, 0, 1000);
  be->to_device_int(q, toks.data(), toks.size());
  BOOST_TEST(std::memcmp(q, toks.data(), 37 * sizeof(int32_t)) == 0);
  be->release(p);
  be->release_int(q);
}

BOOST_DATA_TEST_CASE(gemm_forward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  struct Shape {
    int m, n, k;
  };
  for (Shape s : {Shape{7, 5, 13}, Shape{67, 45, 130}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        // Stored shapes: A (m,k) or (k,m); B (k,n) or (n,k); padded leading dimensions.
        const int a_rows = ta ? s.k : s.m, lda = (ta ? s.m : s.k) + 3;
        const int b_rows = tb ? s.n : s.k, ldb = (tb ? s.k : s.n) + 2;
        const int ldc = s.n + 5;
        const auto a = ref::random_floats(static_cast<size_t>(a_rows) * lda, 10);
        const auto b = ref::random_floats(static_cast<size_t>(b_rows) * ldb, 11);
        const auto c0 = ref::random_floats(static_cast<size_t>(s.m) * ldc, 12);
        Buffer da = upload(*be, a), db = upload(*be, b), dc = upload(*be, c0);
        be->gemm(ta, tb, s.m, s.n, s.k, 0.7f, da.data(), lda, db.data(), ldb, 0.3f, dc.data(), ldc);
        Vec want = ref::to_double(c0);  // padding columns must come back untouched
        ref::gemm(ta, tb, s.m, s.n, s.k, 0.7, ref::to_double(a), lda, ref::to_double(b), ldb, 0.3,
                  want, ldc);
        check_close(dc.to_host(), want, kFwdTol,
                    "gemm m=" + std::to_string(s.m) + " ta=" + std::to_string(ta) +
                        " tb=" + std::to_string(tb));
      }
}

// The model's backward of C = op(A) op(B) is two more gemm calls; check them, for every
// transpose combination, against finite differences of sum(C * R).
BOOST_DATA_TEST_CASE(gemm_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const int m = 7, n = 5, k = 6;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int a_rows = ta ? k : m, lda = (ta ? m : k) + 2;
      const int b_rows = tb ? n : k, ldb = (tb ? k : n) + 1;
      const auto a = ref::random_floats(static_cast<size_t>(a_rows) * lda, 20);
      const auto b = ref::random_floats(static_cast<size_t>(b_rows) * ldb, 21);
      const auto r = ref::random_floats(static_cast<size_t>(m) * n, 22);  // dC (m, n)
      auto loss = [&](const Vec& av, const Vec& bv) {
        Vec c(static_cast<size_t>(m) * n, 0.0);
        ref::gemm(ta, tb, m, n, k, 1.0, av, lda, bv, ldb, 0.0, c, n);
        return ref::dot(c, ref::to_double(r));
      };
      Vec want_da = ref::numeric_grad(ref::to_double(a),
                                      [&](const Vec& x) { return loss(x, ref::to_double(b)); });
      Vec want_db = ref::numeric_grad(ref::to_double(b),
                                      [&](const Vec& x) { return loss(ref::to_double(a), x); });
      // FD of padding entries is exactly 0, and gemm never writes them: both stay 0.
      Buffer A = upload(*be, a), B = upload(*be, b), R = upload(*be, r);
      Buffer dA(*be, a.size()), dB(*be, b.size());
      if (!ta)  // dA(m,k) = R op(B)^T
        be->gemm(false, !tb, m, k, n, 1.0f, R.data(), n, B.data(), ldb, 0.0f, dA.data(), lda);
      else  // dA(k,m) = op(B) R^T
        be->gemm(tb, true, k, m, n, 1.0f, B.data(), ldb, R.data(), n, 0.0f, dA.data(), lda);
      if (!tb)  // dB(k,n) = op(A)^T R
        be->gemm(!ta, false, k, n, m, 1.0f, A.data(), lda, R.data(), n, 0.0f, dB.data(), ldb);
      else  // dB(n,k) = R^T op(A)
        be->gemm(true, ta, n, k, m, 1.0f, R.data(), n, A.data(), lda, 0.0f, dB.data(), ldb);
      const std::string tag = " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
      check_close(dA.to_host(), want_da, kGradTol, "gemm dA" + tag);
      check_close(dB.to_host(), want_db, kGradTol, "gemm dB" + tag);
    }
}

BOOST_DATA_TEST_CASE(bias_forward_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  struct Shape {
    int rows, cols;
  };
  for (Shape s : {Shape{7, 13}, Shape{300, 70}}) {  // the second spans several column blocks
    const size_t n = static_cast<size_t>(s.rows) * s.cols;
    const auto x = ref::random_floats(n, 30), bias = ref::random_floats(s.cols, 31);
    const auto r = ref::random_floats(n, 32), prefill = ref::random_floats(s.cols, 33);
    Buffer out = upload(*be, x), b = upload(*be, bias);
    be->add_bias(out.data(), b.data(), s.rows, s.cols);
    Vec want(n);
    for (size_t i = 0; i < n; i++) want[i] = x[i] + static_cast<double>(bias[i % s.cols]);
    check_close(out.to_host(), want, kFwdTol, "add_bias");

    auto loss = [&](const Vec& bv) {
      Vec o = ref::to_double(x);
      for (size_t i = 0; i < n; i++) o[i] += bv[i % s.cols];
      return ref::dot(o, ref::to_double(r));
    };
    Buffer dbias = upload(*be, prefill), dout = upload(*be, r);
    be->bias_backward(dbias.data(), dout.data(), s.rows, s.cols);
    check_close(dbias.to_host(), plus(prefill, ref::numeric_grad(ref::to_double(bias), loss)),
                kGradTol, "bias_backward (+=)");
  }
}

BOOST_DATA_TEST_CASE(elementwise, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (size_t n : {size_t{7}, size_t{20000}}) {
    const auto a = ref::random_floats(n, 40), b = ref::random_floats(n, 41);
    Vec sum(n), axpy(n), scaled(n);
    for (size_t i = 0; i < n; i++) {
      sum[i] = static_cast<double>(a[i]) + b[i];
      axpy[i] = a[i] + 0.5 * static_cast<double>(b[i]);
      scaled[i] = -1.5 * static_cast<double>(a[i]);
    }
    Buffer A = upload(*be, a), B = upload(*be, b), out(*be, n);
    be->add(out.data(), A.data(), B.data(), n);
    check_close(out.to_host(), sum, kFwdTol, "add");
    Buffer A2 = upload(*be, a);
    be->add(A2.data(), A2.data(), B.data(), n);  // out aliases a
    check_close(A2.to_host(), sum, kFwdTol, "add, out == a");
    Buffer B2 = upload(*be, b);
    be->add(B2.data(), A.data(), B2.data(), n);  // out aliases b
    check_close(B2.to_host(), sum, kFwdTol, "add, out == b");
    Buffer Y = upload(*be, a);
    be->axpy(Y.data(), B.data(), 0.5f, n);
    check_close(Y.to_host(), axpy, kFwdTol, "axpy");
    be->scale(A.data(), -1.5f, n);
    check_close(A.to_host(), scaled, kFwdTol, "scale");
  }
}

BOOST_DATA_TEST_CASE(gelu_forward_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (size_t n : {size_t{13}, size_t{20000}}) {
    const auto x = ref::random_floats(n, 50, -4.0f, 4.0f), r = ref::random_floats(n, 51);
    Buffer X = upload(*be, x), out(*be, n);
    be->gelu_forward(out.data(), X.data(), n);
    Vec want(n);
    for (size_t i = 0; i < n; i++) want[i] = ref::gelu(x[i]);
    check_close(out.to_host(), want, kFwdTol, "gelu_forward");

    if (n > 1000) continue;  // finite differences on the small case only
    Vec grad = ref::numeric_grad(ref::to_double(x), [&](const Vec& xv) {
      double l = 0.0;
      for (size_t i = 0; i < n; i++) l += ref::gelu(xv[i]) * r[i];
      return l;
    });
    Buffer dout = upload(*be, r), dinp = upload(*be, ref::random_floats(n, 52));
    be->gelu_backward(dinp.data(), X.data(), dout.data(), n);  // "=": the prefill is overwritten
    check_close(dinp.to_host(), grad, kGradTol, "gelu_backward");
    be->gelu_backward(dout.data(), X.data(), dout.data(), n);  // dinp aliases dout
    check_close(dout.to_host(), grad, kGradTol, "gelu_backward, dinp == dout");
  }
}

BOOST_DATA_TEST_CASE(layernorm_forward_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  struct Shape {
    int N, C;
  };
  for (Shape s : {Shape{7, 13}, Shape{9, 45}}) {
    const int N = s.N, C = s.C;
    const size_t n = static_cast<size_t>(N) * C;
    const auto x = ref::random_floats(n, 60, 2.0f, 4.0f);  // a mean far from 0
    const auto w = ref::random_floats(C, 61, 0.5f, 1.5f), b = ref::random_floats(C, 62);
    const auto r = ref::random_floats(n, 63);
    Buffer X = upload(*be, x), W = upload(*be, w), Bb = upload(*be, b);
    Buffer out(*be, n), mean(*be, N), rstd(*be, N);
    be->layernorm_forward(out.data(), mean.data(), rstd.data(), X.data(), W.data(), Bb.data(), N,
                          C);
    Vec want_out, want_mean, want_rstd;
    ref::layernorm(want_out, want_mean, want_rstd, ref::to_double(x), ref::to_double(w),
                   ref::to_double(b), N, C);
    check_close(out.to_host(), want_out, kFwdTol, "layernorm out");
    check_close(mean.to_host(), want_mean, kFwdTol, "layernorm mean");
    check_close(rstd.to_host(), want_rstd, kFwdTol, "layernorm rstd");

    // L = sum(layernorm(x; w, b) * R); differentiate with respect to each input in turn.
    auto loss = [&](const Vec& xv, const Vec& wv, const Vec& bv) {
      Vec o, m, rs;
      ref::layernorm(o, m, rs, xv, wv, bv, N, C);
      return ref::dot(o, ref::to_double(r));
    };
    const Vec xd = ref::to_double(x), wd = ref::to_double(w), bd = ref::to_double(b);
    Vec gx = ref::numeric_grad(xd, [&](const Vec& v) { return loss(v, wd, bd); });
    Vec gw = ref::numeric_grad(wd, [&](const Vec& v) { return loss(xd, v, bd); });
    Vec gb = ref::numeric_grad(bd, [&](const Vec& v) { return loss(xd, wd, v); });
    // All three gradients accumulate: start them from known values.
    const auto p_x = ref::random_floats(n, 64), p_w = ref::random_floats(C, 65),
               p_b = ref::random_floats(C, 66);
    Buffer dinp = upload(*be, p_x), dw = upload(*be, p_w), db = upload(*be, p_b);
    Buffer dout = upload(*be, r);
    be->layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), X.data(), W.data(),
                           mean.data(), rstd.data(), N, C);
    check_close(dinp.to_host(), plus(p_x, gx), kGradTol, "layernorm dinp (+=)");
    check_close(dw.to_host(), plus(p_w, gw), kGradTol, "layernorm dweight (+=)");
    check_close(db.to_host(), plus(p_b, gb), kGradTol, "layernorm dbias (+=)");
  }
}

BOOST_DATA_TEST_CASE(attention_forward_backward, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  struct Shape {
    int B, T, NH, HS;
    bool grad;
  };
  // T = 70 and 130 cross the CPU backend's 64-row blocks; the last case is forward only.
  for (Shape s : {Shape{2, 5, 3, 4, true}, Shape{1, 70, 2, 3, true}, Shape{2, 130, 2, 8, false}}) {
    const int B = s.B, T = s.T, NH = s.NH, HS = s.HS, C = NH * HS;
    const std::string tag = " T=" + std::to_string(T);
    const size_t n_qkv = static_cast<size_t>(B) * T * 3 * C, n_out = static_cast<size_t>(B) * T * C;
    const size_t n_att = static_cast<size_t>(B) * NH * T * T;
    const auto qkv = ref::random_floats(n_qkv, 70, -2.0f, 2.0f);
    Buffer QKV = upload(*be, qkv), out(*be, n_out);
    Buffer att = upload(*be, std::vector<float>(n_att, 7.0f));  // the upper half must be zeroed
    be->attention_forward(out.data(), att.data(), QKV.data(), B, T, NH, HS);
    Vec want_out, want_att;
    ref::attention(want_out, want_att, ref::to_double(qkv), B, T, NH, HS);
    check_close(out.to_host(), want_out, kFwdTol, "attention out" + tag);
    check_close(att.to_host(), want_att, kFwdTol, "attention att" + tag);
    if (!s.grad) continue;

    const auto r = ref::random_floats(n_out, 71);
    Vec grad = ref::numeric_grad(ref::to_double(qkv), [&](const Vec& v) {
      Vec o, a;
      ref::attention(o, a, v, B, T, NH, HS);
      return ref::dot(o, ref::to_double(r));
    });
    Buffer dout = upload(*be, r);
    Buffer dqkv = upload(*be, std::vector<float>(n_qkv, 5.0f));   // "=": must be overwritten
    Buffer datt = upload(*be, std::vector<float>(n_att, -3.0f));  // scratch with garbage
    be->attention_backward(dqkv.data(), datt.data(), dout.data(), QKV.data(), att.data(), B, T, NH,
                           HS);
    check_close(dqkv.to_host(), grad, kGradTol, "attention dqkv" + tag);
  }
}

BOOST_DATA_TEST_CASE(embeddings, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  // This rank owns rows [4, 9) of an 11-token vocabulary; some tokens repeat, and 3 and 9 sit
  // just outside the owned range.
  const int vocab_start = 4, V = 5, N = 10, C = 45;
  std::vector<int32_t> toks = {4, 0, 8, 4, 10, 6, 9, 4, 8, 3};
  const auto wte = ref::random_floats(static_cast<size_t>(V) * C, 80);
  const auto r = ref::random_floats(static_cast<size_t>(N) * C, 81);
  Buffer W = upload(*be, wte), out = upload(*be, ref::random_floats(r.size(), 82));
  IntBuffer tok = upload(*be, toks);
  be->embedding_forward(out.data(), tok.data(), W.data(), vocab_start, V, N, C);
  auto forward = [&](const Vec& w) {
    Vec o(static_cast<size_t>(N) * C, 0.0);
    for (int i = 0; i < N; i++) {
      const int row = toks[i] - vocab_start;
      if (row < 0 || row >= V) continue;
      for (int c = 0; c < C; c++)
        o[static_cast<size_t>(i) * C + c] = w[static_cast<size_t>(row) * C + c];
    }
    return o;
  };
  check_close(out.to_host(), forward(ref::to_double(wte)), kFwdTol, "embedding_forward");

  Vec grad = ref::numeric_grad(
      ref::to_double(wte), [&](const Vec& w) { return ref::dot(forward(w), ref::to_double(r)); });
  const auto prefill = ref::random_floats(wte.size(), 83);
  Buffer dW = upload(*be, prefill), dout = upload(*be, r);
  be->embedding_backward(dW.data(), dout.data(), tok.data(), vocab_start, V, N, C);
  check_close(dW.to_host(), plus(prefill, grad), kGradTol, "embedding_backward (+=)");
}

BOOST_DATA_TEST_CASE(positions, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const int B = 3, T = 5, C = 13;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto wpe = ref::random_floats(static_cast<size_t>(T) * C, 90);
  const auto x = ref::random_floats(n, 91), r = ref::random_floats(n, 92);
  Buffer W = upload(*be, wpe), out = upload(*be, x);
  be->position_forward(out.data(), W.data(), B, T, C);
  auto forward = [&](const Vec& w) {
    Vec o = ref::to_double(x);
    for (size_t i = 0; i < n; i++) o[i] += w[i % (static_cast<size_t>(T) * C)];
    return o;
  };
  check_close(out.to_host(), forward(ref::to_double(wpe)), kFwdTol, "position_forward (+=)");
  Vec grad = ref::numeric_grad(
      ref::to_double(wpe), [&](const Vec& w) { return ref::dot(forward(w), ref::to_double(r)); });
  const auto prefill = ref::random_floats(wpe.size(), 93);
  Buffer dW = upload(*be, prefill), dout = upload(*be, r);
  be->position_backward(dW.data(), dout.data(), B, T, C);
  check_close(dW.to_host(), plus(prefill, grad), kGradTol, "position_backward (+=)");
}
