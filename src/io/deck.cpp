// The input deck (deck.hpp, doc/DESIGN.md §4): one table describes every key once — its section, its
// name, what values it allows, how to parse it into the Deck and how to print it back. From that
// table we build the Boost.Program_options description ("section.key" names) used to parse the
// deck file and the --section.key=value overrides, validate every value, and write the resolved
// deck as INI text that parses back to the same values.
//
// Errors name where the value came from (the file and, when we can find it, the line; or
// "command line"), the key, the offending value and what is allowed, because the person reading
// them is usually looking at a batch job's log long after submitting it.
#include "mptrain/io/deck.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "mptrain/core/error.hpp"

namespace po = boost::program_options;

namespace mptrain {
namespace {

// ------------------------------------------------------------------ the key table

struct KeySpec {
  std::string section;
  std::string name;
  std::string alias;    // a spelled-out name, only used to suggest this key for a typo
  std::string allowed;  // completes "must be ..."
  // Parses and checks the text; returns "" when it is taken, else what is wrong with it
  // ("must be ..."), leaving the deck unchanged.
  std::function<std::string(Deck&, const std::string&)> set;
  std::function<std::string(const Deck&)> get;
  std::string full() const { return section + "." + name; }
  std::string pretty() const { return "[" + section + "] " + name; }
};

const char* const section_names[] = {"model", "parallel", "train", "optim",
                                     "data",  "checkpoint", "log", "device"};
constexpr int int_max = std::numeric_limits<int>::max();
constexpr long long_max = std::numeric_limits<long>::max();

template <class T>
bool parse_integer(const std::string& text, T& out) {
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (first != last && *first == '+') ++first;  // from_chars rejects an explicit plus sign
  if constexpr (std::is_unsigned_v<T>) {
    if (first != last && *first == '-') return false;  // would wrap around
  }
  auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last && first != last;
}

bool parse_double(const std::string& text, double& out) {
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (first != last && *first == '+') ++first;
  auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last && first != last && std::isfinite(out);
}

bool parse_bool(const std::string& text, bool& out) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "true" || lower == "1" || lower == "yes") return out = true, true;
  if (lower == "false" || lower == "0" || lower == "no") return out = false, true;
  return false;
}

// Shortest text that parses back to exactly the same double (C++17 to_chars guarantee), so the
// resolved deck reads "lr = 0.0003" and still round-trips bit for bit.
std::string format_double(double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (ec != std::errc()) MPT_FATAL("cannot format a double");
  return std::string(buffer, end);
}

// Strings are written back as `key = value` lines, so they must survive the INI parser
// unchanged: no comment character, no line breaks, no surrounding blanks.
bool writable_string(const std::string& text) {
  if (text.find('#') != std::string::npos) return false;
  for (unsigned char c : text)
    if (std::iscntrl(c)) return false;
  return text.empty() || (!std::isspace(static_cast<unsigned char>(text.front())) &&
                          !std::isspace(static_cast<unsigned char>(text.back())));
}

template <class S, class T>
KeySpec integer_key(const char* section, const char* name, S Deck::*group, T S::*field, T min,
                    T max = std::numeric_limits<T>::max(), const char* alias = "") {
  const std::string allowed =
      max == std::numeric_limits<T>::max() ? "an integer >= " + std::to_string(min)
      : max == min + 1 ? std::to_string(min) + " or " + std::to_string(max)
                       : "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return KeySpec{section, name, alias, allowed,
                 [=](Deck& deck, const std::string& text) {
                   T value{};
                   const bool parsed = parse_integer(text, value);
                   if (!parsed || value < min || value > max) {
                     // All digits yet unparsable: too large for the field, so say the limit.
                     bool digits = text.find_first_not_of("+-0123456789") == std::string::npos;
                     return "must be " + allowed +
                            (!parsed && digits ? " and at most " + std::to_string(max)
                                               : std::string());
                   }
                   (deck.*group).*field = value;
                   return std::string();
                 },
                 [=](const Deck& deck) { return std::to_string((deck.*group).*field); }};
}

// A range for a double key: the check and the words for it.
struct DoubleRange {
  std::function<bool(double)> ok;
  std::string allowed;
};
DoubleRange positive() { return {[](double v) { return v > 0; }, "a number > 0"}; }
DoubleRange non_negative() { return {[](double v) { return v >= 0; }, "a number >= 0"}; }
DoubleRange unit_interval() {
  return {[](double v) { return v >= 0 && v < 1; }, "a number in [0, 1)"};
}

template <class S>
KeySpec double_key(const char* section, const char* name, S Deck::*group, double S::*field,
                   DoubleRange range, const char* alias = "") {
  return KeySpec{section, name, alias, range.allowed,
                 [=](Deck& deck, const std::string& text) {
                   double value = 0;
                   if (!parse_double(text, value) || !range.ok(value)) {
                     return "must be " + range.allowed;
                   }
                   (deck.*group).*field = value;
                   return std::string();
                 },
                 [=](const Deck& deck) { return format_double((deck.*group).*field); }};
}

template <class S>
KeySpec bool_key(const char* section, const char* name, S Deck::*group, bool S::*field) {
  const std::string allowed = "true or false (also yes/no, 1/0)";
  return KeySpec{section, name, "", allowed,
                 [=](Deck& deck, const std::string& text) {
                   bool value = false;
                   if (!parse_bool(text, value)) return "must be " + allowed;
                   (deck.*group).*field = value;
                   return std::string();
                 },
                 [=](const Deck& deck) {
                   return std::string((deck.*group).*field ? "true" : "false");
                 }};
}

template <class S>
KeySpec string_key(const char* section, const char* name, S Deck::*group, std::string S::*field,
                   bool required, const char* what, const char* alias = "") {
  std::string allowed = (required ? "a non-empty " : "a ") + std::string(what);
  return KeySpec{section, name, alias, allowed,
                 [=](Deck& deck, const std::string& text) {
                   if (required && text.empty()) return "must be " + allowed;
                   if (!writable_string(text)) {
                     return std::string("must not contain '#' or control characters, nor start "
                                        "or end with blanks");
                   }
                   (deck.*group).*field = text;
                   return std::string();
                 },
                 [=](const Deck& deck) { return (deck.*group).*field; }};
}

template <class S>
KeySpec choice_key(const char* section, const char* name, S Deck::*group, std::string S::*field,
                   std::vector<std::string> choices) {
  std::string allowed = "one of ";
  for (size_t i = 0; i < choices.size(); ++i) allowed += (i ? ", " : "") + choices[i];
  return KeySpec{section, name, "", allowed,
                 [=](Deck& deck, const std::string& text) {
                   if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
                     return "must be " + allowed;
                   }
                   (deck.*group).*field = text;
                   return std::string();
                 },
                 [=](const Deck& deck) { return (deck.*group).*field; }};
}

// Every key, in the order the resolved deck prints them.
const std::vector<KeySpec>& key_table() {
  using D = Deck;
  static const std::vector<KeySpec> keys = {
      integer_key("model", "n_layer", &D::model, &ModelConfig::n_layer, 1, int_max, "layers"),
      integer_key("model", "n_head", &D::model, &ModelConfig::n_head, 1, int_max, "heads"),
      integer_key("model", "n_embd", &D::model, &ModelConfig::n_embd, 1, int_max, "embedding"),
      integer_key("model", "seq_len", &D::model, &ModelConfig::seq_len, 1, int_max, "context"),
      integer_key("model", "vocab_size", &D::model, &ModelConfig::vocab_size, 0, int_max, "vocab"),
      integer_key("parallel", "tp", &D::parallel, &ParallelConfig::tp, 1, int_max,
                  "tensor_parallel"),
      integer_key("parallel", "pp", &D::parallel, &ParallelConfig::pp, 1, int_max,
                  "pipeline_parallel"),
      integer_key("parallel", "dp", &D::parallel, &ParallelConfig::dp, 0, int_max, "data_parallel"),
      integer_key("parallel", "micro_batch", &D::parallel, &ParallelConfig::micro_batch, 1),
      double_key("parallel", "bucket_mb", &D::parallel, &ParallelConfig::bucket_mb, positive(),
                 "bucket_size"),
      integer_key("train", "global_batch", &D::train, &TrainConfig::global_batch, 1L, long_max,
                  "batch_size"),
      integer_key("train", "steps", &D::train, &TrainConfig::steps, 0L, long_max, "iterations"),
      integer_key("train", "seed", &D::train, &TrainConfig::seed, uint64_t{0}),
      integer_key("train", "max_bad_steps", &D::train, &TrainConfig::max_bad_steps, 1L),
      double_key("optim", "lr", &D::optim, &OptimConfig::lr, positive(), "learning_rate"),
      double_key("optim", "min_lr", &D::optim, &OptimConfig::min_lr, non_negative(),
                 "min_learning_rate"),
      integer_key("optim", "warmup_steps", &D::optim, &OptimConfig::warmup_steps, 0L, long_max,
                  "warmup"),
      choice_key("optim", "schedule", &D::optim, &OptimConfig::schedule,
                 {"constant", "cosine", "linear"}),
      double_key("optim", "beta1", &D::optim, &OptimConfig::beta1, unit_interval()),
      double_key("optim", "beta2", &D::optim, &OptimConfig::beta2, unit_interval()),
      double_key("optim", "eps", &D::optim, &OptimConfig::eps, positive(), "epsilon"),
      double_key("optim", "weight_decay", &D::optim, &OptimConfig::weight_decay, non_negative()),
      bool_key("optim", "decay_all", &D::optim, &OptimConfig::decay_all),
      double_key("optim", "grad_clip", &D::optim, &OptimConfig::grad_clip, non_negative(),
                 "clip_grad_norm"),
      integer_key("optim", "zero", &D::optim, &OptimConfig::zero, 0, 2, "zero_stage"),
      string_key("data", "train", &D::data, &DataConfig::train, true, "path", "train_file"),
      string_key("data", "val", &D::data, &DataConfig::val, false, "path", "val_file"),
      choice_key("data", "sampler", &D::data, &DataConfig::sampler, {"sequential", "shuffle"}),
      integer_key("data", "val_every", &D::data, &DataConfig::val_every, 0L),
      integer_key("data", "val_batches", &D::data, &DataConfig::val_batches, 1L),
      string_key("checkpoint", "dir", &D::checkpoint, &CheckpointConfig::dir, false, "path",
                 "directory"),
      integer_key("checkpoint", "every", &D::checkpoint, &CheckpointConfig::every, 0L),
      integer_key("checkpoint", "keep", &D::checkpoint, &CheckpointConfig::keep, 0L),
      bool_key("checkpoint", "save_initial", &D::checkpoint, &CheckpointConfig::save_initial),
      string_key("checkpoint", "restart", &D::checkpoint, &CheckpointConfig::restart, true,
                 "value (auto, none, or a checkpoint file)", "resume"),
      string_key("checkpoint", "init", &D::checkpoint, &CheckpointConfig::init, false,
                 "path (a checkpoint whose model starts the run; empty = none)", "initialize"),
      integer_key("log", "every", &D::log, &LogConfig::every, 1L, long_max, "interval"),
      string_key("log", "metrics", &D::log, &LogConfig::metrics, false, "path", "csv"),
      choice_key("device", "backend", &D::device, &DeviceConfig::backend, {"cpu", "cuda", "auto"}),
      integer_key("device", "threads", &D::device, &DeviceConfig::threads, 0, int_max,
                  "num_threads"),
      choice_key("device", "precision", &D::device, &DeviceConfig::precision,
                 {"fp32", "tf32", "bf16"}),
  };
  return keys;
}

const KeySpec* find_key(const std::string& full_name) {
  for (const KeySpec& key : key_table())
    if (key.full() == full_name) return &key;
  return nullptr;
}

// ------------------------------------------------------------------ suggestions

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The nearest key to `name` written under [section] (which may be wrong or empty too), or null
// when nothing is close enough to be a plausible typo. A key in another section costs one more
// edit, so the same section wins ties.
const KeySpec* nearest_key(const std::string& section, const std::string& name) {
  const KeySpec* best = nullptr;
  size_t best_score = std::numeric_limits<size_t>::max();
  for (const KeySpec& key : key_table()) {
    size_t score = edit_distance(name, key.name);
    if (!key.alias.empty()) score = std::min(score, edit_distance(name, key.alias));
    if (key.section != section) score += 1;
    if (score < best_score) best_score = score, best = &key;
  }
  size_t tolerance = std::max<size_t>(2, name.size() / 3);
  return best_score <= tolerance ? best : nullptr;
}

std::string nearest_section(const std::string& section) {
  std::string best;
  size_t best_score = std::numeric_limits<size_t>::max();
  for (const char* candidate : section_names) {
    // A longer spelling of a section ("optimizer", "devices") counts as close.
    bool prefix = !section.empty() && (section.rfind(candidate, 0) == 0 ||
                                       std::string(candidate).rfind(section, 0) == 0);
    size_t score = prefix ? 1 : edit_distance(section, candidate);
    if (score < best_score) best_score = score, best = candidate;
  }
  return best_score <= std::max<size_t>(2, section.size() / 3) ? best : "";
}

std::string section_keys(const std::string& section) {
  std::string list;
  for (const KeySpec& key : key_table())
    if (key.section == section) list += (list.empty() ? "" : ", ") + key.name;
  return list;
}

std::string all_sections() {
  std::string list;
  for (const char* section : section_names)
    list += (list.empty() ? "[" : ", [") + std::string(section) + "]";
  return list;
}

// The message for a name that is not a key: names it and offers the nearest valid one.
std::string unknown_key_message(const std::string& full_name) {
  size_t dot = full_name.find('.');
  if (dot == std::string::npos) {
    const KeySpec* near = nearest_key("", full_name);
    return "key '" + full_name + "' is outside any section (sections are " + all_sections() +
           (near ? "; did you mean " + near->pretty() + "?)" : ")");
  }
  std::string section = full_name.substr(0, dot);
  std::string name = full_name.substr(dot + 1);
  bool known_section = std::any_of(std::begin(section_names), std::end(section_names),
                                   [&](const char* s) { return section == s; });
  if (!known_section) {
    std::string near = nearest_section(section);
    return "unknown section [" + section + "] (key " + name + "; sections are " + all_sections() +
           (near.empty() ? ")" : "; did you mean [" + near + "]?)");
  }
  const KeySpec* near = nearest_key(section, name);
  std::string message = "unknown key [" + section + "] " + name;
  if (near) return message + " (did you mean " + near->pretty() + "?)";
  return message + " (keys in [" + section + "] are " + section_keys(section) + ")";
}

// ------------------------------------------------------------------ parsing

struct Where {
  std::string origin;  // file name, "command line", or what parse_deck_text was told
  int line = 0;        // 0 when unknown
  std::string text() const {
    return line > 0 ? origin + ":" + std::to_string(line) + ": " : origin + ": ";
  }
};

std::string trim(const std::string& s) {
  size_t begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  size_t end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

// A light pass over the deck text that mirrors Boost's INI reader (comments from '#', trimmed
// lines, [section] headers, key = value) only to know the line each key is on, and to reject a
// malformed line with its number; Boost's own message would not say where it is.
std::multimap<std::string, int> key_lines(const std::string& text, const std::string& origin) {
  std::multimap<std::string, int> lines;
  std::istringstream in(text);
  std::string raw;
  std::string prefix;
  for (int number = 1; std::getline(in, raw); ++number) {
    std::string line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    if (line.front() == '[' && line.back() == ']' && line.size() > 2) {
      prefix = line.substr(1, line.size() - 2) + ".";
      continue;
    }
    size_t equals = line.find('=');
    if (equals == std::string::npos || trim(line.substr(0, equals)).empty()) {
      throw InputError(origin + ":" + std::to_string(number) + ": cannot read line '" + line +
                       "' (expected [section] or key = value)");
    }
    lines.emplace(prefix + trim(line.substr(0, equals)), number);
  }
  return lines;
}

// The line of each key in the deck text (key_lines): line(name, k) is the line of its k-th
// occurrence, 0 when there is none.
struct KeyLines {
  std::multimap<std::string, int> lines;
  int line(const std::string& name, int occurrence = 0) const {
    auto [begin, end] = lines.equal_range(name);
    for (auto it = begin; it != end; ++it)
      if (occurrence-- == 0) return it->second;
    return 0;
  }
};

// One value given for a key, and where.
struct Assignment {
  const KeySpec* key;
  std::string value;
  Where where;
};

po::options_description make_description() {
  po::options_description description("mptrain deck keys");
  for (const KeySpec& key : key_table()) {
    description.add_options()(key.full().c_str(), po::value<std::string>(), key.allowed.c_str());
  }
  return description;
}

// Boost reports an unknown command-line option as the whole token ("--a.b=1").
std::string option_name_from_token(std::string token) {
  token.erase(0, token.find_first_not_of('-'));
  return token.substr(0, token.find('='));
}

// "--section.key=" (an empty value, e.g. to clear [checkpoint] dir) is refused by Boost's
// parser, which insists on text after '='; pass it as "--section.key" "" instead.
std::vector<std::string> normalise_overrides(const std::vector<std::string>& overrides) {
  std::vector<std::string> tokens;
  for (size_t i = 0; i < overrides.size(); ++i) {
    const std::string& token = overrides[i];
    // "--key value" is accepted, but a value that is itself an option means the user forgot
    // one: refuse instead of taking "--other.key=x" as the value.
    if (token.rfind("--", 0) == 0 && token.find('=') == std::string::npos &&
        (i + 1 == overrides.size() || overrides[i + 1].rfind("--", 0) == 0))
      throw InputError("command line: " + token + " needs a value (overrides look like " +
                       token + "=value)");
    if (token.size() > 3 && token.rfind("--", 0) == 0 && token.back() == '=' &&
        std::count(token.begin(), token.end(), '=') == 1) {
      tokens.push_back(token.substr(0, token.size() - 1));
      tokens.emplace_back();
    } else {
      tokens.push_back(token);
    }
  }
  return tokens;
}

void check_consistency(const Deck& deck, const std::map<std::string, Where>& set_at,
                       const Where& file) {
  // A cross-key problem is reported where the user last touched one of the two keys.
  auto blame = [&](const char* a, const char* b) {
    auto ia = set_at.find(a);
    auto ib = set_at.find(b);
    if (ia != set_at.end() && ia->second.origin == "command line") return ia->second;
    if (ib != set_at.end() && ib->second.origin == "command line") return ib->second;
    if (ia != set_at.end()) return ia->second;
    if (ib != set_at.end()) return ib->second;
    return file;
  };
  const ModelConfig& m = deck.model;
  if (m.n_embd % m.n_head != 0)
    throw InputError(blame("model.n_embd", "model.n_head").text() + "[model] n_embd = " +
                     std::to_string(m.n_embd) + ": must be a multiple of [model] n_head (" +
                     std::to_string(m.n_head) + ")");
  if (deck.optim.min_lr > deck.optim.lr)
    throw InputError(blame("optim.min_lr", "optim.lr").text() + "[optim] min_lr = " +
                     format_double(deck.optim.min_lr) + ": must be between 0 and [optim] lr (" +
                     format_double(deck.optim.lr) + ")");
  // The CPU backend computes in fp32 only; silently ignoring the request would report fp32
  // results as tf32/bf16 ones. (backend = auto is checked when it is resolved.)
  if (deck.device.backend == "cpu" && deck.device.precision != "fp32")
    throw InputError(blame("device.precision", "device.backend").text() +
                     "[device] precision = " + deck.device.precision +
                     " needs [device] backend = cuda (the CPU backend computes in fp32 only); "
                     "use precision = fp32 with backend = cpu");
  if (deck.data.train.empty())
    throw InputError(file.text() +
                     "[data] train is required: the training token dataset (an HDF5 file made "
                     "by mptrain-prep); set it in the deck or with --data.train=FILE");
}

// The final value of each key, in the order first set: the file's, unless the command line
// overrides it (a later override wins too). A key set twice in the file is an error.
std::vector<Assignment> final_values(const po::parsed_options& from_file,
                                     const po::parsed_options& from_command_line,
                                     const std::string& origin, const KeyLines& lines) {
  const Where command_line{"command line", 0};
  std::vector<Assignment> assignments;
  std::map<std::string, size_t> index;
  std::map<std::string, int> seen_in_file;
  for (const po::option& option : from_file.options) {
    int occurrence = seen_in_file[option.string_key]++;
    Where where{origin, lines.line(option.string_key, occurrence)};
    if (occurrence > 0) {
      throw InputError(where.text() + find_key(option.string_key)->pretty() +
                       " is set more than once (first at line " +
                       std::to_string(lines.line(option.string_key)) + ")");
    }
    index[option.string_key] = assignments.size();
    assignments.push_back({find_key(option.string_key), option.value.at(0), where});
  }
  for (const po::option& option : from_command_line.options) {
    if (option.string_key.empty() || option.position_key >= 0) {
      std::string token = option.original_tokens.empty() ? "" : option.original_tokens[0];
      throw InputError(command_line.text() + "unexpected argument '" + token +
                       "' (overrides look like --section.key=value)");
    }
    Assignment assignment{find_key(option.string_key), option.value.at(0), command_line};
    auto [known, added] = index.try_emplace(option.string_key, assignments.size());
    if (added)
      assignments.push_back(assignment);
    else
      assignments[known->second] = assignment;
  }
  return assignments;
}

}  // namespace

Deck parse_deck_text(const std::string& text, const std::string& origin,
                     const std::vector<std::string>& overrides) {
  const Where file{origin, 0}, command_line{"command line", 0};
  const KeyLines lines{key_lines(text, origin)};
  const po::options_description description = make_description();
  po::parsed_options from_file(&description);
  po::parsed_options from_command_line(&description);
  try {
    std::istringstream in(text);
    from_file = po::parse_config_file(in, description, /*allow_unregistered=*/false);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    throw InputError(Where{origin, lines.line(name)}.text() + unknown_key_message(name));
  } catch (const po::error& e) {
    throw InputError(file.text() + e.what());
  }
  try {
    namespace style = po::command_line_style;
    from_command_line = po::command_line_parser(normalise_overrides(overrides))
                            .options(description)
                            .style(style::allow_long | style::long_allow_adjacent |
                                   style::long_allow_next)
                            .run();
  } catch (const po::unknown_option& e) {
    throw InputError(command_line.text() +
                     unknown_key_message(option_name_from_token(e.get_option_name())));
  } catch (const po::error& e) {
    throw InputError(command_line.text() + e.what() + " (overrides look like --section.key=value)");
  }
  Deck deck;
  std::map<std::string, Where> set_at;
  for (const Assignment& a : final_values(from_file, from_command_line, origin, lines)) {
    if (a.key == nullptr) MPT_FATAL("deck option missing from the key table");
    std::string problem = a.key->set(deck, a.value);
    if (!problem.empty())
      throw InputError(a.where.text() + a.key->pretty() + " = \"" + a.value + "\": " + problem);
    set_at[a.key->full()] = a.where;
  }
  check_consistency(deck, set_at, file);
  return deck;
}

Deck read_deck(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError("cannot open deck file '" + path + "' (it is a directory)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open deck file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError("cannot read deck file '" + path + "'");
  Deck deck = parse_deck_text(text.str(), path, overrides);
  deck.path = path;
  return deck;
}

namespace {

std::string sections_text(const Deck& deck, bool model_only) {
  std::string out;
  std::string current;
  for (const KeySpec& key : key_table()) {
    if (model_only && key.section != "model") continue;
    if (key.section != current) {
      out += (out.empty() ? "[" : "\n[") + key.section + "]\n";
      current = key.section;
    }
    std::string value = key.get(deck);
    out += key.name + (value.empty() ? " =\n" : " = " + value + "\n");
  }
  return out;
}

}  // namespace

std::string Deck::text() const { return sections_text(*this, false); }
std::string Deck::model_text() const { return sections_text(*this, true); }

std::string Deck::value(const std::string& key) const {
  const KeySpec* spec = find_key(key);
  if (spec == nullptr) throw InputError(unknown_key_message(key));
  return spec->get(*this);
}

}  // namespace mptrain
