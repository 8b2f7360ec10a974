// Tests of the safetensors reader and writer (src/io/safetensors.hpp): files written and read
// back bit for bit (the byte layout checked against the specification), F16 and BF16 widened
// to the exact float32 of hand-decoded bit patterns, and every kind of malformed file refused
// with its own message: a file too short for the length field, a header length beyond the file
// or above the limit, bad JSON, a non-object header, duplicate names, an unknown dtype, a shape
// whose size disagrees with its offsets (or overflows), offsets outside the data, overlapping,
// leaving a gap or trailing bytes, reversed offsets, malformed fields and metadata, absurd
// nesting, and a non-float dtype where floats are needed. One process, no MPI.
#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/safetensors.hpp"
#include "mptrain/core/error.hpp"

using namespace mptrain;
namespace st = mptrain::safetensors;
namespace fs = std::filesystem;

namespace {

// A scratch file name in the test's directory (run-test.sh makes it the working directory).
std::string scratch(const std::string& name) {
  const char* work = std::getenv("TEST_WORKDIR");
  return (fs::path(work ? work : fs::temp_directory_path().string()) /
          ("safetensors_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// A file: the 8-byte length of `header`, `header`, then `data_bytes` bytes of data.
std::string file_bytes(const std::string& header, size_t data_bytes) {
  const uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + std::string(data_bytes, '\x01');
}

// The parser must refuse `file` with a message containing `expected`.
void expect_refused(const std::string& file, const std::string& expected) {
  try {
    st::parse_bytes(file, "bad.safetensors");
    BOOST_ERROR("accepted a malformed file; expected: " << expected);
  } catch (const InputError& e) {
    const std::string what = e.what();
    BOOST_TEST_INFO("message: " << what);
    BOOST_TEST(what.find("bad.safetensors: ") == 0);
    BOOST_TEST(what.find(expected) != std::string::npos);
  }
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_bit_for_bit) {
  const std::vector<float> a = {1.5f, -0.0f, 3.25e-38f, 1e30f, -7.0f, 0.1f};
  const std::vector<float> scalar = {42.0f};
  const std::vector<float> empty;
  const std::vector<int64_t> ints = {-1, 1LL << 40};
  const std::vector<st::RawTensor> tensors = {
      {"a", "F32", {2, 3}, bytes_of(a)},
      {"scalar", "F32", {}, bytes_of(scalar)},
      {"empty", "F32", {0, 4}, bytes_of(empty)},
      {"ints", "I64", {2}, bytes_of(ints)}};
  const std::string path = scratch("round_trip");
  st::write_file(path, tensors, {{"format", "pt"}, {"note", "x"}});

  // The byte layout of the specification.
  const std::string raw = slurp(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  BOOST_TEST(header_length % 8 == 0u);  // padded with spaces like the reference writer
  BOOST_TEST(raw.size() == 8 + header_length + 6 * 4 + 4 + 16);
  BOOST_TEST(raw.substr(8, 15) == R"({"__metadata__")");
  BOOST_TEST(std::memcmp(raw.data() + 8 + header_length, a.data(), 24) == 0);

  st::Reader reader(path);
  BOOST_TEST(reader.header().metadata.at("format") == "pt");
  BOOST_TEST(reader.header().metadata.at("note") == "x");
  BOOST_TEST(reader.header().tensors.size() == 4u);
  const st::TensorEntry* e = reader.header().find("a");
  BOOST_REQUIRE(e);
  BOOST_TEST(e->shape == (std::vector<int64_t>{2, 3}), boost::test_tools::per_element());
  BOOST_TEST(e->begin == 0u);
  BOOST_TEST(e->end == 24u);
  const std::vector<float> back = reader.read_float32("a");
  BOOST_TEST(std::memcmp(back.data(), a.data(), 24) == 0);  // -0.0 and the subnormal too
  BOOST_TEST(reader.read_float32("scalar") == scalar, boost::test_tools::per_element());
  BOOST_TEST(reader.read_float32("empty").empty());
  BOOST_TEST(reader.header().find("ints")->shape.size() == 1u);

  // The streaming float writer lays out the same bytes as the raw one.
  const std::string path2 = scratch("round_trip2");
  const std::vector<st::Float32Spec> specs = {{"x", {2, 3}}, {"y", {1}}};
  st::write_float32_file(path2, specs, {}, [&](size_t i, std::span<float> out) {
    if (i == 0) std::copy(a.begin(), a.end(), out.begin());
    else out[0] = 42.0f;
  });
  const std::string path3 = scratch("round_trip3");
  const std::vector<st::RawTensor> same = {{"x", "F32", {2, 3}, bytes_of(a)},
                                           {"y", "F32", {1}, bytes_of(scalar)}};
  st::write_file(path3, same, {});
  BOOST_TEST(slurp(path2) == slurp(path3));
  BOOST_TEST(slurp(path2).find("__metadata__") == std::string::npos);
  fs::remove(path);
  fs::remove(path2);
  fs::remove(path3);
}

BOOST_AUTO_TEST_CASE(half_and_bfloat16_widen_exactly) {
  // IEEE half: 1, -2, the largest finite, the smallest subnormal, the smallest normal
  // (negative), infinity, -infinity, 0.333251953125, +0, -0; then a quiet NaN.
  const std::vector<uint16_t> half = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8400, 0x7C00,
                                      0xFC00, 0x3555, 0x0000, 0x8000, 0x7E00};
  const std::vector<float> half_want = {1.0f,      -2.0f,         65504.0f,
                                        std::ldexp(1.0f, -24), -std::ldexp(1.0f, -14),
                                        INFINITY, -INFINITY,      0.333251953125f,
                                        0.0f,      -0.0f};
  // bfloat16 is the top half of a float32: 1, -5, infinity, the smallest subnormal.
  const std::vector<uint16_t> brain = {0x3F80, 0xC0A0, 0x7F80, 0x0001};
  const std::vector<float> brain_want = {1.0f, -5.0f, INFINITY, std::bit_cast<float>(0x00010000u)};
  const std::vector<st::RawTensor> tensors = {{"h", "F16", {11}, bytes_of(half)},
                                              {"b", "BF16", {2, 2}, bytes_of(brain)}};
  const std::string path = scratch("halves");
  st::write_file(path, tensors, {});
  st::Reader reader(path);
  const std::vector<float> h = reader.read_float32("h");
  BOOST_REQUIRE(h.size() == 11u);
  for (size_t i = 0; i < half_want.size(); ++i) {
    BOOST_TEST_INFO("half element " << i);
    BOOST_TEST(std::bit_cast<uint32_t>(h[i]) == std::bit_cast<uint32_t>(half_want[i]));
  }
  BOOST_TEST(std::isnan(h[10]));
  const std::vector<float> b = reader.read_float32("b");
  BOOST_REQUIRE(b.size() == 4u);
  for (size_t i = 0; i < brain_want.size(); ++i)
    BOOST_TEST(std::bit_cast<uint32_t>(b[i]) == std::bit_cast<uint32_t>(brain_want[i]));
  fs::remove(path);
}

BOOST_AUTO_TEST_CASE(non_float_dtype_refused_where_floats_are_needed) {
  const std::vector<int32_t> ints = {1, 2};
  const std::vector<st::RawTensor> tensors = {{"ids", "I32", {2}, bytes_of(ints)}};
  const std::string path = scratch("ints");
  st::write_file(path, tensors, {});
  st::Reader reader(path);
  BOOST_CHECK_EXCEPTION(reader.read_float32("ids"), InputError, [](const InputError& e) {
    return std::string(e.what()).find("tensor \"ids\" has dtype I32; floating-point weights are "
                                      "needed (F32, F16 or BF16)") != std::string::npos;
  });
  BOOST_CHECK_EXCEPTION(reader.read_float32("nosuch"), InputError, [](const InputError& e) {
    return std::string(e.what()).find("no tensor \"nosuch\"") != std::string::npos;
  });
  fs::remove(path);
}

BOOST_AUTO_TEST_CASE(malformed_files_refused) {
  const std::string ok = entry("a", "F32", "[2]", 0, 8);
  // A well-formed file parses (the cases below each break one thing).
  BOOST_TEST(st::parse_bytes(file_bytes("{" + ok + "}", 8), "good").tensors.size() == 1u);

  expect_refused(std::string("\x05\0\0", 3), "3 bytes, too short for a safetensors file");
  expect_refused(file_bytes("{" + ok + "}", 8).substr(0, 20), "runs past the end of the file");
  expect_refused(file_bytes("{\"a\":", 0), "not valid JSON");
  expect_refused(file_bytes("{\"a\xff\":{}}", 0), "not valid JSON");  // not UTF-8
  expect_refused(file_bytes("[1,2]", 0), "the safetensors header is array, not a JSON object");
  expect_refused(file_bytes("{" + ok + "," + entry("a", "F32", "[2]", 8, 16) + "}", 16),
                 "the name \"a\" appears twice");
  expect_refused(file_bytes("{" + entry("a", "F12", "[2]", 0, 8) + "}", 8),
                 "tensor \"a\": unknown dtype \"F12\"");
  expect_refused(file_bytes("{" + entry("a", "F32", "[2,3]", 0, 20) + "}", 20),
                 "tensor \"a\": shape [2,3] of F32 needs 24 bytes but data_offsets span 20");
  expect_refused(file_bytes("{" + entry("a", "F32", "[4294967296,4294967296,16]", 0, 8) + "}", 8),
                 "needs more bytes than a file can hold");
  expect_refused(file_bytes("{" + entry("a", "F32", "[-2]", 0, 8) + "}", 8),
                 "\"shape\" holds -2, not a non-negative integer");
  expect_refused(file_bytes("{" + entry("a", "F32", "[2.0]", 0, 8) + "}", 8),
                 "\"shape\" holds 2.0, not a non-negative integer");
  expect_refused(file_bytes("{" + entry("a", "F32", "[2]", 8, 16) + "}", 8),
                 "tensor \"a\": data_offsets [8, 16] lie outside the data section (8 bytes)");
  expect_refused(file_bytes("{" + entry("a", "F32", "[2]", 0, 8) + "," +
                            entry("b", "F32", "[2]", 4, 12) + "}", 12),
                 "tensors \"a\" and \"b\" overlap");
  expect_refused(file_bytes("{" + entry("a", "F32", "[2]", 0, 8) + "," +
                            entry("b", "F32", "[2]", 12, 20) + "}", 20),
                 "4 bytes before tensor \"b\" belong to no tensor");
  expect_refused(file_bytes("{" + ok + "}", 12),
                 "the data section has 12 bytes but the tensors cover 8");
  expect_refused(file_bytes("{" + entry("a", "F32", "[0]", 8, 0) + "}", 8),
                 "data_offsets [8, 0] end before they begin");
  expect_refused(file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8),
                 "\"data_offsets\" must be [begin, end]");
  expect_refused(file_bytes("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                 "tensor \"a\" has no string \"dtype\"");
  expect_refused(file_bytes("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8),
                 "tensor \"a\" has no \"shape\" array");
  expect_refused(file_bytes("{\"a\":[1]}", 0), "tensor \"a\" is not an object");
  expect_refused(file_bytes("{\"__metadata__\":{\"format\":1}," + ok + "}", 8),
                 "\"__metadata__\" entry \"format\" is not a string");
  expect_refused(file_bytes("{\"__metadata__\":[]," + ok + "}", 8),
                 "\"__metadata__\" is not an object of strings");
  expect_refused(file_bytes("{\"a\":" + std::string(40, '[') + std::string(40, ']') + "}", 0),
                 "it nests deeper than the format allows");
}

BOOST_AUTO_TEST_CASE(header_length_limit) {
  // A sparse file larger than the limit, whose length field asks for more than the limit.
  const std::string path = scratch("huge");
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = st::max_header_bytes + 1;
    out.write(reinterpret_cast<const char*>(&n), 8);
  }
  fs::resize_file(path, st::max_header_bytes + 64);
  BOOST_CHECK_EXCEPTION(st::Reader{path}, InputError, [&](const InputError& e) {
    return std::string(e.what()) == path + ": safetensors header length 100000001 exceeds the "
                                           "limit of 100000000 bytes";
  });
  fs::remove(path);
  BOOST_CHECK_EXCEPTION(st::Reader{scratch("absent")}, InputError, [](const InputError& e) {
    return std::string(e.what()).find("cannot open") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(writer_refuses_bad_tensors) {
  const std::vector<float> two = {1.0f, 2.0f};
  const std::string path = scratch("bad_write");
  const std::vector<st::RawTensor> duplicate = {{"a", "F32", {2}, bytes_of(two)},
                                                {"a", "F32", {2}, bytes_of(two)}};
  BOOST_CHECK_THROW(st::write_file(path, duplicate, {}), InputError);
  const std::vector<st::RawTensor> reserved = {{"__metadata__", "F32", {2}, bytes_of(two)}};
  BOOST_CHECK_THROW(st::write_file(path, reserved, {}), InputError);
  const std::vector<st::RawTensor> wrong_size = {{"a", "F32", {3}, bytes_of(two)}};
  BOOST_CHECK_THROW(st::write_file(path, wrong_size, {}), InputError);
  const std::vector<st::RawTensor> unknown = {{"a", "F7", {2}, bytes_of(two)}};
  BOOST_CHECK_THROW(st::write_file(path, unknown, {}), InputError);
  BOOST_CHECK_THROW(st::write_file("/nonexistent-dir/x.safetensors", {}, {}), InputError);
  fs::remove(path);
}
