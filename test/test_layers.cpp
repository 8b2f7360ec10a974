// Tensor-parallel layers against their 1-rank versions (run on 1, 2 and 4 ranks by
// test/layers_mpi.sh): the embedding, a transformer block and the head are built on a TP
// group of the whole world and on MPI_COMM_SELF with the same seed; forward outputs, the
// loss, input gradients and every parameter gradient (each rank's shard mapped through its
// ShardSpec to the global tensor) must agree.
#define BOOST_TEST_MODULE layers
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "mptrain/comm.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/grid.hpp"
#include "mptrain/init.hpp"
#include "mptrain/layers.hpp"

using namespace mptrain;

namespace {

constexpr uint64_t seed = 99;

LayerShape make_shape(const Grid& grid, int B, int T, int C, int n_head, int vocab) {
  LayerShape s;
  s.B = B; s.T = T; s.C = C; s.n_head = n_head; s.vocab = vocab;
  s.tp = grid.layout().tp; s.tp_rank = grid.tp_rank();
  return s;
}

std::vector<float> random_vector(size_t n, uint64_t stream, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * normal_at(seed, stream, i);
  return v;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, double tol,
                  const std::string& what) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double worst = 0, scale = 1e-6;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  BOOST_TEST(worst / scale <= tol, what << ": max difference " << worst << " (scale " << scale
                                        << ")");
}

// Every element this rank holds of parameter i equals the reference's global element.
void expect_shard_matches(const ParamInfo& local_info, const std::vector<float>& local,
                          const ParamInfo& ref_info, const std::vector<float>& ref, double tol) {
  const int64_t ref_cols = ref_info.spec.local_cols;
  double worst = 0, scale = 1e-6;
  for (const ShardBlock& b : local_info.spec.blocks)
    for (int64_t r = 0; r < b.rows; ++r)
      for (int64_t c = 0; c < b.cols; ++c) {
        const float mine =
            local[local_info.offset + (b.local_row + r) * local_info.spec.local_cols + b.local_col + c];
        const float want = ref[ref_info.offset + (b.global_row + r) * ref_cols + b.global_col + c];
        worst = std::max(worst, double(std::abs(mine - want)));
        scale = std::max(scale, double(std::abs(want)));
      }
  BOOST_TEST(worst / scale <= tol, local_info.spec.name << ": max difference " << worst);
}

void expect_all_shards_match(ParamSet& local, ParamSet& ref, bool grads, double tol) {
  const std::vector<float> l = grads ? local.grads().to_host() : local.params().to_host();
  const std::vector<float> r = grads ? ref.grads().to_host() : ref.params().to_host();
  BOOST_REQUIRE_EQUAL(local.infos().size(), ref.infos().size());
  for (size_t i = 0; i < local.infos().size(); ++i) {
    BOOST_TEST(local.infos()[i].spec.name == ref.infos()[i].spec.name);
    expect_shard_matches(local.infos()[i], l, ref.infos()[i], r, tol);
  }
}

struct Pair {
  Grid par{Comm::world(), Layout{Comm::world().size(), 1, 1}};
  Grid one{Comm::self(), Layout{1, 1, 1}};
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  DeviceCollectives dc{*be};
  ParamSet ps_par, ps_one;
};

}  // namespace

BOOST_AUTO_TEST_CASE(block_matches_one_rank) {
  Pair p;
  const int B = 2, T = 5, C = 16, NH = 4;
  const LayerShape s_par = make_shape(p.par, B, T, C, NH, 13), s_one = make_shape(p.one, B, T, C, NH, 13);
  Block blk_par, blk_one;
  ParamBuilder pb_par(p.ps_par, s_par, true), pb_one(p.ps_one, s_one, true);
  blk_par.register_params(pb_par, s_par, 0, 2);
  blk_one.register_params(pb_one, s_one, 0, 2);
  p.ps_par.allocate(*p.be, 1); p.ps_one.allocate(*p.be, 1);
  p.ps_par.initialize(seed); p.ps_one.initialize(seed);
  expect_all_shards_match(p.ps_par, p.ps_one, false, 0.0);  // layout-independent init, exactly

  const size_t n = size_t(B) * T * C;
  const std::vector<float> x = random_vector(n, 1), dout = random_vector(n, 2);
  Buffer x_dev(*p.be, n), dres_par(*p.be, n), dres_one(*p.be, n);
  p.be->to_device(x_dev.data(), x.data(), n);
  BlockActivations a_par(*p.be, s_par), a_one(*p.be, s_one);
  BlockScratch sc_par(*p.be, s_par), sc_one(*p.be, s_one);
  blk_par.forward(*p.be, p.dc, p.par, p.ps_par, s_par, x_dev.data(), a_par);
  blk_one.forward(*p.be, p.dc, p.one, p.ps_one, s_one, x_dev.data(), a_one);
  expect_close(a_par.out.to_host(), a_one.out.to_host(), 1e-5, "block output");

  p.be->to_device(dres_par.data(), dout.data(), n);
  p.be->to_device(dres_one.data(), dout.data(), n);
  blk_par.backward(*p.be, p.dc, p.par, p.ps_par, s_par, x_dev.data(), a_par, sc_par, dres_par.data());
  blk_one.backward(*p.be, p.dc, p.one, p.ps_one, s_one, x_dev.data(), a_one, sc_one, dres_one.data());
  expect_close(dres_par.to_host(), dres_one.to_host(), 1e-5, "block input gradient");
  expect_all_shards_match(p.ps_par, p.ps_one, true, 1e-5);
}

BOOST_AUTO_TEST_CASE(embedding_and_head_match_one_rank) {
  Pair p;
  const int B = 2, T = 6, C = 8, NH = 4, V = 13;  // V not divisible by tp: padded shards
  const LayerShape s_par = make_shape(p.par, B, T, C, NH, V), s_one = make_shape(p.one, B, T, C, NH, V);
  Embedding emb_par, emb_one;
  Head head_par, head_one;
  ParamBuilder pb_par(p.ps_par, s_par, true), pb_one(p.ps_one, s_one, true);
  emb_par.register_params(pb_par, s_par);
  emb_one.register_params(pb_one, s_one);
  head_par.register_params(pb_par, s_par, emb_par.wte);
  head_one.register_params(pb_one, s_one, emb_one.wte);
  p.ps_par.allocate(*p.be, 1); p.ps_one.allocate(*p.be, 1);
  p.ps_par.initialize(seed); p.ps_one.initialize(seed);
  expect_all_shards_match(p.ps_par, p.ps_one, false, 0.0);

  const int N = B * T;
  std::vector<int32_t> tokens(N), targets(N);
  for (int i = 0; i < N; ++i) {
    tokens[i] = int32_t(uniform_at(seed, 3, i) * V);
    targets[i] = int32_t(uniform_at(seed, 4, i) * V);
  }
  IntBuffer tok(*p.be, N), tgt(*p.be, N);
  p.be->to_device_int(tok.data(), tokens.data(), N);
  p.be->to_device_int(tgt.data(), targets.data(), N);
  const size_t n = size_t(N) * C;
  Buffer x_par(*p.be, n), x_one(*p.be, n);
  emb_par.forward(*p.be, p.dc, p.par, p.ps_par, s_par, tok.data(), x_par.data());
  emb_one.forward(*p.be, p.dc, p.one, p.ps_one, s_one, tok.data(), x_one.data());
  expect_close(x_par.to_host(), x_one.to_host(), 0.0, "embedding output");  // exact: one term

  Head::Work w_par(*p.be, s_par), w_one(*p.be, s_one);
  Buffer dx_par(*p.be, n), dx_one(*p.be, n);
  const float scale = 1.0f / N;
  const double loss_par = head_par.forward_backward(*p.be, p.dc, p.par, p.ps_par, s_par,
                                                    x_par.data(), tgt.data(), scale, true, w_par,
                                                    dx_par.data());
  const double loss_one = head_one.forward_backward(*p.be, p.dc, p.one, p.ps_one, s_one,
                                                    x_one.data(), tgt.data(), scale, true, w_one,
                                                    dx_one.data());
  BOOST_TEST(std::abs(loss_par - loss_one) <= 1e-5 * std::abs(loss_one));
  BOOST_TEST(loss_one / N > 1.0);  // a real cross-entropy, not zero
  expect_close(dx_par.to_host(), dx_one.to_host(), 1e-5, "head input gradient");
  emb_par.backward(*p.be, p.ps_par, s_par, tok.data(), dx_par.data());
  emb_one.backward(*p.be, p.ps_one, s_one, tok.data(), dx_one.data());
  expect_all_shards_match(p.ps_par, p.ps_one, true, 1e-5);  // wte (tied), wpe, ln_f
}

// ---------------------------------------------------------------- finite differences (§5.4)

namespace {

// L = sum(out * R) in double, for directional finite differences of a whole layer.
double weighted_sum(const std::vector<float>& out, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += double(out[i]) * r[i];
  return s;
}

// Compares, for each parameter tensor separately, the analytic directional derivative
// sum(grad * D) with (L(p + eps D) - L(p - eps D)) / (2 eps) for a random direction D
// supported on that tensor. `loss` runs the forward pass and returns L.
void check_directional_derivatives(Backend& be, ParamSet& ps, const std::vector<float>& grads,
                                   const std::function<double()>& loss) {
  const std::vector<float> p0 = ps.params().to_host();
  const double eps = 1e-2;
  for (size_t i = 0; i < ps.infos().size(); ++i) {
    const ParamInfo& info = ps.infos()[i];
    std::vector<float> d = random_vector(info.size(), 100 + i);
    double analytic = 0;
    for (size_t k = 0; k < info.size(); ++k) analytic += double(grads[info.offset + k]) * d[k];
    std::vector<float> p = p0;
    for (size_t k = 0; k < info.size(); ++k) p[info.offset + k] = p0[info.offset + k] + float(eps) * d[k];
    be.to_device(ps.params().data(), p.data(), p.size());
    const double plus = loss();
    for (size_t k = 0; k < info.size(); ++k) p[info.offset + k] = p0[info.offset + k] - float(eps) * d[k];
    be.to_device(ps.params().data(), p.data(), p.size());
    const double minus = loss();
    be.to_device(ps.params().data(), p0.data(), p0.size());
    const double numeric = (plus - minus) / (2 * eps);
    BOOST_TEST_MESSAGE(info.spec.name << ": analytic " << analytic << ", finite difference " << numeric);
    BOOST_TEST(std::abs(numeric - analytic) <= 2e-2 * std::max(1.0, std::abs(analytic)),
               info.spec.name << ": analytic " << analytic << " vs finite difference " << numeric);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(block_backward_matches_finite_differences) {
  const Grid one(Comm::self(), Layout{1, 1, 1});
  auto be = make_cpu_backend(1);
  DeviceCollectives dc(*be);
  const int B = 2, T = 4, C = 8, NH = 2;
  const LayerShape s = make_shape(one, B, T, C, NH, 11);
  ParamSet ps;
  ParamBuilder pb(ps, s, true);
  Block blk;
  blk.register_params(pb, s, 0, 1);
  ps.allocate(*be, 1);
  ps.initialize(seed);
  // Larger-than-GPT-2 weights, so that every path contributes visibly to L.
  std::vector<float> p = ps.params().to_host();
  const std::vector<float> noise = random_vector(p.size(), 7, 0.3f);
  for (size_t k = 0; k < p.size(); ++k) p[k] += noise[k];
  be->to_device(ps.params().data(), p.data(), p.size());

  const size_t n = size_t(B) * T * C;
  const std::vector<float> x = random_vector(n, 5), r = random_vector(n, 6);
  Buffer x_dev(*be, n), dres(*be, n);
  be->to_device(x_dev.data(), x.data(), n);
  BlockActivations a(*be, s);
  BlockScratch sc(*be, s);
  auto loss = [&] {
    blk.forward(*be, dc, one, ps, s, x_dev.data(), a);
    return weighted_sum(a.out.to_host(), r);
  };
  loss();
  be->to_device(dres.data(), r.data(), n);
  blk.backward(*be, dc, one, ps, s, x_dev.data(), a, sc, dres.data());
  check_directional_derivatives(*be, ps, ps.grads().to_host(), loss);

  // The input gradient, along one random direction.
  const std::vector<float> dx = dres.to_host(), dir = random_vector(n, 8);
  double analytic = 0;
  for (size_t k = 0; k < n; ++k) analytic += double(dx[k]) * dir[k];
  std::vector<float> xs(n);
  const double eps = 1e-2;
  for (size_t k = 0; k < n; ++k) xs[k] = x[k] + float(eps) * dir[k];
  be->to_device(x_dev.data(), xs.data(), n);
  const double plus = loss();
  for (size_t k = 0; k < n; ++k) xs[k] = x[k] - float(eps) * dir[k];
  be->to_device(x_dev.data(), xs.data(), n);
  const double minus = loss();
  BOOST_TEST(std::abs((plus - minus) / (2 * eps) - analytic) <= 2e-2 * std::max(1.0, std::abs(analytic)));
}

BOOST_AUTO_TEST_CASE(embedding_and_head_backward_match_finite_differences) {
  const Grid one(Comm::self(), Layout{1, 1, 1});
  auto be = make_cpu_backend(1);
  DeviceCollectives dc(*be);
  const int B = 2, T = 4, C = 8, NH = 2, V = 11;
  const LayerShape s = make_shape(one, B, T, C, NH, V);
  ParamSet ps;
  ParamBuilder pb(ps, s, true);
  Embedding emb;
  Head head;
  emb.register_params(pb, s);
  head.register_params(pb, s, emb.wte);
  ps.allocate(*be, 1);
  ps.initialize(seed);
  std::vector<float> p = ps.params().to_host();
  const std::vector<float> noise = random_vector(p.size(), 9, 0.5f);
  for (size_t k = 0; k < p.size(); ++k) p[k] += noise[k];
  be->to_device(ps.params().data(), p.data(), p.size());

  const int N = B * T;
  std::vector<int32_t> tokens(N), targets(N);
  for (int i = 0; i < N; ++i) {
    tokens[i] = int32_t(uniform_at(seed, 13, i) * V);
    targets[i] = int32_t(uniform_at(seed, 14, i) * V);
  }
  IntBuffer tok(*be, N), tgt(*be, N);
  be->to_device_int(tok.data(), tokens.data(), N);
  be->to_device_int(tgt.data(), targets.data(), N);
  Buffer x(*be, size_t(N) * C), dx(*be, size_t(N) * C);
  Head::Work w(*be, s);
  // L = mean token loss through embedding -> (identity) -> head, with the tied wte used twice.
  auto loss = [&] {
    emb.forward(*be, dc, one, ps, s, tok.data(), x.data());
    return head.forward_backward(*be, dc, one, ps, s, x.data(), tgt.data(), 0, false, w, nullptr) / N;
  };
  emb.forward(*be, dc, one, ps, s, tok.data(), x.data());
  head.forward_backward(*be, dc, one, ps, s, x.data(), tgt.data(), 1.0f / N, true, w, dx.data());
  emb.backward(*be, ps, s, tok.data(), dx.data());
  check_directional_derivatives(*be, ps, ps.grads().to_host(), loss);
}
