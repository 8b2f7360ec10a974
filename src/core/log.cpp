// Console progress lines and the metrics CSV.
#include "mptrain/core/log.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "mptrain/core/error.hpp"

namespace mptrain {

namespace {
const char* csv_header = "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,val_loss";
}

MetricsCsv::MetricsCsv(const std::string& path, long resume_step) {
  std::vector<std::string> kept;
  if (resume_step > 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      // Keep the rows of steps up to the resume step; skip the header, anything that does
      // not start with a step number, and a last line without its newline (every row is
      // written with one, so that line was torn by a kill in the middle of a write).
      const bool complete = !in.eof();
      long step = 0;
      const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), step);
      if (complete && ec == std::errc() && end != line.data() && *end == ',' && step <= resume_step)
        kept.push_back(line);
    }
  }
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) throw InputError("cannot write the metrics file '" + path + "' ([log] metrics)");
  std::fprintf(file_, "%s\n", csv_header);
  for (const auto& line : kept) std::fprintf(file_, "%s\n", line.c_str());
  std::fflush(file_);
}

MetricsCsv::~MetricsCsv() {
  if (file_) std::fclose(file_);
}

void MetricsCsv::write(const StepMetrics& m) {
  if (!file_) return;
  std::fprintf(file_, "%ld,%.9g,%.9g,%.9g,%.6g,%.6g,", m.step, m.loss, m.lr, m.grad_norm,
               m.tokens_per_s, m.ms_per_step);
  if (m.val_loss) std::fprintf(file_, "%.9g", *m.val_loss);
  std::fprintf(file_, "\n");
  std::fflush(file_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::string format_step_line(const StepMetrics& m, long total_steps, double eta_seconds) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "step %ld/%ld | loss %.6f | lr %.2e | norm %.4f | %.0f tok/s | %.1f ms | ETA %s",
                m.step, total_steps, m.loss, m.lr, m.grad_norm, m.tokens_per_s, m.ms_per_step,
                format_duration(eta_seconds).c_str());
  std::string line = buf;
  if (m.val_loss) {
    std::snprintf(buf, sizeof buf, " | val %.6f", *m.val_loss);
    line += buf;
  }
  return line;
}

}  // namespace mptrain
