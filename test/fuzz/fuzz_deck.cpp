// libFuzzer harness for the input-deck parser (test/fuzz_run.sh builds and runs it).
// The input is deck text; when it holds a NUL byte, what follows it is a list of command-line
// overrides, one per line. The contract under test (deck.hpp): any text either parses or throws
// InputError. Anything else -- another exception, a crash, a sanitizer report, a fatal() --
// is a finding. A deck that parses must also survive the round trip its resolved text
// promises: Deck::text() parses back to a deck whose text is the same.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string text = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::istringstream lines(input.substr(nul + 1));
    for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  }
  mptrain::Deck deck;
  try {
    deck = mptrain::parse_deck_text(text, "fuzz.deck", overrides);
  } catch (const mptrain::InputError&) {
    return 0;  // refused: fine
  }
  const std::string resolved = deck.text();
  try {
    const mptrain::Deck again = mptrain::parse_deck_text(resolved, "resolved deck");
    if (again.text() != resolved) {
      std::fprintf(stderr, "fuzz_deck: the resolved deck does not round-trip:\n%s\n---\n%s\n",
                   resolved.c_str(), again.text().c_str());
      std::abort();
    }
  } catch (const mptrain::InputError& e) {
    std::fprintf(stderr, "fuzz_deck: the resolved deck is refused: %s\n---\n%s\n", e.what(),
                 resolved.c_str());
    std::abort();
  }
  return 0;
}
