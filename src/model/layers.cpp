// Forward and backward of the GPT-2 layers under tensor parallelism (Megatron-style).
// Column-parallel layers (QKV, fc, the LM head) need no communication forward; their input
// gradient is a partial sum over TP (copy_to_tp_backward). Row-parallel layers (the two output
// projections) and the vocab-parallel embedding produce partial sums that are summed forward
// (reduce_from_tp); their input gradient needs none.
#include "mptrain/model/layers.hpp"

#include "mptrain/core/error.hpp"

namespace mptrain {

// ------------------------------------------------------------------ the primitives

void reduce_from_tp(const LayerContext& cx, float* y, size_t n) {
  cx.dc.allreduce_sum(cx.tp, y, n);  // collective over TP
}

void copy_to_tp_backward(const LayerContext& cx, float* dx, size_t n) {
  cx.dc.allreduce_sum(cx.tp, dx, n);  // collective over TP
}

Linear Linear::bind(const ParamSet& ps, Module module, int layer) {
  Linear l;
  l.weight = ps.find(module, Role::weight, layer);
  if (ps.holds(module, Role::bias, layer)) l.bias = ps.find(module, Role::bias, layer);
  const ShardSpec& w = ps.infos()[l.weight].spec;
  l.out = int(w.local_rows), l.in = int(w.local_cols);
  return l;
}

void linear_forward(const LayerContext& cx, const Linear& l, const float* x, float* y) {
  cx.be.gemm(false, true, cx.shape.N(), l.out, l.in, 1.0f, x, l.in, cx.param(l.weight), l.in,
             0.0f, y, l.out);
}

void linear_backward(const LayerContext& cx, const Linear& l, const float* x, const float* dy,
                     float* dx) {
  const int N = cx.shape.N();
  cx.be.gemm(true, false, l.out, l.in, N, 1.0f, dy, l.out, x, l.in, 1.0f, cx.grad(l.weight),
             l.in);
  cx.be.gemm(false, false, N, l.in, l.out, 1.0f, dy, l.out, cx.param(l.weight), l.in, 0.0f, dx,
             l.in);
}

Norm Norm::bind(const ParamSet& ps, Module module, int layer) {
  return {ps.find(module, Role::weight, layer), ps.find(module, Role::bias, layer)};
}

void layernorm_forward(const LayerContext& cx, const Norm& n, const float* x, float* y,
                       float* mean, float* rstd) {
  cx.be.layernorm_forward(y, mean, rstd, x, cx.param(n.weight), cx.param(n.bias), cx.shape.N(),
                          cx.shape.C);
}

void layernorm_backward(const LayerContext& cx, const Norm& n, const float* dy, const float* x,
                        const float* mean, const float* rstd, float* dx) {
  cx.be.layernorm_backward(dx, cx.grad(n.weight), cx.grad(n.bias), dy, x, cx.param(n.weight),
                           mean, rstd, cx.shape.N(), cx.shape.C);
}

// ------------------------------------------------------------------ the work buffers

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

// ------------------------------------------------------------------ embedding

Embedding::Embedding(const ParamSet& ps)
    : wte(ps.find(Module::token_embedding, Role::weight)),
      wpe(ps.find(Module::position_embedding, Role::weight)) {}

void Embedding::forward(const LayerContext& cx, const int32_t* tokens, float* x) const {
  const LayerShape& s = cx.shape;
  // x(B,T,C): the rows of the tokens this rank's vocabulary shard holds, zeros elsewhere; the
  // sum over TP assembles them.
  cx.be.embedding_forward(x, tokens, cx.param(wte), s.vocab_start(), s.vocab_owned(), s.N(), s.C);
  reduce_from_tp(cx, x, size_t(s.N()) * s.C);
  cx.be.position_forward(x, cx.param(wpe), s.B, s.T, s.C);  // x += wpe
}

void Embedding::backward(const LayerContext& cx, const int32_t* tokens, const float* dx) const {
  const LayerShape& s = cx.shape;
  // reduce_from_tp backward: the identity (every rank has the whole dx).
  cx.be.embedding_backward(cx.grad(wte), dx, tokens, s.vocab_start(), s.vocab_owned(), s.N(),
                           s.C);
  cx.be.position_backward(cx.grad(wpe), dx, s.B, s.T, s.C);
}

// ------------------------------------------------------------------ transformer block

Block::Block(const ParamSet& ps, int layer)
    : ln1(Norm::bind(ps, Module::attn_norm, layer)),
      ln2(Norm::bind(ps, Module::mlp_norm, layer)),
      qkv(Linear::bind(ps, Module::attn_qkv, layer)),
      attn_proj(Linear::bind(ps, Module::attn_proj, layer)),
      fc(Linear::bind(ps, Module::mlp_fc, layer)),
      fc_proj(Linear::bind(ps, Module::mlp_proj, layer)) {}

void Block::forward(const LayerContext& cx, const float* x, BlockActivations& a) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), C = s.C;
  // Attention. ln1 is the same on every TP rank; it enters the column-parallel QKV
  // (copy_to_tp: the identity forward).
  layernorm_forward(cx, ln1, x, a.ln1.data(), a.ln1_mean.data(), a.ln1_rstd.data());  // (B,T,C)
  linear_forward(cx, qkv, a.ln1.data(), a.qkv.data());                      // (B,T,3Cl)
  be.add_bias(a.qkv.data(), cx.param(qkv.bias), N, qkv.out);
  be.attention_forward(a.atty.data(), a.att.data(), a.qkv.data(), s.B, s.T, s.NHl(),
                       s.HS());                                             // (B,T,Cl)
  linear_forward(cx, attn_proj, a.atty.data(), a.res2.data());  // (B,T,C) over this rank's heads
  reduce_from_tp(cx, a.res2.data(), size_t(N) * C);             // (B,T,C) summed over TP
  // res2 = res2 + bias + x, and ln2 = LayerNorm(res2), in one pass.
  be.residual_layernorm_forward(a.res2.data(), a.ln2.data(), a.ln2_mean.data(), a.ln2_rstd.data(),
                                x, cx.param(attn_proj.bias), cx.param(ln2.weight),
                                cx.param(ln2.bias), N, C);
  // MLP. ln2 enters the column-parallel fc (copy_to_tp: the identity forward).
  linear_forward(cx, fc, a.ln2.data(), a.fch.data());                       // (B,T,Hl)
  be.bias_gelu_forward(a.fch.data(), a.fch_gelu.data(), cx.param(fc.bias), N,
                       fc.out);                                             // fch += b; gelu
  linear_forward(cx, fc_proj, a.fch_gelu.data(), a.out.data());  // (B,T,C) of this rank's Hl
  reduce_from_tp(cx, a.out.data(), size_t(N) * C);               // (B,T,C) summed over TP
  be.add_bias_residual(a.out.data(), cx.param(fc_proj.bias), a.res2.data(), N, C);  // += b + res2
}

void Block::backward(const LayerContext& cx, const float* x, const BlockActivations& a,
                     BlockScratch& sc, float* dres) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), C = s.C;
  // MLP. dres(B,T,C) is the gradient of out (reduce_from_tp backward: the identity); through
  // the residual it is also the gradient of res2, to which ln2's backward adds.
  be.bias_backward(cx.grad(fc_proj.bias), dres, N, C);
  linear_backward(cx, fc_proj, a.fch_gelu.data(), dres, sc.dfch.data());  // dfch_gelu (B,T,Hl)
  be.gelu_bias_backward(sc.dfch.data(), cx.grad(fc.bias), a.fch.data(), sc.dfch.data(), N,
                        fc.out);                                          // dfch (B,T,Hl)
  linear_backward(cx, fc, a.ln2.data(), sc.dfch.data(), sc.dln.data());   // dln2, this rank's
  copy_to_tp_backward(cx, sc.dln.data(), size_t(N) * C);                  // dln2 (B,T,C)
  layernorm_backward(cx, ln2, sc.dln.data(), a.res2.data(), a.ln2_mean.data(), a.ln2_rstd.data(),
                     dres);
  // Attention. dres is now the gradient of res2, the projection's output.
  be.bias_backward(cx.grad(attn_proj.bias), dres, N, C);
  linear_backward(cx, attn_proj, a.atty.data(), dres, sc.datty.data());   // datty (B,T,Cl)
  be.attention_backward(sc.dqkv.data(), sc.datt.data(), sc.datty.data(), a.qkv.data(),
                        a.att.data(), s.B, s.T, s.NHl(), s.HS());         // dqkv (B,T,3Cl)
  be.bias_backward(cx.grad(qkv.bias), sc.dqkv.data(), N, qkv.out);
  linear_backward(cx, qkv, a.ln1.data(), sc.dqkv.data(), sc.dln.data());  // dln1, this rank's
  copy_to_tp_backward(cx, sc.dln.data(), size_t(N) * C);                  // dln1 (B,T,C)
  // dres becomes the gradient of x: the residual path plus ln1's backward.
  layernorm_backward(cx, ln1, sc.dln.data(), x, a.ln1_mean.data(), a.ln1_rstd.data(), dres);
}

// ------------------------------------------------------------------ head

Head::Head(const ParamSet& ps)
    : ln_f(Norm::bind(ps, Module::final_norm)),
      lm_head(Linear::bind(ps, Module::token_embedding)) {}

double Head::forward(const LayerContext& cx, const float* x, const int32_t* targets,
                     Work& w) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), Vl = s.Vl(), V = s.vocab_owned();
  layernorm_forward(cx, ln_f, x, w.lnf.data(), w.lnf_mean.data(), w.lnf_rstd.data());  // (B,T,C)
  // lnf is the same on every TP rank; it enters the column-parallel LM head (copy_to_tp: the
  // identity forward). logits(B,T,Vl): this rank's vocabulary columns only.
  linear_forward(cx, lm_head, w.lnf.data(), w.logits.data());
  // Cross-entropy without gathering the logits: the global row maximum, then the global sum of
  // exponentials and the target's logit (one all-reduce for both).
  float* sumexp = w.stats.data();
  float* target_logit = w.stats.data() + N;
  be.ce_row_max(w.row_max.data(), w.logits.data(), N, V, Vl);
  cx.dc.allreduce_max(cx.tp, w.row_max.data(), N);  // collective over TP
  be.ce_row_sumexp(sumexp, w.logits.data(), w.row_max.data(), N, V, Vl);
  be.ce_target_logit(target_logit, w.logits.data(), targets, s.vocab_start(), N, V, Vl);
  cx.dc.allreduce_sum(cx.tp, w.stats.data(), 2 * size_t(N));  // collective over TP
  be.ce_losses(w.losses.data(), w.row_max.data(), sumexp, target_logit, N);
  return be.sum(w.losses.data(), N);
}

void Head::backward(const LayerContext& cx, const float* x, const int32_t* targets,
                    float loss_scale, Work& w, float* dx) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), C = s.C;
  float* dlogits = w.logits.data();  // in place
  be.ce_backward(dlogits, w.logits.data(), w.row_max.data(), w.stats.data(), targets,
                 s.vocab_start(), N, s.vocab_owned(), s.Vl(), loss_scale);
  linear_backward(cx, lm_head, w.lnf.data(), dlogits, dx);  // dwte +=; dlnf, this rank's
  copy_to_tp_backward(cx, dx, size_t(N) * C);               // dlnf (B,T,C)
  // dx holds dlnf; LayerNorm backward accumulates into its output, so move dlnf aside first.
  be.copy(w.lnf.data(), dx, size_t(N) * C);
  be.fill(dx, 0.0f, size_t(N) * C);
  layernorm_backward(cx, ln_f, w.lnf.data(), x, w.lnf_mean.data(), w.lnf_rstd.data(), dx);
}

}  // namespace mptrain
