// mptrain-ckpt: inspect, verify and compare checkpoint files (DESIGN §4), one process, no
// launcher needed.
//
//   mptrain-ckpt info FILE                 attributes, stored deck, tensor table, sizes
//   mptrain-ckpt verify FILE               every dataset read in full (Fletcher32 checksums),
//                                          names and shapes against the GPT-2 list the stored
//                                          [model] section implies, every value finite;
//                                          exit 0 (OK) or 2 (problems, each printed)
//   mptrain-ckpt diff A B [--tol X] [--model-only]
//                                          per tensor max |a-b| and max relative difference;
//                                          exit 0 when every element matches within X, else 1
//
// The attributes are read and checked by the library (read_checkpoint_meta, over a
// one-process communicator); the tensors are then listed and read whole through HDF5's serial
// driver, one tensor at a time, so the tool's memory stays at two tensors even for big files.
// Exit codes follow error.hpp: 2 for a file that cannot be used, 1 for an internal failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "h5util.hpp"
#include "mptrain/checkpoint.hpp"
#include "mptrain/comm.hpp"
#include "mptrain/deck.hpp"
#include "mptrain/error.hpp"

namespace {

using namespace mptrain;

const std::vector<std::string> model_group = {"/model"};
const std::vector<std::string> all_groups = {"/model", "/optim/m", "/optim/v"};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

struct StoredTensor {
  std::string path;  // e.g. /model/h.0.attn.c_attn.weight
  std::vector<int64_t> shape;
  int64_t elements() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// Read-only serial access to the tensors of one checkpoint file.
class TensorFile {
 public:
  explicit TensorFile(const std::string& path) : path_(path) {
    try {
      file_ = h5::open_file(path, H5F_ACC_RDONLY);
    } catch (const h5::Error& e) {
      throw CheckpointError(path + ": cannot open: " + e.reason());
    }
  }
  const std::string& path() const { return path_; }
  hid_t id() const { return file_; }

  // The datasets directly in `group` (e.g. "/optim/m"), by name; none when it is missing.
  std::vector<StoredTensor> list(const std::string& group) const {
    std::vector<StoredTensor> tensors;
    if (!h5::link_exists(file_, group)) return tensors;
    try {
      h5::Group g(h5::check(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), "open group"));
      H5G_info_t info;
      h5::check(H5Gget_info(g, &info), "group info");
      for (hsize_t i = 0; i < info.nlinks; ++i) {
        const ssize_t length = h5::check(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC,
                                                            i, nullptr, 0, H5P_DEFAULT),
                                         "link name");
        std::string name(static_cast<size_t>(length) + 1, '\0');
        h5::check(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                                     name.size(), H5P_DEFAULT),
                  "link name");
        name.resize(static_cast<size_t>(length));
        const hid_t object = h5::check(H5Oopen(g, name.c_str(), H5P_DEFAULT), "open " + name);
        const bool is_dataset = H5Iget_type(object) == H5I_DATASET;
        H5Oclose(object);
        if (is_dataset) tensors.push_back({group + "/" + name, shape_of(group + "/" + name)});
      }
    } catch (const h5::Error& e) {
      throw CheckpointError(path_ + ": cannot list " + group + ": " + e.what());
    }
    return tensors;
  }

  // The whole tensor as float; CheckpointError (saying whether the checksum failed) if not.
  std::vector<float> read(const StoredTensor& t) const {
    std::vector<float> values(static_cast<size_t>(t.elements()));
    try {
      h5::Dataset d(h5::check(H5Dopen2(file_, t.path.c_str(), H5P_DEFAULT), "open dataset"));
      h5::check(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
                "H5Dread");
    } catch (const h5::Error& e) {
      const bool checksum = e.reason().find("Fletcher32") != std::string::npos;
      throw CheckpointError(path_ + ": tensor " + t.path +
                            (checksum ? ": checksum failed, the file is damaged (" : ": ") +
                            e.what() + (checksum ? ")" : ""));
    }
    return values;
  }

 private:
  std::vector<int64_t> shape_of(const std::string& dataset) const {
    h5::Dataset d(h5::check(H5Dopen2(file_, dataset.c_str(), H5P_DEFAULT), "open " + dataset));
    h5::Dataspace space(h5::check(H5Dget_space(d), "dataspace of " + dataset));
    const int ndims = h5::check(H5Sget_simple_extent_ndims(space), "rank of " + dataset);
    std::vector<hsize_t> dims(static_cast<size_t>(ndims));
    h5::check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "dims of " + dataset);
    return std::vector<int64_t>(dims.begin(), dims.end());
  }

  std::string path_;
  h5::File file_;
};

// Every non-empty line of `text` with `indent` in front, ending in a newline.
std::string indented(const std::string& text, const std::string& indent) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out += indent + text.substr(start, end - start);
    out += '\n';
    start = end + 1;
  }
  return out;
}

// ---------------------------------------------------------------- info

int run_info(const std::vector<std::string>& args) {
  if (args.size() != 1) throw InputError("usage: mptrain-ckpt info FILE");
  const std::string& path = args[0];
  const CheckpointMeta meta = read_checkpoint_meta(Comm::self(), path);
  std::printf("file              %s\n", path.c_str());
  std::printf("format            %s, version %d\n", checkpoint_format, checkpoint_format_version);
  std::printf("step              %ld (optimizer step %ld)\n", meta.step, meta.adam_step);
  std::printf("tokens_seen       %lld\n", static_cast<long long>(meta.tokens_seen));
  std::printf("layout            %s\n", meta.layout.c_str());
  std::printf("sampler_position  %llu\n", static_cast<unsigned long long>(meta.sampler_position));
  std::printf("rng_seed          %llu\n", static_cast<unsigned long long>(meta.rng_seed));
  std::printf("rng_offset        %llu\n", static_cast<unsigned long long>(meta.rng_offset));
  std::printf("deck:\n%s", indented(meta.deck_text, "  ").c_str());

  TensorFile file(path);
  std::printf("tensors:\n  %-44s %-16s %12s\n", "name", "shape", "elements");
  int64_t count = 0, elements = 0;
  for (const auto& group : all_groups) {
    for (const auto& t : file.list(group)) {
      std::printf("  %-44s %-16s %12lld\n", t.path.c_str(), shape_text(t.shape).c_str(),
                  static_cast<long long>(t.elements()));
      ++count;
      elements += t.elements();
    }
  }
  const int64_t bytes = elements * static_cast<int64_t>(sizeof(float));
  std::printf("total             %lld tensors, %lld elements, %lld bytes of float32 (%.2f MiB); "
              "file %lld bytes\n",
              static_cast<long long>(count), static_cast<long long>(elements),
              static_cast<long long>(bytes), static_cast<double>(bytes) / (1 << 20),
              static_cast<long long>(std::filesystem::file_size(path)));
  return exit_ok;
}

// ---------------------------------------------------------------- verify

// The [model] section the file was written with, as a ModelConfig.
ModelConfig stored_model(const CheckpointMeta& meta, const std::string& path) {
  const std::string text = meta.model_text.empty() ? meta.deck_text : meta.model_text;
  // Only the [model] keys matter here; the override satisfies the deck's required [data] key.
  return parse_deck_text(text, path + " (stored deck)", {"--data.train=unused"}).model;
}

int run_verify(const std::vector<std::string>& args) {
  if (args.size() != 1) throw InputError("usage: mptrain-ckpt verify FILE");
  const std::string& path = args[0];
  const CheckpointMeta meta = read_checkpoint_meta(Comm::self(), path);
  TensorFile file(path);
  std::vector<std::string> problems;

  // The tensors the stored [model] section implies.
  std::map<std::string, std::vector<int64_t>> expected;
  bool have_expected = false;
  try {
    ModelConfig model = stored_model(meta, path);
    if (model.vocab_size == 0) {  // not resolved in the deck: take it from the stored wte
      for (const auto& t : file.list("/model")) {
        if (t.path == "/model/wte" && !t.shape.empty()) model.vocab_size = static_cast<int>(t.shape[0]);
      }
    }
    for (const auto& [name, shape] :
         gpt2_tensor_shapes(model.n_layer, model.n_embd, model.seq_len, model.vocab_size)) {
      expected[name] = shape;
    }
    have_expected = true;
  } catch (const InputError& e) {
    problems.push_back(std::string("cannot check names and shapes: ") + e.what());
  }

  if (meta.adam_step > meta.step) {
    problems.push_back("the optimizer's step " + std::to_string(meta.adam_step) +
                       " exceeds the training step " + std::to_string(meta.step));
  }

  int64_t tensors = 0, elements = 0;
  for (const auto& group : all_groups) {
    std::set<std::string> seen;
    for (const auto& t : file.list(group)) {
      const std::string name = t.path.substr(group.size() + 1);
      seen.insert(name);
      if (have_expected) {
        auto it = expected.find(name);
        if (it == expected.end()) {
          problems.push_back(t.path + ": not a tensor of this model");
        } else if (it->second != t.shape) {
          problems.push_back(t.path + ": shape " + shape_text(t.shape) + ", the model needs " +
                             shape_text(it->second));
        }
      }
      try {
        const std::vector<float> values = file.read(t);
        int64_t bad = 0, first_bad = -1;
        for (size_t i = 0; i < values.size(); ++i) {
          if (!std::isfinite(values[i])) {
            if (bad++ == 0) first_bad = static_cast<int64_t>(i);
          }
        }
        if (bad > 0) {
          problems.push_back(t.path + ": " + std::to_string(bad) +
                             " non-finite values (first at flat index " +
                             std::to_string(first_bad) + ")");
        }
      } catch (const CheckpointError& e) {
        problems.push_back(e.what());
      }
      ++tensors;
      elements += t.elements();
    }
    if (have_expected) {
      for (const auto& [name, shape] : expected) {
        if (!seen.count(name)) problems.push_back(group + "/" + name + ": missing");
      }
    }
  }

  if (problems.empty()) {
    std::printf("OK %s: %lld tensors, %lld elements; checksums, names, shapes good; all values "
                "finite\n",
                path.c_str(), static_cast<long long>(tensors), static_cast<long long>(elements));
    return exit_ok;
  }
  for (const auto& p : problems) std::printf("problem: %s\n", p.c_str());
  std::printf("FAILED %s: %zu problem%s\n", path.c_str(), problems.size(),
              problems.size() == 1 ? "" : "s");
  return exit_bad_input;
}

// ---------------------------------------------------------------- diff

struct Difference {
  double max_abs = 0, max_rel = 0;
  int64_t over_tolerance = 0;
};

// Element a and b match when equal (NaN matches NaN), or when |a-b| <= tol, or when
// |a-b| <= tol * max(|a|,|b|).
Difference compare(const std::vector<float>& a, const std::vector<float>& b, double tol) {
  Difference d;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (x == y || (std::isnan(x) && std::isnan(y))) continue;
    double abs_diff = std::fabs(x - y);
    double rel_diff = abs_diff / std::max(std::fabs(x), std::fabs(y));
    if (!std::isfinite(abs_diff)) abs_diff = rel_diff = INFINITY;
    d.max_abs = std::max(d.max_abs, abs_diff);
    d.max_rel = std::max(d.max_rel, rel_diff);
    if (abs_diff > tol && rel_diff > tol) ++d.over_tolerance;
  }
  return d;
}

int run_diff(const std::vector<std::string>& args) {
  const char* usage = "usage: mptrain-ckpt diff A B [--tol X] [--model-only]";
  std::vector<std::string> files;
  double tol = 0.0;
  bool model_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "--model-only") {
      model_only = true;
      continue;
    } else if (args[i] == "--tol" && i + 1 < args.size()) {
      value = args[++i];
    } else if (args[i].rfind("--tol=", 0) == 0) {
      value = args[i].substr(6);
    } else if (args[i].rfind("--", 0) == 0) {
      throw InputError("unknown option " + args[i] + "; " + usage);
    } else {
      files.push_back(args[i]);
      continue;
    }
    size_t used = 0;
    try {
      tol = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != value.size() || !(tol >= 0)) {
      throw InputError("--tol " + value + ": must be a number >= 0");
    }
  }
  if (files.size() != 2) throw InputError(usage);

  const CheckpointMeta meta_a = read_checkpoint_meta(Comm::self(), files[0]);
  const CheckpointMeta meta_b = read_checkpoint_meta(Comm::self(), files[1]);
  std::printf("A  %s (step %ld, %s)\nB  %s (step %ld, %s)\n", files[0].c_str(), meta_a.step,
              meta_a.layout.c_str(), files[1].c_str(), meta_b.step, meta_b.layout.c_str());
  if (meta_a.model_text != meta_b.model_text) std::printf("note: the [model] sections differ\n");
  if (meta_a.tokens_seen != meta_b.tokens_seen) std::printf("note: tokens_seen differs\n");

  TensorFile a(files[0]), b(files[1]);
  std::printf("%-44s %-16s %12s %12s  %s\n", "tensor", "shape", "max_abs", "max_rel", "result");
  int differing = 0, compared = 0;
  for (const auto& group : model_only ? model_group : all_groups) {
    std::map<std::string, std::pair<const StoredTensor*, const StoredTensor*>> both;
    const std::vector<StoredTensor> in_a = a.list(group), in_b = b.list(group);
    for (const auto& t : in_a) both[t.path].first = &t;
    for (const auto& t : in_b) both[t.path].second = &t;
    for (const auto& [name, pair] : both) {
      const auto [ta, tb] = pair;
      ++compared;
      if (!ta || !tb) {
        std::printf("%-44s %-16s %12s %12s  only in %s\n", name.c_str(),
                    shape_text((ta ? ta : tb)->shape).c_str(), "-", "-", ta ? "A" : "B");
        ++differing;
        continue;
      }
      if (ta->shape != tb->shape) {
        std::printf("%-44s %-16s %12s %12s  shape differs (B: %s)\n", name.c_str(),
                    shape_text(ta->shape).c_str(), "-", "-", shape_text(tb->shape).c_str());
        ++differing;
        continue;
      }
      const Difference d = compare(a.read(*ta), b.read(*tb), tol);
      std::string result = d.max_abs == 0 ? "same" : "within tolerance";
      if (d.over_tolerance > 0) {
        result = "DIFFERS (" + std::to_string(d.over_tolerance) +
                 (d.over_tolerance == 1 ? " element)" : " elements)");
        ++differing;
      }
      std::printf("%-44s %-16s %12.4g %12.4g  %s\n", name.c_str(), shape_text(ta->shape).c_str(),
                  d.max_abs, d.max_rel, result.c_str());
    }
  }
  std::printf("%s: %d of %d tensors differ (tolerance %g)\n", differing ? "DIFFERENT" : "MATCH",
              differing, compared, tol);
  return differing ? 1 : exit_ok;
}

// ---------------------------------------------------------------- dispatch

struct Subcommand {
  const char* name;
  const char* usage;
  int (*run)(const std::vector<std::string>& args);
};

// The subcommands; `sample` (generate text from a checkpoint) goes here when it exists.
const Subcommand subcommands[] = {
    {"info", "info FILE                          attributes, deck and tensor table", run_info},
    {"verify", "verify FILE                        checksums, names, shapes, finite values",
     run_verify},
    {"diff", "diff A B [--tol X] [--model-only]  compare tensors (exit 1 when they differ)",
     run_diff},
};

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: mptrain-ckpt COMMAND ARGS\n");
  for (const auto& s : subcommands) std::fprintf(out, "  mptrain-ckpt %s\n", s.usage);
}

}  // namespace

int main(int argc, char** argv) {
  mptrain::MpiSession session(&argc, &argv);
  if (argc < 2) {
    print_usage(stderr);
    return mptrain::exit_bad_input;
  }
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    print_usage(stdout);
    return mptrain::exit_ok;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& s : subcommands) {
    if (command != s.name) continue;
    try {
      const int code = s.run(args);
      std::fflush(stdout);
      return code;
    } catch (const mptrain::InputError& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "mptrain-ckpt: %s\n", e.what());
      return e.code();
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "mptrain-ckpt: internal error: %s\n", e.what());
      return mptrain::exit_internal;
    }
  }
  std::fprintf(stderr, "mptrain-ckpt: unknown command '%s'\n", command.c_str());
  print_usage(stderr);
  return mptrain::exit_bad_input;
}
