// The analytic counts (analytic.hpp), each derived from the model catalogue: what a stage holds
// is stage_tensors(), a tensor's local size is its shard_of(), a linear layer is a tensor with a
// product label, and tensor parallelism's communication follows from how each weight is split.
#include "mptrain/model/analytic.hpp"

#include <algorithm>

#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/gradient_window.hpp"
#include "mptrain/model/layers.hpp"
#include "mptrain/model/params.hpp"

namespace mptrain {

namespace {

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Bytes a rank sends on the wire for a ring collective over p ranks.
double ring_allreduce(double payload, int p) { return p > 1 ? 2.0 * (p - 1) / p * payload : 0; }
double ring_reduce_scatter(double input, int p) { return p > 1 ? double(p - 1) / p * input : 0; }
double ring_allgather(double input, int p) { return p > 1 ? double(p - 1) * input : 0; }

// Micro-batches per rank and step (the pipeline schedule's).
long micro_batches(const Layout& L, int micro_batch, long global_batch) {
  return global_batch / (long(L.dp) * micro_batch);
}

// Products of the same shape (e.g. attn.proj and lm_head when Vl = C) become one entry.
std::vector<GemmShape> merge_same_shapes(const std::vector<GemmShape>& shapes) {
  std::vector<GemmShape> merged;
  for (const GemmShape& g : shapes) {
    auto same = [&](const GemmShape& h) {
      return h.trans_a == g.trans_a && h.trans_b == g.trans_b && h.m == g.m && h.n == g.n &&
             h.k == g.k && h.beta == g.beta;
    };
    auto it = std::find_if(merged.begin(), merged.end(), same);
    if (it == merged.end()) {
      merged.push_back(g);
    } else {
      it->label += "+" + g.label;
      it->count += g.count;
    }
  }
  return merged;
}

// Elements one micro-batch all-reduces over TP on stage `pp_rank`, by Megatron's rules (the
// layers' reduce_from_tp / copy_to_tp): a row-parallel weight's partial output (N, out) is
// summed forward; a column-parallel weight's partial input gradient (N, in) is summed backward
// (the LM head's too: it is column-parallel over the vocabulary); the vocab-parallel embedding
// sums its lookups (N, C) forward; the vocab-parallel cross-entropy sums the row maxima (N) and
// the sums of exponentials with the target logits (2N).
// Full recomputation reruns a block's forward up to the GELU before its backward, so each
// block's row-parallel products but the last (the MLP's output projection) sum again.
double tp_elements_per_micro_batch(const ModelConfig& m, const Layout& L, int pp_rank, double N,
                                   const std::vector<int>& split, Recompute recompute) {
  const bool first = pp_rank == 0, last = pp_rank == L.pp - 1;
  double elements = 0;
  for (const TensorDesc& t : stage_tensors(m, L.pp, pp_rank, split)) {
    if (t.role != Role::weight) continue;
    if (t.part == Part::embedding && t.split == Split::vocab && first) elements += N * t.cols();
    if (recompute == Recompute::full && t.part == Part::block && t.split == Split::columns &&
        t.module != Module::mlp_proj)
      elements += N * t.rows();
    const bool used_as_product = t.product && (t.part == Part::block || last);
    if (!used_as_product) continue;
    if (t.split == Split::columns) elements += N * t.rows();
    if (t.split == Split::rows || t.split == Split::vocab) elements += N * t.cols();
    if (t.split == Split::vocab) elements += N + 2 * N;
  }
  return elements;
}

// ZeRO-2's gradient window plan for stage `pp_rank`, as the optimizer makes it.
GradientWindowPlan window_plan(const ModelConfig& m, const Layout& L, int pp_rank,
                               const StepOptions& options) {
  size_t padded = 0;
  const std::vector<FlatTensor> flat = stage_flat_layout(m, L.tp, L.pp, pp_rank, L.dp, &padded,
                                                         options.stage_layers);
  return plan_gradient_window(flat, padded, bucket_elements(options.bucket_mb));
}

}  // namespace

int64_t model_parameters(const ModelConfig& m) {
  int64_t n = 0;
  for (const TensorDesc& t : gpt2_tensors(m)) n += t.elements();
  return n;
}

double step_flops(const ModelConfig& m, long global_batch) {
  const double tokens = double(global_batch) * m.seq_len;
  return tokens * (6.0 * double(model_parameters(m)) +
                   6.0 * m.n_layer * double(m.n_embd) * m.seq_len);
}

int64_t stage_parameter_elements(const ModelConfig& m, const Layout& L, int pp_rank,
                                 const StepOptions& options) {
  int64_t n = 0;
  for (const TensorDesc& t : stage_tensors(m, L.pp, pp_rank, options.stage_layers))
    n += int64_t(aligned_elements(size_t(local_elements(t, L.tp))));
  return round_up(n, L.dp);
}

std::vector<GemmShape> step_gemm_shapes(const ModelConfig& m, const Layout& L, int pp_rank,
                                        int micro_batch, long global_batch,
                                        const StepOptions& options) {
  const int N = micro_batch * m.seq_len;
  const long micro = micro_batches(L, micro_batch, global_batch);
  const long blocks = long(stage_layers(m, L.pp, pp_rank, options.stage_layers).count) * micro;
  const bool last = pp_rank == L.pp - 1;
  std::vector<GemmShape> out;
  // The three products of a linear layer with this rank's (out, in) shard of W.
  // Full recomputation runs a block's forward products again, but the MLP's output projection.
  const bool full = recompute_from_name(options.recompute) == Recompute::full;
  auto linear = [&](const TensorDesc& w, long count) {
    if (count == 0) return;
    const ShardSpec local = shard_of(w, L.tp, 0);
    const int outf = int(local.local_rows), in = int(local.local_cols);
    const std::string name = w.product;
    const bool again = full && w.part == Part::block && w.module != Module::mlp_proj;
    out.push_back({name + ".fwd", false, true, N, outf, in, 0.0f, again ? 2 * count : count});
    out.push_back({name + ".dW", true, false, outf, in, N, 1.0f, count});   // dW += dy^T x
    out.push_back({name + ".dX", false, false, N, in, outf, 0.0f, count});  // dx = dy W
  };
  const std::vector<TensorDesc> tensors = gpt2_tensors(m);
  // Every block has the same products: layer 0's stand for the stage's blocks.
  for (const TensorDesc& t : tensors)
    if (t.product && t.layer == 0) linear(t, blocks);
  // The LM head, whose weight is the tied token embedding, on the last stage.
  for (const TensorDesc& t : tensors)
    if (t.product && t.part != Part::block && last) linear(t, micro);
  return merge_same_shapes(out);
}

MemoryCount analytic_memory(const ModelConfig& model, const Layout& L, int pp_rank,
                            int micro_batch, long global_batch, const StepOptions& options) {
  // What every TP rank of the stage holds (the same for each).
  const LayerShape s = layer_shape(model, micro_batch, L.tp, 0);
  const bool last = pp_rank == L.pp - 1;
  const int local_layers = stage_layers(model, L.pp, pp_rank, options.stage_layers).count;
  const int slots = int(std::min<long>(micro_batches(L, micro_batch, global_batch), L.pp));
  const double f = sizeof(float);
  const double N = s.N(), C = s.C;
  MemoryCount m;
  const double P = double(stage_parameter_elements(model, L, pp_rank, options));
  m.params = P * f;
  const int zero = options.zero;
  // The gradients the layers write: the flat buffer, or ZeRO-2's window; the reduced shard.
  const double written =
      zero == 2 ? double(window_plan(model, L, pp_rank, options).window) : P;
  m.grads = (written + (zero ? P / L.dp : 0.0)) * f;
  m.optimizer = 2 * (zero ? P / L.dp : P) * f;
  // What Model allocates: per slot, every block's activations (what the recompute mode keeps)
  // and the stage input (B,T,C); once, the blocks' scratch (backward and recomputation), the
  // gradient of the stage output (B,T,C) and, on the last stage, the head's work.
  const Recompute recompute = recompute_from_name(options.recompute);
  double a = slots * (local_layers * double(BlockActivations::elements(s, recompute)) + N * C);
  a += double(BlockScratch::elements(s, recompute)) + N * C;
  if (last) a += double(Head::Work::elements(s));
  m.activations = a * f;
  m.buffers = slots * 2 * N * sizeof(int32_t);  // token ids and targets
  return m;
}

StepTraffic step_traffic(const ModelConfig& m, const Layout& L, int pp_rank, int micro_batch,
                         long global_batch, const StepOptions& options) {
  StepTraffic t;
  const double f = sizeof(float);
  const double N = double(micro_batch) * m.seq_len, C = m.n_embd;  // tokens per micro-batch
  const double micro = double(micro_batches(L, micro_batch, global_batch));
  const bool first = pp_rank == 0, last = pp_rank == L.pp - 1;
  auto set = [&](Axis a, double payload, double wire) {
    t.payload[int(a)] = uint64_t(payload);
    t.wire[int(a)] = wire;
  };
  if (L.tp > 1) {
    const double payload =
        tp_elements_per_micro_batch(m, L, pp_rank, N, options.stage_layers,
                                    recompute_from_name(options.recompute)) *
        micro * f;
    set(Axis::tp, payload, ring_allreduce(payload, L.tp));
  }
  const double params = double(stage_parameter_elements(m, L, pp_rank, options)) * f;
  if (L.dp > 1) {
    if (options.zero == 2) {  // per-micro-batch bucket reduce-scatters, the bottom one once
      const double bottom = double(window_plan(m, L, pp_rank, options).bottom()) * f;
      const double scattered = micro * (params - bottom) + bottom;
      set(Axis::dp, scattered + params / L.dp,
          ring_reduce_scatter(scattered, L.dp) + ring_allgather(params / L.dp, L.dp));
    } else if (options.zero) {  // reduce-scatter of the gradients, all-gather of the shard
      set(Axis::dp, params + params / L.dp,
          ring_reduce_scatter(params, L.dp) + ring_allgather(params / L.dp, L.dp));
    } else {     // all-reduce of every gradient (in buckets)
      set(Axis::dp, params, ring_allreduce(params, L.dp));
    }
  }
  if (L.pp > 1) {
    // (N,C) activations to the next stage, their gradients to the previous one.
    const double payload = ((last ? 0 : 1) + (first ? 0 : 1)) * N * C * micro * f;
    set(Axis::pp, payload, payload);
    // The tied tensor's gradient, summed by the first and the last stage.
    for (const TensorDesc& tied : stage_tensors(m, L.pp, pp_rank, options.stage_layers)) {
      if (!tied.tied) continue;
      const double bytes = double(local_elements(tied, L.tp)) * f;
      set(Axis::embed, bytes, ring_allreduce(bytes, 2));
    }
  }
  // The loss and the squared gradient norm (doubles), the preemption flag and the batch-read
  // check (ints).
  const double world = 2 * sizeof(double) + 2 * sizeof(int);
  set(Axis::world, world, ring_allreduce(world, L.world()));
  return t;
}

}  // namespace mptrain
