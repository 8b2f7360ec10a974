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

#include "io/deck_keys.hpp"
#include "mptrain/core/error.hpp"

namespace po = boost::program_options;

namespace mptrain {
namespace {

using deck_keys::KeySpec;
using deck_keys::find_key;
using deck_keys::format_double;
using deck_keys::key_table;
using deck_keys::section_names;
using deck_keys::unknown_key_message;

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
