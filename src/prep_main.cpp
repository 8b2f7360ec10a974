// mptrain-prep: turns text files into token datasets for mptrain (DESIGN §4). Tokens are bytes
// (vocabulary 256): every byte of every input file, files concatenated in the order given. With
// --val-output the last --val-fraction of those bytes (default 0.1) become a separate
// validation dataset, so training and validation never share text.
//
//   mptrain-prep -o train.h5 [--val-output val.h5 [--val-fraction 0.1]] TEXT...
//
// It runs as one ordinary process (no MPI calls; datasets are written with HDF5's serial
// driver). Mistakes (no or unreadable input, empty input, a bad fraction, an unwritable output)
// print one line and exit with status 2, like every mptrain program's input errors.
#include <boost/program_options.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "mptrain/data.hpp"
#include "mptrain/error.hpp"

namespace po = boost::program_options;
using mptrain::InputError;

namespace {

constexpr int byte_vocab = 256;

std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

struct Options {
  std::string output;
  std::string val_output;
  double val_fraction = 0.1;
  std::vector<std::string> inputs;
};

const char* const usage =
    "usage: mptrain-prep -o TRAIN.h5 [--val-output VAL.h5 [--val-fraction F]] TEXT...";

// Returns false when only help was asked for. Throws InputError for any mistake.
bool parse_arguments(int argc, char** argv, Options& options) {
  po::options_description visible("options");
  // clang-format off
  visible.add_options()
      ("help,h", "print this help and exit")
      ("output,o", po::value<std::string>(&options.output)->value_name("FILE"),
       "training dataset to write (required)")
      ("val-output", po::value<std::string>(&options.val_output)->value_name("FILE"),
       "also write a validation dataset from the last part of the text")
      ("val-fraction", po::value<double>(&options.val_fraction)->value_name("F"),
       "fraction of the bytes, taken from the end, for validation (default 0.1; "
       "needs --val-output)");
  // clang-format on
  po::options_description all;
  all.add(visible).add_options()("input", po::value<std::vector<std::string>>(&options.inputs),
                                 "text files");
  po::positional_options_description positional;
  positional.add("input", -1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + "\n" + usage);
  }
  if (vm.count("help")) {
    std::cout << usage << "\n\n"
              << "Writes byte-level token datasets (vocab_size 256) for mptrain: each byte of\n"
              << "each TEXT file, the files concatenated in the order given.\n\n"
              << visible;
    return false;
  }
  if (options.inputs.empty()) throw InputError(std::string("no input text files\n") + usage);
  if (options.output.empty()) {
    throw InputError(std::string("-o/--output FILE is required\n") + usage);
  }
  if (vm.count("val-fraction") && options.val_output.empty()) {
    throw InputError("--val-fraction needs --val-output FILE (where the validation tokens go)");
  }
  if (!options.val_output.empty()) {
    if (!(options.val_fraction > 0.0 && options.val_fraction < 1.0)) {
      throw InputError("--val-fraction " + format_number(options.val_fraction) +
                       ": must be a number strictly between 0 and 1");
    }
    std::error_code ec;
    if (options.val_output == options.output ||
        std::filesystem::equivalent(options.val_output, options.output, ec)) {
      throw InputError("--val-output and --output name the same file '" + options.output + "'");
    }
  }
  return true;
}

// Appends every byte of `path` to `tokens` as a token id in [0, 256).
void append_bytes(const std::string& path, std::vector<int32_t>& tokens) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw InputError("cannot read '" + path + "': it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read '" + path + "': " + std::strerror(errno));
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    for (std::streamsize i = 0; i < got; ++i) {
      tokens.push_back(static_cast<unsigned char>(buffer[static_cast<size_t>(i)]));
    }
  }
  if (in.bad()) throw InputError("error while reading '" + path + "'");
}

int run(int argc, char** argv) {
  Options options;
  if (!parse_arguments(argc, argv, options)) return mptrain::exit_ok;

  std::vector<int32_t> tokens;
  for (const std::string& path : options.inputs) append_bytes(path, tokens);
  if (tokens.empty()) {
    throw InputError("the input files hold no bytes at all; nothing to write");
  }

  size_t n_val = 0;
  if (!options.val_output.empty()) {
    const double wanted = static_cast<double>(tokens.size()) * options.val_fraction;
    n_val = static_cast<size_t>(std::llround(wanted));
    if (n_val == 0 || n_val >= tokens.size()) {
      throw InputError("--val-fraction " + format_number(options.val_fraction) + " of " +
                       std::to_string(tokens.size()) + " bytes leaves " +
                       (n_val == 0 ? "no validation" : "no training") +
                       " tokens; give more text or another fraction");
    }
  }
  const size_t n_train = tokens.size() - n_val;
  std::span<const int32_t> all(tokens);
  mptrain::write_token_dataset(options.output, all.first(n_train), byte_vocab);
  if (n_val > 0) {
    mptrain::write_token_dataset(options.val_output, all.subspan(n_train), byte_vocab);
  }

  std::printf("mptrain-prep: %zu file%s, %zu bytes -> %s: %zu train tokens", options.inputs.size(),
              options.inputs.size() == 1 ? "" : "s", tokens.size(), options.output.c_str(),
              n_train);
  if (n_val > 0) std::printf(", %s: %zu val tokens", options.val_output.c_str(), n_val);
  std::printf(" (vocab_size %d)\n", byte_vocab);
  return mptrain::exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const InputError& e) {
    std::fprintf(stderr, "mptrain-prep: %s\n", e.what());
    return e.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mptrain-prep: internal error: %s\n", e.what());
    return mptrain::exit_internal;
  }
}
