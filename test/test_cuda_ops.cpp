// Unit tests of the CUDA backend: every op on fresh random inputs against the CPU backend
// (make_cpu_backend(1)) or, for GEMM and the reductions, against the double-precision
// references of backend_test_support.hpp; outputs poisoned with NaN before each "=" op so that
// an element the GPU forgets to write shows up; forward and backward; awkward shapes (odd
// sizes, padded leading dimensions, several blocks, both attention batching orientations);
// and every op run twice on the GPU with bit-identical results (the determinism promise).
// Tolerances by precision: fp32 1e-5 (relative to |want| + rms(want), see ref::worst_error),
// TF32 1e-2 and bf16 3e-2 for the matrix products.
//
// Without a CUDA device the program prints "no CUDA device: skipping" and exits 77, which
// automake's test driver counts as SKIP.
#define BOOST_TEST_MODULE cuda_ops
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backend_test_support.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"

using mptrain::Backend;
using mptrain::Buffer;
using mptrain::IntBuffer;
using ref::Vec;
using namespace support;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kFp32Tol = 1e-5;

struct Mode {
  const char* name;
  bool tf32, bf16;
  double gemm_tol;
};
const Mode kModes[] = {{"fp32", false, false, 1e-5}, {"tf32", true, false, 1e-2},
                       {"bf16", false, true, 3e-2}};

std::unique_ptr<Backend> gpu(const Mode& mode = kModes[0]) {
  mptrain::CudaOptions o;
  o.device = 0;
  o.tf32 = mode.tf32;
  o.bf16 = mode.bf16;
  return mptrain::make_cuda_backend(o);
}

std::vector<float> nans(size_t n) { return std::vector<float>(n, kNaN); }

using Outputs = std::vector<std::vector<float>>;

// Runs `run` on the CPU backend once and on `g` twice: each output of the GPU must be within
// tol of the CPU's, and the two GPU runs bit-identical.
void compare(const std::string& what, Backend& g, double tol,
             const std::function<Outputs(Backend&)>& run) {
  auto c = mptrain::make_cpu_backend(1);
  const Outputs want = run(*c), got = run(g), again = run(g);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); i++) {
    const std::string tag = what + " [output " + std::to_string(i) + "]";
    check_close(got[i], ref::to_double(want[i]), tol, tag);
    BOOST_TEST(bit_identical(got[i], again[i]), tag << ": two GPU runs differ");
  }
}

}  // namespace

int main(int argc, char* argv[]) {
  if (!mptrain::cuda_available()) {
    std::printf("no CUDA device: skipping\n");
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}

BOOST_AUTO_TEST_CASE(device_and_selection) {
  BOOST_TEST(mptrain::cuda_device_count() >= 1);
  auto be = gpu();
  BOOST_TEST(be->name().rfind("cuda (", 0) == 0u, "name: " << be->name());
  BOOST_TEST(be->threads() == 1);
  BOOST_TEST(!be->host_accessible());
  BOOST_TEST_MESSAGE("device: " << be->name());
  auto chosen = mptrain::select_backend("cuda", 0, 0, 1);
  BOOST_TEST(chosen->name().rfind("cuda (", 0) == 0u);
  auto automatic = mptrain::select_backend("auto", 0, 3, 4);  // device 3 % count
  BOOST_TEST(automatic->name().rfind("cuda (", 0) == 0u);
  auto cpu = mptrain::select_backend("cpu", 1, 0, 1);
  BOOST_TEST(cpu->name() == "cpu");
}

BOOST_AUTO_TEST_CASE(memory_and_copies) {
  auto be = gpu();
  const size_t n = 3000017;  // beyond one grid-stride sweep of the element-wise kernels
  Buffer p(*be, n);
  BOOST_TEST(ref::worst_error(p.to_host(), Vec(n, 0.0)) == 0.0);  // zero-filled
  Buffer empty(*be, 0);
  float* zero = be->alloc(0);  // a valid pointer for zero elements
  BOOST_TEST(zero != nullptr);
  be->release(zero);
  int32_t* ints = be->alloc_int(37);
  BOOST_TEST(ints != nullptr);
  be->release_int(ints);

  const auto src = ref::random_floats(n, 1);
  be->to_device(p.data(), src.data(), n);
  BOOST_TEST(bit_identical(p.to_host(), src));
  Buffer dst(*be, n);
  be->copy(dst.data(), p.data(), n);
  BOOST_TEST(bit_identical(dst.to_host(), src));
  be->fill(p.data(), 3.5f, n);
  be->synchronize();
  BOOST_TEST(ref::worst_error(p.to_host(), Vec(n, 3.5)) == 0.0);
  be->fill(p.data(), kNaN, n);
  const auto poisoned = p.to_host();
  BOOST_TEST((std::isnan(poisoned.front()) && std::isnan(poisoned.back())));
  // Partial transfers at an offset.
  be->to_device(p.data() + 5, src.data(), 10);
  std::vector<float> back(10);
  be->to_host(back.data(), p.data() + 5, 10);
  BOOST_TEST(bit_identical(back, std::vector<float>(src.begin(), src.begin() + 10)));
}

BOOST_AUTO_TEST_CASE(gemm_against_reference) {
  for (const Mode& mode : kModes) {
    auto be = gpu(mode);
    struct Shape {
      int m, n, k;
    };
    for (Shape s : {Shape{7, 5, 13}, Shape{67, 45, 130}, Shape{256, 96, 384}, Shape{9, 4, 0}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.0f, 0.3f}) {
            const int a_rows = ta ? s.k : s.m, lda = (ta ? s.m : s.k) + 3;
            const int b_rows = tb ? s.n : s.k, ldb = (tb ? s.k : s.n) + 2;
            const int ldc = s.n + 5;
            const auto a = ref::random_floats(static_cast<size_t>(std::max(a_rows, 1)) * lda, 10);
            const auto b = ref::random_floats(static_cast<size_t>(std::max(b_rows, 1)) * ldb, 11);
            auto c0 = ref::random_floats(static_cast<size_t>(s.m) * ldc, 12);
            Vec want = ref::to_double(c0);  // padding columns must come back untouched
            if (beta == 0.0f)  // C is not read: poison it (the padding keeps its values)
              for (int i = 0; i < s.m; i++)
                for (int j = 0; j < s.n; j++) {
                  c0[static_cast<size_t>(i) * ldc + j] = kNaN;
                  want[static_cast<size_t>(i) * ldc + j] = 0.0;
                }
            ref::gemm(ta, tb, s.m, s.n, s.k, 0.7, ref::to_double(a), lda, ref::to_double(b), ldb,
                      beta, want, ldc);
            const std::string tag = std::string("gemm ") + mode.name + " m=" + std::to_string(s.m) +
                                    " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
                                    " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                                    " beta=" + std::to_string(beta);
            Buffer da = upload(*be, a), db = upload(*be, b);
            std::vector<float> results[2];
            for (auto& result : results) {
              Buffer dc = upload(*be, c0);
              be->gemm(ta, tb, s.m, s.n, s.k, 0.7f, da.data(), lda, db.data(), ldb, beta,
                       dc.data(), ldc);
              result = dc.to_host();
            }
            check_close(results[0], want, mode.gemm_tol, tag);
            BOOST_TEST(bit_identical(results[0], results[1]), tag << ": two runs differ");
          }
  }
}

BOOST_AUTO_TEST_CASE(bias_forward_backward) {
  auto g = gpu();
  struct Shape {
    int rows, cols;
  };
  for (Shape s : {Shape{1, 1}, Shape{37, 33}, Shape{1000, 70}, Shape{5000, 768}}) {
    const size_t n = static_cast<size_t>(s.rows) * s.cols;
    const auto x = ref::random_floats(n, 30), bias = ref::random_floats(s.cols, 31);
    const auto dout = ref::random_floats(n, 32), prefill = ref::random_floats(s.cols, 33);
    const std::string tag = " rows=" + std::to_string(s.rows) + " cols=" + std::to_string(s.cols);
    compare("add_bias" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer out = upload(be, x), b = upload(be, bias);
      be.add_bias(out.data(), b.data(), s.rows, s.cols);
      return Outputs{out.to_host()};
    });
    compare("bias_backward (+=)" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer db = upload(be, prefill), d = upload(be, dout);
      be.bias_backward(db.data(), d.data(), s.rows, s.cols);
      return Outputs{db.to_host()};
    });
  }
}

BOOST_AUTO_TEST_CASE(elementwise) {
  auto g = gpu();
  for (size_t n : {size_t{1}, size_t{1003}, size_t{2500001}}) {
    const auto a = ref::random_floats(n, 40), b = ref::random_floats(n, 41);
    const auto x = ref::random_floats(n, 42, -5.0f, 5.0f);
    const std::string tag = " n=" + std::to_string(n);
    compare("add / axpy / scale" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer A = upload(be, a), B = upload(be, b), out = upload(be, nans(n));
      be.add(out.data(), A.data(), B.data(), n);
      Buffer A2 = upload(be, a), B2 = upload(be, b);
      be.add(A2.data(), A2.data(), B.data(), n);  // out aliases a
      be.add(B2.data(), A.data(), B2.data(), n);  // out aliases b
      Buffer Y = upload(be, a);
      be.axpy(Y.data(), B.data(), 0.5f, n);
      Buffer S = upload(be, a);
      be.scale(S.data(), -1.5f, n);
      return Outputs{out.to_host(), A2.to_host(), B2.to_host(), Y.to_host(), S.to_host()};
    });
    compare("gelu" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer X = upload(be, x), out = upload(be, nans(n));
      be.gelu_forward(out.data(), X.data(), n);
      Buffer D = upload(be, a), dinp = upload(be, nans(n));
      be.gelu_backward(dinp.data(), X.data(), D.data(), n);
      Buffer D2 = upload(be, a);
      be.gelu_backward(D2.data(), X.data(), D2.data(), n);  // dinp aliases dout
      return Outputs{out.to_host(), dinp.to_host(), D2.to_host()};
    });
  }
}

BOOST_AUTO_TEST_CASE(layernorm_forward_backward) {
  auto g = gpu();
  struct Shape {
    int N, C;
  };
  for (Shape s : {Shape{1, 1}, Shape{37, 5}, Shape{70, 64}, Shape{600, 771}, Shape{2000, 768}}) {
    const size_t n = static_cast<size_t>(s.N) * s.C;
    const auto x = ref::random_floats(n, 60, 2.0f, 4.0f);  // a large mean: tests the two passes
    const auto w = ref::random_floats(s.C, 61, 0.5f, 1.5f), b = ref::random_floats(s.C, 62);
    const auto dout = ref::random_floats(n, 63), dinp0 = ref::random_floats(n, 64);
    const auto dw0 = ref::random_floats(s.C, 65), db0 = ref::random_floats(s.C, 66);
    const std::string tag = " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C);
    compare("layernorm" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer X = upload(be, x), W = upload(be, w), Bb = upload(be, b);
      Buffer out = upload(be, nans(n)), mean = upload(be, nans(s.N)), rstd = upload(be, nans(s.N));
      be.layernorm_forward(out.data(), mean.data(), rstd.data(), X.data(), W.data(), Bb.data(),
                           s.N, s.C);
      Buffer D = upload(be, dout), dinp = upload(be, dinp0);
      Buffer dw = upload(be, dw0), db = upload(be, db0);
      be.layernorm_backward(dinp.data(), dw.data(), db.data(), D.data(), X.data(), W.data(),
                            mean.data(), rstd.data(), s.N, s.C);
      // dinp aliasing dout: dout + grad(dout).
      Buffer D2 = upload(be, dout), dw2 = upload(be, dw0), db2 = upload(be, db0);
      be.layernorm_backward(D2.data(), dw2.data(), db2.data(), D2.data(), X.data(), W.data(),
                            mean.data(), rstd.data(), s.N, s.C);
      return Outputs{out.to_host(), mean.to_host(), rstd.to_host(), dinp.to_host(),
                     dw.to_host(),  db.to_host(),   D2.to_host(),   dw2.to_host(),
                     db2.to_host()};
    });
  }
}

BOOST_AUTO_TEST_CASE(attention_forward_backward) {
  for (int mode_index : {0, 1}) {  // fp32, and TF32 products
    const Mode& mode = kModes[mode_index];
    auto g = gpu(mode);
    struct Shape {
      int B, T, NH, HS;
    };
    // B <= NH batches over heads, B > NH over the batch; T not a multiple of 32 or of a warp.
    for (Shape s : {Shape{1, 1, 1, 4}, Shape{2, 37, 3, 16}, Shape{3, 70, 2, 8},
                    Shape{2, 128, 4, 32}, Shape{1, 300, 2, 64}}) {
      const int C = s.NH * s.HS;
      const size_t n_qkv = static_cast<size_t>(s.B) * s.T * 3 * C;
      const size_t n_out = static_cast<size_t>(s.B) * s.T * C;
      const size_t n_att = static_cast<size_t>(s.B) * s.NH * s.T * s.T;
      const auto qkv = ref::random_floats(n_qkv, 70, -2.0f, 2.0f);
      const auto dout = ref::random_floats(n_out, 71);
      const std::string tag = std::string(" ") + mode.name + " B=" + std::to_string(s.B) +
                              " T=" + std::to_string(s.T) + " NH=" + std::to_string(s.NH) +
                              " HS=" + std::to_string(s.HS);
      compare("attention" + tag, *g, mode.tf32 ? 2e-2 : 1e-4, [&](Backend& be) {
        Buffer Q = upload(be, qkv), out = upload(be, nans(n_out)), att = upload(be, nans(n_att));
        be.attention_forward(out.data(), att.data(), Q.data(), s.B, s.T, s.NH, s.HS);
        Buffer D = upload(be, dout), dqkv = upload(be, nans(n_qkv)), datt = upload(be, nans(n_att));
        be.attention_backward(dqkv.data(), datt.data(), D.data(), Q.data(), att.data(), s.B, s.T,
                              s.NH, s.HS);
        return Outputs{out.to_host(), att.to_host(), dqkv.to_host()};
      });
    }
  }
}

// The fused ops against the CPU, and bit for bit against the basic ops they stand for on the GPU.
BOOST_AUTO_TEST_CASE(fused_ops) {
  auto g = gpu();
  const int rows = 300, cols = 203;
  const size_t n = static_cast<size_t>(rows) * cols;
  const auto x = ref::random_floats(n, 130, -3.0f, 3.0f), y = ref::random_floats(n, 131);
  const auto bias = ref::random_floats(cols, 132), w = ref::random_floats(cols, 133, 0.5f, 1.5f);
  const auto lb = ref::random_floats(cols, 134), db0 = ref::random_floats(cols, 135);
  auto same_on_gpu = [&](const std::string& what, const std::function<Outputs(Backend&)>& fused,
                         const std::function<Outputs(Backend&)>& basic) {
    const Outputs a = fused(*g), b = basic(*g);
    BOOST_TEST_REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); i++)
      BOOST_TEST(bit_identical(a[i], b[i]),
                 what << " [output " << i << "] differs from the basic ops");
  };

  auto bias_gelu = [&](Backend& be) {
    Buffer pre = upload(be, x), out = upload(be, nans(n)), b = upload(be, bias);
    be.bias_gelu_forward(pre.data(), out.data(), b.data(), rows, cols);
    return Outputs{pre.to_host(), out.to_host()};
  };
  compare("bias_gelu_forward", *g, kFp32Tol, bias_gelu);
  same_on_gpu("bias_gelu_forward", bias_gelu, [&](Backend& be) {
    Buffer pre = upload(be, x), out = upload(be, nans(n)), b = upload(be, bias);
    be.add_bias(pre.data(), b.data(), rows, cols);
    be.gelu_forward(out.data(), pre.data(), n);
    return Outputs{pre.to_host(), out.to_host()};
  });

  compare("gelu_bias_backward", *g, kFp32Tol, [&](Backend& be) {
    Buffer pre = upload(be, x), dout = upload(be, y), dinp = upload(be, nans(n));
    Buffer db = upload(be, db0);
    be.gelu_bias_backward(dinp.data(), db.data(), pre.data(), dout.data(), rows, cols);
    Buffer d2 = upload(be, y), db2 = upload(be, db0);  // dinp aliasing dout
    be.gelu_bias_backward(d2.data(), db2.data(), pre.data(), d2.data(), rows, cols);
    return Outputs{dinp.to_host(), db.to_host(), d2.to_host(), db2.to_host()};
  });

  auto residual_ln = [&](Backend& be) {
    Buffer res = upload(be, y), X = upload(be, x), br = upload(be, bias), W = upload(be, w);
    Buffer Bb = upload(be, lb), out = upload(be, nans(n));
    Buffer mean = upload(be, nans(rows)), rstd = upload(be, nans(rows));
    be.residual_layernorm_forward(res.data(), out.data(), mean.data(), rstd.data(), X.data(),
                                  br.data(), W.data(), Bb.data(), rows, cols);
    return Outputs{res.to_host(), out.to_host(), mean.to_host(), rstd.to_host()};
  };
  compare("residual_layernorm_forward", *g, kFp32Tol, residual_ln);
  same_on_gpu("residual_layernorm_forward", residual_ln, [&](Backend& be) {
    Buffer res = upload(be, y), X = upload(be, x), br = upload(be, bias), W = upload(be, w);
    Buffer Bb = upload(be, lb), out = upload(be, nans(n));
    Buffer mean = upload(be, nans(rows)), rstd = upload(be, nans(rows));
    be.add_bias(res.data(), br.data(), rows, cols);
    be.add(res.data(), res.data(), X.data(), n);
    be.layernorm_forward(out.data(), mean.data(), rstd.data(), res.data(), W.data(), Bb.data(),
                         rows, cols);
    return Outputs{res.to_host(), out.to_host(), mean.to_host(), rstd.to_host()};
  });

  const auto p0 = ref::random_floats(n, 136), m0 = ref::random_floats(n, 137, -0.1f, 0.1f);
  const auto v0 = ref::random_floats(n, 138, 0.01f, 1.0f);
  for (float grad_scale : {1.0f, 0.25f})
    for (bool zero_grad : {false, true}) {
      const std::string tag = "adamw_step scale=" + std::to_string(grad_scale) +
                              " zero_grad=" + std::to_string(zero_grad);
      auto fused = [&](Backend& be) {
        Buffer P = upload(be, p0), G = upload(be, y), M = upload(be, m0), V = upload(be, v0);
        be.adamw_step(P.data(), G.data(), M.data(), V.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                      3, grad_scale, zero_grad);
        return Outputs{P.to_host(), G.to_host(), M.to_host(), V.to_host()};
      };
      compare(tag, *g, kFp32Tol, fused);
      same_on_gpu(tag, fused, [&](Backend& be) {
        Buffer P = upload(be, p0), G = upload(be, y), M = upload(be, m0), V = upload(be, v0);
        if (grad_scale != 1.0f) be.scale(G.data(), grad_scale, n);
        be.adamw(P.data(), G.data(), M.data(), V.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3);
        if (zero_grad) be.fill(G.data(), 0.0f, n);
        return Outputs{P.to_host(), G.to_host(), M.to_host(), V.to_host()};
      });
    }
}

BOOST_AUTO_TEST_CASE(embeddings) {
  auto g = gpu();
  struct Case {
    int V, vocab_start, N, C, token_hi;  // tokens drawn from [0, token_hi)
  };
  // Unowned tokens, heavy collisions, one long run of a single token, a wide row.
  for (Case k : {Case{50, 20, 300, 37, 100}, Case{1000, 0, 4096, 64, 200},
                 Case{7, 3, 2000, 130, 4}, Case{256, 256, 1024, 768, 512}}) {
    const size_t nc = static_cast<size_t>(k.N) * k.C;
    const auto tokens = ref::random_ints(k.N, 80, 0, k.token_hi);
    const auto wte = ref::random_floats(static_cast<size_t>(k.V) * k.C, 81);
    const auto dout = ref::random_floats(nc, 82);
    const auto dwte0 = ref::random_floats(static_cast<size_t>(k.V) * k.C, 83);
    const std::string tag = " V=" + std::to_string(k.V) + " start=" +
                            std::to_string(k.vocab_start) + " N=" + std::to_string(k.N) +
                            " C=" + std::to_string(k.C);
    compare("embedding" + tag, *g, kFp32Tol, [&](Backend& be) {
      IntBuffer tok = upload(be, tokens);
      Buffer W = upload(be, wte), out = upload(be, nans(nc));
      be.embedding_forward(out.data(), tok.data(), W.data(), k.vocab_start, k.V, k.N, k.C);
      Buffer D = upload(be, dout), dW = upload(be, dwte0);
      be.embedding_backward(dW.data(), D.data(), tok.data(), k.vocab_start, k.V, k.N, k.C);
      return Outputs{out.to_host(), dW.to_host()};
    });
  }
  // Positions.
  const int B = 3, T = 17, C = 40;
  const auto x = ref::random_floats(static_cast<size_t>(B) * T * C, 84);
  const auto wpe = ref::random_floats(static_cast<size_t>(T) * C, 85);
  const auto dwpe0 = ref::random_floats(static_cast<size_t>(T) * C, 86);
  compare("position", *g, kFp32Tol, [&](Backend& be) {
    Buffer X = upload(be, x), P = upload(be, wpe), dP = upload(be, dwpe0);
    be.position_forward(X.data(), P.data(), B, T, C);
    Buffer D = upload(be, x);
    be.position_backward(dP.data(), D.data(), B, T, C);
    return Outputs{X.to_host(), dP.to_host()};
  });
}

BOOST_AUTO_TEST_CASE(cross_entropy) {
  auto g = gpu();
  struct Case {
    int N, V, ld, vocab_start, target_hi;
  };
  // Padding columns, targets owned by other ranks, a long vocabulary, an empty shard.
  for (Case k : {Case{37, 1000, 1003, 500, 2000}, Case{5, 1, 8, 0, 1}, Case{64, 50257, 50264, 0,
                 50257}, Case{9, 0, 4, 100, 200}}) {
    const size_t n = static_cast<size_t>(k.N) * k.ld;
    const auto logits = ref::random_floats(n, 90, -8.0f, 8.0f);
    const auto targets = ref::random_ints(k.N, 91, 0, k.target_hi);
    const std::string tag = " N=" + std::to_string(k.N) + " V=" + std::to_string(k.V) +
                            " ld=" + std::to_string(k.ld);
    compare("cross_entropy" + tag, *g, kFp32Tol, [&](Backend& be) {
      Buffer L = upload(be, logits);
      IntBuffer t = upload(be, targets);
      Buffer mx = upload(be, nans(k.N)), sum = upload(be, nans(k.N)), tl = upload(be, nans(k.N));
      Buffer losses = upload(be, nans(k.N)), dl = upload(be, nans(n));
      be.ce_row_max(mx.data(), L.data(), k.N, k.V, k.ld);
      be.ce_row_sumexp(sum.data(), L.data(), mx.data(), k.N, k.V, k.ld);
      be.ce_target_logit(tl.data(), L.data(), t.data(), k.vocab_start, k.N, k.V, k.ld);
      Outputs out{mx.to_host(), sum.to_host(), tl.to_host()};
      if (k.V > 0) {  // an empty shard has no loss of its own (log 0)
        be.ce_losses(losses.data(), mx.data(), sum.data(), tl.data(), k.N);
        be.ce_backward(dl.data(), L.data(), mx.data(), sum.data(), t.data(), k.vocab_start, k.N,
                       k.V, k.ld, 0.01f);
        be.ce_backward(L.data(), L.data(), mx.data(), sum.data(), t.data(), k.vocab_start, k.N,
                       k.V, k.ld, 0.01f);  // dlogits aliases logits
        out.push_back(losses.to_host());
        out.push_back(dl.to_host());
        out.push_back(L.to_host());
      }
      return out;
    });
  }
}

BOOST_AUTO_TEST_CASE(adamw_steps) {
  auto g = gpu();
  const size_t n = 100003;
  const auto p0 = ref::random_floats(n, 100), grad = ref::random_floats(n, 101);
  const auto m0 = ref::random_floats(n, 102, -0.1f, 0.1f);
  const auto v0 = ref::random_floats(n, 103, 0.01f, 1.0f);
  for (long t : {1L, 7L, 1000L}) {
    compare("adamw t=" + std::to_string(t), *g, kFp32Tol, [&](Backend& be) {
      Buffer P = upload(be, p0), G = upload(be, grad), M = upload(be, m0), V = upload(be, v0);
      be.adamw(P.data(), G.data(), M.data(), V.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
      return Outputs{P.to_host(), M.to_host(), V.to_host()};
    });
  }
}

BOOST_AUTO_TEST_CASE(reductions) {
  auto be = gpu();
  for (size_t n : {size_t{0}, size_t{1}, size_t{1000}, size_t{3000017}}) {
    const auto x = ref::random_floats(n, 110);
    double want_sum = 0.0, want_sq = 0.0;
    for (float v : x) {
      want_sum += v;
      want_sq += static_cast<double>(v) * v;
    }
    Buffer X = upload(*be, x);
    const double s1 = be->sum(X.data(), n), s2 = be->sum(X.data(), n);
    const double q1 = be->sum_squares(X.data(), n), q2 = be->sum_squares(X.data(), n);
    BOOST_TEST(std::abs(s1 - want_sum) <= 1e-9 * (std::sqrt(want_sq) + 1.0), "sum n=" << n);
    BOOST_TEST(std::abs(q1 - want_sq) <= 1e-12 * (want_sq + 1.0), "sum_squares n=" << n);
    BOOST_TEST(s1 == s2);
    BOOST_TEST(q1 == q2);
  }
  // A sub-range at an odd offset (the optimizer reduces per parameter).
  const auto x = ref::random_floats(1000, 111);
  Buffer X = upload(*be, x);
  double want = 0.0;
  for (size_t i = 3; i < 903; i++) want += static_cast<double>(x[i]) * x[i];
  BOOST_TEST(std::abs(be->sum_squares(X.data() + 3, 900) - want) <= 1e-12 * want);
}

// The bf16 and TF32 options change the matrix products only: every other op is the fp32 code.
BOOST_AUTO_TEST_CASE(precision_modes_leave_other_ops_alone) {
  const size_t N = 64, C = 96;
  const auto x = ref::random_floats(N * C, 120), w = ref::random_floats(C, 121);
  const auto b = ref::random_floats(C, 122);
  std::vector<float> results[3];
  for (int i = 0; i < 3; i++) {
    auto be = gpu(kModes[i]);
    Buffer X = upload(*be, x), W = upload(*be, w), Bb = upload(*be, b);
    Buffer out(*be, N * C), mean(*be, N), rstd(*be, N);
    be->layernorm_forward(out.data(), mean.data(), rstd.data(), X.data(), W.data(), Bb.data(), N,
                          C);
    be->gelu_forward(out.data(), out.data(), N * C);
    results[i] = out.to_host();
  }
  BOOST_TEST(bit_identical(results[0], results[1]));
  BOOST_TEST(bit_identical(results[0], results[2]));
}

BOOST_AUTO_TEST_CASE(measured_matrix_rate) {
  for (const Mode& mode : kModes) {
    const double tflops = mptrain::cuda_measure_sgemm_tflops(0, 2048, 2048, 2048, mode.tf32,
                                                             mode.bf16);
    BOOST_TEST_MESSAGE("cuBLAS 2048^3 " << mode.name << ": " << tflops << " TFLOP/s");
    BOOST_TEST(tflops > 0.0);
  }
  BOOST_TEST(mptrain::cuda_measure_sgemm_tflops(0, 0, 10, 10, false, false) == 0.0);
  BOOST_TEST(mptrain::cuda_measure_sgemm_tflops(mptrain::cuda_device_count(), 8, 8, 8, false,
                                                false) == 0.0);  // no such device
}
