// Internal to the deck module (deck.cpp, deck_keys.cpp): the table that describes every deck
// key once -- section, name, allowed values, how to parse it into the Deck and print it back --
// and the suggestions an unknown key gets. deck.cpp builds the Boost.Program_options
// description and the resolved INI text from it. Nothing here is part of the public interface.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"

namespace mptrain::deck_keys {

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

// The deck's sections, in the order the resolved deck prints them.
extern const char* const section_names[8];

// Every key, in print order.
const std::vector<KeySpec>& key_table();
// The key "section.name", or null.
const KeySpec* find_key(const std::string& full_name);
// "unknown key [s] n" with the nearest known key or section, for an error message.
std::string unknown_key_message(const std::string& full_name);
// A double as the resolved deck prints it (shortest text that parses back to the same value).
std::string format_double(double value);

}  // namespace mptrain::deck_keys
