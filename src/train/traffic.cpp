// The run summary's comparison of the analytic communication of a training step
// (model/analytic.hpp: step_traffic) with what every rank measured, and the deck's StepOptions.
#include <cstdio>
#include <span>

#include "mptrain/core/log.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

StepOptions step_options(const Deck& deck) {
  StepOptions options;
  options.zero = deck.optim.zero;
  options.recompute = deck.train.recompute;
  options.bucket_mb = deck.parallel.bucket_mb;  // ZeRO-2's window and bottom bucket
  return options;
}

StepTraffic analytic_traffic(const Run& run) {
  return step_traffic(run.deck.model, run.grid.layout(), run.grid.pp_rank(),
                      run.deck.parallel.micro_batch, run.deck.train.global_batch,
                      run.step_options());
}

void report_communication(const Run& run, const CommCounters& measured, long steps_run) {
  const StepTraffic analytic = analytic_traffic(run);
  // Every rank compares its own traffic with its own analytic count; rank 0 reports.
  int mismatch = 0;
  for (int a = 0; a < n_axes; ++a)
    if (steps_run > 0 && measured.bytes_sent[a] != analytic.payload[a] * uint64_t(steps_run))
      mismatch = 1;
  run.grid.world().allreduce_max(std::span<int>(&mismatch, 1));  // collective over the world
  if (!run.is_root()) return;
  std::printf("communication per step, rank 0 (payload: bytes handed to MPI, measured and "
              "analytic; wire: what ring algorithms send from this rank):\n");
  for (int a = 0; a < n_axes; ++a) {
    const double per_step = steps_run ? double(measured.bytes_sent[a]) / steps_run : 0.0;
    const double wait = steps_run ? measured.wait_seconds[a] / steps_run : 0.0;
    std::printf("  %-6s payload measured %12.0f B  analytic %12llu B  wire %14.1f B  waiting "
                "%8.3f ms\n", axis_name(Axis(a)), per_step,
                (unsigned long long)analytic.payload[a], analytic.wire[a], wait * 1e3);
  }
  std::printf("comm-check: %s\n", mismatch ? "MISMATCH (some rank sent other than the analytic "
                                             "count)" : "ok (every rank sent exactly the analytic count)");
}

}  // namespace mptrain
