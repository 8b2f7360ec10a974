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

// ------------------------------------------------------------------ recomputation

const char* recompute_name(Recompute mode) {
  switch (mode) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  return "?";
}

Recompute recompute_from_name(const std::string& name) {
  for (Recompute mode : {Recompute::none, Recompute::selective, Recompute::full})
    if (name == recompute_name(mode)) return mode;
  throw InputError("recompute = " + name + " is not one of none, selective, full");
}

// ------------------------------------------------------------------ the work buffers

template <class F>
void BlockActivations::each(const LayerShape& s, Recompute mode, F&& f) {
  using A = BlockActivations;
  const size_t N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  const bool all = mode == Recompute::none, partial = mode != Recompute::full;
  if (all) f(&A::ln1, N * C), f(&A::ln1_mean, N), f(&A::ln1_rstd, N);
  if (partial) f(&A::qkv, N * 3 * Cl);
  if (all) f(&A::att, size_t(s.B) * s.NHl() * s.T * s.T), f(&A::atty, N * Cl);
  if (partial) f(&A::res2, N * C);
  if (all) f(&A::ln2, N * C), f(&A::ln2_mean, N), f(&A::ln2_rstd, N);
  if (partial) f(&A::fch, N * Hl);
  if (all) f(&A::fch_gelu, N * Hl);
  f(&A::out, N * C);
}

template <class F>
void BlockScratch::each(const LayerShape& s, Recompute mode, F&& f) {
  using S = BlockScratch;
  const size_t N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl();
  f(&S::dqkv, N * 3 * Cl);
  f(&S::datt, size_t(s.B) * s.NHl() * s.T * s.T);
  f(&S::datty, N * Cl);
  f(&S::dfch, N * Hl);
  f(&S::dln, N * C);
  // The complement of BlockActivations' list, less ln1, ln2 (in dln), atty (in datty),
  // fch_gelu (in dfch) and out.
  if (mode == Recompute::none) return;
  f(&S::ln1_mean, N), f(&S::ln1_rstd, N);
  f(&S::att, size_t(s.B) * s.NHl() * s.T * s.T);
  f(&S::ln2_mean, N), f(&S::ln2_rstd, N);
  if (mode == Recompute::full) f(&S::qkv, N * 3 * Cl), f(&S::res2, N * C), f(&S::fch, N * Hl);
}

namespace {
// The helpers take a work struct's list as list(f): its each() bound to a shape (and a mode).
template <class W, class List>
void allocate_buffers(W& w, Backend& be, const List& list) {
  list([&](Buffer W::*buffer, size_t n) { w.*buffer = Buffer(be, n); });
}
// Floats the list says the struct holds.
template <class W, class List>
size_t listed_elements(const List& list) {
  size_t total = 0;
  list([&](Buffer W::*, size_t n) { total += n; });
  return total;
}
// Floats a work struct's buffers really hold.
template <class W, class List>
size_t held_elements(const W& w, const List& list) {
  size_t total = 0;
  list([&](Buffer W::*buffer, size_t) { total += (w.*buffer).size(); });
  return total;
}
template <class W>
auto list_of(const LayerShape& s, Recompute mode) {
  return [=](auto&& f) { W::each(s, mode, f); };
}
auto head_list(const LayerShape& s) {
  return [=](auto&& f) { Head::Work::each(s, f); };
}
}  // namespace

BlockActivations::BlockActivations(Backend& be, const LayerShape& s, Recompute m)
    : shape(s), mode(m) {
  allocate_buffers(*this, be, list_of<BlockActivations>(s, m));
}
size_t BlockActivations::elements(const LayerShape& s, Recompute mode) {
  return listed_elements<BlockActivations>(list_of<BlockActivations>(s, mode));
}
size_t BlockActivations::elements() const {
  return held_elements(*this, list_of<BlockActivations>(shape, mode));
}

BlockScratch::BlockScratch(Backend& be, const LayerShape& s, Recompute m) : shape(s), mode(m) {
  allocate_buffers(*this, be, list_of<BlockScratch>(s, m));
}
size_t BlockScratch::elements(const LayerShape& s, Recompute mode) {
  return listed_elements<BlockScratch>(list_of<BlockScratch>(s, mode));
}
size_t BlockScratch::elements() const {
  return held_elements(*this, list_of<BlockScratch>(shape, mode));
}

BlockTensors::BlockTensors(BlockActivations& a, BlockScratch& sc) {
  MPT_CHECK(a.mode == sc.mode, "a block's activations and scratch differ in recompute mode");
  // A buffer the mode does not keep is empty in `a`.
  auto pick = [](Buffer& kept, Buffer& shared) { return kept.size() ? kept.data() : shared.data(); };
  ln1 = pick(a.ln1, sc.dln), ln1_mean = pick(a.ln1_mean, sc.ln1_mean);
  ln1_rstd = pick(a.ln1_rstd, sc.ln1_rstd);
  qkv = pick(a.qkv, sc.qkv), att = pick(a.att, sc.att), atty = pick(a.atty, sc.datty);
  res2 = pick(a.res2, sc.res2), ln2 = pick(a.ln2, sc.dln);
  ln2_mean = pick(a.ln2_mean, sc.ln2_mean), ln2_rstd = pick(a.ln2_rstd, sc.ln2_rstd);
  fch = pick(a.fch, sc.fch), fch_gelu = pick(a.fch_gelu, sc.dfch), out = a.out.data();
}

template <class F>
void Head::Work::each(const LayerShape& s, F&& f) {
  using W = Head::Work;
  const size_t N = s.N(), C = s.C;
  f(&W::lnf, N * C), f(&W::lnf_mean, N), f(&W::lnf_rstd, N);
  f(&W::logits, N * s.Vl());
  f(&W::row_max, N), f(&W::stats, 2 * N), f(&W::losses, N);
}

Head::Work::Work(Backend& be, const LayerShape& s) : shape(s) {
  allocate_buffers(*this, be, head_list(s));
}
size_t Head::Work::elements(const LayerShape& s) { return listed_elements<Head::Work>(head_list(s)); }
size_t Head::Work::elements() const { return held_elements(*this, head_list(shape)); }

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

void Block::attention_part(const LayerContext& cx, const float* x, const BlockTensors& t) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), C = s.C;
  // ln1 is the same on every TP rank; it enters the column-parallel QKV (copy_to_tp: the
  // identity forward).
  layernorm_forward(cx, ln1, x, t.ln1, t.ln1_mean, t.ln1_rstd);            // (B,T,C)
  linear_forward(cx, qkv, t.ln1, t.qkv);                                    // (B,T,3Cl)
  be.add_bias(t.qkv, cx.param(qkv.bias), N, qkv.out);
  be.attention_forward(t.atty, t.att, t.qkv, s.B, s.T, s.NHl(), s.HS());  // (B,T,Cl)
  linear_forward(cx, attn_proj, t.atty, t.res2);  // (B,T,C) over this rank's heads
  reduce_from_tp(cx, t.res2, size_t(N) * C);       // (B,T,C) summed over TP
  // res2 = res2 + bias + x, and ln2 = LayerNorm(res2), in one pass.
  be.residual_layernorm_forward(t.res2, t.ln2, t.ln2_mean, t.ln2_rstd, x,
                                cx.param(attn_proj.bias), cx.param(ln2.weight),
                                cx.param(ln2.bias), N, C);
}

void Block::mlp_hidden_part(const LayerContext& cx, const BlockTensors& t) const {
  // ln2 enters the column-parallel fc (copy_to_tp: the identity forward).
  linear_forward(cx, fc, t.ln2, t.fch);                                     // (B,T,Hl)
  cx.be.bias_gelu_forward(t.fch, t.fch_gelu, cx.param(fc.bias), cx.shape.N(),
                          fc.out);                                          // fch += b; gelu
}

void Block::mlp_output_part(const LayerContext& cx, const BlockTensors& t) const {
  const int N = cx.shape.N(), C = cx.shape.C;
  linear_forward(cx, fc_proj, t.fch_gelu, t.out);  // (B,T,C) of this rank's Hl
  reduce_from_tp(cx, t.out, size_t(N) * C);        // (B,T,C) summed over TP
  cx.be.add_bias_residual(t.out, cx.param(fc_proj.bias), t.res2, N, C);  // += b + res2
}

void Block::forward(const LayerContext& cx, const float* x, BlockActivations& a,
                    BlockScratch& sc) const {
  const BlockTensors t(a, sc);
  attention_part(cx, x, t);  // collective over TP
  mlp_hidden_part(cx, t);
  mlp_output_part(cx, t);    // collective over TP
}

void Block::recompute(const LayerContext& cx, const float* x, const BlockTensors& t,
                      Recompute mode) const {
  const LayerShape& s = cx.shape;
  switch (mode) {
    case Recompute::none:
      return;
    case Recompute::selective:
      // From what was kept, by the ops forward's fused ones are defined to equal bit for bit
      // (backend.hpp): attention(qkv), LayerNorm(res2), gelu(fch); ln1 comes later.
      cx.be.attention_forward(t.atty, t.att, t.qkv, s.B, s.T, s.NHl(), s.HS());
      layernorm_forward(cx, ln2, t.res2, t.ln2, t.ln2_mean, t.ln2_rstd);
      cx.be.gelu_forward(t.fch_gelu, t.fch, size_t(s.N()) * s.Hl());
      return;
    case Recompute::full:
      // Forward again up to the GELU; backward never reads out.
      attention_part(cx, x, t);  // collective over TP
      mlp_hidden_part(cx, t);
      return;
  }
}

void Block::backward(const LayerContext& cx, const float* x, BlockActivations& a,
                     BlockScratch& sc, float* dres) const {
  Backend& be = cx.be;
  const LayerShape& s = cx.shape;
  const int N = s.N(), C = s.C;
  const BlockTensors t(a, sc);
  recompute(cx, x, t, a.mode);  // collective over TP (full)
  // MLP. dres(B,T,C) is the gradient of out (reduce_from_tp backward: the identity); through
  // the residual it is also the gradient of res2, to which ln2's backward adds.
  be.bias_backward(cx.grad(fc_proj.bias), dres, N, C);
  linear_backward(cx, fc_proj, t.fch_gelu, dres, sc.dfch.data());  // dfch_gelu (B,T,Hl)
  be.gelu_bias_backward(sc.dfch.data(), cx.grad(fc.bias), t.fch, sc.dfch.data(), N,
                        fc.out);                                   // dfch (B,T,Hl)
  linear_backward(cx, fc, t.ln2, sc.dfch.data(), sc.dln.data());   // dln2, this rank's
  copy_to_tp_backward(cx, sc.dln.data(), size_t(N) * C);           // dln2 (B,T,C)
  layernorm_backward(cx, ln2, sc.dln.data(), t.res2, t.ln2_mean, t.ln2_rstd, dres);
  // Attention. dres is now the gradient of res2, the projection's output.
  be.bias_backward(cx.grad(attn_proj.bias), dres, N, C);
  linear_backward(cx, attn_proj, t.atty, dres, sc.datty.data());  // datty (B,T,Cl)
  be.attention_backward(sc.dqkv.data(), sc.datt.data(), sc.datty.data(), t.qkv, t.att, s.B, s.T,
                        s.NHl(), s.HS());                         // dqkv (B,T,3Cl)
  be.bias_backward(cx.grad(qkv.bias), sc.dqkv.data(), N, qkv.out);
  // Unless kept, ln1 is in dln, where ln2 and dln2 have been since: LayerNorm(x) again.
  if (a.mode != Recompute::none) layernorm_forward(cx, ln1, x, t.ln1, t.ln1_mean, t.ln1_rstd);
  linear_backward(cx, qkv, t.ln1, sc.dqkv.data(), sc.dln.data());  // dln1, this rank's
  copy_to_tp_backward(cx, sc.dln.data(), size_t(N) * C);           // dln1 (B,T,C)
  // dres becomes the gradient of x: the residual path plus ln1's backward.
  layernorm_backward(cx, ln1, sc.dln.data(), x, t.ln1_mean, t.ln1_rstd, dres);
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
