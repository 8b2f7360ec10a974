// Forward and backward of the GPT-2 layers under tensor parallelism (Megatron-style).
// Column-parallel layers (QKV, c_fc) need no communication forward; their input gradient is a
// partial sum over TP and is all-reduced in backward. Row-parallel layers (the two c_proj's)
// produce partial sums that are all-reduced forward; their input gradient needs none.
#include "mptrain/model/layers.hpp"

#include "mptrain/core/error.hpp"

namespace mptrain {

// ------------------------------------------------------------------ embedding

void Embedding::bind(const ParamSet& ps) {
  wte = ps.find(Module::token_embedding, Role::weight);
  wpe = ps.find(Module::position_embedding, Role::weight);
}

void Embedding::forward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                        const LayerShape& s, const int32_t* tokens, float* x) {
  // x(B,T,C): rows of tokens this rank owns, zeros elsewhere; the TP sum assembles them.
  be.embedding_forward(x, tokens, ps.param(wte), s.vocab_start(), s.vocab_owned(), s.N(), s.C);
  dc.allreduce_sum(grid.tp(), x, static_cast<size_t>(s.N()) * s.C);  // collective over TP
  be.position_forward(x, ps.param(wpe), s.B, s.T, s.C);
}

void Embedding::backward(Backend& be, ParamSet& ps, const LayerShape& s, const int32_t* tokens,
                         const float* dx) {
  be.embedding_backward(ps.grad(wte), dx, tokens, s.vocab_start(), s.vocab_owned(), s.N(), s.C);
  be.position_backward(ps.grad(wpe), dx, s.B, s.T, s.C);
}

// ------------------------------------------------------------------ transformer block

template <class F>
void BlockActivations::each(const LayerShape& s, F&& f) {
  using A = BlockActivations;
  const size_t N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  f(&A::ln1, N * C), f(&A::ln1_mean, N), f(&A::ln1_rstd, N);
  f(&A::qkv, N * 3 * Cl);
  f(&A::att, size_t(s.B) * s.NHl() * s.T * s.T);
  f(&A::atty, N * Cl);
  f(&A::res2, N * C);
  f(&A::ln2, N * C), f(&A::ln2_mean, N), f(&A::ln2_rstd, N);
  f(&A::fch, N * Hl), f(&A::fch_gelu, N * Hl);
  f(&A::out, N * C);
}

template <class F>
void BlockScratch::each(const LayerShape& s, F&& f) {
  using S = BlockScratch;
  const size_t N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  f(&S::dqkv, N * 3 * Cl);
  f(&S::datt, size_t(s.B) * s.NHl() * s.T * s.T);
  f(&S::datty, N * Cl);
  f(&S::dfch, N * Hl);
  f(&S::dln, N * C);
}

namespace {
// Allocates every buffer of a work struct from its list.
template <class W>
void allocate_buffers(W& w, Backend& be) {
  W::each(w.shape, [&](Buffer W::*buffer, size_t n) { w.*buffer = Buffer(be, n); });
}
// Floats the list says a work struct of shape s holds.
template <class W>
size_t listed_elements(const LayerShape& s) {
  size_t total = 0;
  W::each(s, [&](Buffer W::*, size_t n) { total += n; });
  return total;
}
// Floats a work struct's buffers really hold.
template <class W>
size_t held_elements(const W& w) {
  size_t total = 0;
  W::each(w.shape, [&](Buffer W::*buffer, size_t) { total += (w.*buffer).size(); });
  return total;
}
}  // namespace

BlockActivations::BlockActivations(Backend& be, const LayerShape& s) : shape(s) {
  allocate_buffers(*this, be);
}
size_t BlockActivations::elements(const LayerShape& s) {
  return listed_elements<BlockActivations>(s);
}
size_t BlockActivations::elements() const { return held_elements(*this); }

BlockScratch::BlockScratch(Backend& be, const LayerShape& s) : shape(s) {
  allocate_buffers(*this, be);
}
size_t BlockScratch::elements(const LayerShape& s) { return listed_elements<BlockScratch>(s); }
size_t BlockScratch::elements() const { return held_elements(*this); }

void Block::bind(const ParamSet& ps, int layer) {
  auto find = [&](Module m, Role r) { return ps.find(m, r, layer); };
  ln1_w = find(Module::attn_norm, Role::weight), ln1_b = find(Module::attn_norm, Role::bias);
  qkv_w = find(Module::attn_qkv, Role::weight), qkv_b = find(Module::attn_qkv, Role::bias);
  proj_w = find(Module::attn_proj, Role::weight), proj_b = find(Module::attn_proj, Role::bias);
  ln2_w = find(Module::mlp_norm, Role::weight), ln2_b = find(Module::mlp_norm, Role::bias);
  fc_w = find(Module::mlp_fc, Role::weight), fc_b = find(Module::mlp_fc, Role::bias);
  fcproj_w = find(Module::mlp_proj, Role::weight), fcproj_b = find(Module::mlp_proj, Role::bias);
}

void Block::forward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                    const LayerShape& s, const float* x, BlockActivations& a) {
  const int N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  // attention: ln1(B,T,C) -> qkv(B,T,3Cl) -> atty(B,T,Cl) -> res2(B,T,C)
  be.layernorm_forward(a.ln1.data(), a.ln1_mean.data(), a.ln1_rstd.data(), x, ps.param(ln1_w),
                       ps.param(ln1_b), N, C);
  be.gemm(false, true, N, 3 * Cl, C, 1.0f, a.ln1.data(), C, ps.param(qkv_w), C, 0.0f,
          a.qkv.data(), 3 * Cl);
  be.add_bias(a.qkv.data(), ps.param(qkv_b), N, 3 * Cl);
  be.attention_forward(a.atty.data(), a.att.data(), a.qkv.data(), s.B, s.T, s.NHl(), s.HS());
  // Row-parallel projection: a partial sum over this rank's heads, summed over TP.
  be.gemm(false, true, N, C, Cl, 1.0f, a.atty.data(), Cl, ps.param(proj_w), Cl, 0.0f,
          a.res2.data(), C);
  dc.allreduce_sum(grid.tp(), a.res2.data(), size_t(N) * C);  // collective over TP
  // res2(B,T,C) = res2 + proj_b + x, and ln2(B,T,C) = LayerNorm(res2), in one pass.
  be.residual_layernorm_forward(a.res2.data(), a.ln2.data(), a.ln2_mean.data(), a.ln2_rstd.data(),
                                x, ps.param(proj_b), ps.param(ln2_w), ps.param(ln2_b), N, C);
  // MLP: ln2(B,T,C) -> fch(B,T,Hl) -> gelu -> out(B,T,C)
  be.gemm(false, true, N, Hl, C, 1.0f, a.ln2.data(), C, ps.param(fc_w), C, 0.0f, a.fch.data(), Hl);
  be.bias_gelu_forward(a.fch.data(), a.fch_gelu.data(), ps.param(fc_b), N, Hl);  // fch += fc_b
  be.gemm(false, true, N, C, Hl, 1.0f, a.fch_gelu.data(), Hl, ps.param(fcproj_w), Hl, 0.0f,
          a.out.data(), C);
  dc.allreduce_sum(grid.tp(), a.out.data(), size_t(N) * C);  // collective over TP
  be.add_bias_residual(a.out.data(), ps.param(fcproj_b), a.res2.data(), N, C);  // out(B,T,C)
}

void Block::backward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                     const LayerShape& s, const float* x, const BlockActivations& a,
                     BlockScratch& sc, float* dres) {
  const int N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  // MLP backward. dres(B,T,C) is the gradient of out; through the residual it is also the
  // gradient of res2, to which ln2's backward adds.
  be.bias_backward(ps.grad(fcproj_b), dres, N, C);
  be.gemm(true, false, C, Hl, N, 1.0f, dres, C, a.fch_gelu.data(), Hl, 1.0f, ps.grad(fcproj_w),
          Hl);                                                           // dW(C,Hl) +=
  be.gemm(false, false, N, Hl, C, 1.0f, dres, C, ps.param(fcproj_w), Hl, 0.0f, sc.dfch.data(),
          Hl);                                                           // dfch_gelu(B,T,Hl)
  be.gelu_bias_backward(sc.dfch.data(), ps.grad(fc_b), a.fch.data(), sc.dfch.data(), N,
                        Hl);                                             // dfch(B,T,Hl), dfc_b +=
  be.gemm(true, false, Hl, C, N, 1.0f, sc.dfch.data(), Hl, a.ln2.data(), C, 1.0f, ps.grad(fc_w),
          C);                                                            // dW(Hl,C) +=
  be.gemm(false, false, N, C, Hl, 1.0f, sc.dfch.data(), Hl, ps.param(fc_w), C, 0.0f,
          sc.dln.data(), C);                                             // dln2 partial
  dc.allreduce_sum(grid.tp(), sc.dln.data(), size_t(N) * C);  // collective over TP
  be.layernorm_backward(dres, ps.grad(ln2_w), ps.grad(ln2_b), sc.dln.data(), a.res2.data(),
                        ps.param(ln2_w), a.ln2_mean.data(), a.ln2_rstd.data(), N, C);
  // Attention backward. dres is now the gradient of res2 (= of the projection output).
  be.bias_backward(ps.grad(proj_b), dres, N, C);
  be.gemm(true, false, C, Cl, N, 1.0f, dres, C, a.atty.data(), Cl, 1.0f, ps.grad(proj_w), Cl);
  be.gemm(false, false, N, Cl, C, 1.0f, dres, C, ps.param(proj_w), Cl, 0.0f, sc.datty.data(), Cl);
  be.attention_backward(sc.dqkv.data(), sc.datt.data(), sc.datty.data(), a.qkv.data(),
                        a.att.data(), s.B, s.T, s.NHl(), s.HS());
  be.bias_backward(ps.grad(qkv_b), sc.dqkv.data(), N, 3 * Cl);
  be.gemm(true, false, 3 * Cl, C, N, 1.0f, sc.dqkv.data(), 3 * Cl, a.ln1.data(), C, 1.0f,
          ps.grad(qkv_w), C);
  be.gemm(false, false, N, C, 3 * Cl, 1.0f, sc.dqkv.data(), 3 * Cl, ps.param(qkv_w), C, 0.0f,
          sc.dln.data(), C);                                             // dln1 partial
  dc.allreduce_sum(grid.tp(), sc.dln.data(), size_t(N) * C);  // collective over TP
  // dres becomes the gradient of x: the residual path plus ln1's backward.
  be.layernorm_backward(dres, ps.grad(ln1_w), ps.grad(ln1_b), sc.dln.data(), x, ps.param(ln1_w),
                        a.ln1_mean.data(), a.ln1_rstd.data(), N, C);
}

// ------------------------------------------------------------------ head

void Head::bind(const ParamSet& ps) {
  lnf_w = ps.find(Module::final_norm, Role::weight);
  lnf_b = ps.find(Module::final_norm, Role::bias);
  wte = ps.find(Module::token_embedding, Role::weight);  // tied: the LM head's weight
}

template <class F>
void Head::Work::each(const LayerShape& s, F&& f) {
  using W = Head::Work;
  const size_t N = s.N(), C = s.C;
  f(&W::lnf, N * C), f(&W::lnf_mean, N), f(&W::lnf_rstd, N);
  f(&W::logits, N * s.Vl());
  f(&W::row_max, N), f(&W::stats, 2 * N), f(&W::losses, N);
}

Head::Work::Work(Backend& be, const LayerShape& s) : shape(s) { allocate_buffers(*this, be); }
size_t Head::Work::elements(const LayerShape& s) { return listed_elements<Head::Work>(s); }
size_t Head::Work::elements() const { return held_elements(*this); }

double Head::forward_backward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                              const LayerShape& s, const float* x, const int32_t* targets,
                              float loss_scale, bool backward, Work& w, float* dx) {
  const int N = s.N(), C = s.C, Vl = s.Vl(), V = s.vocab_owned(), v0 = s.vocab_start();
  be.layernorm_forward(w.lnf.data(), w.lnf_mean.data(), w.lnf_rstd.data(), x, ps.param(lnf_w),
                       ps.param(lnf_b), N, C);
  // logits(B,T,Vl) = lnf @ wte_shard^T: this rank's vocabulary columns only.
  be.gemm(false, true, N, Vl, C, 1.0f, w.lnf.data(), C, ps.param(wte), C, 0.0f, w.logits.data(),
          Vl);
  // Cross-entropy without gathering the logits: global max, then global sum of exp and the
  // target's logit (one all-reduce for both).
  float* sumexp = w.stats.data();
  float* target_logit = w.stats.data() + N;
  be.ce_row_max(w.row_max.data(), w.logits.data(), N, V, Vl);
  dc.allreduce_max(grid.tp(), w.row_max.data(), N);  // collective over TP
  be.ce_row_sumexp(sumexp, w.logits.data(), w.row_max.data(), N, V, Vl);
  be.ce_target_logit(target_logit, w.logits.data(), targets, v0, N, V, Vl);
  dc.allreduce_sum(grid.tp(), w.stats.data(), 2 * size_t(N));  // collective over TP
  be.ce_losses(w.losses.data(), w.row_max.data(), sumexp, target_logit, N);
  const double loss_sum = be.sum(w.losses.data(), N);
  if (!backward) return loss_sum;

  float* dlogits = w.logits.data();  // in place
  be.ce_backward(dlogits, w.logits.data(), w.row_max.data(), sumexp, targets, v0, N, V, Vl,
                 loss_scale);
  be.gemm(true, false, Vl, C, N, 1.0f, dlogits, Vl, w.lnf.data(), C, 1.0f, ps.grad(wte), C);
  be.gemm(false, false, N, C, Vl, 1.0f, dlogits, Vl, ps.param(wte), C, 0.0f, dx, C);
  dc.allreduce_sum(grid.tp(), dx, size_t(N) * C);  // collective over TP: dlnf partial
  // dx currently holds dlnf; LayerNorm backward accumulates, so move it aside first.
  be.copy(w.lnf.data(), dx, size_t(N) * C);
  be.fill(dx, 0.0f, size_t(N) * C);
  be.layernorm_backward(dx, ps.grad(lnf_w), ps.grad(lnf_b), w.lnf.data(), x, ps.param(lnf_w),
                        w.lnf_mean.data(), w.lnf_rstd.data(), N, C);
  return loss_sum;
}

}  // namespace mptrain
