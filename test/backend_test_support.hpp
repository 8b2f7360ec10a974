// Support for the backend tests (test_backend*.cpp): plain double-precision reference versions
// of the backend ops, the numeric helpers (random inputs, central finite differences, tolerant
// comparison) and a few Boost.Test helpers that move data through the Backend interface. The
// references are written to be obviously right, not fast: naive loops over the definitions in
// backend.hpp, so that a backend (CPU today, CUDA later) can be checked on small awkward shapes.
#pragma once

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"

namespace ref {

using Vec = std::vector<double>;

// ---- inputs ----

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline std::vector<int32_t> random_ints(size_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// sum_i a[i] * b[i]: the scalar loss L = sum(out * R) used for every gradient check.
inline double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Central finite differences of loss(x) with respect to every element of x, in double so that
// float rounding cannot hide an error in the backend's gradient.
inline Vec numeric_grad(const Vec& x0, const std::function<double(const Vec&)>& loss,
                        double h = 1e-5) {
  Vec x = x0, g(x0.size());
  for (size_t i = 0; i < x.size(); i++) {
    x[i] = x0[i] + h;
    const double up = loss(x);
    x[i] = x0[i] - h;
    const double down = loss(x);
    x[i] = x0[i];
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

// Worst elementwise error of got against want, relative to |want[i]| + rms(want) (so that
// near-zero entries of a large tensor are not held to an impossible relative standard).
inline double worst_error(const std::vector<float>& got, const Vec& want, size_t* at = nullptr) {
  double rms = 0.0;
  for (double w : want) rms += w * w;
  rms = want.empty() ? 0.0 : std::sqrt(rms / want.size());
  double worst = got.size() == want.size() ? 0.0 : std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < std::min(got.size(), want.size()); i++) {
    const double err = std::abs(got[i] - want[i]) / (std::abs(want[i]) + rms + 1e-30);
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      if (at) *at = i;
    }
  }
  return worst;
}

// ---- ops ----

// C(m,n) = alpha op(A) op(B) + beta C, row-major with leading dimensions.
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const Vec& a, int lda,
                 const Vec& b, int ldb, double beta, Vec& c, int ldc) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0.0;
      for (int p = 0; p < k; p++) {
        const double aip =
            ta ? a[static_cast<size_t>(p) * lda + i] : a[static_cast<size_t>(i) * lda + p];
        const double bpj =
            tb ? b[static_cast<size_t>(j) * ldb + p] : b[static_cast<size_t>(p) * ldb + j];
        s += aip * bpj;
      }
      double& cij = c[static_cast<size_t>(i) * ldc + j];
      cij = alpha * s + beta * cij;
    }
}

inline double gelu(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

// out(N,C), mean(N), rstd(N) of LayerNorm with eps 1e-5 (population variance).
inline void layernorm(Vec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec& b,
                      int N, int C) {
  out.assign(static_cast<size_t>(N) * C, 0.0);
  mean.assign(N, 0.0);
  rstd.assign(N, 0.0);
  for (int i = 0; i < N; i++) {
    const double* x = &inp[static_cast<size_t>(i) * C];
    double m = 0.0, v = 0.0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= C;
    const double r = 1.0 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; c++) out[static_cast<size_t>(i) * C + c] = (x[c] - m) * r * w[c] + b[c];
    mean[i] = m;
    rstd[i] = r;
  }
}

// Causal attention: qkv(B,T,3*NH*HS) -> out(B,T,NH*HS), att(B,NH,T,T) with zeros above the
// diagonal.
inline void attention(Vec& out, Vec& att, const Vec& qkv, int B, int T, int NH, int HS) {
  const int C = NH * HS;
  out.assign(static_cast<size_t>(B) * T * C, 0.0);
  att.assign(static_cast<size_t>(B) * NH * T * T, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  auto at = [&](int b, int t, int part, int h, int d) {
    return qkv[(static_cast<size_t>(b) * T + t) * 3 * C + part * C + h * HS + d];
  };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        double* a = &att[((static_cast<size_t>(b) * NH + h) * T + i) * T];
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j <= i; j++) {
          double s = 0.0;
          for (int d = 0; d < HS; d++) s += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          a[j] = s * scale;
          mx = std::max(mx, a[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= i; j++) sum += (a[j] = std::exp(a[j] - mx));
        for (int j = 0; j <= i; j++) a[j] /= sum;
        for (int d = 0; d < HS; d++) {
          double o = 0.0;
          for (int j = 0; j <= i; j++) o += a[j] * at(b, j, 2, h, d);
          out[(static_cast<size_t>(b) * T + i) * C + h * HS + d] = o;
        }
      }
}

// Per-row cross-entropy of logits(N, ld) over columns [0, V) with targets in [0, V).
inline Vec cross_entropy(const Vec& logits, const std::vector<int32_t>& targets, int N, int V,
                         int ld) {
  Vec losses(N);
  for (int i = 0; i < N; i++) {
    const double* l = &logits[static_cast<size_t>(i) * ld];
    double mx = l[0];
    for (int j = 1; j < V; j++) mx = std::max(mx, l[j]);
    double s = 0.0;
    for (int j = 0; j < V; j++) s += std::exp(l[j] - mx);
    losses[i] = std::log(s) + mx - l[targets[i]];
  }
  return losses;
}

// One AdamW step (bias correction for 1-based t, decoupled weight decay), in place.
inline void adamw(Vec& p, const Vec& g, Vec& m, Vec& v, double lr, double b1, double b2, double eps,
                  double wd, long t) {
  for (size_t i = 0; i < p.size(); i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
    p[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * p[i]);
  }
}

}  // namespace ref

namespace support {

constexpr double kFwdTol = 1e-5;   // float op vs double reference
// Float gradient vs double finite differences (ref::numeric_grad: exact to ~1e-9), in
// worst_error's measure. What is left is the op's float32 rounding: the worst case observed is
// 6.4e-7 (attention dqkv, T = 70); the tolerance allows about eight times that.
constexpr double kGradTol = 5e-6;

// Backend memory filled from the host through the interface (read back with to_host()).
inline mptrain::Buffer upload(mptrain::Backend& be, const std::vector<float>& h) {
  mptrain::Buffer b(be, h.size());
  be.to_device(b.data(), h.data(), h.size());
  return b;
}
inline mptrain::IntBuffer upload(mptrain::Backend& be, const std::vector<int32_t>& h) {
  mptrain::IntBuffer b(be, h.size());
  be.to_device_int(b.data(), h.data(), h.size());
  return b;
}

// Asserts got ~ want (see ref::worst_error) and names the worst element when it is not.
inline void check_close(const std::vector<float>& got, const ref::Vec& want, double tol,
                        const std::string& what) {
  size_t at = 0;
  const double err = ref::worst_error(got, want, &at);
  BOOST_TEST_MESSAGE(what << ": worst relative error " << err);  // --log_level=message
  BOOST_TEST(err <= tol, what << ": worst relative error " << err << " at [" << at << "] got "
                              << (at < got.size() ? got[at] : 0.f) << " want "
                              << (at < want.size() ? want[at] : 0.0));
}

inline bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// prefill + grad: what a "+=" gradient op must leave in a buffer that started at prefill.
inline ref::Vec plus(const std::vector<float>& prefill, const ref::Vec& grad) {
  ref::Vec out(grad);
  for (size_t i = 0; i < out.size(); i++) out[i] += prefill[i];
  return out;
}

}  // namespace support
