// Progress output and metrics: the console line rank 0 prints per logged step, the metrics
// CSV of doc/DESIGN.md §4 (losses at full float precision, %.9g, so runs compare exactly), and a
// small wall-clock timer.
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

namespace mptrain {

struct StepMetrics {
  long step = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double ms_per_step = 0;
  std::optional<double> val_loss;
};

// The metrics CSV. Opened on rank 0 only. On a fresh run the file is rewritten with the
// header; on a resume from step S the rows of steps <= S are kept and later ones dropped (as
// is a torn last row, one without its newline), so a resumed run's file equals an
// uninterrupted run's.
class MetricsCsv {
 public:
  MetricsCsv() = default;
  MetricsCsv(const std::string& path, long resume_step);
  ~MetricsCsv();
  MetricsCsv(const MetricsCsv&) = delete;
  MetricsCsv& operator=(const MetricsCsv&) = delete;
  void write(const StepMetrics& m);

 private:
  std::FILE* file_ = nullptr;
};

// "12m03s", "1h02m", "45s".
std::string format_duration(double seconds);

// "step 12/100 | loss 3.456789 | lr 3.00e-04 | norm 1.2345 | 12345 tok/s | 45.6 ms | ETA 1m23s"
std::string format_step_line(const StepMetrics& m, long total_steps, double eta_seconds);

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  void restart() { start_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mptrain
