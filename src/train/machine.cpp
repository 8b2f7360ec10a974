// The planner's machine model (machine.hpp): the rates, the built-in development machine, and
// the machine file, read with Boost.Program_options' config-file parser from one table of keys
// that also writes it.
#include "mptrain/train/machine.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "mptrain/core/error.hpp"
#include "mptrain/model/analytic.hpp"

namespace po = boost::program_options;

namespace mptrain {

double Machine::speed(double cores) const {
  if (backend != "cpu") return 1.0;
  return cores / measured_threads;
}

double Machine::gemm_seconds(const GemmShape& g) const {
  const double dim = std::min({g.m, g.n, g.k});
  const auto& p = gemm_gflops;
  double gflops = p.front().second;
  if (dim >= p.back().first) {
    gflops = p.back().second;
  } else if (dim > p.front().first) {  // log-log between the two classes around dim
    size_t i = 1;
    while (p[i].first < dim) ++i;
    const double t = std::log(dim / p[i - 1].first) / std::log(double(p[i].first) / p[i - 1].first);
    gflops = std::exp(std::log(p[i - 1].second) + t * (std::log(p[i].second) - std::log(p[i - 1].second)));
  }
  return g.flops() / (gflops * 1e9);
}

double Machine::memory_per_rank_gib(int ranks_per_node) const {
  if (device_memory_gib > 0) return device_memory_gib;
  if (node_memory_gib > 0) return node_memory_gib / std::max(1, ranks_per_node);
  return 0;
}

Machine builtin_machine() {
  // input/machines/devbox-2core.machine: mptrain-plan --measure with 2 ranks x 1 thread,
  // 2026-11-30, under the usual load of the shared machine (load average 12-16: GEMM ~25
  // GFLOP/s per rank where an idle core gives ~65). One node: inter-node = intra-node.
  Machine m;
  m.name = "built-in: the 2-core development box (AMD EPYC Zen 3 under KVM, shared; measured "
           "with 2 ranks x 1 thread)";
  m.origin = "built-in";
  m.backend = "cpu";
  m.cores_per_node = 2;
  m.measured_threads = 1;
  m.node_memory_gib = 23.586;
  m.overhead_mib = 168.457;
  m.gemm_gflops = {{32, 21.4252}, {64, 16.1604}, {128, 23.1937},
                   {256, 26.3409}, {512, 23.901}, {1024, 26.0682}};
  m.attention_gflops = 15.9871;
  m.stream_gbs = 10.0174;
  m.loss_glogits = 0.0976551;
  m.dp_overlap = 0;  // Open MPI's non-blocking all-reduce does not progress (PERFORMANCE.md §6)
  m.collective_efficiency = 0.142814;
  m.intra = {1.3865e-6, 11.2141e9};
  m.inter = m.intra;
  return m;
}

namespace {

// One key of the machine file: how to read it into a Machine and write it back.
struct MachineKey {
  const char* name;
  const char* help;      // the comment written above it
  const char* allowed;   // completes "must be ..."
  bool required;
  std::function<bool(Machine&, const std::string&)> set;  // false: malformed
  std::function<std::string(const Machine&)> get;
};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

bool to_double(const std::string& text, double& out) {
  const char* first = text.data();
  const char* last = first + text.size();
  auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last && first != last && std::isfinite(out);
}

// A positive number, or >= 0 when zero_ok; scaled by `unit` into *field.
MachineKey number_key(const char* name, const char* help, bool required, double unit,
                      bool zero_ok, double Machine::*field) {
  return {name, help, zero_ok ? "a number >= 0" : "a number > 0", required,
          [=](Machine& m, const std::string& v) {
            double x = 0;
            if (!to_double(v, x) || x < 0 || (x == 0 && !zero_ok)) return false;
            m.*field = x * unit;
            return true;
          },
          [=](const Machine& m) { return number(m.*field / unit); }};
}

MachineKey link_key(const char* name, const char* help, bool alpha, Link Machine::*link) {
  const double unit = alpha ? 1e-6 : 1e9;
  return {name, help, alpha ? "a number >= 0 (microseconds)" : "a number > 0 (GB/s)", true,
          [=](Machine& m, const std::string& v) {
            double x = 0;
            if (!to_double(v, x) || x < 0 || (x == 0 && !alpha)) return false;
            (alpha ? (m.*link).alpha_s : (m.*link).beta_bytes_s) = x * unit;
            return true;
          },
          [=](const Machine& m) {
            return number((alpha ? (m.*link).alpha_s : (m.*link).beta_bytes_s) / unit);
          }};
}

// "DIM:GFLOPS DIM:GFLOPS ...", dimensions > 0 ascending, rates > 0.
bool parse_gemm_rates(Machine& m, const std::string& text) {
  std::istringstream in(text);
  std::vector<std::pair<int, double>> points;
  std::string item;
  while (in >> item) {
    const size_t colon = item.find(':');
    double dim = 0, rate = 0;
    if (colon == std::string::npos || !to_double(item.substr(0, colon), dim) ||
        !to_double(item.substr(colon + 1), rate) || dim < 1 || dim != std::floor(dim) ||
        rate <= 0 || (!points.empty() && dim <= points.back().first))
      return false;
    points.emplace_back(int(dim), rate);
  }
  if (points.empty()) return false;
  m.gemm_gflops = points;
  return true;
}

const std::vector<MachineKey>& machine_keys() {
  static const std::vector<MachineKey> keys = {
      {"name", "what this file describes", "any text", true,
       [](Machine& m, const std::string& v) { m.name = v; return !v.empty(); },
       [](const Machine& m) { return m.name; }},
      {"backend", "cpu: rates scale with the cores a rank gets; cuda: one device per rank",
       "cpu or cuda", true,
       [](Machine& m, const std::string& v) { m.backend = v; return v == "cpu" || v == "cuda"; },
       [](const Machine& m) { return m.backend; }},
      {"cores_per_node", "cores of one node (a rank gets cores_per_node / ranks per node)",
       "a whole number > 0", true,
       [](Machine& m, const std::string& v) {
         double x = 0;
         if (!to_double(v, x) || x < 1 || x != std::floor(x) || x > 1e6) return false;
         m.cores_per_node = int(x);
         return true;
       },
       [](const Machine& m) { return std::to_string(m.cores_per_node); }},
      number_key("measured_threads", "threads per rank the rates below were measured with", true,
                 1, false, &Machine::measured_threads),
      number_key("node_memory_gib", "memory of a node, GiB (0: unknown)", false, 1, true,
                 &Machine::node_memory_gib),
      number_key("device_memory_gib", "memory of a rank's GPU, GiB (0: none or unknown)", false,
                 1, true, &Machine::device_memory_gib),
      number_key("overhead_mib", "per rank beyond the model's buffers: libraries, MPI, "
                 "a GPU context, MiB", false, 1, true, &Machine::overhead_mib),
      {"gemm_gflops", "the backend's GEMM rate per rank by shape class: smallest of m, n, k : "
       "GFLOP/s", "DIM:GFLOPS pairs, dimensions ascending (e.g. 64:30 256:50 1024:60)", true,
       parse_gemm_rates,
       [](const Machine& m) {
         std::string s;
         for (const auto& [dim, rate] : m.gemm_gflops) {
           if (!s.empty()) s += " ";
           s += std::to_string(dim) + ":" + number(rate);
         }
         return s;
       }},
      number_key("attention_gflops", "attention forward + backward, GFLOP/s of "
                 "6 n_embd seq_len per token and layer", true, 1, false,
                 &Machine::attention_gflops),
      number_key("stream_gbs", "element-wise ops and the optimizer, GB/s of bytes moved", true,
                 1, false, &Machine::stream_gbs),
      number_key("loss_glogits", "the loss forward + backward, billions of logits per second",
                 true, 1, false, &Machine::loss_glogits),
      number_key("dp_overlap", "fraction of the last micro-batch's backward the DP gradient "
                 "reduction hides in (0: none, 1: all)", false, 1, true, &Machine::dp_overlap),
      {"collective_efficiency", "a ring all-reduce's speed against the alpha-beta model of "
       "the links below (1: as fast; measured with a non-blocking all-reduce)", "a number in (0, 1]",
       false,
       [](Machine& m, const std::string& v) {
         double x = 0;
         if (!to_double(v, x) || x <= 0 || x > 1) return false;
         m.collective_efficiency = x;
         return true;
       },
       [](const Machine& m) { return number(m.collective_efficiency); }},
      link_key("intra_alpha_us", "two ranks on one node: microseconds per message", true,
               &Machine::intra),
      link_key("intra_beta_gbs", "two ranks on one node: GB/s", false, &Machine::intra),
      link_key("inter_alpha_us", "two nodes: microseconds per message", true, &Machine::inter),
      link_key("inter_beta_gbs", "two nodes: GB/s of a node's link, shared by its ranks", false,
               &Machine::inter),
  };
  return keys;
}

// The line of the first "key =" in the file's text (0 when not found).
int line_of(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line.compare(start, key.size(), key) != 0) continue;
    const size_t after = line.find_first_not_of(" \t", start + key.size());
    if (after != std::string::npos && line[after] == '=') return n;
  }
  return 0;
}

}  // namespace

Machine read_machine_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open machine file '" + path + "'");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  auto where = [&](const std::string& key) {
    const int line = line_of(text, key);
    return line > 0 ? path + ":" + std::to_string(line) + ": " : path + ": ";
  };
  po::options_description description("machine keys");
  for (const MachineKey& k : machine_keys())
    description.add_options()(k.name, po::value<std::string>(), k.help);
  po::parsed_options parsed(&description);
  try {
    std::istringstream stream(text);
    parsed = po::parse_config_file(stream, description, /*allow_unregistered=*/false);
  } catch (const po::unknown_option& e) {
    std::string allowed;
    for (const MachineKey& k : machine_keys()) {
      if (!allowed.empty()) allowed += ", ";
      allowed += k.name;
    }
    throw InputError(where(e.get_option_name()) + "unknown key '" + e.get_option_name() +
                     "' (machine file keys: " + allowed + ")");
  } catch (const po::error& e) {
    throw InputError(path + ": " + e.what() + " (a machine file is 'key = value' lines)");
  }
  Machine m;
  m.origin = path;
  std::map<std::string, int> seen;
  for (const po::option& option : parsed.options) {
    const std::string& key = option.string_key;
    if (seen[key]++ > 0) throw InputError(where(key) + key + " is set more than once");
    const auto spec = std::find_if(machine_keys().begin(), machine_keys().end(),
                                   [&](const MachineKey& k) { return key == k.name; });
    const std::string value = option.value.empty() ? "" : option.value[0];
    if (!spec->set(m, value))
      throw InputError(where(key) + key + " = \"" + value + "\": must be " + spec->allowed);
  }
  for (const MachineKey& k : machine_keys())
    if (k.required && !seen.count(k.name))
      throw InputError(path + ": missing key '" + k.name + "' (" + k.help + "; " + k.allowed +
                       ")");
  return m;
}

std::string machine_file_text(const Machine& machine, const std::string& comment) {
  std::string out;
  std::istringstream lines(comment);
  for (std::string line; std::getline(lines, line);) out += "# " + line + "\n";
  out += "# mptrain-plan machine file (doc/PLANNING.md): key = value, '#' comments.\n";
  for (const MachineKey& k : machine_keys())
    out += std::string("\n# ") + k.help + "\n" + k.name + " = " + k.get(machine) + "\n";
  return out;
}

}  // namespace mptrain
