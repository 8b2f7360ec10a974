// test/bad_files.cpp -- makes the broken token datasets and checkpoints that the failure tests
// (test/bad_input.sh) feed to mptrain, and small valid ones (the fuzzers' seed corpora).
//
//   bad_files dataset KIND OUT        a token dataset with one defect (KIND below)
//   bad_files checkpoint KIND IN OUT  a copy of checkpoint IN with one defect
//   bad_files bad-token N INDEX OUT   N tokens (i % 16, uint16, vocab_size 256) with a token 300
//                                     at INDEX (none when INDEX >= N)
//   bad_files tiny-dataset OUT        a valid 64-token dataset (vocab 16)
//   bad_files tiny-checkpoint OUT [model-only]
//                                     a valid checkpoint of a 1-layer model (C 4, T 4, V 16);
//                                     model-only leaves /optim/m and /optim/v empty (a small
//                                     file, for a seed corpus)
//   bad_files                         the self-test (what "make check" runs): makes every kind
//                                     in the current directory and checks that the library
//                                     refuses each one (opened and read whole) with an InputError
//                                     naming the problem
//
// It is a test program (check_PROGRAMS) rather than a helper built some other way because the
// test suite runs every check program with no arguments: that run is the self-test, so the
// helper's own output is checked before bad_input.sh relies on it.
//
// The defects are written with the HDF5 C API directly (serial driver), not with the library's
// writers, which refuse to write most of them.
#include <hdf5.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mptrain/io/checkpoint.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"

namespace {

namespace fs = std::filesystem;
using mptrain::Comm;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

template <class T>
T ok(T ret, const char* what) {
  if (ret < 0) fail(std::string("HDF5 call failed: ") + what);
  return ret;
}

// ---------------------------------------------------------------- small HDF5 writers

void set_int_attr(hid_t obj, const char* name, int64_t value) {
  if (H5Aexists(obj, name) > 0) ok(H5Adelete(obj, name), "H5Adelete");
  hid_t space = ok(H5Screate(H5S_SCALAR), "H5Screate");
  hid_t attr = ok(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), name);
  ok(H5Awrite(attr, H5T_NATIVE_INT64, &value), "H5Awrite");
  H5Aclose(attr);
  H5Sclose(space);
}

void set_string_attr(hid_t obj, const char* name, const std::string& value) {
  if (H5Aexists(obj, name) > 0) ok(H5Adelete(obj, name), "H5Adelete");
  hid_t type = ok(H5Tcopy(H5T_C_S1), "H5Tcopy");
  ok(H5Tset_size(type, value.empty() ? 1 : value.size()), "H5Tset_size");
  hid_t space = ok(H5Screate(H5S_SCALAR), "H5Screate");
  hid_t attr = ok(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), name);
  ok(H5Awrite(attr, type, value.empty() ? "" : value.c_str()), "H5Awrite");
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

// A contiguous dataset `name` of `file_type` and shape `dims`, filled from `data` (in
// `mem_type`; null: left unwritten).
void write_dataset(hid_t loc, const char* name, hid_t file_type, const std::vector<hsize_t>& dims,
                   hid_t mem_type, const void* data) {
  hid_t space = ok(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                   "H5Screate_simple");
  hid_t dset = ok(H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                  name);
  if (data) ok(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite");
  H5Dclose(dset);
  H5Sclose(space);
}

hid_t create(const std::string& path) {
  return ok(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path.c_str());
}

// ---------------------------------------------------------------- datasets

struct Kind {
  const char* name;
  const char* expect;  // a fragment of the library's message for it
  const char* what;
};

const Kind dataset_kinds[] = {
    {"float", "floating-point type", "/tokens stored as float32"},
    {"2d", "it must be 1-D", "/tokens of shape 8 x 8"},
    {"out-of-range", "is outside [0, vocab_size = 256)", "a token 300 with vocab_size 256"},
    {"negative", "is outside [0, vocab_size", "a token -1"},
    {"no-vocab", "no vocab_size attribute", "no vocab_size attribute anywhere"},
    {"zero-vocab", "bad vocab_size 0", "vocab_size = 0"},
    {"string-vocab", "bad vocab_size attribute", "vocab_size is a string"},
    {"empty", "/tokens is empty", "/tokens with no elements"},
    {"group", "is a group", "/tokens is a group"},
    {"no-tokens", "no /tokens dataset", "the tokens under another name"},
};

void make_dataset(const std::string& kind, const std::string& out) {
  std::vector<int32_t> tokens(64);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % 16);
  hid_t file = create(out);
  auto write_tokens = [&](hid_t type, const std::vector<hsize_t>& dims) {
    write_dataset(file, "/tokens", type, dims, H5T_NATIVE_INT32, tokens.data());
  };
  auto vocab_on_tokens = [&](int64_t v) {
    hid_t d = ok(H5Dopen2(file, "/tokens", H5P_DEFAULT), "H5Dopen2");
    set_int_attr(d, "vocab_size", v);
    H5Dclose(d);
  };
  if (kind == "float") {
    std::vector<float> f(tokens.begin(), tokens.end());
    write_dataset(file, "/tokens", H5T_IEEE_F32LE, {f.size()}, H5T_NATIVE_FLOAT, f.data());
    vocab_on_tokens(256);
  } else if (kind == "2d") {
    write_tokens(H5T_STD_I32LE, {8, 8});
    vocab_on_tokens(256);
  } else if (kind == "out-of-range") {
    tokens[37] = 300;
    write_tokens(H5T_STD_U16LE, {tokens.size()});
    vocab_on_tokens(256);
  } else if (kind == "negative") {
    tokens[5] = -1;
    write_tokens(H5T_STD_I32LE, {tokens.size()});
    vocab_on_tokens(256);
  } else if (kind == "no-vocab") {
    write_tokens(H5T_STD_I32LE, {tokens.size()});
  } else if (kind == "zero-vocab") {
    write_tokens(H5T_STD_I32LE, {tokens.size()});
    set_int_attr(file, "vocab_size", 0);  // on the root group this time
  } else if (kind == "string-vocab") {
    write_tokens(H5T_STD_I32LE, {tokens.size()});
    hid_t d = ok(H5Dopen2(file, "/tokens", H5P_DEFAULT), "H5Dopen2");
    set_string_attr(d, "vocab_size", "256");
    H5Dclose(d);
  } else if (kind == "empty") {
    write_dataset(file, "/tokens", H5T_STD_I32LE, {0}, H5T_NATIVE_INT32, nullptr);
    vocab_on_tokens(256);
  } else if (kind == "group") {
    H5Gclose(ok(H5Gcreate2(file, "/tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "group"));
    set_int_attr(file, "vocab_size", 256);
  } else if (kind == "no-tokens") {
    write_dataset(file, "/token_ids", H5T_STD_I32LE, {tokens.size()}, H5T_NATIVE_INT32,
                  tokens.data());
    set_int_attr(file, "vocab_size", 256);
  } else {
    H5Fclose(file);
    fail("unknown dataset kind '" + kind + "'");
  }
  ok(H5Fclose(file), "H5Fclose");
}

// N tokens of which the one at `index` is out of range: for runs that must fail exactly when
// (and where) they read it, and for runs that must succeed because they never do.
void make_bad_token_dataset(uint64_t n, uint64_t index, const std::string& out) {
  std::vector<int32_t> tokens(n);
  for (uint64_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>(i % 16);
  if (index < n) tokens[index] = 300;
  hid_t file = create(out);
  write_dataset(file, "/tokens", H5T_STD_U16LE, {n}, H5T_NATIVE_INT32, tokens.data());
  hid_t d = ok(H5Dopen2(file, "/tokens", H5P_DEFAULT), "H5Dopen2");
  set_int_attr(d, "vocab_size", 256);
  H5Dclose(d);
  ok(H5Fclose(file), "H5Fclose");
}

// ---------------------------------------------------------------- checkpoints

const Kind checkpoint_kinds[] = {
    {"version", "format version 99", "format_version = 99"},
    {"format", "not an mptrain checkpoint", "format = \"something-else\""},
    {"no-version", "missing attribute format_version", "no format_version attribute"},
    {"no-step", "missing attribute step", "no step attribute"},
    {"drop-tensor", "/model/wte is missing", "the dataset /model/wte deleted"},
    {"wrong-shape", "/model/ln_f.bias has shape [3]", "/model/ln_f.bias of shape [3]"},
    {"corrupt", "checksum", "bytes flipped inside the data of /model/wte"},
    {"truncated", "cannot open checkpoint", "the first half of the file only"},
};

// Flips bytes in the middle of the first chunk of `dataset` (its checksum no longer matches).
void corrupt_dataset(const std::string& path, const char* dataset) {
  haddr_t address = 0;
  hsize_t size = 0;
  {
    hid_t file = ok(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path.c_str());
    hid_t dset = ok(H5Dopen2(file, dataset, H5P_DEFAULT), dataset);
    hid_t space = ok(H5Dget_space(dset), "H5Dget_space");
    hid_t dcpl = ok(H5Dget_create_plist(dset), "H5Dget_create_plist");
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
      hsize_t n_chunks = 0;
      ok(H5Dget_num_chunks(dset, space, &n_chunks), "H5Dget_num_chunks");
      if (n_chunks == 0) fail(std::string(dataset) + " has no chunks written");
      unsigned mask = 0;
      hsize_t offset[H5S_MAX_RANK] = {};
      ok(H5Dget_chunk_info(dset, space, 0, offset, &mask, &address, &size), "H5Dget_chunk_info");
    } else {
      address = H5Dget_offset(dset);
      size = H5Dget_storage_size(dset);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Dclose(dset);
    H5Fclose(file);
  }
  if (address == HADDR_UNDEF || size < 8) fail(std::string(dataset) + ": no data to corrupt");
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  const std::streamoff at = static_cast<std::streamoff>(address + size / 2 - 4);
  char bytes[8];
  io.seekg(at);
  io.read(bytes, sizeof bytes);
  for (char& b : bytes) b = static_cast<char>(~b);
  io.seekp(at);
  io.write(bytes, sizeof bytes);
  if (!io) fail("cannot rewrite " + path);
}

void make_checkpoint_defect(const std::string& kind, const std::string& in, const std::string& out) {
  fs::copy_file(in, out, fs::copy_options::overwrite_existing);
  if (kind == "truncated") {
    fs::resize_file(out, fs::file_size(out) / 2);
    return;
  }
  if (kind == "corrupt") {
    corrupt_dataset(out, "/model/wte");
    return;
  }
  hid_t file = ok(H5Fopen(out.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), out.c_str());
  if (kind == "version") {
    set_int_attr(file, "format_version", 99);
  } else if (kind == "format") {
    set_string_attr(file, "format", "something-else");
  } else if (kind == "no-version") {
    ok(H5Adelete(file, "format_version"), "H5Adelete format_version");
  } else if (kind == "no-step") {
    ok(H5Adelete(file, "step"), "H5Adelete step");
  } else if (kind == "drop-tensor") {
    ok(H5Ldelete(file, "/model/wte", H5P_DEFAULT), "H5Ldelete /model/wte");
  } else if (kind == "wrong-shape") {
    ok(H5Ldelete(file, "/model/ln_f.bias", H5P_DEFAULT), "H5Ldelete /model/ln_f.bias");
    const float three[3] = {1, 2, 3};
    write_dataset(file, "/model/ln_f.bias", H5T_IEEE_F32LE, {3}, H5T_NATIVE_FLOAT, three);
  } else {
    H5Fclose(file);
    fail("unknown checkpoint kind '" + kind + "'");
  }
  ok(H5Fclose(file), "H5Fclose");
}

// ---------------------------------------------------------------- valid tiny files

constexpr int tiny_layers = 1, tiny_embd = 4, tiny_seq = 4, tiny_vocab = 16;

void make_tiny_dataset(const std::string& out) {
  std::vector<int32_t> tokens(64);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7) % 16);
  mptrain::write_token_dataset(out, tokens, tiny_vocab);
}

// The tensors of the tiny model, each held whole by this (single) rank.
struct TinyModel {
  std::vector<std::vector<float>> host;
  std::vector<mptrain::TensorIO> views;
  TinyModel() {
    const auto shapes =
        mptrain::gpt2_tensor_shapes(tiny_layers, tiny_embd, tiny_seq, tiny_vocab);
    host.reserve(shapes.size());
    for (const auto& [name, shape] : shapes) {
      mptrain::ShardSpec spec;
      spec.name = name;
      spec.global_shape = shape;
      spec.local_rows = shape[0];
      spec.local_cols = shape.size() == 2 ? shape[1] : 1;
      spec.blocks = {{0, 0, 0, 0, spec.local_rows, spec.local_cols}};
      host.emplace_back(static_cast<size_t>(spec.local_size()));
      for (size_t i = 0; i < host.back().size(); ++i) host.back()[i] = 0.01f * float(i % 13);
      views.push_back({spec, host.back().data()});
    }
  }
  mptrain::CheckpointTensors tensors(bool model_only = false) const {
    if (model_only) return {views, {}, {}};
    return {views, views, views};
  }
};

std::string tiny_deck_text() {
  const std::string text = "[model]\nn_layer = " + std::to_string(tiny_layers) +
                           "\nn_head = 2\nn_embd = " + std::to_string(tiny_embd) +
                           "\nseq_len = " + std::to_string(tiny_seq) +
                           "\nvocab_size = " + std::to_string(tiny_vocab) +
                           "\n[train]\nglobal_batch = 2\n[data]\ntrain = tiny.h5\n";
  return mptrain::parse_deck_text(text, "tiny deck").text();
}

void make_tiny_checkpoint(const std::string& out, bool model_only = false) {
  const mptrain::Deck deck = mptrain::parse_deck_text(tiny_deck_text(), "tiny deck");
  mptrain::CheckpointMeta meta;
  meta.step = 3;
  meta.tokens_seen = 24;
  meta.deck_text = deck.text();
  meta.model_text = deck.model_text();
  meta.layout = "tp=1 pp=1 dp=1 zero=0";
  meta.sampler_position = 8;
  meta.rng_seed = deck.train.seed;
  meta.adam_step = 3;
  const TinyModel model;
  mptrain::write_checkpoint_file(Comm::self(), out, meta, model.tensors(model_only));
}

// ---------------------------------------------------------------- the self-test

int failures = 0;

void expect_refused(const std::string& label, const char* fragment,
                    const std::function<void()>& load) {
  try {
    load();
    std::printf("FAIL: %s: accepted\n", label.c_str());
    ++failures;
  } catch (const mptrain::InputError& e) {
    if (std::strstr(e.what(), fragment) != nullptr) {
      std::printf("PASS: %s: %s\n", label.c_str(), e.what());
    } else {
      std::printf("FAIL: %s: message lacks \"%s\": %s\n", label.c_str(), fragment, e.what());
      ++failures;
    }
  }
}

int self_test() {
  const Comm self = Comm::self();
  make_tiny_dataset("tiny.h5");
  const mptrain::TokenDataset tiny = mptrain::TokenDataset::open(self, "tiny.h5");
  // Opening checks the file; reading checks the tokens: a dataset is refused by one or the other.
  auto open_and_read = [&](const std::string& path) {
    const mptrain::TokenDataset d = mptrain::TokenDataset::open(self, path);
    std::vector<int32_t> all(d.size());
    d.read(0, all);
  };
  if (tiny.size() != 64 || tiny.vocab_size() != tiny_vocab) {
    std::printf("FAIL: tiny-dataset reads back as %zu tokens, vocab %d\n", tiny.size(),
                tiny.vocab_size());
    ++failures;
  }
  for (const Kind& k : dataset_kinds) {
    const std::string path = std::string("dataset-") + k.name + ".h5";
    make_dataset(k.name, path);
    expect_refused(std::string("dataset ") + k.name + " (" + k.what + ")", k.expect,
                   [&] { open_and_read(path); });
  }

  make_tiny_checkpoint("tiny-ckpt.h5");
  const TinyModel model;
  const mptrain::CheckpointMeta meta = mptrain::read_checkpoint_meta(self, "tiny-ckpt.h5");
  mptrain::read_checkpoint_tensors(self, "tiny-ckpt.h5", model.tensors());
  if (meta.step != 3 || meta.sampler_position != 8) {
    std::printf("FAIL: tiny-checkpoint reads back step %ld, position %llu\n", meta.step,
                static_cast<unsigned long long>(meta.sampler_position));
    ++failures;
  }
  for (const Kind& k : checkpoint_kinds) {
    const std::string path = std::string("ckpt-") + k.name + ".h5";
    make_checkpoint_defect(k.name, "tiny-ckpt.h5", path);
    expect_refused(std::string("checkpoint ") + k.name + " (" + k.what + ")", k.expect, [&] {
      mptrain::read_checkpoint_meta(self, path);
      mptrain::read_checkpoint_tensors(self, path, model.tensors());
    });
  }
  std::printf("%s\n", failures ? "some checks failed" : "all checks passed");
  return failures ? 1 : 0;
}

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: bad_files dataset KIND OUT | checkpoint KIND IN OUT | bad-token N INDEX OUT |"
               " tiny-dataset OUT |"
               " tiny-checkpoint OUT [model-only]\n  (no arguments: self-test)\n  dataset kinds:");
  for (const Kind& k : dataset_kinds) std::fprintf(out, " %s", k.name);
  std::fprintf(out, "\n  checkpoint kinds:");
  for (const Kind& k : checkpoint_kinds) std::fprintf(out, " %s", k.name);
  std::fprintf(out, "\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  // MPI (for the library's collective readers and writers) only where needed: the defect
  // makers use serial HDF5 and start fast without it.
  std::unique_ptr<mptrain::MpiSession> mpi;
  if (args.empty() || args[0].rfind("tiny-", 0) == 0)
    mpi = std::make_unique<mptrain::MpiSession>(&argc, &argv);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  try {
    if (args.empty()) return self_test();
    if (args[0] == "dataset" && args.size() == 3) {
      make_dataset(args[1], args[2]);
    } else if (args[0] == "checkpoint" && args.size() == 4) {
      make_checkpoint_defect(args[1], args[2], args[3]);
    } else if (args[0] == "bad-token" && args.size() == 4) {
      make_bad_token_dataset(std::stoull(args[1]), std::stoull(args[2]), args[3]);
    } else if (args[0] == "tiny-dataset" && args.size() == 2) {
      make_tiny_dataset(args[1]);
    } else if (args[0] == "tiny-checkpoint" && args.size() == 2) {
      make_tiny_checkpoint(args[1]);
    } else if (args[0] == "tiny-checkpoint" && args.size() == 3 && args[2] == "model-only") {
      make_tiny_checkpoint(args[1], true);
    } else {
      usage(stderr);
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bad_files: %s\n", e.what());
    return 1;
  }
  return 0;
}
