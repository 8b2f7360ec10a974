// mptrain-prep: turns text files, or token files made by other tools, into token datasets for
// mptrain (doc/DESIGN.md §4, §7).
//
//   mptrain-prep [--tokenizer=bytes|gpt2 [--encoder=F --merges=F] [--no-eot]] -o OUT.h5
//                [--val-output VAL.h5 [--val-fraction 0.1]] TEXT...
//   mptrain-prep --import=llmc|raw-u16 [--vocab-size=V] [--copy] -o OUT.h5 [--val-output ...]
//   FILE...
//
// Tokenizers: bytes (the default; vocabulary 256: every byte of every file) or gpt2 (GPT-2's
// byte-level BPE, io/gpt2_tokenizer.hpp; each file is one document, followed by
// <|endoftext|> unless --no-eot). Text is streamed: memory does not grow with the corpus.
// With --val-output the last --val-fraction of the tokens (default 0.1) become a separate
// validation dataset, so training and validation never share text. Imported token files are
// checked completely, then referred to, not copied (HDF5 external storage), unless --copy.
// The datasets record the tokenizer (attributes `tokenizer`, `tokenizer_vocab`).
//
// It runs as one ordinary process (no MPI calls; datasets are written with HDF5's serial
// driver; the GPT-2 tokenizer uses OpenMP threads, --threads or OMP_NUM_THREADS). Mistakes
// print one line and exit with status 2, like every mptrain program's input errors; a failed
// run leaves no output file behind (src/programs/program.hpp: "mptrain-prep: error: ...").
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "mptrain/io/gpt2_tokenizer.hpp"
#include "mptrain/io/token_import.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/core/error.hpp"
#include "programs/program.hpp"

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
  std::string tokenizer;  // "" = not given
  std::string encoder, merges;
  bool no_eot = false;
  int threads = 0;
  std::string import_format;
  int vocab_size = 0;
  bool copy = false;
};

const char* const usage =
    "usage: mptrain-prep [--tokenizer=bytes|gpt2 [--encoder=FILE --merges=FILE] [--no-eot]]\n"
    "                    -o TRAIN.h5 [--val-output VAL.h5 [--val-fraction F]] TEXT...\n"
    "       mptrain-prep --import=llmc|raw-u16 [--vocab-size=V] [--copy]\n"
    "                    -o TRAIN.h5 [--val-output VAL.h5 [--val-fraction F]] FILE...";

po::options_description visible_options(Options& options) {
  po::options_description visible("options");
  // clang-format off
  visible.add_options()
      ("help,h", "print this help and exit")
      ("output,o", po::value<std::string>(&options.output)->value_name("FILE"),
       "training dataset to write (required)")
      ("val-output", po::value<std::string>(&options.val_output)->value_name("FILE"),
       "also write a validation dataset from the last part of the tokens")
      ("val-fraction", po::value<double>(&options.val_fraction)->value_name("F"),
       "fraction of the tokens, taken from the end, for validation (default 0.1; "
       "needs --val-output)")
      ("tokenizer", po::value<std::string>(&options.tokenizer)->value_name("NAME"),
       "bytes (default: one token per byte, vocab_size 256) or gpt2 (GPT-2's BPE, "
       "vocab_size 50257); with --import, the tokenizer to record (llmc: gpt2)")
      ("encoder", po::value<std::string>(&options.encoder)->value_name("FILE"),
       "GPT-2's encoder.json (default: the copy installed with mptrain, or "
       "$MPTRAIN_GPT2_DIR/encoder.json)")
      ("merges", po::value<std::string>(&options.merges)->value_name("FILE"),
       "GPT-2's vocab.bpe (default: as --encoder)")
      ("no-eot", po::bool_switch(&options.no_eot),
       "gpt2: do not write <|endoftext|> after each file")
      ("threads", po::value<int>(&options.threads)->value_name("N"),
       "gpt2: tokenizer threads (default: OMP_NUM_THREADS, else all cores)")
      ("import", po::value<std::string>(&options.import_format)->value_name("FORMAT"),
       "read token files instead of text: llmc (llm.c shards) or raw-u16 (bare "
       "little-endian uint16 tokens, as nanoGPT writes them)")
      ("vocab-size", po::value<int>(&options.vocab_size)->value_name("V"),
       "--import: the vocabulary size (llmc: 50257 unless given; raw-u16: required)")
      ("copy", po::bool_switch(&options.copy),
       "--import: copy the tokens into the dataset (checksummed, self-contained) instead of "
       "referring to the token files");
  // clang-format on
  return visible;
}

void check_combinations(const po::variables_map& vm, const Options& o) {
  const bool importing = vm.count("import") > 0;
  const bool gpt2 = o.tokenizer == "gpt2";
  if (!o.tokenizer.empty() && o.tokenizer != "bytes" && o.tokenizer != "gpt2") {
    throw InputError("--tokenizer=" + o.tokenizer + ": unknown tokenizer (bytes or gpt2)");
  }
  for (const char* name : {"encoder", "merges", "no-eot", "threads"}) {
    const bool given = std::string(name) == "no-eot" ? o.no_eot : vm.count(name) > 0;
    if (given && (!gpt2 || importing)) {
      throw InputError(std::string("--") + name + " applies to --tokenizer=gpt2 on text files" +
                       (importing ? ", not to --import" : ""));
    }
  }
  if (!importing && vm.count("vocab-size"))
    throw InputError("--vocab-size applies to --import only");
  if (!importing && o.copy) throw InputError("--copy applies to --import only");
  if (vm.count("threads") && o.threads < 0) throw InputError("--threads must be >= 0");
}

void check_paths(const Options& o) {
  std::error_code ec;
  if (!o.val_output.empty() &&
      (o.val_output == o.output || std::filesystem::equivalent(o.val_output, o.output, ec))) {
    throw InputError("--val-output and --output name the same file '" + o.output + "'");
  }
  for (const std::string& input : o.inputs) {
    for (const std::string* out : {&o.output, &o.val_output}) {
      if (!out->empty() && (input == *out || std::filesystem::equivalent(input, *out, ec))) {
        throw InputError("'" + input +
                         "' is both an input and an output; writing would destroy it");
      }
    }
  }
}

// Returns false when only help was asked for. Throws InputError for any mistake.
bool parse_arguments(const std::vector<std::string>& args, Options& options) {
  po::options_description visible = visible_options(options);
  po::options_description all;
  all.add(visible).add_options()("input", po::value<std::vector<std::string>>(&options.inputs),
                                 "input files");
  po::positional_options_description positional;
  positional.add("input", -1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + "\n" + usage);
  }
  if (vm.count("help")) {
    std::cout << usage << "\n\n"
              << "Writes token datasets for mptrain: text tokenized as bytes (vocab_size 256)\n"
              << "or with GPT-2's BPE (each file one document), or token files made by\n"
              << "llm.c or nanoGPT; the files are concatenated in the order given.\n\n"
              << visible;
    return false;
  }
  if (options.inputs.empty()) throw InputError(std::string("no input files\n") + usage);
  if (options.output.empty()) {
    throw InputError(std::string("-o/--output FILE is required\n") + usage);
  }
  if (vm.count("val-fraction") && options.val_output.empty()) {
    throw InputError("--val-fraction needs --val-output FILE (where the validation tokens go)");
  }
  if (!options.val_output.empty() && !(options.val_fraction > 0.0 && options.val_fraction < 1.0)) {
    throw InputError("--val-fraction " + format_number(options.val_fraction) +
                     ": must be a number strictly between 0 and 1");
  }
  check_combinations(vm, options);
  check_paths(options);
  return true;
}

// The number of validation tokens out of `total`; throws when the split leaves a side empty.
uint64_t validation_tokens(const Options& o, uint64_t total) {
  if (o.val_output.empty()) return 0;
  const auto n_val =
      static_cast<uint64_t>(std::llround(static_cast<double>(total) * o.val_fraction));
  if (n_val == 0 || n_val >= total) {
    throw InputError("--val-fraction " + format_number(o.val_fraction) + " of " +
                     std::to_string(total) + " tokens leaves " +
                     (n_val == 0 ? "no validation" : "no training") +
                     " tokens; give more text or another fraction");
  }
  return n_val;
}

std::ifstream open_text(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw InputError("cannot read '" + path + "': it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read '" + path + "': " + std::strerror(errno));
  return in;
}

// Appends every byte of `in` to `writer` as a token id in [0, 256); returns the byte count.
uint64_t append_bytes(std::ifstream& in, const std::string& path,
                      mptrain::TokenDatasetWriter& writer) {
  std::vector<char> buffer(1 << 20);
  std::vector<int32_t> tokens;
  uint64_t total = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    tokens.resize(got);
    for (size_t i = 0; i < got; ++i) tokens[i] = static_cast<unsigned char>(buffer[i]);
    writer.append(tokens);
    total += got;
  }
  if (in.bad()) throw InputError("error while reading '" + path + "'");
  return total;
}

struct Summary {
  size_t files = 0;
  uint64_t bytes = 0, train = 0, val = 0;
  std::string tokenizer;
  int vocab_size = 0;
  double seconds = 0;
};

void print_summary(const Options& o, const Summary& s, const char* what) {
  std::printf("mptrain-prep: %zu file%s, %llu %s -> %s: %llu train tokens", s.files,
              s.files == 1 ? "" : "s", static_cast<unsigned long long>(s.bytes), what,
              o.output.c_str(), static_cast<unsigned long long>(s.train));
  if (s.val > 0)
    std::printf(", %s: %llu val tokens", o.val_output.c_str(),
                static_cast<unsigned long long>(s.val));
  std::printf(" (tokenizer %s, vocab_size %d", s.tokenizer.c_str(), s.vocab_size);
  if (s.seconds > 0)
    std::printf("; %.1f s, %.1f MB/s", s.seconds, static_cast<double>(s.bytes) / s.seconds / 1e6);
  std::printf(")\n");
}

int run_text(const Options& o) {
  std::optional<mptrain::Gpt2Tokenizer> gpt2;
  mptrain::TokenizerInfo info{"bytes", ""};
  int vocab = byte_vocab;
  int32_t eot = -1;
  if (o.tokenizer == "gpt2") {
    const std::string encoder =
        o.encoder.empty() ? mptrain::gpt2_default_file("encoder.json") : o.encoder;
    const std::string merges =
        o.merges.empty() ? mptrain::gpt2_default_file("vocab.bpe") : o.merges;
    gpt2 = mptrain::Gpt2Tokenizer::load(encoder, merges);
    vocab = gpt2->vocab().size();
    info = {"gpt2", gpt2->vocab().fingerprint()};
    eot = gpt2->vocab().end_of_text();
    if (eot < 0 && !o.no_eot) {
      throw InputError(
          "the encoder has no <|endoftext|> token to end each file with; give --no-eot");
    }
  }
  mptrain::TokenDatasetWriter writer(o.output, vocab, info);
  std::optional<mptrain::Gpt2StreamEncoder> stream;
  if (gpt2) stream.emplace(*gpt2, mptrain::Gpt2StreamEncoder::Options{size_t{1} << 20, o.threads});
  Summary s{o.inputs.size(), 0, 0, 0, info.name, vocab, 0};
  const auto started = std::chrono::steady_clock::now();  // reading, tokenizing and writing
  for (const std::string& path : o.inputs) {
    std::ifstream in = open_text(path);
    if (!stream) {
      s.bytes += append_bytes(in, path, writer);
      continue;
    }
    s.bytes +=
        stream->encode(in, path, [&writer](std::span<const int32_t> ids) { writer.append(ids); });
    if (!o.no_eot) writer.append(std::span<const int32_t>(&eot, 1));
  }
  if (s.bytes == 0) throw InputError("the input files hold no bytes at all; nothing to write");
  if (gpt2)
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  s.val = validation_tokens(o, writer.size());
  if (s.val > 0) writer.split_tail(o.val_output, s.val);
  s.train = writer.size();
  writer.finish();
  print_summary(o, s, "bytes");
  return mptrain::exit_ok;
}

int run_import(const Options& o) {
  const mptrain::TokenFileFormat format = mptrain::parse_token_file_format(o.import_format);
  int vocab = o.vocab_size;
  if (vocab == 0) {
    if (format != mptrain::TokenFileFormat::llmc)
      throw InputError("--import=raw-u16 needs --vocab-size=V");
    vocab = mptrain::llmc_vocab_size;
  }
  if (vocab < 1 || vocab > 65536) {
    throw InputError("--vocab-size " + std::to_string(vocab) +
                     ": uint16 tokens need a size in [1, 65536]");
  }
  mptrain::TokenizerInfo info;  // "unknown" unless said or known
  const std::string name = !o.tokenizer.empty()                       ? o.tokenizer
                           : format == mptrain::TokenFileFormat::llmc ? "gpt2"
                                                                      : "";
  if (name == "gpt2") info = {"gpt2", mptrain::gpt2_vocab_fingerprint};
  if (name == "bytes") info = {"bytes", ""};

  std::vector<mptrain::TokenSegment> segments;
  uint64_t total = 0;
  for (const std::string& path : o.inputs) {
    segments.push_back(mptrain::inspect_token_file(path, format, vocab));
    total += segments.back().count;
  }
  if (total == 0) throw InputError("the token files hold no tokens at all; nothing to write");
  const uint64_t n_val = validation_tokens(o, total);
  const auto [train, val] = mptrain::split_segments(segments, total - n_val);
  auto write = [&](const std::string& path, const std::vector<mptrain::TokenSegment>& part) {
    if (!o.copy) return mptrain::write_external_token_dataset(path, part, vocab, info);
    mptrain::TokenDatasetWriter writer(path, vocab, info);
    mptrain::read_segments(part,
                           [&writer](std::span<const int32_t> tokens) { writer.append(tokens); });
    writer.finish();
  };
  write(o.output, train);
  if (n_val > 0) write(o.val_output, val);
  Summary s{o.inputs.size(), total, total - n_val, n_val, info.name, vocab, 0};
  print_summary(o, s, o.copy ? "tokens copied" : "tokens (left in place)");
  return mptrain::exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  const mptrain::Program program{"mptrain-prep", mptrain::Program::Mpi::none};
  return mptrain::run_program(program, argc, argv, [](const std::vector<std::string>& args) {
    Options options;
    if (!parse_arguments(args, options)) return int(mptrain::exit_ok);  // only --help
    return options.import_format.empty() ? run_text(options) : run_import(options);
  });
}
