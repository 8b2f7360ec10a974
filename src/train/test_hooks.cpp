// Parsing and checking of the --test-hook options (include/mptrain/train/test_hooks.hpp).
#include "mptrain/train/test_hooks.hpp"

#include <sstream>

#include "mptrain/core/error.hpp"

namespace mptrain {

const char* const test_hook_usage =
    "signal:STEP[:RANK], pause:STEP[:RANK], nan:STEP[:RANK] or kill-in-save:STEP";

namespace {

[[noreturn]] void bad_hook(const std::string& spec, const std::string& why) {
  throw InputError("--test-hook=" + spec + ": " + why + " (the forms are " + test_hook_usage + ")");
}

// A whole decimal number >= min, else bad_hook().
long parse_number(const std::string& spec, const std::string& text, const char* what, long min) {
  size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value < min)
    bad_hook(spec, std::string(what) + " '" + text + "' must be an integer >= " + std::to_string(min));
  return value;
}

}  // namespace

void TestHooks::add(const std::string& spec) {
  std::vector<std::string> fields;
  std::istringstream in(spec);
  for (std::string field; std::getline(in, field, ':');) fields.push_back(field);
  if (!spec.empty() && spec.back() == ':') fields.push_back("");
  if (fields.size() < 2) bad_hook(spec, "no STEP given");
  const std::string& kind = fields[0];
  const long step = parse_number(spec, fields[1], "STEP", 1);
  if (kind == "kill-in-save") {
    if (fields.size() != 2) bad_hook(spec, "kill-in-save takes no RANK (rank 0 dies)");
    kill_in_save = step;
    return;
  }
  std::vector<At>* list = kind == "signal" ? &signal
                          : kind == "pause" ? &pause
                          : kind == "nan"   ? &nan
                                            : nullptr;
  if (!list) bad_hook(spec, "unknown hook '" + kind + "'");
  if (fields.size() > 3) bad_hook(spec, "too many fields");
  const int rank = fields.size() == 3 ? int(parse_number(spec, fields[2], "RANK", 0)) : -1;
  list->push_back(At{step, rank});
}

void TestHooks::check(int world_size, long steps) const {
  auto check_list = [&](const std::vector<At>& hooks, const char* kind, bool last_step_ok) {
    for (const At& h : hooks) {
      std::string spec = kind;
      spec += ':';
      spec += std::to_string(h.step);
      if (h.rank >= 0) {
        spec += ':';
        spec += std::to_string(h.rank);
      }
      if (h.rank >= world_size)
        bad_hook(spec, "rank " + std::to_string(h.rank) + " does not exist in a job of " +
                           std::to_string(world_size) + " rank(s)");
      if (h.step > steps || (h.step == steps && !last_step_ok))
        bad_hook(spec, "a run of [train] steps = " + std::to_string(steps) + " never reaches " +
                           (last_step_ok ? "step " : "the boundary after step ") +
                           std::to_string(h.step));
    }
  };
  check_list(signal, "signal", false);
  check_list(pause, "pause", false);
  check_list(nan, "nan", true);
  if (kill_in_save > steps)
    bad_hook("kill-in-save:" + std::to_string(kill_in_save),
             "no checkpoint of that step is written by a run of [train] steps = " +
                 std::to_string(steps));
}

std::string paused_marker_file(int rank) { return "mptrain-paused." + std::to_string(rank); }

}  // namespace mptrain
