// Tests of token datasets and the sequential sampler (data.hpp). A dataset written by
// write_token_dataset reads back identically (uint16 and int32 storage, with the checksum
// filter on), over any range, across chunk and external-file boundaries, with each rank
// reading different ranges a different number of times (reads are independent); the sampler's
// spans, rows and targets match positions worked out by hand from doc/DESIGN.md §4, including the wrap
// to 0 and the split of rows over DP ranks; each kind of bad dataset is refused at open with an
// InputError naming the file and the problem; and a bad token or a damaged chunk fails exactly
// the reads that touch it. Runs on any number of ranks (rank 0 writes the files, everyone opens
// them collectively; test/data_reads.sh runs it on 3).
#define BOOST_TEST_MODULE data
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "io/dataset_format.hpp"
#include "io/h5util.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/core/error.hpp"

using namespace mptrain;
namespace fs = std::filesystem;

namespace {

// A directory every rank sees: the test's work directory under test/run-test.sh, otherwise one
// made by rank 0 in the system's temporary directory. Removed at the end by rank 0.
struct SharedDir {
  Comm comm = Comm::world();
  fs::path path;
  bool owned = false;
  SharedDir() {
    std::string name;
    if (comm.rank() == 0) {
      if (const char* workdir = std::getenv("TEST_WORKDIR")) {
        name = (fs::path(workdir) / "data").string();
        fs::create_directories(name);
      } else {
        std::string pattern = (fs::temp_directory_path() / "mptrain-data-XXXXXX").string();
        std::vector<char> buffer(pattern.begin(), pattern.end());
        buffer.push_back('\0');
        if (mkdtemp(buffer.data()) != nullptr) name = buffer.data();
        owned = true;
      }
    }
    path = comm.bcast_string(name, 0);
    BOOST_REQUIRE(!path.empty());
  }
  ~SharedDir() {
    comm.barrier();
    std::error_code ec;
    if (comm.rank() == 0 && owned) fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Runs `make` on rank 0 only, then lets everyone see the result.
  void on_root(const std::function<void()>& make) const {
    if (comm.rank() == 0) make();
    comm.barrier();
  }
};

// Writes an HDF5 file whose /tokens (or whatever `build` makes) is built with raw HDF5 calls,
// for datasets write_token_dataset would never produce.
void write_raw(const std::string& path, const std::function<void(hid_t)>& build) {
  h5::File file = h5::create_file(path);
  build(file);
}

// A /tokens dataset of the given file type and shape filled from `values` (converted).
void make_tokens(hid_t file, hid_t file_type, std::vector<hsize_t> dims,
                 const std::vector<int32_t>& values) {
  h5::Dataspace space(
      h5::check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "space"));
  h5::Dataset ds(h5::check(
      H5Dcreate2(file, "/tokens", file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
      "create"));
  if (!values.empty()) {
    h5::check(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
              "write");
  }
}

// Expects `action` to throw an InputError whose message names `path` and holds every fragment.
void expect_input_error(const std::string& path, const std::vector<std::string>& fragments,
                        const std::function<void()>& action) {
  try {
    action();
    BOOST_ERROR(path << ": no error; expected '" << fragments.front() << "'");
  } catch (const InputError& e) {
    std::string message = e.what();
    BOOST_TEST_MESSAGE("InputError: " << message);
    BOOST_TEST(message.find(path) != std::string::npos, "'" << message << "' lacks the path");
    for (const std::string& fragment : fragments) {
      BOOST_TEST(message.find(fragment) != std::string::npos,
                 "'" << message << "' lacks '" << fragment << "'");
    }
  }
}

void expect_load_error(const SharedDir& dir, const std::string& path,
                       const std::vector<std::string>& fragments) {
  expect_input_error(path, fragments, [&] { TokenDataset::open(dir.comm, path); });
  dir.comm.barrier();
}

// Tokens [begin, begin + count) of `data`.
std::vector<int32_t> read_range(const TokenDataset& data, uint64_t begin, uint64_t count) {
  std::vector<int32_t> out(count);
  data.read(begin, out);
  return out;
}

// Every token of `data`, read in one piece.
std::vector<int32_t> read_all(const TokenDataset& data) {
  std::vector<int32_t> out(data.size());
  data.read(0, out);
  return out;
}

std::vector<int32_t> iota_tokens(size_t n, int32_t modulus) {
  std::vector<int32_t> tokens(n);
  for (size_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>(i % static_cast<size_t>(modulus));
  return tokens;
}

// The stored type class/size and whether /tokens carries the Fletcher32 filter.
struct StoredLayout {
  size_t type_size = 0;
  H5T_sign_t sign = H5T_SGN_ERROR;
  bool fletcher32 = false;
};
StoredLayout stored_layout(const std::string& path) {
  h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
  h5::Dataset ds(h5::check(H5Dopen2(file, "/tokens", H5P_DEFAULT), "open"));
  h5::Datatype type(h5::check(H5Dget_type(ds), "type"));
  h5::PropList dcpl(h5::check(H5Dget_create_plist(ds), "dcpl"));
  StoredLayout out;
  out.type_size = H5Tget_size(type);
  out.sign = H5Tget_sign(type);
  int filters = h5::check(H5Pget_nfilters(dcpl), "nfilters");
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t n_values = 0;
    if (H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n_values, nullptr, 0, nullptr,
                       &config) == H5Z_FILTER_FLETCHER32) {
      out.fletcher32 = true;
    }
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(write_then_load_uint16) {
  SharedDir dir;
  const std::string path = dir.file("small.h5");
  const std::vector<int32_t> tokens = iota_tokens(3000, 256);
  dir.on_root([&] { write_token_dataset(path, tokens, 256); });
  TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_TEST(data.path() == path);
  BOOST_TEST(data.vocab_size() == 256);
  BOOST_TEST(data.size() == tokens.size());
  BOOST_TEST(read_all(data) == tokens, boost::test_tools::per_element());
  if (dir.comm.rank() == 0) {
    StoredLayout layout = stored_layout(path);
    BOOST_TEST(layout.type_size == 2u);
    BOOST_TEST(layout.sign == H5T_SGN_NONE);
    BOOST_TEST(layout.fletcher32);
  }
  dir.comm.barrier();
}

BOOST_AUTO_TEST_CASE(write_then_load_large_vocab_and_many_chunks) {
  SharedDir dir;
  const std::string path = dir.file("large.h5");
  // 65536 still fits uint16; one more needs int32. 2.5 Mi tokens span three chunks.
  std::vector<int32_t> tokens = iota_tokens((size_t{5} << 20) / 2, 70001);
  tokens.back() = 70000;
  dir.on_root([&] { write_token_dataset(path, tokens, 70001); });
  TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_TEST(data.vocab_size() == 70001);
  BOOST_TEST((read_all(data) == tokens));
  if (dir.comm.rank() == 0) {
    StoredLayout layout = stored_layout(path);
    BOOST_TEST(layout.type_size == 4u);
    BOOST_TEST(layout.sign == H5T_SGN_2);
  }
  const std::string edge = dir.file("edge.h5");
  dir.on_root([&] { write_token_dataset(edge, std::vector<int32_t>{0, 65535, 7}, 65536); });
  BOOST_TEST(read_all(TokenDataset::open(dir.comm, edge))[1] == 65535);
  if (dir.comm.rank() == 0) BOOST_TEST(stored_layout(edge).type_size == 2u);
  dir.comm.barrier();
}

BOOST_AUTO_TEST_CASE(load_accepts_other_integer_types_and_root_vocab) {
  // As numpy/h5py would write it: int64 tokens, vocab_size on the root group.
  SharedDir dir;
  const std::string path = dir.file("int64.h5");
  const std::vector<int32_t> tokens{5, 0, 99, 42};
  dir.on_root([&] {
    write_raw(path, [&](hid_t file) {
      make_tokens(file, H5T_STD_I64LE, {4}, tokens);
      h5::write_int_attr(file, "vocab_size", 100);
    });
  });
  TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_TEST(data.vocab_size() == 100);
  BOOST_TEST(read_all(data) == tokens, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(reads_any_range_independently) {
  // 3.5 chunks of int32 tokens. Rank r makes r + 3 reads of its own ranges (chunk edges, the
  // ends, ranges spanning several chunks) while the other ranks do other reads or none: a read
  // that waited for other ranks would hang here. Each range must equal the written tokens.
  SharedDir dir;
  const std::string path = dir.file("ranges.h5");
  const uint64_t chunk = dataset_format::chunk_tokens, n = chunk * 7 / 2;
  const std::vector<int32_t> tokens = iota_tokens(n, 70001);
  dir.on_root([&] { write_token_dataset(path, tokens, 70001); });
  const TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_REQUIRE(data.size() == n);
  const int rank = dir.comm.rank();
  std::vector<std::pair<uint64_t, uint64_t>> ranges{
      {chunk - 1, 2}, {0, 1}, {n - 1, 1}, {n - chunk / 2 - 3, chunk / 2 + 3}};
  for (int k = 0; k < rank; ++k) ranges.push_back({(uint64_t(k) * 7919 * 131) % (n - 2 * chunk),
                                                   2 * chunk - uint64_t(k)});
  for (const auto& [begin, count] : ranges) {
    BOOST_TEST_CONTEXT("rank " << rank << ", tokens [" << begin << ", " << begin + count << ")") {
      const std::vector<int32_t> want(tokens.begin() + long(begin),
                                      tokens.begin() + long(begin + count));
      BOOST_TEST(read_range(data, begin, count) == want, boost::test_tools::per_element());
    }
  }
  dir.comm.barrier();
}

BOOST_AUTO_TEST_CASE(bad_tokens_fail_only_the_reads_that_meet_them) {
  // No token is checked at open; each read checks the tokens it returns. A token of 300 with
  // vocab_size 256, a negative one, and an int64 beyond int32 (saturated by the conversion).
  SharedDir dir;
  struct Case {
    const char* name;
    hid_t type;
    int64_t bad;
    std::string message;
  };
  const std::vector<Case> cases{
      {"too_big.h5", H5T_STD_U16LE, 300, "token 300 at index 37 is outside [0, vocab_size = 256)"},
      {"negative.h5", H5T_STD_I32LE, -1, "token -1 at index 37 is outside"},
      {"huge.h5", H5T_STD_I64LE, int64_t{1} << 40, "token 2147483647 at index 37 is outside"}};
  for (const Case& c : cases) {
    const std::string path = dir.file(c.name);
    dir.on_root([&] {
      write_raw(path, [&](hid_t file) {
        std::vector<int64_t> values(100);
        for (size_t i = 0; i < values.size(); ++i) values[i] = int64_t(i % 200);
        values[37] = c.bad;
        const hsize_t n = values.size();
        h5::Dataspace space(h5::check(H5Screate_simple(1, &n, nullptr), "space"));
        h5::Dataset ds(h5::check(
            H5Dcreate2(file, "/tokens", c.type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
            "create"));
        h5::check(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
                  "write");
        h5::write_int_attr(ds, "vocab_size", 256);
      });
    });
    const TokenDataset data = TokenDataset::open(dir.comm, path);
    BOOST_TEST(read_range(data, 0, 37).back() == 36);
    BOOST_TEST(read_range(data, 38, 62).front() == 38);
    expect_input_error(path, {c.message}, [&] { read_range(data, 30, 10); });
    expect_input_error(path, {c.message}, [&] { read_range(data, 37, 1); });
    dir.comm.barrier();
  }
}

BOOST_AUTO_TEST_CASE(external_ranges_cross_segments) {
  // An imported dataset over two token files (the second from a byte offset): ranges read
  // across the boundary between them equal the tokens, and a token beyond the vocabulary in
  // a file fails the reads that reach it.
  SharedDir dir;
  const std::string path = dir.file("external.h5"), a = dir.file("a.u16"), b = dir.file("b.u16");
  std::vector<int32_t> tokens = iota_tokens(5000, 1000);
  tokens[4500] = 1000;  // one past the vocabulary
  dir.on_root([&] {
    auto write_u16 = [&](const std::string& file, size_t skip_bytes, size_t from, size_t to) {
      std::ofstream out(file, std::ios::binary);
      out << std::string(skip_bytes, 'x');
      for (size_t i = from; i < to; ++i) {
        const char bytes[2] = {char(tokens[i] & 0xff), char(tokens[i] >> 8)};
        out.write(bytes, 2);
      }
    };
    write_u16(a, 0, 0, 3000);
    write_u16(b, 6, 3000, 5000);
    const std::vector<TokenSegment> segments{{a, 0, 3000}, {b, 6, 2000}};
    write_external_token_dataset(path, segments, 1000, {});
  });
  const TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_REQUIRE(data.size() == 5000u);
  for (const auto& [begin, count] : {std::pair<uint64_t, uint64_t>{2990, 20}, {0, 4500},
                                     {2999, 1}, {3000, 1}, {4501, 499}})
    BOOST_TEST(read_range(data, begin, count) ==
                   std::vector<int32_t>(tokens.begin() + long(begin),
                                        tokens.begin() + long(begin + count)),
               boost::test_tools::per_element());
  expect_input_error(path, {"token 1000 at index 4500"}, [&] { read_range(data, 2000, 3000); });
  dir.comm.barrier();
}

BOOST_AUTO_TEST_CASE(sampler_walks_spans_and_wraps) {
  // N = 50 tokens whose value is their index, G = 4 sequences of T = 3: each batch reads
  // 13 tokens and moves on 12. Starts 0, 12, 24, 36 (36 + 13 = 49 <= 50), then 48 + 13 > 50
  // wraps to 0.
  SharedDir dir;
  const std::string path = dir.file("iota50.h5");
  dir.on_root([&] { write_token_dataset(path, iota_tokens(50, 256), 256); });
  TokenDataset data = TokenDataset::open(dir.comm, path);
  SequentialSampler sampler(data.size(), 4, 3);
  std::vector<size_t> starts;
  for (int k = 0; k < 6; ++k) {
    starts.push_back(sampler.position());
    sampler.advance();
  }
  BOOST_TEST(starts == (std::vector<size_t>{0, 12, 24, 36, 0, 12}),
             boost::test_tools::per_element());

  // The batch at p = 36: all rows, then the two halves a DP of 2 takes.
  sampler.set_position(36);
  std::vector<int32_t> inputs, targets;
  sampler.rows(data, 0, 4, inputs, targets);
  BOOST_TEST(inputs == (std::vector<int32_t>{36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47}),
             boost::test_tools::per_element());
  BOOST_TEST(targets == (std::vector<int32_t>{37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48}),
             boost::test_tools::per_element());
  const int dp = 2, G = 4;
  for (int d = 0; d < dp; ++d) {
    const long begin = long(d) * G / dp, end = long(d + 1) * G / dp;
    sampler.rows(data, begin, end - begin, inputs, targets);
    std::vector<int32_t> want_in = d == 0 ? std::vector<int32_t>{36, 37, 38, 39, 40, 41}
                                          : std::vector<int32_t>{42, 43, 44, 45, 46, 47};
    std::vector<int32_t> want_tg = d == 0 ? std::vector<int32_t>{37, 38, 39, 40, 41, 42}
                                          : std::vector<int32_t>{43, 44, 45, 46, 47, 48};
    BOOST_TEST(inputs == want_in, boost::test_tools::per_element());
    BOOST_TEST(targets == want_tg, boost::test_tools::per_element());
  }
  // One row from the middle of batch 1 (p = 12): row 2 starts at 12 + 2*3.
  sampler.set_position(12);
  sampler.rows(data, 2, 1, inputs, targets);
  BOOST_TEST(inputs == (std::vector<int32_t>{18, 19, 20}), boost::test_tools::per_element());
  BOOST_TEST(targets == (std::vector<int32_t>{19, 20, 21}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(sampler_wrap_boundary_and_fits) {
  // With N = 49 the batch at 36 still fits exactly (needs tokens 36..48); with N = 48 it does
  // not, so the walk wraps after 24.
  auto walk = [](size_t n) {
    SequentialSampler s(n, 4, 3);
    std::vector<size_t> starts;
    for (int k = 0; k < 5; ++k, s.advance()) starts.push_back(s.position());
    return starts;
  };
  BOOST_TEST(walk(49) == (std::vector<size_t>{0, 12, 24, 36, 0}), boost::test_tools::per_element());
  BOOST_TEST(walk(48) == (std::vector<size_t>{0, 12, 24, 0, 12}), boost::test_tools::per_element());
  // A dataset of exactly one batch stays at 0.
  BOOST_TEST(walk(13) == (std::vector<size_t>{0, 0, 0, 0, 0}), boost::test_tools::per_element());
  BOOST_TEST(SequentialSampler::fits(13, 4, 3));
  BOOST_TEST(!SequentialSampler::fits(12, 4, 3));
  BOOST_TEST(!SequentialSampler::fits(0, 1, 1));
  BOOST_TEST(!SequentialSampler::fits(100, 0, 3));
  BOOST_TEST(!SequentialSampler::fits(100, 1L << 62, 1 << 30));  // no overflow
  BOOST_CHECK_THROW(SequentialSampler(12, 4, 3), InputError);
}

BOOST_AUTO_TEST_CASE(bad_files_and_shapes_are_refused) {
  SharedDir dir;
  expect_load_error(dir, dir.file("missing.h5"), {"no such file"});

  const std::string text = dir.file("text.h5");
  dir.on_root([&] { std::ofstream(text) << "this is not HDF5\n"; });
  expect_load_error(dir, text, {"not an HDF5 file"});

  const std::string no_tokens = dir.file("no_tokens.h5");
  dir.on_root([&] {
    write_raw(no_tokens, [](hid_t file) {
      h5::Group g(
          h5::check(H5Gcreate2(file, "/other", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "group"));
    });
  });
  expect_load_error(dir, no_tokens, {"no /tokens"});

  const std::string group = dir.file("group.h5");
  dir.on_root([&] {
    write_raw(group, [](hid_t file) {
      h5::Group g(
          h5::check(H5Gcreate2(file, "/tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "group"));
    });
  });
  expect_load_error(dir, group, {"not a dataset"});

  const std::string two_d = dir.file("two_d.h5");
  dir.on_root([&] {
    write_raw(two_d, [](hid_t file) {
      make_tokens(file, H5T_STD_I32LE, {2, 3}, {1, 2, 3, 4, 5, 6});
      h5::write_int_attr(file, "vocab_size", 256);
    });
  });
  expect_load_error(dir, two_d, {"2-D (2 x 3)", "must be 1-D"});

  const std::string floats = dir.file("float.h5");
  dir.on_root([&] {
    write_raw(floats, [](hid_t file) {
      make_tokens(file, H5T_IEEE_F32LE, {3}, {1, 2, 3});
      h5::write_int_attr(file, "vocab_size", 256);
    });
  });
  expect_load_error(dir, floats, {"floating-point", "integers"});

}

BOOST_AUTO_TEST_CASE(bad_vocabularies_and_sizes_are_refused) {
  SharedDir dir;
  const std::string no_vocab = dir.file("no_vocab.h5");
  dir.on_root([&] {
    write_raw(no_vocab, [](hid_t file) { make_tokens(file, H5T_STD_I32LE, {3}, {1, 2, 3}); });
  });
  expect_load_error(dir, no_vocab, {"no vocab_size attribute"});

  const std::string zero_vocab = dir.file("zero_vocab.h5");
  dir.on_root([&] {
    write_raw(zero_vocab, [](hid_t file) {
      make_tokens(file, H5T_STD_I32LE, {3}, {1, 2, 3});
      h5::write_int_attr(file, "vocab_size", 0);
    });
  });
  expect_load_error(dir, zero_vocab, {"bad vocab_size 0"});

  const std::string string_vocab = dir.file("string_vocab.h5");
  dir.on_root([&] {
    write_raw(string_vocab, [](hid_t file) {
      make_tokens(file, H5T_STD_I32LE, {3}, {1, 2, 3});
      h5::write_string_attr(file, "vocab_size", "256");
    });
  });
  expect_load_error(dir, string_vocab, {"bad vocab_size attribute", "not an integer"});

  const std::string empty = dir.file("empty.h5");
  dir.on_root([&] { write_token_dataset(empty, {}, 256); });
  expect_load_error(dir, empty, {"/tokens is empty"});

  // Integer types wider than 8 bytes (legal HDF5, produced by no writer of token files) are
  // refused before HDF5 converts them, for the tokens and for vocab_size.
  auto wide_int = [] {
    hid_t type = H5Tcopy(H5T_STD_I64LE);
    H5Tset_size(type, 16);
    return h5::Datatype(type);
  };
  const std::string wide_tokens = dir.file("wide_tokens.h5");
  dir.on_root([&] {
    write_raw(wide_tokens, [&](hid_t file) {
      make_tokens(file, wide_int(), {3}, {1, 2, 3});
      h5::write_int_attr(file, "vocab_size", 256);
    });
  });
  expect_load_error(dir, wide_tokens, {"/tokens has 16-byte integers", "1- to 8-byte"});
  const std::string wide_vocab = dir.file("wide_vocab.h5");
  dir.on_root([&] {
    write_raw(wide_vocab, [&](hid_t file) {
      make_tokens(file, H5T_STD_I32LE, {3}, {1, 2, 3});
      h5::Dataspace scalar(h5::check(H5Screate(H5S_SCALAR), "scalar"));
      h5::Datatype type = wide_int();
      h5::Attribute attr(h5::check(
          H5Acreate2(file, "vocab_size", type, scalar, H5P_DEFAULT, H5P_DEFAULT), "attribute"));
      const int64_t value[2] = {256, 0};
      h5::check(H5Awrite(attr, type, value), "write");
    });
  });
  expect_load_error(dir, wide_vocab, {"bad vocab_size attribute", "16-byte integer type"});
}

BOOST_AUTO_TEST_CASE(damaged_metadata_fails_its_checksum) {
  // write_token_dataset uses the HDF5 1.8 format, whose object headers carry checksums: a
  // flipped byte in /tokens' header (here in its messages, where the vocab_size attribute
  // is) is refused when the header is loaded, before HDF5 decodes it. (The oldest format has
  // no such checksum, and HDF5 1.10 decodes a damaged attribute message without bounds
  // checks: see test/fuzz/upstream/.)
  SharedDir dir;
  const std::string path = dir.file("header.h5");
  dir.on_root([&] {
    write_token_dataset(path, iota_tokens(100, 256), 256);
    haddr_t address = HADDR_UNDEF;
    {
      h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
      H5O_info_t info;
      h5::check(H5Oget_info_by_name2(file, "/tokens", &info, H5O_INFO_BASIC, H5P_DEFAULT),
                "info");
      address = info.addr;
    }
    BOOST_REQUIRE(address != HADDR_UNDEF);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(address + 40);
    f.seekg(at);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x20);
    f.seekp(at);
    f.write(&byte, 1);
  });
  expect_load_error(dir, path, {"checksum"});
}

BOOST_AUTO_TEST_CASE(corruption_fails_the_reads_of_its_chunk) {
  // Flip one byte inside the second of three chunks: the dataset opens (no token is read at
  // open), reads of the other chunks succeed, and every read touching the damaged chunk is
  // refused by its Fletcher32 checksum.
  SharedDir dir;
  const std::string path = dir.file("corrupt.h5");
  const uint64_t chunk = dataset_format::chunk_tokens;
  const std::vector<int32_t> tokens = iota_tokens(3 * chunk, 256);
  dir.on_root([&] {
    write_token_dataset(path, tokens, 256);
    haddr_t offset = HADDR_UNDEF;
    {
      h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
      h5::Dataset ds(h5::check(H5Dopen2(file, "/tokens", H5P_DEFAULT), "open"));
      h5::Dataspace space(h5::check(H5Dget_space(ds), "space"));
      hsize_t chunk_offset = 0, size = 0;
      unsigned mask = 0;
      h5::check(H5Dget_chunk_info(ds, space, 1, &chunk_offset, &mask, &offset, &size), "chunk");
      BOOST_REQUIRE(chunk_offset == chunk);
    }
    BOOST_REQUIRE(offset != HADDR_UNDEF);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset + 100));
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(offset + 100));
    f.write(&byte, 1);
  });
  const TokenDataset data = TokenDataset::open(dir.comm, path);
  BOOST_TEST(read_range(data, 0, chunk) == std::vector<int32_t>(tokens.begin(), tokens.begin() + long(chunk)),
             boost::test_tools::per_element());
  BOOST_TEST(read_range(data, 2 * chunk, chunk) ==
                 std::vector<int32_t>(tokens.begin() + long(2 * chunk), tokens.end()),
             boost::test_tools::per_element());
  for (const auto& [begin, count] : {std::pair<uint64_t, uint64_t>{chunk + 5, 10},
                                     {chunk - 1, 2}, {2 * chunk - 1, 2}, {0, 3 * chunk}})
    expect_input_error(path, {"read /tokens [" + std::to_string(begin), "Fletcher32 checksum"},
                       [&] { read_range(data, begin, count); });
  dir.comm.barrier();
}

BOOST_AUTO_TEST_CASE(write_refuses_bad_input) {
  SharedDir dir;
  if (dir.comm.rank() == 0) {
    BOOST_CHECK_THROW(write_token_dataset(dir.file("w.h5"), std::vector<int32_t>{1, 256}, 256),
                      InputError);
    BOOST_CHECK_THROW(write_token_dataset(dir.file("w.h5"), std::vector<int32_t>{1}, 0),
                      InputError);
    BOOST_CHECK_THROW(write_token_dataset(dir.file("no/such/dir/w.h5"), std::vector<int32_t>{1}, 2),
                      InputError);
  }
  dir.comm.barrier();
}
