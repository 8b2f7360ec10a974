// mptrain-plan --measure (machine.hpp): the machine file's numbers measured on the allocation
// the training will run on. Compute is timed with the benchmark's timing (bench.hpp) on every
// rank at once; the links by ping-pong from rank 0 with Comm's point-to-point calls.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <span>
#include <thread>

#include "mptrain/backend/tensor.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/train/bench.hpp"
#include "mptrain/train/machine.hpp"

namespace mptrain {

namespace {

// The shape classes of the machine file: the three products of a linear layer with d inputs
// and outputs on 2d tokens (forward x W^T, dW += dy^T x, dx = dy W): smallest dimension d.
const int gemm_classes[] = {32, 64, 128, 256, 512, 1024};

std::vector<double> measure_gemm_rates(Backend& be, const MeasureOptions& o) {
  std::vector<double> rates;
  for (int d : gemm_classes) {
    const std::vector<GemmShape> shapes = {{"fwd", false, true, 2 * d, d, d, 0.0f, 1},
                                           {"dW", true, false, d, d, 2 * d, 1.0f, 1},
                                           {"dX", false, false, 2 * d, d, d, 0.0f, 1}};
    const std::vector<double> seconds = measure_gemm_seconds(be, shapes, o.min_seconds, o.trials);
    double flops = 0, total = 0;
    for (size_t i = 0; i < shapes.size(); ++i) flops += shapes[i].flops(), total += seconds[i];
    rates.push_back(flops / total / 1e9);
  }
  return rates;
}

// Attention forward + backward of B = 2 sequences of T = 256 tokens, 4 heads of 64, in
// step_flops' units: 6 T C FLOPs per token (forward and backward of one layer).
double measure_attention_gflops(Backend& be, const MeasureOptions& o) {
  const int B = 2, T = 256, NH = 4, HS = 64, C = NH * HS;
  Buffer qkv(be, size_t(B) * T * 3 * C), out(be, size_t(B) * T * C), att(be, size_t(B) * NH * T * T);
  Buffer dqkv(be, qkv.size()), dout(be, out.size()), datt(be, att.size());
  be.fill(qkv.data(), 0.01f, qkv.size());
  be.fill(dout.data(), 0.01f, dout.size());
  const double seconds = median_seconds_per_call(be, [&] {
    be.attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, HS);
    be.attention_backward(dqkv.data(), datt.data(), dout.data(), qkv.data(), att.data(), B, T, NH, HS);
  }, o.min_seconds, o.trials);
  return double(B) * T * 6.0 * T * C / seconds / 1e9;
}

// Bytes moved per second by the optimizer's fused pass (p, g, m, v read; p, m, v, g written)
// and GELU forward (read, write) and backward (two reads, a write) over 4M elements.
double measure_stream_gbs(Backend& be, const MeasureOptions& o) {
  const size_t n = size_t(1) << 22;
  Buffer p(be, n), g(be, n), m(be, n), v(be, n);
  for (Buffer* b : {&p, &g, &m, &v}) be.fill(b->data(), 0.01f, n);
  const double adamw = median_seconds_per_call(be, [&] {
    be.adamw_step(p.data(), g.data(), m.data(), v.data(), n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1,
                  1.0f, true);
  }, o.min_seconds, o.trials);
  const double gelu_fwd = median_seconds_per_call(
      be, [&] { be.gelu_forward(p.data(), g.data(), n); }, o.min_seconds, o.trials);
  const double gelu_bwd = median_seconds_per_call(
      be, [&] { be.gelu_backward(p.data(), g.data(), m.data(), n); }, o.min_seconds, o.trials);
  return double(n) * sizeof(float) * (8 + 2 + 3) / (adamw + gelu_fwd + gelu_bwd) / 1e9;
}

// The vocab-parallel loss, forward and backward (row maxima, sums of exponentials, target
// logits, losses, gradient), over N = 256 rows of V = 8192 logits: billions of logits per
// second. Its exponentials make it slower than its bytes suggest.
double measure_loss_glogits(Backend& be, const MeasureOptions& o) {
  const int N = 256, V = 8192;
  Buffer logits(be, size_t(N) * V), dlogits(be, logits.size());
  Buffer row_max(be, N), row_sum(be, N), target(be, N), losses(be, N);
  IntBuffer targets(be, N);  // zero-filled: every row's target is token 0
  be.fill(logits.data(), 0.01f, logits.size());
  const double seconds = median_seconds_per_call(be, [&] {
    be.ce_row_max(row_max.data(), logits.data(), N, V, V);
    be.ce_row_sumexp(row_sum.data(), logits.data(), row_max.data(), N, V, V);
    be.ce_target_logit(target.data(), logits.data(), targets.data(), 0, N, V, V);
    be.ce_losses(losses.data(), row_max.data(), row_sum.data(), target.data(), N);
    be.ce_backward(dlogits.data(), logits.data(), row_max.data(), row_sum.data(), targets.data(),
                   0, N, V, V, 1.0f);
  }, o.min_seconds, o.trials);
  return double(N) * V / seconds / 1e9;
}

// Ping-pong between `a` and `b` (the other ranks do nothing): seconds of half a round trip
// of `floats` floats, the median of `reps` round trips.
double ping_pong(const Comm& world, int a, int b, size_t floats, int reps) {
  const int me = world.rank();
  if (me != a && me != b) return 0;
  std::vector<float> buffer(floats, 1.0f);
  std::vector<double> times;
  for (int r = 0; r < reps + 2; ++r) {
    const double t0 = Comm::wtime();
    if (me == a) {
      world.isend(std::span<const float>(buffer), b, 7101).wait();
      world.recv(std::span<float>(buffer), b, 7102);
    } else {
      world.recv(std::span<float>(buffer), a, 7101);
      world.isend(std::span<const float>(buffer), a, 7102).wait();
    }
    if (r >= 2) times.push_back((Comm::wtime() - t0) / 2);  // two warm-up round trips
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Collective over world: alpha and beta between rank 0 and `partner` (-1: none).
Link measure_link(const Comm& world, int partner) {
  Link link;
  if (partner >= 0) {
    const double small = ping_pong(world, 0, partner, 2, 200);
    const size_t floats = size_t(1) << 22;  // 16 MiB
    const double large = ping_pong(world, 0, partner, floats, 10);
    link.alpha_s = small;
    link.beta_bytes_s = double(floats) * sizeof(float) / std::max(large - small, 1e-9);
  }
  std::vector<double> values = {link.alpha_s, link.beta_bytes_s};
  world.allreduce_sum(std::span<double>(values));  // collective: only rank 0 has them
  return {values[0], values[1]};
}

// Collective over world: each rank's `values`, the median over ranks of each.
std::vector<double> median_over_ranks(const Comm& world, const std::vector<double>& values) {
  const size_t k = values.size(), n = size_t(world.size());
  std::vector<double> all(k * n, 0.0);
  std::copy(values.begin(), values.end(), all.begin() + ptrdiff_t(k * size_t(world.rank())));
  world.allreduce_sum(std::span<double>(all));  // collective
  std::vector<double> median(k);
  for (size_t i = 0; i < k; ++i) {
    std::vector<double> column;
    for (size_t r = 0; r < n; ++r) column.push_back(all[r * k + i]);
    std::sort(column.begin(), column.end());
    median[i] = column[n / 2];
  }
  return median;
}

// Collective over world: a non-blocking all-reduce of 16 MiB over every rank (as the DP
// gradient buckets are reduced) against the ring model of the measured links; at most 1.
double collective_efficiency(const Comm& world, const std::vector<std::string>& nodes,
                             const Machine& m) {
  const int p = world.size();
  if (p == 1) return 1.0;
  const bool one_node = std::all_of(nodes.begin(), nodes.end(),
                                    [&](const std::string& s) { return s == nodes[0]; });
  const Link link = one_node ? m.intra
                             : Link{std::max(m.intra.alpha_s, m.inter.alpha_s),
                                    std::min(m.intra.beta_bytes_s, m.inter.beta_bytes_s)};
  std::vector<float> data(size_t(1) << 22, 1e-3f);
  std::vector<double> times;
  for (int r = 0; r < 7; ++r) {
    world.barrier();  // collective
    const double t0 = Comm::wtime();
    world.iallreduce_sum(std::span<float>(data)).wait();  // collective
    std::vector<double> slowest = {Comm::wtime() - t0};
    world.allreduce_sum(std::span<double>(slowest));  // collective: the sum ranks each the same
    if (r >= 2) times.push_back(slowest[0] / p);
  }
  std::sort(times.begin(), times.end());
  const double bytes = double(data.size()) * sizeof(float);
  const double model = link.seconds(2.0 * (p - 1) / p * bytes, 2.0 * (p - 1));
  return std::clamp(model / times[times.size() / 2], 0.01, 1.0);
}

double resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

Machine measure_machine(const Comm& world, const MeasureOptions& o, std::string& report) {
  const Comm node = world.split_node();  // collective
  std::unique_ptr<Backend> be = select_backend(o.backend, o.threads, node.rank(), node.size());
  const double overhead = resident_mib();
  // Compute, every rank at once.
  std::vector<double> rates = measure_gemm_rates(*be, o);
  rates.push_back(measure_attention_gflops(*be, o));
  rates.push_back(measure_stream_gbs(*be, o));
  rates.push_back(measure_loss_glogits(*be, o));
  rates.push_back(overhead);
  rates = median_over_ranks(world, rates);  // collective
  // Which ranks share rank 0's node: each node's lowest world rank names it.
  std::vector<int64_t> leader = {world.rank()};
  node.bcast(std::span<int64_t>(leader), 0);  // collective over the node
  const std::vector<std::string> nodes = world.allgather_strings(std::to_string(leader[0]));
  int intra = -1, inter = -1;
  for (int r = world.size() - 1; r > 0; --r) (nodes[size_t(r)] == nodes[0] ? intra : inter) = r;
  Machine m;
  m.intra = measure_link(world, intra);  // collective
  m.inter = measure_link(world, inter);  // collective
  m.collective_efficiency = collective_efficiency(world, nodes, m);  // collective
  const size_t nodes_count = std::set<std::string>(nodes.begin(), nodes.end()).size();
  m.name = !o.name.empty() ? o.name
                           : host_name() + ": measured with " + std::to_string(world.size()) +
                                 " rank(s) on " + std::to_string(nodes_count) + " node(s), " +
                                 std::to_string(be->threads()) + " thread(s) per rank";
  m.origin = "measured";
  m.backend = be->name().find("cuda") != std::string::npos ? "cuda" : "cpu";
  m.cores_per_node = int(std::max(1u, std::thread::hardware_concurrency()));
  m.measured_threads = m.backend == "cpu" ? be->threads() : 1;
  m.node_memory_gib = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE)) / 1073741824.0;
  for (size_t i = 0; i < std::size(gemm_classes); ++i) m.gemm_gflops.push_back({gemm_classes[i], rates[i]});
  m.attention_gflops = rates[std::size(gemm_classes)];
  m.stream_gbs = rates[std::size(gemm_classes) + 1];
  m.loss_glogits = rates[std::size(gemm_classes) + 2];
  m.overhead_mib = rates[std::size(gemm_classes) + 3];
  report = "rates: median over " + std::to_string(world.size()) + " rank(s), all timing at once";
  if (intra < 0) report += "; intra-node link: no second rank on rank 0's node, inter-node numbers used";
  if (inter < 0) report += "; inter-node link: one node only, not measured: intra-node numbers used";
  if (intra < 0) m.intra = m.inter;
  if (inter < 0) m.inter = m.intra;
  if (intra < 0 && inter < 0) m.intra = m.inter = {2e-6, 5e9};
  if (intra < 0 && inter < 0) report += " (one rank: both links are placeholders, 2 us and 5 GB/s)";
  return m;
}

}  // namespace mptrain
