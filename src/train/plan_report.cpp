// The planner's report (plan.hpp): the table, the PLAN lines and the recommendation.
#include <algorithm>
#include <cstdio>
#include <string>

#include "mptrain/train/plan.hpp"

namespace mptrain {

namespace {

constexpr double MiB = 1024.0 * 1024.0;

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string layout_words(const LayoutPrediction& p) {
  const PlanLayout& l = p.plan;
  return "tp=" + std::to_string(l.layout.tp) + " pp=" + std::to_string(l.layout.pp) +
         " dp=" + std::to_string(l.layout.dp) + " micro_batch=" + std::to_string(l.micro_batch) +
         " zero=" + std::to_string(l.options.zero) + " recompute=" + l.options.recompute;
}

// "gemm 71%, other 12%, ..." for the parts of a step time worth naming (>= 1%).
std::string where_time_goes(const StepTime& t) {
  const std::pair<const char*, double> parts[] = {
      {"matrix products", t.gemm}, {"attention and element-wise", t.other}, {"TP", t.tp},
      {"pipeline bubble", t.bubble}, {"PP transfers", t.pp}, {"DP reduction", t.dp},
      {"optimizer", t.optimizer}};
  std::string s;
  for (const auto& [name, seconds] : parts) {
    const double pct = 100.0 * seconds / t.total();
    if (pct < 1.0) continue;
    if (!s.empty()) s += ", ";
    s += std::string(name) + " " + format("%.0f%%", pct);
  }
  return s;
}

void print_header(const Plan& plan, std::FILE* out) {
  const Deck& d = plan.request.deck;
  const ModelConfig& m = d.model;
  std::fprintf(out, "mptrain-plan: %s on %d rank(s), %d per node; %zu valid layouts\n",
               d.path.c_str(), plan.request.ranks, std::min(plan.ranks_per_node, plan.request.ranks),
               plan.layouts.size());
  std::fprintf(out, "model: n_layer %d n_head %d n_embd %d seq_len %d vocab %d: %.3fM parameters; "
               "global_batch %ld (%.0f tokens/step)\n", m.n_layer, m.n_head, m.n_embd, m.seq_len,
               m.vocab_size, double(model_parameters(m)) / 1e6, d.train.global_batch,
               double(d.train.global_batch) * m.seq_len);
  std::fprintf(out, "machine: %s (%s)\n", plan.machine.name.c_str(), plan.machine.origin.c_str());
  if (plan.mem_limit_mib > 0)
    std::fprintf(out, "memory limit: %.0f MiB per rank (model buffers + %.0f MiB overhead)\n",
                 plan.mem_limit_mib, plan.machine.overhead_mib);
  else
    std::fprintf(out, "memory limit: none known (--mem-per-rank GiB sets one)\n");
}

void print_table(const Plan& plan, std::FILE* out, int top) {
  std::fprintf(out, "\n%4s %3s %3s %4s %4s %4s %-9s %-8s %10s %4s %10s %10s  %8s %8s %7s %7s %7s %7s %7s\n",
               "#", "tp", "pp", "dp", "mb", "zero", "recompute", "stages", "mem MiB", "fits",
               "ms/step", "tokens/s", "gemm", "other", "tp", "bubble", "pp", "dp", "optim");
  const size_t rows = top > 0 ? std::min(plan.layouts.size(), size_t(top)) : plan.layouts.size();
  for (size_t i = 0; i < rows; ++i) {
    const LayoutPrediction& p = plan.layouts[i];
    const PlanLayout& l = p.plan;
    const StepTime& t = p.time;
    std::fprintf(out, "%4zu %3d %3d %4d %4d %4d %-9s %-8s %10.1f %4s %10.2f %10.0f  %8.2f %8.2f "
                 "%7.2f %7.2f %7.2f %7.2f %7.2f%s\n", i + 1, l.layout.tp, l.layout.pp,
                 l.layout.dp, l.micro_batch, l.options.zero, l.options.recompute.c_str(),
                 l.stages_text(plan.request.deck.model).c_str(), p.memory.total() / MiB,
                 p.fits ? "yes" : "no", t.total() * 1e3, p.tokens_per_s, t.gemm * 1e3,
                 t.other * 1e3, t.tp * 1e3, t.bubble * 1e3, t.pp * 1e3, t.dp * 1e3,
                 t.optimizer * 1e3, p.deck_layout ? "  <- the deck's" : "");
  }
  if (rows < plan.layouts.size())
    std::fprintf(out, "  ... %zu more (all in the PLAN lines)\n", plan.layouts.size() - rows);
  std::fprintf(out, "  mem: the largest stage's parameters, gradients, optimizer state, "
               "activations and token buffers (analytic_memory, as mptrain-bench counts them);\n"
               "  time in ms per step: gemm/other/tp of the slowest stage over all its "
               "micro-batches, the bubble, PP transfers,\n  the DP reduction not hidden in the "
               "backward, the optimizer (doc/PLANNING.md)\n");
}

void print_recommendation(const Plan& plan, std::FILE* out) {
  if (plan.recommended < 0) {
    std::fprintf(out, "RECOMMEND none: no layout fits in %.0f MiB per rank (the smallest needs "
                 "%.0f MiB); use more ranks or more memory per rank\n", plan.mem_limit_mib,
                 std::min_element(plan.layouts.begin(), plan.layouts.end(),
                                  [](const auto& a, const auto& b) { return a.rss_mib < b.rss_mib; })
                     ->rss_mib);
    return;
  }
  const LayoutPrediction& best = plan.layouts[size_t(plan.recommended)];
  long fitting = std::count_if(plan.layouts.begin(), plan.layouts.end(),
                               [](const LayoutPrediction& p) { return p.fits; });
  std::string why = "fastest of the " + std::to_string(fitting) + " layouts that fit";
  if (plan.mem_limit_mib > 0) why += " in " + format("%.0f", plan.mem_limit_mib) + " MiB per rank";
  if (plan.recommended > 0)
    why += " (faster ones need more memory: " + layout_words(plan.layouts[0]) + " needs " +
           format("%.0f", plan.layouts[0].rss_mib) + " MiB)";
  for (size_t i = size_t(plan.recommended) + 1; i < plan.layouts.size(); ++i) {
    const LayoutPrediction& next = plan.layouts[i];
    if (!next.fits || (next.plan.layout.tp == best.plan.layout.tp &&
                       next.plan.layout.pp == best.plan.layout.pp))
      continue;
    why += "; the best other split, " + layout_words(next) + ", is " +
           format("%.1f%%", 100.0 * (next.time.total() / best.time.total() - 1)) + " slower";
    break;
  }
  why += "; its step: " + where_time_goes(best.time);
  std::fprintf(out, "RECOMMEND %s ms_step=%s mem_mib=%s: %s\n", layout_words(best).c_str(),
               format("%.4g", best.time.total() * 1e3).c_str(),
               format("%.3f", best.memory.total() / MiB).c_str(), why.c_str());
}

}  // namespace

std::string plan_line(const Plan& plan, const LayoutPrediction& p) {
  const StepTime& t = p.time;
  const MemoryCount& m = p.memory;
  std::string s = "PLAN " + layout_words(p);
  s += " mem_mib=" + format("%.3f", m.total() / MiB) + " ms_step=" + format("%.4g", t.total() * 1e3);
  s += std::string(" fits=") + (p.fits ? "yes" : "no");
  s += " stages=" + p.plan.stages_text(plan.request.deck.model);
  s += " mem_stage=" + std::to_string(p.memory_stage);
  s += " mem_bytes=" + format("%.0f", m.total());
  s += " mem_params_mib=" + format("%.3f", m.params / MiB);
  s += " mem_grads_mib=" + format("%.3f", m.grads / MiB);
  s += " mem_optimizer_mib=" + format("%.3f", m.optimizer / MiB);
  s += " mem_activations_mib=" + format("%.3f", m.activations / MiB);
  s += " mem_buffers_mib=" + format("%.3f", m.buffers / MiB);
  s += " rss_mib=" + format("%.3f", p.rss_mib);
  s += " tokens_per_s=" + format("%.1f", p.tokens_per_s);
  const std::pair<const char*, double> parts[] = {
      {"gemm", t.gemm}, {"other", t.other}, {"tp", t.tp}, {"bubble", t.bubble},
      {"pp", t.pp}, {"dp", t.dp}, {"optimizer", t.optimizer}};
  for (const auto& [name, seconds] : parts) s += std::string(" ms_") + name + "=" + format("%.4g", seconds * 1e3);
  s += std::string(" deck=") + (p.deck_layout ? "yes" : "no");
  return s;
}

void print_plan(const Plan& plan, std::FILE* out, int top) {
  print_header(plan, out);
  print_table(plan, out, top);
  std::fprintf(out, "\n");
  for (const LayoutPrediction& p : plan.layouts) std::fprintf(out, "%s\n", plan_line(plan, p).c_str());
  std::fprintf(out, "\n");
  print_recommendation(plan, out);
}

}  // namespace mptrain
