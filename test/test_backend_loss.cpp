// Unit tests of the compute backend, part 2 (part 1 is test_backend.cpp, which defines the
// module): the vocab-parallel cross-entropy, unsharded and split into column shards combined
// exactly as the model combines them over TP; AdamW against a reference step; the double
// reductions; and determinism (bit-identical reruns, and the reductions over rows giving the
// same bits for 1 and 2 threads).
#define BOOST_TEST_DYN_LINK
#include <algorithm>
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cfloat>
#include <cstdint>
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
namespace bdata = boost::unit_test::data;

namespace {

const auto kThreadCounts = bdata::make({2, 1});

// Logits (N, ld) with V real columns in [-5, 5], one row shifted by +100 (a naive exp would
// overflow), and padding columns holding garbage that every op must ignore.
std::vector<float> make_logits(int N, int V, int ld, uint32_t seed) {
  auto l = ref::random_floats(static_cast<size_t>(N) * ld, seed, -5.0f, 5.0f);
  for (int j = 0; j < V; j++) l[static_cast<size_t>(2) * ld + j] += 100.0f;
  for (int i = 0; i < N; i++)
    for (int j = V; j < ld; j++) l[static_cast<size_t>(i) * ld + j] = 1e30f;
  return l;
}

// The model's cross-entropy on one shard: columns [vocab_start, vocab_start + V) of the full
// logits, stored with leading dimension ld.
struct Shard {
  int vocab_start, V, ld;
};

}  // namespace

BOOST_DATA_TEST_CASE(cross_entropy_unsharded, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const int N = 7, V = 13, ld = 16;
  const auto logits = make_logits(N, V, ld, 100);
  const auto targets = ref::random_ints(N, 101, 0, V);
  Buffer L = upload(*be, logits), mx(*be, N), se(*be, N), tl(*be, N), losses(*be, N);
  IntBuffer tg = upload(*be, targets);
  be->ce_row_max(mx.data(), L.data(), N, V, ld);
  be->ce_row_sumexp(se.data(), L.data(), mx.data(), N, V, ld);
  be->ce_target_logit(tl.data(), L.data(), tg.data(), 0, N, V, ld);
  be->ce_losses(losses.data(), mx.data(), se.data(), tl.data(), N);

  const Vec ld_logits = ref::to_double(logits);
  Vec want_max(N), want_se(N), want_tl(N);
  for (int i = 0; i < N; i++) {
    const double* l = &ld_logits[static_cast<size_t>(i) * ld];
    want_max[i] = *std::max_element(l, l + V);
    for (int j = 0; j < V; j++) want_se[i] += std::exp(l[j] - want_max[i]);
    want_tl[i] = l[targets[i]];
  }
  check_close(mx.to_host(), want_max, 0.0, "ce_row_max (exact)");
  check_close(se.to_host(), want_se, kFwdTol, "ce_row_sumexp");
  check_close(tl.to_host(), want_tl, 0.0, "ce_target_logit (exact)");
  check_close(losses.to_host(), ref::cross_entropy(ld_logits, targets, N, V, ld), kFwdTol,
              "ce_losses");

  // d(mean loss)/d(logits): scale = 1/N; padding columns must come back as 0.
  Vec grad = ref::numeric_grad(ld_logits, [&](const Vec& l) {
    const Vec per_row = ref::cross_entropy(l, targets, N, V, ld);
    double s = 0.0;
    for (double x : per_row) s += x;
    return s / N;
  });
  Buffer dL = upload(*be, std::vector<float>(logits.size(), 9.0f));
  be->ce_backward(dL.data(), L.data(), mx.data(), se.data(), tg.data(), 0, N, V, ld, 1.0f / N);
  check_close(dL.to_host(), grad, kGradTol, "ce_backward");
  // dlogits may alias logits.
  be->ce_backward(L.data(), L.data(), mx.data(), se.data(), tg.data(), 0, N, V, ld, 1.0f / N);
  BOOST_TEST(bit_identical(L.to_host(), dL.to_host()));
}

BOOST_DATA_TEST_CASE(cross_entropy_empty_shard, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const int N = 3, ld = 4;
  Buffer L = upload(*be, ref::random_floats(N * ld, 110)), mx(*be, N);
  Buffer se = upload(*be, std::vector<float>(N, 5.0f)),
         tl = upload(*be, std::vector<float>(N, 5.0f));
  IntBuffer tg = upload(*be, std::vector<int32_t>{0, 1, 2});
  be->ce_row_max(mx.data(), L.data(), N, 0, ld);
  be->ce_row_sumexp(se.data(), L.data(), mx.data(), N, 0, ld);
  be->ce_target_logit(tl.data(), L.data(), tg.data(), 0, N, 0, ld);
  check_close(mx.to_host(), Vec(N, -FLT_MAX), 0.0, "ce_row_max, V == 0");
  check_close(se.to_host(), Vec(N, 0.0), 0.0, "ce_row_sumexp, V == 0");
  check_close(tl.to_host(), Vec(N, 0.0), 0.0, "ce_target_logit, V == 0");
}

// Split the vocabulary into 2 and 3 column shards (one of them empty) with their own padded
// leading dimensions and vocab_start offsets, then combine the partial results the way the
// model does over TP: all-reduce MAX of row_max first, row_sumexp against that global max, then
// all-reduce SUM of the sums and of the target logits. Losses and dlogits must match the
// unsharded computation.
BOOST_DATA_TEST_CASE(cross_entropy_vocab_parallel, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const int N = 7, V = 13, ld = 16;
  const auto logits = make_logits(N, V, ld, 120);
  const auto targets = ref::random_ints(N, 121, 0, V);
  IntBuffer tg = upload(*be, targets);
  const float scale = 1.0f / N;

  // The unsharded result.
  Buffer L = upload(*be, logits), mx(*be, N), se(*be, N), tl(*be, N), losses(*be, N);
  be->ce_row_max(mx.data(), L.data(), N, V, ld);
  be->ce_row_sumexp(se.data(), L.data(), mx.data(), N, V, ld);
  be->ce_target_logit(tl.data(), L.data(), tg.data(), 0, N, V, ld);
  be->ce_losses(losses.data(), mx.data(), se.data(), tl.data(), N);
  be->ce_backward(L.data(), L.data(), mx.data(), se.data(), tg.data(), 0, N, V, ld, scale);
  const auto want_losses = ref::to_double(losses.to_host());
  const auto full_dlogits = L.to_host();

  const std::vector<std::vector<Shard>> splits = {
      {{0, 6, 8}, {6, 7, 7}},
      {{0, 4, 5}, {4, 4, 6}, {8, 5, 9}},
      {{0, 5, 5}, {5, 0, 2}, {5, 8, 11}},  // an empty shard in the middle
  };
  for (const auto& shards : splits) {
    const std::string tag = " (" + std::to_string(shards.size()) + " shards)";
    std::vector<Buffer> parts;
    for (const Shard& s : shards) {  // copy the shard's columns, garbage in its padding
      std::vector<float> p(static_cast<size_t>(N) * s.ld, -1e30f);
      for (int i = 0; i < N; i++)
        for (int j = 0; j < s.V; j++)
          p[static_cast<size_t>(i) * s.ld + j] =
              logits[static_cast<size_t>(i) * ld + s.vocab_start + j];
      parts.push_back(upload(*be, p));
    }
    // "all-reduce MAX" of row_max.
    std::vector<float> gmax(N, -FLT_MAX), gsum(N, 0.0f), gtl(N, 0.0f);
    Buffer part(*be, N);
    for (size_t r = 0; r < shards.size(); r++) {
      be->ce_row_max(part.data(), parts[r].data(), N, shards[r].V, shards[r].ld);
      const auto h = part.to_host();
      for (int i = 0; i < N; i++) gmax[i] = std::max(gmax[i], h[i]);
    }
    Buffer gmax_d = upload(*be, gmax);
    // "all-reduce SUM" of the sums (against the global max) and of the target logits.
    for (size_t r = 0; r < shards.size(); r++) {
      be->ce_row_sumexp(part.data(), parts[r].data(), gmax_d.data(), N, shards[r].V, shards[r].ld);
      auto h = part.to_host();
      for (int i = 0; i < N; i++) gsum[i] += h[i];
      be->ce_target_logit(part.data(), parts[r].data(), tg.data(), shards[r].vocab_start, N,
                          shards[r].V, shards[r].ld);
      h = part.to_host();
      for (int i = 0; i < N; i++) gtl[i] += h[i];
    }
    Buffer gsum_d = upload(*be, gsum), gtl_d = upload(*be, gtl);
    be->ce_losses(part.data(), gmax_d.data(), gsum_d.data(), gtl_d.data(), N);
    check_close(part.to_host(), want_losses, 1e-6, "sharded losses" + tag);

    for (size_t r = 0; r < shards.size(); r++) {
      const Shard& s = shards[r];
      be->ce_backward(parts[r].data(), parts[r].data(), gmax_d.data(), gsum_d.data(), tg.data(),
                      s.vocab_start, N, s.V, s.ld, scale);
      Vec want(static_cast<size_t>(N) * s.ld, 0.0);  // padding must be 0
      for (int i = 0; i < N; i++)
        for (int j = 0; j < s.V; j++)
          want[static_cast<size_t>(i) * s.ld + j] =
              full_dlogits[static_cast<size_t>(i) * ld + s.vocab_start + j];
      check_close(parts[r].to_host(), want, 1e-6,
                  "sharded dlogits, shard " + std::to_string(r) + tag);
    }
  }
}

BOOST_DATA_TEST_CASE(adamw_steps, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  for (size_t n : {size_t{1000}, size_t{20000}}) {
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    const auto p0 = ref::random_floats(n, 130);
    Vec p = ref::to_double(p0), m(n, 0.0), v(n, 0.0);
    Buffer P = upload(*be, p0), M(*be, n), Vv(*be, n);
    for (long t = 1; t <= 3; t++) {
      const auto g = ref::random_floats(n, 130 + static_cast<uint32_t>(t));
      Buffer G = upload(*be, g);
      be->adamw(P.data(), G.data(), M.data(), Vv.data(), n, lr, b1, b2, eps, wd, t);
      ref::adamw(p, ref::to_double(g), m, v, lr, b1, b2, eps, wd, t);
      const std::string tag = " n=" + std::to_string(n) + " t=" + std::to_string(t);
      check_close(P.to_host(), p, kFwdTol, "adamw param" + tag);
      check_close(M.to_host(), m, kFwdTol, "adamw m" + tag);
      check_close(Vv.to_host(), v, kFwdTol, "adamw v" + tag);
    }
  }
}

BOOST_DATA_TEST_CASE(reductions, kThreadCounts, threads) {
  auto be = mptrain::make_cpu_backend(threads);
  const size_t n = 100003;
  const auto x = ref::random_floats(n, 140);
  Buffer X = upload(*be, x);
  double want_ss = 0.0, want_s = 0.0;
  for (float a : x) {
    want_ss += static_cast<double>(a) * a;
    want_s += a;
  }
  BOOST_TEST(be->sum_squares(X.data(), n) == want_ss, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(be->sum(X.data(), n) == want_s, boost::test_tools::tolerance(1e-10));
  BOOST_TEST(be->sum(X.data(), 0) == 0.0);
  BOOST_TEST(be->sum_squares(X.data(), 1) == static_cast<double>(x[0]) * x[0]);

  // Double accumulation, checked exactly: a large value followed by 1000 ones, where a float
  // accumulator would lose every one (float spacing is 8 at 1e8 and 2^23 at 1e14) while every
  // partial double sum stays exact.
  std::vector<float> big(1001, 1.0f);
  big[0] = 1e8f;
  Buffer Bg = upload(*be, big);
  BOOST_TEST(be->sum(Bg.data(), big.size()) == 100001000.0);
  big[0] = 1e7f;
  be->to_device(Bg.data(), big.data(), big.size());
  BOOST_TEST(be->sum_squares(Bg.data(), big.size()) == 1e14 + 1000.0);
}

// Every op twice on the same inputs gives the same bits (2 threads, sizes where the parallel
// paths are taken).
BOOST_AUTO_TEST_CASE(determinism_reruns) {
  auto be = mptrain::make_cpu_backend(2);
  const int B = 4, T = 70, NH = 4, HS = 16, C = NH * HS, N = B * T, V = 300;
  const size_t nqkv = static_cast<size_t>(N) * 3 * C;
  const auto qkv = ref::random_floats(nqkv, 150),
             x = ref::random_floats(static_cast<size_t>(N) * C, 151);
  const auto w = ref::random_floats(C, 152),
             dout = ref::random_floats(static_cast<size_t>(N) * C, 153);
  const auto logits = ref::random_floats(static_cast<size_t>(N) * V, 154, -5.f, 5.f);
  const auto toks = ref::random_ints(N, 155, 0, V);
  Buffer QKV = upload(*be, qkv), X = upload(*be, x), W = upload(*be, w), D = upload(*be, dout);
  Buffer LG = upload(*be, logits);
  IntBuffer TK = upload(*be, toks);

  auto run = [&]() {
    std::vector<std::vector<float>> results;
    Buffer out(*be, static_cast<size_t>(N) * C), att(*be, static_cast<size_t>(B) * NH * T * T);
    Buffer dqkv(*be, nqkv), datt(*be, att.size());
    be->attention_forward(out.data(), att.data(), QKV.data(), B, T, NH, HS);
    be->attention_backward(dqkv.data(), datt.data(), D.data(), QKV.data(), att.data(), B, T, NH,
                           HS);
    results.push_back(out.to_host());
    results.push_back(dqkv.to_host());
    Buffer y(*be, static_cast<size_t>(N) * C), mean(*be, N), rstd(*be, N);
    Buffer dx(*be, y.size()), dw(*be, C), db(*be, C);
    be->layernorm_forward(y.data(), mean.data(), rstd.data(), X.data(), W.data(), W.data(), N, C);
    be->layernorm_backward(dx.data(), dw.data(), db.data(), D.data(), X.data(), W.data(),
                           mean.data(), rstd.data(), N, C);
    for (Buffer* b : {&y, &dx, &dw, &db}) results.push_back(b->to_host());
    Buffer g(*be, static_cast<size_t>(N) * C);
    be->gemm(false, true, N, C, C, 1.0f, X.data(), C, D.data(), C, 0.0f, g.data(), C);
    be->bias_backward(dw.data(), D.data(), N, C);
    Buffer dwte(*be, static_cast<size_t>(V) * C), dwpe(*be, static_cast<size_t>(T) * C);
    be->embedding_backward(dwte.data(), D.data(), TK.data(), 0, V, N, C);
    be->position_backward(dwpe.data(), D.data(), B, T, C);
    for (Buffer* b : {&g, &dw, &dwte, &dwpe}) results.push_back(b->to_host());
    Buffer mx(*be, N), se(*be, N), dl(*be, LG.size());
    be->ce_row_max(mx.data(), LG.data(), N, V, V);
    be->ce_row_sumexp(se.data(), LG.data(), mx.data(), N, V, V);
    be->ce_backward(dl.data(), LG.data(), mx.data(), se.data(), TK.data(), 0, N, V, V, 0.01f);
    for (Buffer* b : {&se, &dl}) results.push_back(b->to_host());
    results.push_back({static_cast<float>(be->sum_squares(LG.data(), LG.size())),
                       static_cast<float>(be->sum(LG.data(), LG.size()))});
    return results;
  };
  const auto first = run(), second = run();
  BOOST_TEST_REQUIRE(first.size() == second.size());
  for (size_t i = 0; i < first.size(); i++)
    BOOST_TEST(bit_identical(first[i], second[i]), "result " << i << " differs between reruns");
}

// The reductions over rows and the sums add their terms in an order fixed by the sizes alone,
// so 1 and 2 threads give the same bits (a property of the CPU backend's implementation).
BOOST_AUTO_TEST_CASE(reductions_independent_of_thread_count) {
  const int B = 4, T = 70, C = 100, N = B * T, V = 50;
  const auto x = ref::random_floats(static_cast<size_t>(N) * C, 160);
  const auto d = ref::random_floats(x.size(), 161), w = ref::random_floats(C, 162);
  const auto toks = ref::random_ints(N, 163, 0, V);
  auto run = [&](int threads) {
    auto be = mptrain::make_cpu_backend(threads);
    Buffer X = upload(*be, x), D = upload(*be, d), W = upload(*be, w);
    IntBuffer TK = upload(*be, toks);
    Buffer y(*be, x.size()), mean(*be, N), rstd(*be, N), dx(*be, x.size()), dw(*be, C), db(*be, C);
    be->layernorm_forward(y.data(), mean.data(), rstd.data(), X.data(), W.data(), W.data(), N, C);
    be->layernorm_backward(dx.data(), dw.data(), db.data(), D.data(), X.data(), W.data(),
                           mean.data(), rstd.data(), N, C);
    Buffer dbias(*be, C), dwte(*be, static_cast<size_t>(V) * C),
        dwpe(*be, static_cast<size_t>(T) * C);
    be->bias_backward(dbias.data(), D.data(), N, C);
    be->embedding_backward(dwte.data(), D.data(), TK.data(), 0, V, N, C);
    be->position_backward(dwpe.data(), D.data(), B, T, C);
    std::vector<std::vector<float>> r;
    for (Buffer* b : {&y, &dx, &dw, &db, &dbias, &dwte, &dwpe}) r.push_back(b->to_host());
    const double ss = be->sum_squares(X.data(), x.size()), s = be->sum(X.data(), x.size());
    r.push_back({static_cast<float>(ss), static_cast<float>(ss - static_cast<float>(ss)),
                 static_cast<float>(s), static_cast<float>(s - static_cast<float>(s))});
    return r;
  };
  const auto one = run(1), two = run(2);
  BOOST_TEST_REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); i++)
    BOOST_TEST(bit_identical(one[i], two[i]), "result " << i << " differs for 1 and 2 threads");
}
