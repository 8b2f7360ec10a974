// Tests of token files made elsewhere (io/token_import.hpp) and of the dataset writers they
// feed (data.hpp): llm.c shards and raw uint16 files are read back token for token, through a
// dataset that refers to them (HDF5 external storage, several files as one dataset) and
// through a copy; each kind of malformed file is refused with a message naming it; a token
// file that is truncated, removed or altered after the import is refused when the dataset is
// loaded; external names relative to the dataset resolve next to it. The streaming writer
// gives the same dataset as one write, splits a validation tail off anywhere, removes an
// unfinished file, and records the tokenizer. One rank (MPI on COMM_SELF for the reader).
#define BOOST_TEST_MODULE token_import
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "io/dataset_format.hpp"
#include "io/h5util.hpp"
#include "mptrain/io/token_import.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/core/error.hpp"

using namespace mptrain;
namespace fs = std::filesystem;

namespace {

fs::path work_dir() {
  const char* workdir = std::getenv("TEST_WORKDIR");
  fs::path dir =
      fs::path(workdir != nullptr ? workdir : fs::temp_directory_path().string()) / "import";
  fs::create_directories(dir);
  return dir;
}

std::string file(const std::string& name) { return (work_dir() / name).string(); }

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

// An llm.c shard: header (magic, version, count; the rest zero) and uint16 tokens.
std::string llmc_bytes(const std::vector<int32_t>& tokens, int32_t magic = llmc_magic,
                       int32_t version = 1, int64_t count = -1) {
  std::string out;
  put_le(out, static_cast<uint32_t>(magic), 4);
  put_le(out, static_cast<uint32_t>(version), 4);
  put_le(out, static_cast<uint32_t>(count < 0 ? static_cast<int64_t>(tokens.size()) : count), 4);
  out.resize(llmc_header_bytes, '\0');
  for (int32_t t : tokens) put_le(out, static_cast<uint32_t>(t), 2);
  return out;
}

std::string raw_bytes(const std::vector<int32_t>& tokens) {
  std::string out;
  for (int32_t t : tokens) put_le(out, static_cast<uint32_t>(t), 2);
  return out;
}

std::string write(const std::string& name, const std::string& bytes) {
  std::ofstream(file(name), std::ios::binary | std::ios::trunc) << bytes;
  return file(name);
}

std::vector<int32_t> ramp(size_t n, int32_t start, int32_t modulus) {
  std::vector<int32_t> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<int32_t>((start + static_cast<int64_t>(i) * 7919) % modulus);
  return out;
}

std::vector<int32_t> load(const std::string& path) {
  const TokenDataset d = TokenDataset::open(Comm::self(), path);
  std::vector<int32_t> tokens(d.size());
  d.read(0, tokens);
  return tokens;
}

std::string input_error(const std::function<void()>& run) {
  try {
    run();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::function<void()>& run, const std::vector<std::string>& fragments) {
  const std::string message = input_error(run);
  BOOST_TEST_CONTEXT("message '" << message << "'") {
    BOOST_TEST(!message.empty());
    for (const std::string& f : fragments)
      BOOST_TEST(message.find(f) != std::string::npos, "lacks '" << f << "'");
  }
}

int external_files(const std::string& path) {
  h5::File f = h5::open_file(path, H5F_ACC_RDONLY);
  h5::Dataset ds(h5::check(H5Dopen2(f, "/tokens", H5P_DEFAULT), "open"));
  h5::PropList dcpl(h5::check(H5Dget_create_plist(ds), "dcpl"));
  return H5Pget_external_count(dcpl);
}

}  // namespace

BOOST_AUTO_TEST_CASE(llmc_shards_become_one_external_dataset) {
  const std::vector<int32_t> a = ramp(3000, 1, 50257), b = ramp(1234, 5, 50257);
  const std::string shard_a = write("a.bin", llmc_bytes(a)),
                    shard_b = write("b.bin", llmc_bytes(b));
  const TokenSegment sa = inspect_token_file(shard_a, TokenFileFormat::llmc, llmc_vocab_size);
  BOOST_TEST(sa.offset == llmc_header_bytes);
  BOOST_TEST(sa.count == a.size());
  const std::vector<TokenSegment> segments{
      sa, inspect_token_file(shard_b, TokenFileFormat::llmc, 50257)};
  const std::string out = file("llmc.h5");
  write_external_token_dataset(out, segments, 50257, {"gpt2", "fnv1a64:0123"});
  std::vector<int32_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  BOOST_TEST(load(out) == both, boost::test_tools::per_element());
  BOOST_TEST(external_files(out) == 2);
  BOOST_TEST(fs::file_size(out) < 8192u);  // the tokens were not copied
  const TokenDataset d = TokenDataset::open(Comm::self(), out);
  BOOST_TEST(d.vocab_size() == 50257);
  BOOST_TEST(d.tokenizer().name == "gpt2");
  BOOST_TEST(d.tokenizer().vocab == "fnv1a64:0123");

  // The same through a copy.
  TokenDatasetWriter copy(file("copy.h5"), 50257, {"gpt2", ""});
  read_segments(segments, [&](std::span<const int32_t> t) { copy.append(t); });
  copy.finish();
  BOOST_TEST(load(file("copy.h5")) == both, boost::test_tools::per_element());
  BOOST_TEST(external_files(file("copy.h5")) == 0);
}

BOOST_AUTO_TEST_CASE(segments_split_anywhere) {
  const std::vector<int32_t> a = ramp(10, 0, 1000), b = ramp(7, 3, 1000);
  const std::vector<TokenSegment> segments{
      inspect_token_file(write("ra.u16", raw_bytes(a)), TokenFileFormat::raw_u16, 1000),
      inspect_token_file(write("rb.u16", raw_bytes(b)), TokenFileFormat::raw_u16, 1000)};
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  for (uint64_t at : {0, 1, 9, 10, 11, 16, 17}) {
    const auto [head, tail] = split_segments(segments, at);
    std::vector<int32_t> first, second;
    read_segments(
        head, [&](std::span<const int32_t> t) { first.insert(first.end(), t.begin(), t.end()); });
    read_segments(
        tail, [&](std::span<const int32_t> t) { second.insert(second.end(), t.begin(), t.end()); });
    BOOST_TEST(first == std::vector<int32_t>(all.begin(), all.begin() + static_cast<long>(at)));
    BOOST_TEST(second == std::vector<int32_t>(all.begin() + static_cast<long>(at), all.end()));
    if (at > 0 && at < all.size()) {
      write_external_token_dataset(file("head.h5"), head, 1000, {});
      write_external_token_dataset(file("tail.h5"), tail, 1000, {});
      BOOST_TEST(load(file("head.h5")) == first);
      BOOST_TEST(load(file("tail.h5")) == second);
    }
  }
}

BOOST_AUTO_TEST_CASE(malformed_token_files_are_refused) {
  const std::vector<int32_t> ok = ramp(100, 0, 50257);
  auto refuse = [](const std::string& path, TokenFileFormat format, int vocab,
                   std::vector<std::string> fragments) {
    fragments.push_back(path);
    expect_error([&] { inspect_token_file(path, format, vocab); }, fragments);
  };
  refuse(write("magic.bin", llmc_bytes(ok, 20240521)), TokenFileFormat::llmc, 50257,
         {"magic number 20240521, not 20240520"});
  refuse(write("model.bin", llmc_bytes(ok, 20240326)), TokenFileFormat::llmc, 50257,
         {"llm.c model file"});
  refuse(write("version.bin", llmc_bytes(ok, llmc_magic, 2)), TokenFileFormat::llmc, 50257,
         {"version 2", "only version 1"});
  std::string truncated = llmc_bytes(ok);
  truncated.resize(truncated.size() - 2);
  refuse(write("truncated.bin", truncated), TokenFileFormat::llmc, 50257,
         {"header says 100 tokens", "198 bytes after the header (99 tokens)"});
  refuse(write("count.bin", llmc_bytes(ok, llmc_magic, 1, 101)), TokenFileFormat::llmc, 50257,
         {"header says 101 tokens"});
  refuse(write("negative.bin", llmc_bytes(ok, llmc_magic, 1, 0xFFFFFFFF)), TokenFileFormat::llmc,
         50257, {"header says -1 tokens"});
  refuse(write("short.bin", std::string(100, '\0')), TokenFileFormat::llmc, 50257,
         {"holds 100 bytes, fewer than llm.c's 1024-byte header"});
  std::vector<int32_t> big = ok;
  big[5] = 50257;
  refuse(write("big.bin", llmc_bytes(big)), TokenFileFormat::llmc, 50257,
         {"token 50257 at index 5 (byte offset 1034)", "vocabulary size 50257"});
  refuse(write("odd.u16", raw_bytes(ok) + "x"), TokenFileFormat::raw_u16, 50257,
         {"odd number of bytes (201)"});
  refuse(write("raw.u16", raw_bytes(ok)), TokenFileFormat::raw_u16, 1000,
         {"not below the vocabulary size 1000"});
  refuse(work_dir().string(), TokenFileFormat::raw_u16, 50257, {"is a directory"});
  refuse(file("missing.bin"), TokenFileFormat::llmc, 50257, {"cannot read"});
  BOOST_TEST(input_error([] { parse_token_file_format("npy"); }).find("unknown format") !=
             std::string::npos);
  // An empty raw file is well formed (no tokens); a dataset of no tokens is not.
  const std::string empty = write("empty.u16", "");
  const TokenSegment none = inspect_token_file(empty, TokenFileFormat::raw_u16, 10);
  BOOST_TEST(none.count == 0u);
  expect_error(
      [&] {
        write_external_token_dataset(file("none.h5"), std::vector<TokenSegment>{none}, 10, {});
      },
      {"no tokens"});
}

BOOST_AUTO_TEST_CASE(token_files_changed_after_import_are_refused) {
  const std::vector<int32_t> tokens = ramp(500, 0, 50257);
  const std::string shard = write("later.bin", llmc_bytes(tokens));
  const std::string out = file("later.h5");
  write_external_token_dataset(
      out, std::vector<TokenSegment>{inspect_token_file(shard, TokenFileFormat::llmc, 50257)},
      50257, {});
  BOOST_TEST(load(out) == tokens);
  // A token beyond the vocabulary: the reader's range check.
  std::string altered = llmc_bytes(tokens);
  altered[llmc_header_bytes + 2 * 7] = '\xff';
  altered[llmc_header_bytes + 2 * 7 + 1] = '\xff';
  write("later.bin", altered);
  expect_error([&] { load(out); }, {out, "token 65535 at index 7"});
  // Truncated: HDF5 would read zeros past the end; the reader refuses first.
  std::string shorter = llmc_bytes(tokens);
  shorter.resize(shorter.size() - 10);
  write("later.bin", shorter);
  expect_error([&] { load(out); },
               {out, "later.bin", "holds 2014 bytes", "[1024, 2024) are needed"});
  fs::remove(shard);
  expect_error([&] { load(out); }, {out, "later.bin", "is missing"});
}

BOOST_AUTO_TEST_CASE(relative_external_names_resolve_next_to_the_dataset) {
  // As another tool may write it: the token file named relatively, next to the dataset.
  fs::create_directories(work_dir() / "sub");
  const std::vector<int32_t> tokens = ramp(64, 2, 300);
  write("sub/rel.u16", raw_bytes(tokens));
  const std::string out = file("sub/rel.h5");
  {
    h5::File f = h5::create_file(out);
    h5::PropList dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dcpl"));
    h5::check(H5Pset_external(dcpl, "rel.u16", 0, 2 * tokens.size()), "external");
    const hsize_t n = tokens.size();
    h5::Dataspace space(h5::check(H5Screate_simple(1, &n, nullptr), "space"));
    h5::Dataset ds(h5::check(
        H5Dcreate2(f, "/tokens", H5T_STD_U16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "ds"));
    h5::write_int_attr(ds, "vocab_size", 300);
  }
  const fs::path cwd = fs::current_path();
  fs::current_path(fs::temp_directory_path());  // anywhere but next to the file
  std::vector<int32_t> loaded;
  const std::string message = input_error([&] { loaded = load(out); });
  fs::current_path(cwd);
  BOOST_TEST(message.empty(), message);
  BOOST_TEST(loaded == tokens);
  BOOST_TEST(TokenDataset::open(Comm::self(), out).tokenizer().name == "unknown");
}

BOOST_AUTO_TEST_CASE(streaming_writer_matches_one_write_and_splits_anywhere) {
  // 2.5 chunks of tokens appended in uneven pieces, then tails split off at several sizes:
  // inside the unwritten buffer, across it into written chunks, and whole chunks.
  const size_t chunk = dataset_format::chunk_tokens;
  const std::vector<int32_t> tokens = ramp(chunk * 5 / 2, 0, 70001);
  for (size_t tail : {size_t{3}, chunk / 2 + 10, chunk + 1, size_t{2} * chunk}) {
    BOOST_TEST_CONTEXT("tail of " << tail << " tokens") {
      TokenDatasetWriter writer(file("stream.h5"), 70001, {"bytes", ""});
      for (size_t at = 0, step = 1; at < tokens.size(); at += step, step = step * 3 + 1) {
        const size_t n = std::min(step, tokens.size() - at);
        writer.append(std::span<const int32_t>(tokens).subspan(at, n));
      }
      BOOST_TEST(writer.size() == tokens.size());
      writer.split_tail(file("tail.h5"), tail);
      BOOST_TEST(writer.size() == tokens.size() - tail);
      writer.finish();
      const size_t head = tokens.size() - tail;
      BOOST_TEST((load(file("stream.h5")) ==
                  std::vector<int32_t>(tokens.begin(), tokens.begin() + static_cast<long>(head))));
      BOOST_TEST((load(file("tail.h5")) ==
                  std::vector<int32_t>(tokens.begin() + static_cast<long>(head), tokens.end())));
      BOOST_TEST(TokenDataset::open(Comm::self(), file("tail.h5")).tokenizer().name == "bytes");
    }
  }
  // A small dataset gets one chunk of its own size (no 64 Ki-token padding on disk).
  write_token_dataset(file("small.h5"), ramp(100, 0, 256), 256);
  BOOST_TEST(fs::file_size(file("small.h5")) < 8192u);
}

BOOST_AUTO_TEST_CASE(unfinished_writer_leaves_no_file) {
  const std::string path = file("unfinished.h5");
  {
    TokenDatasetWriter writer(path, 256, {});
    writer.append(ramp(10, 0, 256));
    BOOST_TEST(fs::exists(path));
    expect_error(
        [&] {
          writer.append(std::vector<int32_t>{1, 2, 256});
        },
        {path, "token 256 at index 12"});
  }
  BOOST_TEST(!fs::exists(path));
}
