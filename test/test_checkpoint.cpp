// Tests of checkpoint files and the checkpoint directory (checkpoint.hpp). Runs on any number
// of ranks (make check: 1; test/ckpt_mpi.sh: 3 and 4), every rank building its own shards of a
// set of global tensors whose values are a pure function of their global index, so any rank
// can say what any element must be. Covered: write and read back on the same sharding (row,
// column, q|k|v three-block, replicated, held-by-some-ranks, blocks whose local order differs
// from the file order, several ranks in one chunk, several chunks) and on another sharding
// (every rank reads whole tensors), bit for bit; metadata; CheckpointDir saves, `latest`,
// pruning and candidates; and refusals: a flipped byte in the data (checksum) and in an object
// header (metadata checksum), a truncated file, a non-HDF5 file, a missing tensor, a wrong
// shape, a wrong format version, bad blocks on one rank only, writer blocks with a hole or an
// overlap, an unwritable directory (the previous checkpoint stays intact); the restart's model
// check (check_checkpoint_model); the serial CheckpointReader lists and reads every tensor and
// refuses a damaged one. Two cases driven by
// test/ckpt_mpi.sh check a save killed half way (MPTRAIN_CKPT_KILL_DIR); one driven by
// test/ckpt_tool.sh writes GPT-2-shaped files for mptrain-ckpt (MPTRAIN_CKPT_TOOL_DIR).
#define BOOST_TEST_MODULE checkpoint
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/h5util.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/io/checkpoint_reader.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/io/deck.hpp"

using namespace mptrain;
namespace fs = std::filesystem;

namespace {

// The value of global element `index` of a tensor; `salt` tells tensors (and groups) apart.
float value_at(uint32_t salt, int64_t index) {
  const uint32_t mixed = static_cast<uint32_t>(index) * 2654435761u + salt * 40503u;
  return static_cast<float>(mixed % 100003u) / 1024.0f - 40.0f;
}

constexpr float untouched = -12345.0f;  // local padding: must survive a read

// One rank's shard of one tensor with its host array.
struct Shard {
  ShardSpec spec;
  std::vector<float> data;
  uint32_t salt = 0;

  int64_t cols() const { return spec.global_shape.size() == 2 ? spec.global_shape[1] : 1; }
  // Fills the blocks with their global values (for writing) and the rest with `untouched`.
  void fill() {
    data.assign(spec.local_size(), untouched);
    for (const auto& b : spec.blocks)
      for (int64_t r = 0; r < b.rows; ++r)
        for (int64_t c = 0; c < b.cols; ++c)
          data[(b.local_row + r) * spec.local_cols + b.local_col + c] =
              value_at(salt, (b.global_row + r) * cols() + b.global_col + c);
  }
  void clear() { data.assign(spec.local_size(), untouched); }
  TensorIO io() { return TensorIO{spec, data.data()}; }
  bool holds_expected_values() const {
    Shard expected = *this;
    expected.fill();
    return data == expected.data;  // bit for bit (no NaN among the values)
  }
};

Shard make_shard(std::string name, std::vector<int64_t> shape, int64_t local_rows,
                 int64_t local_cols, std::vector<ShardBlock> blocks, bool writer, uint32_t salt) {
  Shard s;
  s.spec.name = std::move(name);
  s.spec.global_shape = std::move(shape);
  s.spec.local_rows = local_rows;
  s.spec.local_cols = local_cols;
  s.spec.blocks = std::move(blocks);
  s.spec.writer = writer;
  s.salt = salt;
  s.fill();
  return s;
}

// The whole tensor as one block (what a rank of a 1-rank layout holds).
Shard whole(const Shard& like) {
  const int64_t rows = like.spec.global_shape[0];
  const int64_t cols = like.cols();
  return make_shard(like.spec.name, like.spec.global_shape, rows, cols,
                    {{0, 0, 0, 0, rows, cols}}, true, like.salt);
}

// [begin, end) of part `i` of `n` of `length` (uneven splits allowed).
std::pair<int64_t, int64_t> part(int64_t length, int i, int n) {
  return {length * i / n, length * (i + 1) / n};
}

// This rank's shards of the test tensors of one group, sharded like a training layout. The
// global shapes do not depend on the number of ranks, so any rank count reads any file.
std::vector<Shard> sharded_tensors(const Comm& comm, uint32_t group_salt) {
  const int p = comm.size(), r = comm.rank();
  std::vector<Shard> shards;
  auto salt = [&](uint32_t k) { return group_salt * 100 + k; };
  {  // row-parallel: every rank's rows lie in one shared chunk
    auto [b, e] = part(12, r, p);
    shards.push_back(make_shard("row_split", {12, 5}, e - b, 5, {{b, 0, 0, 0, e - b, 5}}, true,
                                salt(1)));
  }
  {  // column-parallel q|k|v: three row blocks per rank, named like the model's
    const int64_t h = 12, c = 4;
    auto [b, e] = part(h, r, p);
    std::vector<ShardBlock> blocks, bias_blocks;
    for (int64_t j = 0; j < 3; ++j) {
      blocks.push_back({j * h + b, 0, j * (e - b), 0, e - b, c});
      bias_blocks.push_back({j * h + b, 0, j * (e - b), 0, e - b, 1});
    }
    shards.push_back(make_shard("h.0.attn.c_attn.weight", {3 * h, c}, 3 * (e - b), c, blocks,
                                true, salt(2)));
    shards.push_back(make_shard("h.0.attn.c_attn.bias", {3 * h}, 3 * (e - b), 1, bias_blocks,
                                true, salt(3)));
  }
  {  // column split with uneven widths
    auto [b, e] = part(9, r, p);
    shards.push_back(make_shard("col_split", {6, 9}, 6, e - b, {{0, b, 0, 0, 6, e - b}}, true,
                                salt(4)));
  }
  // replicated 1-D, written by rank 0 only
  shards.push_back(make_shard("ln_f.bias", {7}, 7, 1, {{0, 0, 0, 0, 7, 1}}, r == 0, salt(5)));
  if (r % 2 == 0) {  // held by even ranks only (a pipeline stage), written by rank 0
    shards.push_back(make_shard("partial", {5, 3}, 5, 3, {{0, 0, 0, 0, 5, 3}}, r == 0, salt(6)));
  }
  {  // two column blocks side by side in the file, stacked locally (+ a padding row)
    const int64_t rows = 4;
    auto [b, e] = part(8, r, p);
    shards.push_back(make_shard("side_by_side", {rows, 16}, 2 * rows + 1, e - b,
                                {{0, b, 0, 0, rows, e - b}, {0, 8 + b, rows + 1, 0, rows, e - b}},
                                true, salt(7)));
  }
  {  // several 1 MiB chunks, row-split at boundaries inside them
    auto [b, e] = part(600, r, p);
    shards.push_back(make_shard("big", {600, 1000}, e - b, 1000, {{b, 0, 0, 0, e - b, 1000}}, true,
                                salt(8)));
  }
  return shards;
}

std::vector<TensorIO> ios(std::vector<Shard>& shards) {
  std::vector<TensorIO> list;
  for (auto& s : shards) list.push_back(s.io());
  return list;
}

// Three groups of shards with their TensorIO views.
struct TestState {
  std::vector<Shard> model, m, v;
  std::vector<TensorIO> model_io, m_io, v_io;
  explicit TestState(const Comm& comm)
      : model(sharded_tensors(comm, 1)), m(sharded_tensors(comm, 2)), v(sharded_tensors(comm, 3)) {
    refresh();
  }
  void refresh() {
    model_io = ios(model);
    m_io = ios(m);
    v_io = ios(v);
  }
  CheckpointTensors tensors() const { return {model_io, m_io, v_io}; }
  void clear() {
    for (auto* g : {&model, &m, &v})
      for (auto& s : *g) s.clear();
  }
  static bool expected(const std::vector<Shard>& group) {
    bool ok = true;
    for (const auto& s : group) {
      if (!s.holds_expected_values()) {
        BOOST_TEST_MESSAGE("wrong values in " << s.spec.name);
        ok = false;
      }
    }
    return ok;
  }
  bool all_expected() const {
    const bool model_ok = expected(model), m_ok = expected(m), v_ok = expected(v);
    return model_ok && m_ok && v_ok;
  }
};

CheckpointMeta test_meta(long step) {
  CheckpointMeta meta;
  meta.step = step;
  meta.tokens_seen = 123456789012LL + step;
  meta.deck_text = "[model]\nn_layer = 2  # comment\n\n[train]\nseed = 7\n";
  meta.model_text = "[model]\nn_layer = 2\n";
  meta.layout = "tp=2 pp=1 dp=2 zero=0";
  meta.sampler_position = 0xFFFFFFFFFFFFFFF0ull;
  meta.rng_seed = 18446744073709551615ull;
  meta.rng_offset = 42;
  meta.adam_step = step - 1;  // one non-finite step skipped
  meta.tokenizer = "gpt2";
  meta.tokenizer_vocab = "fnv1a64:477131cd7ffe948a";
  return meta;
}

// A fresh directory shared by all ranks: under $TEST_WORKDIR when set, else under /tmp.
// Collective.
std::string shared_dir(const Comm& comm, const std::string& name) {
  std::string dir;
  if (comm.rank() == 0) {
    const char* work = std::getenv("TEST_WORKDIR");
    fs::path base = work && *work ? fs::path(work) : fs::temp_directory_path() / "mptrain-test";
    base /= "test_checkpoint_np" + std::to_string(comm.size()) + "_" + std::to_string(getpid());
    dir = (base / name).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  return comm.bcast_string(dir, 0);
}

// Collective: runs `action` on rank 0 only, then a barrier so every rank sees its effect.
template <class Action>
void on_rank0(const Comm& comm, Action&& action) {
  if (comm.rank() == 0) action();
  comm.barrier();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Expects `call` to throw CheckpointError whose message contains every one of `parts`.
template <class Call>
void expect_refusal(Call&& call, const std::vector<std::string>& parts) {
  try {
    call();
    BOOST_ERROR("no CheckpointError thrown");
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    BOOST_TEST_MESSAGE("refused: " << what);
    for (const auto& p : parts) {
      BOOST_CHECK_MESSAGE(what.find(p) != std::string::npos,
                          "message '" << what << "' lacks '" << p << "'");
    }
  }
}

// Flips one byte in chunk `chunk` of `dataset` (serial access; rank 0 only).
void corrupt_chunk(const std::string& path, const std::string& dataset, hsize_t chunk = 1) {
  haddr_t address = 0;
  hsize_t size = 0;
  {
    h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
    h5::Dataset d(MPT_H5_CHECK(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT)));
    hsize_t offset[2];
    unsigned mask = 0;
    h5::Dataspace space(MPT_H5_CHECK(H5Dget_space(d)));
    MPT_H5_CHECK(H5Dget_chunk_info(d, space, chunk, offset, &mask, &address, &size));
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const haddr_t at = address + std::min<hsize_t>(100, size / 2);
  f.seekg(static_cast<std::streamoff>(at));
  char byte = 0;
  f.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&byte, 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_names_and_shapes) {
  const auto list = gpt2_tensor_shapes(2, 8, 16, 50);
  BOOST_TEST(list.size() == 2u + 2 * 12 + 2);
  BOOST_TEST(list.front().first == "wte");
  BOOST_TEST((list.front().second == std::vector<int64_t>{50, 8}));
  BOOST_TEST(list[4].first == "h.0.attn.c_attn.weight");
  BOOST_TEST((list[4].second == std::vector<int64_t>{24, 8}));
  BOOST_TEST(list[25].first == "h.1.mlp.c_proj.bias");
  BOOST_TEST(list.back().first == "ln_f.bias");
}

BOOST_AUTO_TEST_CASE(round_trip_same_and_other_sharding) {
  Comm comm = Comm::world();
  const std::string dir = shared_dir(comm, "round_trip");
  const std::string path = dir + "/a.h5";
  TestState state(comm);
  write_checkpoint_file(comm, path, test_meta(12), state.tensors());

  const CheckpointMeta meta = read_checkpoint_meta(comm, path);
  const CheckpointMeta want = test_meta(12);
  BOOST_TEST(meta.step == want.step);
  BOOST_TEST(meta.tokens_seen == want.tokens_seen);
  BOOST_TEST(meta.deck_text == want.deck_text);
  BOOST_TEST(meta.model_text == want.model_text);
  BOOST_TEST(meta.layout == want.layout);
  BOOST_TEST(meta.sampler_position == want.sampler_position);
  BOOST_TEST(meta.rng_seed == want.rng_seed);
  BOOST_TEST(meta.rng_offset == want.rng_offset);
  BOOST_TEST(meta.adam_step == want.adam_step);
  BOOST_TEST(meta.tokenizer == want.tokenizer);
  BOOST_TEST(meta.tokenizer_vocab == want.tokenizer_vocab);

  // Same sharding: every holder (replicas too) gets exactly its values back; padding survives.
  state.clear();
  read_checkpoint_tensors(comm, path, state.tensors());
  BOOST_TEST(state.all_expected());

  // Another sharding: every rank reads every tensor whole.
  std::vector<Shard> whole_model;
  for (const auto& s : state.model) whole_model.push_back(whole(s));
  for (auto& s : whole_model) s.clear();
  std::vector<TensorIO> model_io = ios(whole_model);
  read_checkpoint_tensors(comm, path, {model_io, {}, {}});
  for (const auto& s : whole_model) {
    BOOST_CHECK_MESSAGE(s.holds_expected_values(), "whole " << s.spec.name);
  }

  // On rank 0, the file layout itself: Fletcher32 on every dataset, /optim step.
  if (comm.rank() == 0) {
    h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
    h5::Dataset d(MPT_H5_CHECK(H5Dopen2(file, "/optim/v/h.0.attn.c_attn.weight", H5P_DEFAULT)));
    h5::PropList dcpl(MPT_H5_CHECK(H5Dget_create_plist(d)));
    BOOST_TEST(H5Pget_layout(dcpl) == H5D_CHUNKED);
    BOOST_TEST(H5Pget_nfilters(dcpl) == 1);
    unsigned flags = 0;
    size_t n = 0;
    BOOST_TEST(H5Pget_filter2(dcpl, 0, &flags, &n, nullptr, 0, nullptr, nullptr) ==
               H5Z_FILTER_FLETCHER32);
    h5::Group optim(MPT_H5_CHECK(H5Gopen2(file, "/optim", H5P_DEFAULT)));
    BOOST_TEST(h5::read_int_attr(optim, "step") == 11);
    BOOST_TEST(h5::read_string_attr(file, "format") == "mptrain-checkpoint");
    BOOST_TEST(h5::read_int_attr(file, "format_version") == 1);
    BOOST_TEST(h5::read_string_attr(file, "tokenizer") == "gpt2");
  }
  comm.barrier();
  // A checkpoint written before the tokenizer attributes existed reads as "unknown", "".
  if (comm.rank() == 0) {
    h5::File file = h5::open_file(path, H5F_ACC_RDWR);
    MPT_H5_CHECK(H5Adelete(file, "tokenizer"));
    MPT_H5_CHECK(H5Adelete(file, "tokenizer_vocab"));
  }
  comm.barrier();
  const CheckpointMeta older = read_checkpoint_meta(comm, path);
  BOOST_TEST(older.tokenizer == "unknown");
  BOOST_TEST(older.tokenizer_vocab.empty());
  BOOST_TEST(older.step == 12);
  comm.barrier();
}

// The serial reader (checkpoint_reader.hpp) on rank 0: every tensor rank 0 holds is listed in
// its group, in name order, with its global shape, and reads back whole with every value.
BOOST_AUTO_TEST_CASE(serial_reader_lists_and_reads_every_tensor) {
  Comm comm = Comm::world();
  const std::string path = shared_dir(comm, "reader") + "/r.h5";
  TestState state(comm);
  write_checkpoint_file(comm, path, test_meta(3), state.tensors());
  if (comm.rank() == 0) {
    const CheckpointReader reader(path);
    BOOST_TEST(reader.path() == path);
    const std::vector<Shard>* groups[] = {&state.model, &state.m, &state.v};
    for (size_t g = 0; g < checkpoint_groups.size(); ++g) {
      const std::string group = checkpoint_groups[g];
      const std::vector<StoredTensor> listed = reader.list(group);
      BOOST_TEST(std::is_sorted(listed.begin(), listed.end(),
                                [](const auto& a, const auto& b) { return a.path < b.path; }));
      for (const Shard& shard : *groups[g]) {
        const std::string name = group + "/" + shard.spec.name;
        auto it = std::find_if(listed.begin(), listed.end(),
                               [&](const StoredTensor& t) { return t.path == name; });
        BOOST_REQUIRE_MESSAGE(it != listed.end(), name << " is not listed");
        BOOST_TEST(it->shape == shard.spec.global_shape);
        BOOST_TEST(it->elements() == int64_t(whole(shard).data.size()));
        BOOST_CHECK_MESSAGE(reader.read(*it) == whole(shard).data, name << ": other values");
      }
    }
    BOOST_TEST(reader.list("/no/such/group").empty());
    BOOST_CHECK_THROW(CheckpointReader(path + ".absent"), CheckpointError);
  }
  comm.barrier();
}

BOOST_AUTO_TEST_CASE(directory_latest_pruning_candidates) {
  Comm comm = Comm::world();
  const std::string dir = shared_dir(comm, "dir") + "/sub/ckpt";  // save creates it
  TestState state(comm);
  CheckpointDir ckpt(dir, 2);
  BOOST_TEST(ckpt.path_for_step(12) == dir + "/step_00000012.h5");
  BOOST_TEST(ckpt.candidates().empty());

  double seconds = -1;
  uint64_t bytes = 0;
  for (long step : {1, 2, 3}) {
    const std::string path = ckpt.save(comm, test_meta(step), state.tensors(), &seconds, &bytes);
    BOOST_TEST(path == ckpt.path_for_step(step));
  }
  BOOST_TEST(seconds >= 0.0);
  const uint64_t model_floats = 12 * 5 + 36 * 4 + 36 + 6 * 9 + 7 + 5 * 3 + 4 * 16 + 600 * 1000;
  BOOST_TEST(bytes == 3 * model_floats * sizeof(float));

  on_rank0(comm, [&] {
    BOOST_TEST(read_text(dir + "/latest") == "step_00000003.h5\n");
    BOOST_TEST(!fs::exists(ckpt.path_for_step(1)));  // pruned: keep = 2
    BOOST_TEST(fs::exists(ckpt.path_for_step(2)));
    BOOST_TEST(!fs::exists(dir + "/.step_00000003.h5.tmp"));
    std::ofstream(dir + "/.step_00000004.h5.tmp") << "partial";  // ignored by candidates
    std::ofstream(dir + "/notes.txt") << "not a checkpoint";
  });
  BOOST_TEST((ckpt.candidates() ==
              std::vector<std::string>{ckpt.path_for_step(3), ckpt.path_for_step(2)}));
  comm.barrier();  // everyone has looked before rank 0 changes `latest`

  // `latest` goes first even when it is not the newest.
  on_rank0(comm, [&] { std::ofstream(dir + "/latest") << "step_00000002.h5\n"; });
  BOOST_TEST((ckpt.candidates() ==
              std::vector<std::string>{ckpt.path_for_step(2), ckpt.path_for_step(3)}));
  comm.barrier();

  // Saving step 5 prunes step 2 and the stale temporary of step 4.
  ckpt.save(comm, test_meta(5), state.tensors());
  on_rank0(comm, [&] {
    BOOST_TEST(!fs::exists(ckpt.path_for_step(2)));
    BOOST_TEST(!fs::exists(dir + "/.step_00000004.h5.tmp"));
    BOOST_TEST(fs::exists(dir + "/notes.txt"));
  });
  BOOST_TEST((ckpt.candidates() ==
              std::vector<std::string>{ckpt.path_for_step(5), ckpt.path_for_step(3)}));

  state.clear();
  read_checkpoint_tensors(comm, ckpt.candidates().front(), state.tensors());
  BOOST_TEST(state.all_expected());
  BOOST_TEST(read_checkpoint_meta(comm, ckpt.candidates().front()).step == 5);
}

BOOST_AUTO_TEST_CASE(flipped_byte_fails_the_checksum) {
  Comm comm = Comm::world();
  const std::string path = shared_dir(comm, "corrupt") + "/c.h5";
  TestState state(comm);
  write_checkpoint_file(comm, path, test_meta(1), state.tensors());
  on_rank0(comm, [&] { corrupt_chunk(path, "/optim/m/big"); });

  // The sharded read (only some ranks touch the bad chunk) and the whole read both refuse.
  expect_refusal([&] { read_checkpoint_tensors(comm, path, state.tensors()); },
                 {path, "/optim/m/big", "checksum"});
  std::vector<Shard> big{whole(state.m.back())};
  std::vector<TensorIO> big_io = ios(big);
  expect_refusal([&] { read_checkpoint_tensors(comm, path, {{}, big_io, {}}); },
                 {path, "/optim/m/big", "checksum"});
  // The serial reader refuses the damaged tensor too, saying why.
  if (comm.rank() == 0) {
    const CheckpointReader reader(path);
    int found = 0;
    for (const StoredTensor& t : reader.list("/optim/m"))
      if (t.path == "/optim/m/big" && ++found)
        expect_refusal([&] { reader.read(t); }, {path, "/optim/m/big", "checksum failed"});
    BOOST_TEST(found == 1);
  }
  // The undamaged tensors still read, with their values.
  state.clear();
  read_checkpoint_tensors(comm, path, {state.model_io, {}, state.v_io});
  BOOST_TEST(TestState::expected(state.model));
  BOOST_TEST(TestState::expected(state.v));
}

// Flips one byte inside the object header of `object` (rank 0, serial access).
void corrupt_header(const std::string& path, const std::string& object) {
  haddr_t address = HADDR_UNDEF;
  {
    h5::File file = h5::open_file(path, H5F_ACC_RDONLY);
    H5O_info_t info;
    MPT_H5_CHECK(H5Oget_info_by_name2(file, object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT));
    address = info.addr;
  }
  BOOST_REQUIRE(address != HADDR_UNDEF);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto at = static_cast<std::streamoff>(address + 40);  // past the prefix, in a message
  f.seekg(at);
  char byte = 0;
  f.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x20);
  f.seekp(at);
  f.write(&byte, 1);
}

BOOST_AUTO_TEST_CASE(damaged_metadata_fails_its_checksum) {
  // Checkpoints are written in the HDF5 1.8 format, whose object headers carry checksums:
  // damage in the attributes or the tensor list is refused, never decoded (HDF5 1.10 decodes
  // a damaged header of the oldest format without bounds checks; see test/fuzz/upstream/).
  Comm comm = Comm::world();
  const std::string dir = shared_dir(comm, "metadata");
  TestState state(comm);
  write_checkpoint_file(comm, dir + "/root.h5", test_meta(1), state.tensors());
  write_checkpoint_file(comm, dir + "/tensor.h5", test_meta(1), state.tensors());
  on_rank0(comm, [&] {
    corrupt_header(dir + "/root.h5", "/");
    corrupt_header(dir + "/tensor.h5", "/model/col_split");
  });
  expect_refusal([&] { read_checkpoint_meta(comm, dir + "/root.h5"); },
                 {dir + "/root.h5", "checksum"});
  const CheckpointMeta meta = read_checkpoint_meta(comm, dir + "/tensor.h5");  // root intact
  BOOST_TEST(meta.step == 1);
  expect_refusal([&] { read_checkpoint_tensors(comm, dir + "/tensor.h5", state.tensors()); },
                 {dir + "/tensor.h5", "/model/col_split", "checksum"});
}

BOOST_AUTO_TEST_CASE(restart_model_check) {
  CheckpointMeta meta = test_meta(3);
  meta.model_text = "[model]\nn_layer = 2\nn_head = 2\nn_embd = 8\nseq_len = 16\nvocab_size = 50\n";
  ModelConfig model;
  model.n_layer = 2;
  model.n_head = 2;
  model.n_embd = 8;
  model.seq_len = 16;
  model.vocab_size = 50;
  check_checkpoint_model("c.h5", meta, model);  // the same model: accepted
  model.seq_len = 32;
  expect_refusal([&] { check_checkpoint_model("c.h5", meta, model); },
                 {"c.h5: written for a different model: [model] seq_len = 16 in the checkpoint, "
                  "32 in the deck"});
  model.seq_len = 16;
  meta.model_text = "[model]\nn_layer = two\n";
  expect_refusal([&] { check_checkpoint_model("c.h5", meta, model); },
                 {"c.h5: the stored [model] section cannot be read", "n_layer"});
  meta.model_text = "[model]\nn_layer = 2\n[data]\ntrain = x\n";  // a second [data] train
  expect_refusal([&] { check_checkpoint_model("c.h5", meta, model); },
                 {"c.h5: the stored [model] section cannot be read"});
}

BOOST_AUTO_TEST_CASE(truncated_and_foreign_files) {
  Comm comm = Comm::world();
  const std::string dir = shared_dir(comm, "truncated");
  TestState state(comm);
  write_checkpoint_file(comm, dir + "/good.h5", test_meta(1), state.tensors());
  on_rank0(comm, [&] {
    fs::copy_file(dir + "/good.h5", dir + "/short.h5");
    fs::resize_file(dir + "/short.h5", fs::file_size(dir + "/good.h5") / 2);
    std::ofstream(dir + "/text.h5") << "[model]\nn_layer = 2\n";
  });
  for (const std::string name : {"/short.h5", "/text.h5", "/absent.h5"}) {
    expect_refusal([&] { read_checkpoint_meta(comm, dir + name); },
                   {dir + name + ": cannot open checkpoint"});
    expect_refusal([&] { read_checkpoint_tensors(comm, dir + name, state.tensors()); },
                   {dir + name + ": cannot open checkpoint"});
  }
}

BOOST_AUTO_TEST_CASE(missing_tensor_wrong_shape_wrong_version) {
  Comm comm = Comm::world();
  const std::string path = shared_dir(comm, "mismatch") + "/m.h5";
  TestState state(comm);
  write_checkpoint_file(comm, path, test_meta(1), state.tensors());

  // Missing tensor, asked for by the last rank only.
  std::vector<Shard> extra;
  if (comm.rank() == comm.size() - 1) {
    extra.push_back(make_shard("h.9.ln_1.weight", {5}, 5, 1, {{0, 0, 0, 0, 5, 1}}, true, 1));
  }
  std::vector<TensorIO> extra_io = ios(extra);
  expect_refusal([&] { read_checkpoint_tensors(comm, path, {extra_io, {}, {}}); },
                 {path, "/model/h.9.ln_1.weight", "missing"});

  // Stored [12,5], asked for as [12,6].
  std::vector<Shard> wrong{make_shard("row_split", {12, 6}, 1, 6, {{0, 0, 0, 0, 1, 6}}, true, 1)};
  std::vector<TensorIO> wrong_io = ios(wrong);
  expect_refusal([&] { read_checkpoint_tensors(comm, path, {wrong_io, {}, {}}); },
                 {path, "/model/row_split", "[12,5]", "[12,6]"});

  // A newer format version.
  on_rank0(comm, [&] {
    h5::File file = h5::open_file(path, H5F_ACC_RDWR);
    h5::write_int_attr(file, "format_version", 2);
  });
  expect_refusal([&] { read_checkpoint_meta(comm, path); },
                 {path, "format version 2, this build reads 1"});
  expect_refusal([&] { read_checkpoint_tensors(comm, path, state.tensors()); },
                 {path, "format version 2"});
}

BOOST_AUTO_TEST_CASE(bad_blocks_on_one_rank_are_refused_everywhere) {
  Comm comm = Comm::world();
  const std::string path = shared_dir(comm, "bad_blocks") + "/b.h5";
  TestState state(comm);
  if (comm.rank() == comm.size() - 1) {
    state.model[0].spec.blocks[0].rows += 1;  // past the local array
    state.refresh();
  }
  expect_refusal([&] { write_checkpoint_file(comm, path, test_meta(1), state.tensors()); },
                 {path, "row_split", "outside"});
}

BOOST_AUTO_TEST_CASE(writers_must_cover_each_tensor_exactly_once) {
  Comm comm = Comm::world();
  const std::string path = shared_dir(comm, "coverage") + "/w.h5";
  {  // the last rank's rows of row_split have no writer: they would read back as zeros
    TestState state(comm);
    if (comm.rank() == comm.size() - 1) state.model[0].spec.writer = false;
    state.refresh();
    expect_refusal([&] { write_checkpoint_file(comm, path, test_meta(1), state.tensors()); },
                   {path, "/model/row_split", "cover", "of its 60 elements"});
  }
  if (comm.size() > 1) {  // every replica of ln_f.bias claims to be the writer
    TestState state(comm);
    for (auto& s : state.m)
      if (s.spec.name == "ln_f.bias") s.spec.writer = true;
    state.refresh();
    expect_refusal([&] { write_checkpoint_file(comm, path, test_meta(1), state.tensors()); },
                   {path, "/optim/m/ln_f.bias", "overlap"});
  }
}

BOOST_AUTO_TEST_CASE(unwritable_directory_keeps_the_previous_checkpoint) {
  Comm comm = Comm::world();
  const std::string base = shared_dir(comm, "unwritable");
  TestState state(comm);

  // A directory that cannot be created: a path through a regular file.
  on_rank0(comm, [&] { std::ofstream(base + "/plain_file") << "x"; });
  expect_refusal([&] { CheckpointDir(base + "/plain_file/ckpt").save(comm, test_meta(1),
                                                                     state.tensors()); },
                 {base + "/plain_file/ckpt", "cannot create"});

  // A file that cannot be created, after a good save: the old checkpoint and `latest` stay.
  CheckpointDir ckpt(base + "/ckpt", 1);
  ckpt.save(comm, test_meta(1), state.tensors());
  on_rank0(comm, [&] { fs::create_directory(base + "/ckpt/.step_00000002.h5.tmp"); });
  expect_refusal([&] { ckpt.save(comm, test_meta(2), state.tensors()); },
                 {".step_00000002.h5.tmp"});
  on_rank0(comm, [&] {
    BOOST_TEST(read_text(base + "/ckpt/latest") == "step_00000001.h5\n");
    BOOST_TEST(!fs::exists(ckpt.path_for_step(2)));
  });
  BOOST_TEST((ckpt.candidates() == std::vector<std::string>{ckpt.path_for_step(1)}));
  state.clear();
  read_checkpoint_tensors(comm, ckpt.path_for_step(1), state.tensors());
  BOOST_TEST(state.all_expected());

  // Permissions only stop a non-root user.
  if (geteuid() != 0) {
    on_rank0(comm, [&] {
      fs::remove_all(base + "/ckpt/.step_00000002.h5.tmp");
      fs::permissions(base + "/ckpt", fs::perms::owner_write, fs::perm_options::remove);
    });
    expect_refusal([&] { ckpt.save(comm, test_meta(2), state.tensors()); }, {base + "/ckpt"});
    on_rank0(comm, [&] {
      fs::permissions(base + "/ckpt", fs::perms::owner_write, fs::perm_options::add);
      BOOST_TEST(read_text(base + "/ckpt/latest") == "step_00000001.h5\n");
    });
  }
}

// Driven by test/ckpt_mpi.sh with MPTRAIN_CKPT_KILL_DIR set: saves step 1, then step 2 with
// the kill-in-save test hook, so rank 0 dies half way through step 2 (the job fails).
// Disabled in a plain run (where it would check nothing): run by name, with MPTRAIN_CKPT_KILL_DIR set.
BOOST_AUTO_TEST_CASE(kill_in_save, *boost::unit_test::disabled()) {
  const char* dir = std::getenv("MPTRAIN_CKPT_KILL_DIR");
  BOOST_REQUIRE_MESSAGE(dir != nullptr, "MPTRAIN_CKPT_KILL_DIR is not set");
  Comm comm = Comm::world();
  TestState state(comm);
  CheckpointDir ckpt(dir, 0);
  ckpt.set_test_kill_in_save(2);
  ckpt.save(comm, test_meta(1), state.tensors());
  ckpt.save(comm, test_meta(2), state.tensors());
  BOOST_ERROR("the save of step 2 should have been killed");
}

// Then, in a new job: step 1 is intact and first, step 2 never became a checkpoint.
// Disabled in a plain run (where it would check nothing): run by name, with MPTRAIN_CKPT_KILL_DIR set.
BOOST_AUTO_TEST_CASE(after_kill, *boost::unit_test::disabled()) {
  const char* dir = std::getenv("MPTRAIN_CKPT_KILL_DIR");
  BOOST_REQUIRE_MESSAGE(dir != nullptr, "MPTRAIN_CKPT_KILL_DIR is not set");
  Comm comm = Comm::world();
  CheckpointDir ckpt(dir, 0);
  BOOST_TEST((ckpt.candidates() == std::vector<std::string>{ckpt.path_for_step(1)}));
  BOOST_TEST(read_text(std::string(dir) + "/latest") == "step_00000001.h5\n");
  BOOST_TEST(fs::exists(std::string(dir) + "/.step_00000002.h5.tmp"));
  TestState state(comm);
  state.clear();
  read_checkpoint_tensors(comm, ckpt.path_for_step(1), state.tensors());
  BOOST_TEST(state.all_expected());
}

// Driven by test/ckpt_tool.sh with MPTRAIN_CKPT_TOOL_DIR set: GPT-2-shaped checkpoints (2
// layers, C = 8, T = 16, V = 50; /model row-split over the ranks) for the mptrain-ckpt checks:
// good.h5, same.h5 (equal tensors, another step), perturbed.h5 (one element off by 1e-3
// relative), nan.h5 (a NaN in /optim/v/wpe), missing.h5 (no /model/h.1.ln_2.bias),
// corrupt.h5 (a flipped byte in /optim/m/h.0.mlp.c_fc.weight).
// Disabled in a plain run (where it would check nothing): run by name, with MPTRAIN_CKPT_TOOL_DIR set.
BOOST_AUTO_TEST_CASE(tool_fixtures, *boost::unit_test::disabled()) {
  const char* env_dir = std::getenv("MPTRAIN_CKPT_TOOL_DIR");
  BOOST_REQUIRE_MESSAGE(env_dir != nullptr, "MPTRAIN_CKPT_TOOL_DIR is not set");
  const std::string dir = env_dir;
  Comm comm = Comm::world();
  Deck deck;
  deck.model = ModelConfig{2, 2, 8, 16, 50};
  deck.data.train = "train.h5";
  CheckpointMeta meta = test_meta(20);
  meta.deck_text = deck.text();
  meta.model_text = deck.model_text();
  meta.layout = "tp=1 pp=1 dp=" + std::to_string(comm.size()) + " zero=0";

  auto write = [&](const std::string& name, long step, auto&& change) {
    std::vector<Shard> groups[3];
    uint32_t salt = 0;
    for (auto& group : groups) {
      for (const auto& [tensor, shape] : gpt2_tensor_shapes(2, 8, 16, 50)) {
        const int64_t rows = shape[0], cols = shape.size() == 2 ? shape[1] : 1;
        auto [b, e] = part(rows, comm.rank(), comm.size());
        group.push_back(make_shard(tensor, shape, e - b, cols, {{b, 0, 0, 0, e - b, cols}}, true,
                                   ++salt));
      }
    }
    change(groups);
    std::vector<TensorIO> io[3] = {ios(groups[0]), ios(groups[1]), ios(groups[2])};
    CheckpointMeta m = meta;
    m.step = step;
    m.adam_step = step - 1;
    write_checkpoint_file(comm, dir + "/" + name, m, {io[0], io[1], io[2]});
  };
  auto no_change = [](std::vector<Shard>*) {};
  // Changes element 0 of a tensor, on the rank that holds global row 0.
  auto change_first = [&](int group, const std::string& tensor, auto&& how) {
    return [&, group, tensor, how](std::vector<Shard>* groups) {
      for (auto& s : groups[group]) {
        if (s.spec.name == tensor && s.spec.blocks[0].global_row == 0 && s.spec.blocks[0].rows > 0) {
          s.data[0] = how(s.data[0]);
        }
      }
    };
  };
  on_rank0(comm, [&] { fs::create_directories(dir); });
  write("good.h5", 20, no_change);
  write("same.h5", 21, no_change);
  write("perturbed.h5", 20,
        change_first(0, "h.1.mlp.c_fc.weight", [](float x) { return x * (1.0f + 1e-3f) + 1e-3f; }));
  write("nan.h5", 20, change_first(2, "wpe", [](float) { return std::nanf(""); }));
  write("missing.h5", 20, [](std::vector<Shard>* groups) {
    std::erase_if(groups[0], [](const Shard& s) { return s.spec.name == "h.1.ln_2.bias"; });
  });
  write("corrupt.h5", 20, no_change);
  on_rank0(comm, [&] { corrupt_chunk(dir + "/corrupt.h5", "/optim/m/h.0.mlp.c_fc.weight", 0); });
}
