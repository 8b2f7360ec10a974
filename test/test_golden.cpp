// mptrain against an independent implementation: test/golden/golden.txt holds what PyTorch
// (test/golden/make_golden.py, float64) computes for the model of test/golden/golden.deck from
// mptrain's own step-0 weights: the logits and loss of the first batch, each parameter tensor's
// gradient norm (and its gradient's dot product with a fixed direction) for that batch, and the
// loss, learning rate and gradient norm of 10 AdamW steps. This program checks mptrain's numbers
// against them on whatever layout it is given: deck overrides follow "--" on the command line
// (test/golden_layouts.sh runs it under mpirun as tp2, tp4, pp2, dp2, ...; "make check" runs it
// on one rank). The vocabulary (67) is one that tp = 2 and tp = 4 do not divide.
//
// Each check prints its largest deviation ("golden: ...") on rank 0, so the logs say how close
// mptrain came. The tolerances are about ten times float32 rounding: PyTorch's own float32 run
// of the same computation lands 1e-7 to 2e-7 from the float64 numbers, and so does mptrain.
#define BOOST_TEST_MODULE golden
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mpi_fixture.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/train/trainer.hpp"
#include "mptrain/train/run.hpp"

using namespace mptrain;

namespace {

// Relative tolerances (see the top of the file and test/golden/README).
constexpr double kLogitTol = 2e-6;  // |logit - golden| / max |golden logit|
constexpr double kLossTol = 1e-6;   // relative, first-batch loss and the 10 training losses
constexpr double kGradTol = 2e-6;   // relative per-tensor gradient norm; dot / (|g| |d|)
constexpr double kLrTol = 1e-8;     // closed-form double arithmetic, printed with %.9g

struct GoldenTensor {
  std::string name;
  int64_t rows = 0, cols = 0;
  std::string fnv;  // 16 hex digits of FNV-1a 64 over the float32 bits
  double grad_norm = 0, grad_dot = 0;
  size_t offset = 0;  // in the flat global buffer of all tensors, in this order
  int64_t size() const { return rows * cols; }
};

struct GoldenStep {
  long step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
};

struct Golden {
  std::vector<int32_t> tokens;
  std::vector<GoldenTensor> tensors;
  std::map<std::string, size_t> index;
  std::vector<std::vector<double>> logits;  // [row * T + t][v]
  double loss0 = 0;
  std::vector<GoldenStep> steps;
  size_t total = 0;  // elements of all tensors
};

std::string srcdir() {
  const char* d = std::getenv("top_srcdir");
  return d && *d ? d : ".";
}

Golden read_golden(const std::string& path) {
  std::ifstream in(path);
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << path);
  Golden g;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream is(line);
    std::string key;
    if (!(is >> key) || key[0] == '#') continue;
    if (key == "tokens") {
      size_t n = 0;
      is >> n;
      g.tokens.resize(n);
      for (auto& t : g.tokens) is >> t;
    } else if (key == "tensor") {
      GoldenTensor t;
      is >> t.name >> t.rows >> t.cols >> t.fnv;
      t.offset = g.total;
      g.total += size_t(t.size());
      g.index[t.name] = g.tensors.size();
      g.tensors.push_back(t);
    } else if (key == "logits") {
      int row = 0, t = 0;
      is >> row >> t;
      std::vector<double> v;
      for (double x; is >> x;) v.push_back(x);
      g.logits.push_back(v);
    } else if (key == "loss0") {
      is >> g.loss0;
    } else if (key == "grad_norm" || key == "grad_dot") {
      std::string name;
      double v = 0;
      is >> name >> v;
      BOOST_TEST_REQUIRE(g.index.count(name) == 1u, "golden file: unknown tensor " << name);
      (key == "grad_norm" ? g.tensors[g.index[name]].grad_norm : g.tensors[g.index[name]].grad_dot) = v;
    } else if (key == "step") {
      GoldenStep s;
      is >> s.step >> s.loss >> s.lr >> s.grad_norm;
      g.steps.push_back(s);
    }
    BOOST_TEST_REQUIRE(!is.bad(), "golden file: bad line: " << line.substr(0, 60));
  }
  BOOST_TEST_REQUIRE(!g.tokens.empty());
  BOOST_TEST_REQUIRE(!g.tensors.empty());
  BOOST_TEST_REQUIRE(g.steps.size() == 10u);
  return g;
}

const Golden& golden() {
  static const Golden g = read_golden(srcdir() + "/test/golden/golden.txt");
  return g;
}

// The golden deck with this run's overrides (the arguments after "--"), training on the
// golden tokens, which rank 0 writes into the working directory once.
Deck golden_deck(std::vector<std::string> extra = {}) {
  const auto& suite = boost::unit_test::framework::master_test_suite();
  std::vector<std::string> overrides(suite.argv + 1, suite.argv + suite.argc);
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  overrides.push_back("--data.train=golden-tokens.h5");
  static bool written = false;
  if (!written) {
    const Deck d = read_deck(srcdir() + "/test/golden/golden.deck", overrides);
    if (Comm::world().rank() == 0)
      write_token_dataset("golden-tokens.h5", golden().tokens, d.model.vocab_size);
    Comm::world().barrier();  // collective over the world
    written = true;
  }
  return read_deck(srcdir() + "/test/golden/golden.deck", overrides);
}

// Every global tensor of the model in one flat double array (golden order), assembled from the
// ranks' shards: a rank adds the blocks of a tensor when take(info) says so. Collective.
template <class Take>
std::vector<double> assemble(const Run& run, ParamSet& ps, const std::vector<float>& local,
                             Take take) {
  const Golden& g = golden();
  std::vector<double> global(g.total, 0.0);
  for (const ParamInfo& p : ps.infos()) {
    if (!take(p)) continue;
    auto it = g.index.find(p.spec.name);
    BOOST_TEST((it != g.index.end()), "tensor " << p.spec.name << " not in the golden file");
    if (it == g.index.end()) continue;  // not fatal here: the other ranks wait in the reduction
    const GoldenTensor& t = g.tensors[it->second];
    for (const ShardBlock& b : p.spec.blocks)
      for (int64_t r = 0; r < b.rows; ++r)
        for (int64_t c = 0; c < b.cols; ++c)
          global[t.offset + size_t((b.global_row + r) * t.cols + b.global_col + c)] +=
              local[p.offset + size_t((b.local_row + r) * p.spec.local_cols + b.local_col + c)];
  }
  run.grid.world().allreduce_sum(std::span<double>(global));  // collective over the world
  return global;
}

std::string fnv1a64(const double* x, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(x[i]);
    unsigned char bytes[4];
    std::memcpy(bytes, &f, 4);  // little-endian hosts, as the generator's "<f4"
    for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

bool root() { return Comm::world().rank() == 0; }

}  // namespace

// mptrain's step-0 weights, on this layout, are bit for bit those the golden numbers start
// from (otherwise nothing below would be comparable).
BOOST_AUTO_TEST_CASE(initial_weights_are_the_golden_ones) {
  std::unique_ptr<Run> run = build_run(golden_deck(), Comm::world());  // collective
  ParamSet& ps = run->model->params();
  // The flat buffer is as large as the layout formula of model/analytic.hpp says (DP traffic).
  BOOST_TEST(int64_t(ps.padded()) == stage_parameter_elements(run->deck.model, run->grid.layout(),
                                                               run->grid.pp_rank()));
  const std::vector<double> w = assemble(*run, ps, ps.params().to_host(),
                                         [](const ParamInfo& p) { return p.spec.writer; });
  for (const GoldenTensor& t : golden().tensors)
    BOOST_TEST(fnv1a64(w.data() + t.offset, t.size()) == t.fnv, t.name << ": initial weights differ");
}

// Forward: the logits of every token of the first batch and its mean loss. Each DP rank runs
// its rows as one micro-batch; each last-stage rank compares its vocabulary shard.
BOOST_AUTO_TEST_CASE(logits_and_loss_of_the_first_batch) {
  const Deck probe = golden_deck();
  const Layout layout = resolve_layout(probe, Comm::world().size());
  const long rows = probe.train.global_batch / layout.dp;
  std::unique_ptr<Run> run =
      build_run(golden_deck({"--parallel.micro_batch=" + std::to_string(rows)}), Comm::world());
  const Golden& g = golden();
  const int T = run->deck.model.seq_len;
  double loss = run->eval_batch(run->train_data, *run->sampler);  // collective
  run->grid.world().allreduce_sum(std::span<double>(&loss, 1));            // collective
  loss /= double(run->deck.train.global_batch) * T;

  double scale = 0;
  for (const auto& row : g.logits)
    for (double v : row) scale = std::max(scale, std::abs(v));
  float worst = 0;  // this rank's largest |logit - golden|, then the largest over the world
  if (run->grid.last_stage()) {
    const LayerShape& s = run->model->shape();
    for (long r = 0; r < rows; ++r)
      for (int t = 0; t < T; ++t) {
        const std::vector<float> mine = run->model->logits_row(int(r * T + t));
        const auto& want = g.logits[size_t((run->grid.dp_rank() * rows + r) * T + t)];
        BOOST_TEST(mine.size() == size_t(s.vocab_owned()));
        for (size_t v = 0; v < mine.size(); ++v)
          worst = std::max(worst, float(std::abs(mine[v] - want[size_t(s.vocab_start()) + v])));
      }
  }
  run->grid.world().allreduce_max(std::span<float>(&worst, 1));  // collective over the world
  const double loss_dev = std::abs(loss - g.loss0) / g.loss0;
  if (root())
    std::printf("golden: %s: logits max deviation %.2e of max |logit| %.3f (tolerance %.0e); "
                "loss %.9f vs %.9f, relative %.2e (tolerance %.0e)\n",
                run->layout_text().c_str(), worst / scale, scale, kLogitTol, loss, g.loss0,
                loss_dev, kLossTol);
  BOOST_TEST(worst / scale <= kLogitTol);
  BOOST_TEST(loss_dev <= kLossTol);
}

// Backward: after the first batch's forward and backward (and the DP and tied-embedding
// reductions), every tensor's gradient norm and its dot product with d_i = sin(i + 1).
BOOST_AUTO_TEST_CASE(gradients_of_the_first_batch) {
  std::unique_ptr<Run> run = build_run(golden_deck(), Comm::world());  // collective
  double loss = run->train_batch();  // collective
  run->grid.world().allreduce_sum(std::span<double>(&loss, 1));  // collective
  loss /= double(run->deck.train.global_batch) * run->deck.model.seq_len;
  BOOST_TEST(std::abs(loss - golden().loss0) <= kLossTol * golden().loss0);

  // Under ZeRO the gradients left in the flat buffer are this DP rank's partial sums (the
  // reduced shard lives in the optimizer); otherwise DP rank 0 holds the reduced sum. Each
  // replicated tensor is counted on its one norm owner (TP rank 0, the first stage's wte).
  ParamSet& ps = run->model->params();
  const bool zero = run->deck.optim.zero != 0;
  const int dp_rank = run->grid.dp_rank();
  const std::vector<double> grad = assemble(*run, ps, ps.grads().to_host(), [&](const ParamInfo& p) {
    return p.norm_owner && (zero || dp_rank == 0);
  });
  double worst_norm = 0, worst_dot = 0;
  std::string worst_norm_name, worst_dot_name;
  for (const GoldenTensor& t : golden().tensors) {
    double norm = 0, dot = 0, dnorm = 0;
    for (int64_t i = 0; i < t.size(); ++i) {
      const double gi = grad[t.offset + size_t(i)], di = std::sin(double(i + 1));
      norm += gi * gi;
      dot += gi * di;
      dnorm += di * di;
    }
    norm = std::sqrt(norm);
    const double norm_dev = std::abs(norm - t.grad_norm) / t.grad_norm;
    const double dot_dev = std::abs(dot - t.grad_dot) / (t.grad_norm * std::sqrt(dnorm));
    BOOST_TEST(norm_dev <= kGradTol, t.name << ": gradient norm " << norm << ", golden "
                                           << t.grad_norm << " (relative " << norm_dev << ")");
    BOOST_TEST(dot_dev <= kGradTol, t.name << ": gradient . d " << dot << ", golden " << t.grad_dot
                                          << " (deviation / |g||d| " << dot_dev << ")");
    if (norm_dev > worst_norm) worst_norm = norm_dev, worst_norm_name = t.name;
    if (dot_dev > worst_dot) worst_dot = dot_dev, worst_dot_name = t.name;
  }
  if (root())
    std::printf("golden: %s: per-tensor gradient norms max relative deviation %.2e (%s), "
                "gradient . d max deviation / (|g| |d|) %.2e (%s) (tolerance %.0e)\n",
                run->layout_text().c_str(), worst_norm, worst_norm_name.c_str(), worst_dot,
                worst_dot_name.c_str(), kGradTol);
}

// Training: mptrain's own driver (train(), as the mptrain program runs it) for 10 steps;
// the metrics CSV's loss, learning rate and gradient norm of every step.
BOOST_AUTO_TEST_CASE(ten_training_steps) {
  const std::string csv = "golden-metrics.csv";
  const Deck deck = golden_deck({"--log.metrics=" + csv});
  BOOST_TEST_REQUIRE(train(deck, Comm::world()) == 0);  // collective
  Comm::world().barrier();  // collective: rank 0 has closed the CSV
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  size_t k = 0;
  double worst_loss = 0, worst_norm = 0;
  while (std::getline(in, line) && k < golden().steps.size()) {
    const GoldenStep& want = golden().steps[k++];
    long step = 0;
    double loss = 0, lr = 0, norm = 0;
    BOOST_TEST_REQUIRE(std::sscanf(line.c_str(), "%ld,%lf,%lf,%lf", &step, &loss, &lr, &norm) == 4);
    BOOST_TEST(step == want.step);
    const double dl = std::abs(loss - want.loss) / want.loss;
    const double dn = std::abs(norm - want.grad_norm) / want.grad_norm;
    BOOST_TEST(dl <= kLossTol, "step " << step << ": loss " << loss << ", golden " << want.loss);
    BOOST_TEST(dn <= kGradTol, "step " << step << ": gradient norm " << norm << ", golden "
                                       << want.grad_norm);
    BOOST_TEST(std::abs(lr - want.lr) <= kLrTol * want.lr, "step " << step << ": lr " << lr);
    worst_loss = std::max(worst_loss, dl);
    worst_norm = std::max(worst_norm, dn);
  }
  BOOST_TEST(k == golden().steps.size(), csv << " holds " << k << " steps");
  if (root())
    std::printf("golden: %s zero=%d: 10 AdamW steps: losses max relative deviation %.2e, "
                "gradient norms %.2e (tolerance %.0e, %.0e)\n",
                resolve_layout(deck, Comm::world().size()).str().c_str(), deck.optim.zero,
                worst_loss, worst_norm, kLossTol, kGradTol);
}
