// The deck's key table and the suggestions for unknown keys (deck_keys.hpp).
#include "io/deck_keys.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "mptrain/core/error.hpp"

namespace mptrain::deck_keys {

const char* const section_names[8] = {"model", "parallel", "train", "optim",
                                      "data",  "checkpoint", "log", "device"};

// ------------------------------------------------------------------ the key table

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

// [parallel] stage_layers: empty, auto, or one positive block count per stage. Whether the
// counts fit pp and n_layer is the layout's check (check_layout, parallel/grid.hpp).
KeySpec stage_layers_key() {
  const std::string allowed = "empty (n_layer / pp blocks per stage), auto, or the blocks of "
                              "each stage as positive integers separated by commas (e.g. 3,5)";
  return KeySpec{"parallel", "stage_layers", "layers_per_stage", allowed,
                 [=](Deck& deck, const std::string& text) {
                   std::vector<int> counts;
                   const bool automatic = text == "auto";
                   for (size_t at = 0; !automatic && !text.empty() && at <= text.size();) {
                     const size_t comma = std::min(text.find(',', at), text.size());
                     std::string item = text.substr(at, comma - at);
                     item.erase(0, item.find_first_not_of(" \t"));
                     item.erase(item.find_last_not_of(" \t") + 1);
                     int count = 0;
                     if (!parse_integer(item, count) || count < 1)
                       return "'" + item + "' is not a positive block count; must be " + allowed;
                     counts.push_back(count);
                     at = comma + 1;
                   }
                   deck.parallel.stage_layers = counts;
                   deck.parallel.stage_layers_auto = automatic;
                   return std::string();
                 },
                 [](const Deck& deck) {
                   std::string text = deck.parallel.stage_layers_auto ? "auto" : "";
                   for (int count : deck.parallel.stage_layers) {
                     if (!text.empty()) text += ',';
                     text += std::to_string(count);
                   }
                   return text;
                 }};
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
      stage_layers_key(),
      integer_key("train", "global_batch", &D::train, &TrainConfig::global_batch, 1L, long_max,
                  "batch_size"),
      integer_key("train", "steps", &D::train, &TrainConfig::steps, 0L, long_max, "iterations"),
      integer_key("train", "seed", &D::train, &TrainConfig::seed, uint64_t{0}),
      integer_key("train", "max_bad_steps", &D::train, &TrainConfig::max_bad_steps, 1L),
      choice_key("train", "recompute", &D::train, &TrainConfig::recompute,
                 {"none", "selective", "full"}),
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

}  // namespace mptrain::deck_keys
