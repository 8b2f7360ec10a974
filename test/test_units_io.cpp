// Unit tests of the training loop, part 2 (part 1: test_units.cpp): the shuffle sampler (a
// permutation of the batch spans per epoch, another one each epoch, resumable from the draw
// count alone) and the metrics CSV on resume (exactly the rows up to the resumed step, a torn
// last row dropped).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/data.hpp"
#include "mptrain/core/log.hpp"

using namespace mptrain;

// ---------------------------------------------------------------- shuffle sampler

namespace {
// The spans the sampler starts at for `draws` successive batches.
std::vector<size_t> positions(ShuffleSampler& s, size_t draws) {
  std::vector<size_t> p;
  for (size_t i = 0; i < draws; ++i) {
    p.push_back(s.position());
    s.advance();
  }
  return p;
}
}  // namespace

BOOST_AUTO_TEST_CASE(shuffle_visits_every_span_once_per_epoch_in_a_new_order) {
  // G*T = 24 tokens per batch; 250 tokens hold spans starting at 0, 24, ..., 216 (216 + 25 <=
  // 250; 240 + 25 is not): 10 batches per epoch.
  const long G = 4;
  const int T = 6;
  const size_t n = 250, per_epoch = 10;
  ShuffleSampler s(n, G, T, 1234);
  std::vector<size_t> all_spans;
  for (size_t k = 0; k < per_epoch; ++k) all_spans.push_back(k * G * T);
  std::vector<std::vector<size_t>> epochs;
  for (int e = 0; e < 4; ++e) {
    std::vector<size_t> order = positions(s, per_epoch);
    std::vector<size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    BOOST_TEST(sorted == all_spans, boost::test_tools::per_element());  // a permutation
    epochs.push_back(order);
  }
  BOOST_TEST(s.draws() == 4 * per_epoch);
  // Each epoch its own order (10! orders: a repeat would be a bug, not chance), and not the
  // sequential one; another seed, another order.
  for (size_t a = 0; a < epochs.size(); ++a) {
    BOOST_TEST((epochs[a] != all_spans));
    for (size_t b = a + 1; b < epochs.size(); ++b) BOOST_TEST((epochs[a] != epochs[b]));
  }
  ShuffleSampler other(n, G, T, 1235);
  BOOST_TEST((positions(other, per_epoch) != epochs[0]));
}

BOOST_AUTO_TEST_CASE(shuffle_resumes_from_the_draw_count) {
  const long G = 2;
  const int T = 5;
  const size_t n = 123;  // spans 0, 10, ..., 110: 12 per epoch
  for (size_t stop : {size_t(0), size_t(1), size_t(11), size_t(12), size_t(30)}) {
    ShuffleSampler straight(n, G, T, 77);
    positions(straight, stop);
    const std::vector<size_t> rest = positions(straight, 40);
    // A new sampler told only the draw count (the position argument is recomputed from it).
    ShuffleSampler resumed(n, G, T, 77);
    resumed.restore(stop, 0);
    BOOST_TEST(resumed.draws() == stop);
    BOOST_TEST(positions(resumed, 40) == rest, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(shuffle_rows_come_from_the_current_span) {
  std::vector<int32_t> tokens(123);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i);
  const TokenDataset data = TokenDataset::from_tokens("counting", 200, tokens);
  ShuffleSampler s(tokens.size(), 2, 5, 9);
  for (int k = 0; k < 15; ++k, s.advance()) {
    std::vector<int32_t> in, out;
    s.rows(data, 1, 1, in, out);  // row 1 of the batch: span[5, 10) and the next tokens
    for (int t = 0; t < 5; ++t) {
      BOOST_TEST(in[size_t(t)] == int32_t(s.position() + 5 + size_t(t)));
      BOOST_TEST(out[size_t(t)] == in[size_t(t)] + 1);
    }
  }
}

// ---------------------------------------------------------------- metrics CSV on resume

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}
StepMetrics row(long step) {
  StepMetrics m;
  m.step = step;
  m.loss = 5.0 - 0.1 * double(step);
  m.lr = 1e-3;
  m.grad_norm = 1.5;
  m.tokens_per_s = 1000;
  m.ms_per_step = 12.5;
  if (step % 3 == 0) m.val_loss = 4.0;
  return m;
}
// A run that writes steps [first, last] into path, resuming at first - 1.
void run_steps(const std::string& path, long first, long last) {
  MetricsCsv csv(path, first - 1);
  for (long s = first; s <= last; ++s) csv.write(row(s));
}
// The text an uninterrupted run of steps 1..last leaves.
std::string straight(long last) {
  const std::string path = "metrics_straight.csv";
  run_steps(path, 1, last);
  return slurp(path);
}
}  // namespace

BOOST_AUTO_TEST_CASE(resume_keeps_exactly_the_rows_up_to_the_step) {
  const std::string path = "metrics_resume.csv";
  run_steps(path, 1, 9);  // a run that got to step 9, its last checkpoint at step 6
  run_steps(path, 7, 12); // resumed at 6: rows 7..9 are written again
  BOOST_TEST(slurp(path) == straight(12));
  // The kept rows are byte-for-byte the old ones, the header once.
  const std::string text = slurp(path);
  BOOST_TEST(std::count(text.begin(), text.end(), '\n') == 13);
  BOOST_TEST(text.rfind("step,loss,lr,grad_norm", 0) == 0u);
  BOOST_TEST(text.find("\nstep,") == std::string::npos);
  // Resuming at the file's last step changes nothing; at step 0 (a fresh run) empties it.
  { MetricsCsv csv(path, 12); }
  BOOST_TEST(slurp(path) == straight(12));
  { MetricsCsv csv(path, 0); }
  BOOST_TEST(slurp(path) == "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,val_loss\n");
}

BOOST_AUTO_TEST_CASE(a_torn_last_row_is_dropped) {
  const std::string path = "metrics_torn.csv";
  for (const std::string torn : {"10,4.0", "1", "10,4.00000000,0.001,1.5,1000,12.5,", "5,4.5"}) {
    run_steps(path, 1, 9);
    std::ofstream(path, std::ios::app) << torn;  // killed in the middle of a write: no newline
    run_steps(path, 10, 12);
    BOOST_TEST(slurp(path) == straight(12), "torn row '" << torn << "'");
  }
  // Lines that are not rows (no step number) are dropped; the header is written once.
  write_file(path, "step,loss\ngarbage\n1,4.9,0.001,1.5,1000,12.5,\n,,,\n-,1\n");
  { MetricsCsv csv(path, 1); }
  BOOST_TEST(slurp(path) == "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,val_loss\n"
                            "1,4.9,0.001,1.5,1000,12.5,\n");
  // A missing file on resume: just the header.
  std::remove("metrics_missing.csv");
  { MetricsCsv csv("metrics_missing.csv", 5); }
  BOOST_TEST(slurp("metrics_missing.csv") ==
             "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,val_loss\n");
}
