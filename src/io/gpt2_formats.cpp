// GPT-2 weights in Hugging Face and llm.c form (gpt2_formats.hpp). The checkpoint side is in
// gpt2_checkpoint.cpp.
#include "mptrain/io/gpt2_formats.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mptrain/io/safetensors.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/model/catalogue.hpp"

namespace mptrain::gpt2io {

static_assert(std::endian::native == std::endian::little,
              "the weight formats are little-endian; this build assumes a little-endian host");

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

// ---------------------------------------------------------------- the catalogue's tensors

ModelConfig model_config(const Gpt2Config& c) {
  ModelConfig m;
  m.n_layer = c.n_layer, m.n_head = c.n_head, m.n_embd = c.n_embd;
  m.seq_len = c.n_positions, m.vocab_size = c.vocab_size;
  return m;
}

// The model catalogue's description of each tensor of a GPT-2 of this shape, by name.
std::map<std::string, TensorDesc> catalogue_by_name(const Gpt2Config& c) {
  std::map<std::string, TensorDesc> by_name;
  for (TensorDesc& t : gpt2_tensors(model_config(c))) by_name.emplace(t.name, std::move(t));
  return by_name;
}

// ---------------------------------------------------------------- Hugging Face names

// Hugging Face's GPT-2 keeps the blocks' linear weights in Conv1D modules, stored [in, out].
bool is_conv1d(const TensorDesc& t) { return t.part == Part::block && t.product != nullptr; }

// Our name -> Hugging Face's (without the "transformer." prefix): the embeddings are modules
// of their own there, whose tensor is "weight".
std::string hf_name(const TensorDesc& t) {
  return t.part == Part::embedding ? t.name + ".weight" : t.name;
}

std::vector<int64_t> hf_shape(const TensorDesc& t) {
  return is_conv1d(t) ? std::vector<int64_t>{t.shape[1], t.shape[0]} : t.shape;
}

// (rows, cols) row-major -> (cols, rows) row-major.
void transpose_into(const float* in, int64_t rows, int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
}

// h.<digits>.attn.bias and h.<digits>.attn.masked_bias: the causal-mask buffers older
// transformers versions saved with the weights. Not parameters.
bool is_mask_buffer(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return false;
  size_t i = 2;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
  if (i == 2) return false;
  const std::string rest = name.substr(i);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

// ---------------------------------------------------------------- config.json

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open: " + std::strerror(errno));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
}

// A positive integer field; `fallback` is the older name some configs use (n_ctx).
int config_int(const json& config, const std::string& path, const char* key,
               const char* fallback = nullptr) {
  const char* used = key;
  auto it = config.find(key);
  if (it == config.end() && fallback) it = config.find(used = fallback);
  if (it == config.end()) throw InputError(path + ": no \"" + std::string(key) + "\"");
  if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > 1u << 30)
    throw InputError(path + ": \"" + used + "\" = " + it->dump() + ": must be a positive integer");
  return it->get<int>();
}

// The GPT-2 variants mptrain computes exactly: the checks refuse configs whose model would
// compute something else with the same weights.
Gpt2Config read_hf_config(const std::string& path) {
  const json config = read_json_file(path);
  if (!config.is_object()) throw InputError(path + ": not a JSON object");
  auto refuse_unless = [&](bool ok, const char* key, const std::string& want) {
    if (!ok) throw InputError(path + ": \"" + key + "\" = " + config[key].dump() +
                              ": mptrain's GPT-2 needs " + want);
  };
  auto has = [&](const char* key) { return config.contains(key) && !config[key].is_null(); };
  if (has("model_type"))
    refuse_unless(config["model_type"] == "gpt2", "model_type", "\"gpt2\"");
  if (has("activation_function"))
    refuse_unless(config["activation_function"] == "gelu_new" ||
                      config["activation_function"] == "gelu_pytorch_tanh",
                  "activation_function", "\"gelu_new\" (GELU, tanh approximation)");
  if (has("layer_norm_epsilon"))
    refuse_unless(config["layer_norm_epsilon"].is_number() &&
                      config["layer_norm_epsilon"].get<double>() == 1e-5,
                  "layer_norm_epsilon", "1e-05");
  if (has("scale_attn_weights"))
    refuse_unless(config["scale_attn_weights"] == true, "scale_attn_weights", "true");
  if (has("scale_attn_by_inverse_layer_idx"))
    refuse_unless(config["scale_attn_by_inverse_layer_idx"] == false,
                  "scale_attn_by_inverse_layer_idx", "false");
  Gpt2Config c;
  c.n_layer = config_int(config, path, "n_layer");
  c.n_head = config_int(config, path, "n_head");
  c.n_embd = config_int(config, path, "n_embd");
  c.n_positions = config_int(config, path, "n_positions", "n_ctx");
  c.vocab_size = config_int(config, path, "vocab_size");
  if (has("n_inner"))
    refuse_unless(config["n_inner"] == 4 * c.n_embd, "n_inner",
                  "null or 4 * n_embd = " + std::to_string(4 * c.n_embd));
  return c;
}

json hf_config(const Gpt2Config& c) {
  const bool gpt2_vocab = c.vocab_size == 50257;  // then <|endoftext|> = 50256 exists
  json config = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"vocab_size", c.vocab_size},
      {"n_positions", c.n_positions},
      {"n_ctx", c.n_positions},
      {"n_embd", c.n_embd},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_inner", nullptr},
      {"activation_function", "gelu_new"},
      {"layer_norm_epsilon", 1e-5},
      {"resid_pdrop", 0.0},
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"initializer_range", 0.02},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"tie_word_embeddings", true},
      {"use_cache", true},
      {"bos_token_id", gpt2_vocab ? json(50256) : json(nullptr)},
      {"eos_token_id", gpt2_vocab ? json(50256) : json(nullptr)},
      {"torch_dtype", "float32"},
  };
  return config;
}

// ---------------------------------------------------------------- llm.c layout

constexpr int llmc_header_ints = 256;
constexpr int llmc_vocab_multiple = 128;

// The tensors of an llm.c model file in file order: the catalogue's, except that each block
// tensor is stacked over the layers (every layer's ln_1.weight, then every layer's ln_1.bias,
// ...). llm.c pads the vocabulary rows of the vocab-split tensor (wte) to a multiple of 128.
std::vector<TensorDesc> llmc_order(const Gpt2Config& c) {
  const std::vector<TensorDesc> catalogue = gpt2_tensors(model_config(c));
  std::vector<TensorDesc> order;
  for (const TensorDesc& t : catalogue)
    if (t.part == Part::embedding) order.push_back(t);
  for (const TensorDesc& first : catalogue) {
    if (first.layer != 0) continue;
    for (const TensorDesc& t : catalogue)
      if (t.part == Part::block && t.module == first.module && t.role == first.role)
        order.push_back(t);
  }
  for (const TensorDesc& t : catalogue)
    if (t.part == Part::head) order.push_back(t);
  return order;
}

// Reads float32 or bfloat16 values from an open file into floats.
class ValueReader {
 public:
  ValueReader(std::ifstream& in, bool bf16, const std::string& path)
      : in_(in), bf16_(bf16), path_(path) {}
  void read(float* out, size_t n) {
    if (!bf16_) return raw(out, n * sizeof(float));
    std::vector<uint16_t> bits(n);
    raw(bits.data(), n * sizeof(uint16_t));
    for (size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(uint32_t(bits[i]) << 16);
  }
  void skip(size_t n) { in_.seekg(static_cast<std::streamoff>(n * (bf16_ ? 2 : 4)), std::ios::cur); }

 private:
  void raw(void* out, size_t bytes) {
    if (!in_.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes)))
      throw InputError(path_ + ": cannot read the weights (file shorter than its header says)");
  }
  std::ifstream& in_;
  bool bf16_;
  std::string path_;
};

void write_or_throw(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes && std::fwrite(data, 1, bytes, f) != bytes)
    throw InputError(path + ": cannot write: " + std::strerror(errno));
}

}  // namespace

// ---------------------------------------------------------------- Gpt2Config, Gpt2Model

std::string Gpt2Config::text() const {
  return "n_layer=" + std::to_string(n_layer) + " n_head=" + std::to_string(n_head) +
         " n_embd=" + std::to_string(n_embd) + " n_positions=" + std::to_string(n_positions) +
         " vocab_size=" + std::to_string(vocab_size);
}

const NamedTensor& Gpt2Model::at(const std::string& name) const {
  for (const NamedTensor& t : tensors)
    if (t.name == name) return t;
  throw std::out_of_range("no tensor " + name);
}

Gpt2Model zero_model(const Gpt2Config& c, const std::string& origin) {
  if (c.n_layer < 1 || c.n_head < 1 || c.n_embd < 1 || c.n_positions < 1 || c.vocab_size < 1)
    throw InputError(origin + ": impossible GPT-2 shape " + c.text());
  if (c.n_embd % c.n_head != 0)
    throw InputError(origin + ": n_embd " + std::to_string(c.n_embd) +
                     " is not a multiple of n_head " + std::to_string(c.n_head));
  Gpt2Model model;
  model.config = c;
  for (const TensorDesc& t : gpt2_tensors(model_config(c)))
    model.tensors.push_back({t.name, t.shape, std::vector<float>(size_t(t.elements()), 0.0f)});
  return model;
}

// ---------------------------------------------------------------- Hugging Face

Gpt2Model read_hf(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw InputError(dir + ": not a directory (a Hugging Face GPT-2 is a directory with "
                     "config.json and model.safetensors)");
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(weights)) {
    std::string why = "no model.safetensors";
    if (fs::exists(fs::path(dir) / "model.safetensors.index.json"))
      why += " (sharded safetensors checkpoints are not supported: merge the shards first)";
    else if (fs::exists(fs::path(dir) / "pytorch_model.bin"))
      why += " (only safetensors are read; pytorch_model.bin is a pickle: re-save the model "
             "with save_pretrained(..., safe_serialization=True))";
    throw InputError(dir + ": " + why);
  }
  Gpt2Model model = zero_model(read_hf_config((fs::path(dir) / "config.json").string()), dir);
  const std::map<std::string, TensorDesc> catalogue = catalogue_by_name(model.config);
  safetensors::Reader reader(weights);

  // The file's names without the prefix, each once.
  std::map<std::string, std::string> stored;  // unprefixed -> as stored
  std::string lm_head;
  for (const safetensors::TensorEntry& e : reader.header().tensors) {
    std::string name = e.name;
    if (name.rfind("transformer.", 0) == 0) name.erase(0, 12);
    if (name == "lm_head.weight") {
      lm_head = e.name;
      continue;
    }
    if (is_mask_buffer(name)) continue;
    if (!stored.emplace(name, e.name).second)
      throw InputError(weights + ": holds both \"" + stored[name] + "\" and \"" + e.name + "\"");
  }
  const TensorDesc* tied = nullptr;
  for (NamedTensor& t : model.tensors) {
    const TensorDesc& desc = catalogue.at(t.name);
    if (desc.tied) tied = &desc;
    const std::string name = hf_name(desc);
    const auto found = stored.find(name);
    if (found == stored.end())
      throw InputError(weights + ": no tensor \"" + name + "\" (nor \"transformer." + name +
                       "\"), needed for a GPT-2 with " + model.config.text());
    const safetensors::TensorEntry& e = *reader.header().find(found->second);
    if (e.shape != hf_shape(desc))
      throw InputError(weights + ": tensor \"" + e.name + "\" has shape " + shape_text(e.shape) +
                       ", config.json implies " + shape_text(hf_shape(desc)));
    std::vector<float> values = reader.read_float32(e.name);
    if (is_conv1d(desc))
      transpose_into(values.data(), t.shape[1], t.shape[0], t.values.data());
    else
      t.values = std::move(values);
    stored.erase(found);
  }
  if (!stored.empty())
    throw InputError(weights + ": unexpected tensor \"" + stored.begin()->second + "\"" +
                     (stored.size() > 1 ? " (and " + std::to_string(stored.size() - 1) + " more)"
                                        : std::string()) +
                     ": not part of a GPT-2 language model with " + model.config.text());
  if (!lm_head.empty() && tied) {
    const NamedTensor& wte = model.at(tied->name);
    const safetensors::TensorEntry& e = *reader.header().find(lm_head);
    const std::vector<float> head = e.shape == wte.shape ? reader.read_float32(lm_head)
                                                         : std::vector<float>();
    if (head.size() != wte.values.size() ||
        std::memcmp(head.data(), wte.values.data(), head.size() * sizeof(float)) != 0)
      throw InputError(weights + ": \"" + lm_head + "\" differs from the token embedding "
                       "wte.weight; mptrain's LM head is tied to wte, so an untied head cannot "
                       "be imported");
  }
  return model;
}

void write_hf(const Gpt2Model& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    throw InputError(dir + ": cannot create the directory" + (ec ? ": " + ec.message() : ""));
  const std::string config_path = (fs::path(dir) / "config.json").string();
  {
    std::ofstream out(config_path);
    out << hf_config(model.config).dump(2) << '\n';
    if (!out) throw InputError(config_path + ": cannot write: " + std::strerror(errno));
  }
  const std::map<std::string, TensorDesc> catalogue = catalogue_by_name(model.config);
  std::vector<safetensors::Float32Spec> specs;
  for (const NamedTensor& t : model.tensors) {
    const TensorDesc& desc = catalogue.at(t.name);
    specs.push_back({"transformer." + hf_name(desc), hf_shape(desc)});
  }
  safetensors::write_float32_file(
      (fs::path(dir) / "model.safetensors").string(), specs, {{"format", "pt"}},
      [&](size_t i, std::span<float> out) {
        const NamedTensor& t = model.tensors[i];
        if (is_conv1d(catalogue.at(t.name)))
          transpose_into(t.values.data(), t.shape[0], t.shape[1], out.data());
        else
          std::copy(t.values.begin(), t.values.end(), out.begin());
      });
}

// ---------------------------------------------------------------- llm.c

Gpt2Model read_llmc(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const uint64_t file_bytes = static_cast<uint64_t>(std::max<std::streamoff>(0, in.tellg()));
  in.seekg(0);
  int32_t header[llmc_header_ints] = {};
  if (file_bytes < sizeof header || !in.read(reinterpret_cast<char*>(header), sizeof header))
    throw InputError(path + ": " + std::to_string(file_bytes) + " bytes, shorter than the " +
                     std::to_string(sizeof header) + "-byte header of an llm.c model file");
  if (header[0] != llmc_model_magic)
    throw InputError(path + ": not an llm.c GPT-2 model file: magic number " +
                     std::to_string(header[0]) + ", expected " + std::to_string(llmc_model_magic) +
                     (header[0] == 20240520 ? " (20240520 is an llm.c token shard: import it with "
                                              "mptrain-prep --import=llmc)"
                                            : ""));
  if (header[1] != 3 && header[1] != 5)
    throw InputError(path + ": llm.c model version " + std::to_string(header[1]) +
                     " is not supported (3 = float32, 5 = bfloat16)");
  const bool bf16 = header[1] == 5;
  Gpt2Config c;
  c.n_positions = header[2];
  c.vocab_size = header[3];
  c.n_layer = header[4];
  c.n_head = header[5];
  c.n_embd = header[6];
  const int64_t padded_vocab = header[7];
  if (c.n_positions < 1 || c.vocab_size < 1 || c.n_layer < 1 || c.n_head < 1 || c.n_embd < 1 ||
      padded_vocab < c.vocab_size)
    throw InputError(path + ": impossible llm.c header: maxT " + std::to_string(header[2]) +
                     ", V " + std::to_string(header[3]) + ", n_layer " +
                     std::to_string(header[4]) + ", n_head " + std::to_string(header[5]) +
                     ", C " + std::to_string(header[6]) + ", padded V " +
                     std::to_string(header[7]) + " (all must be >= 1, padded V >= V)");
  // The size the header implies, computed wide so absurd headers cannot overflow.
  const unsigned __int128 C = unsigned(c.n_embd), L = unsigned(c.n_layer);
  const unsigned __int128 elements = (padded_vocab + unsigned(c.n_positions)) * C +
                                     L * (12 * C * C + 13 * C) + 2 * C;
  const unsigned __int128 expected = sizeof header + elements * (bf16 ? 2 : 4);
  if (expected != file_bytes)
    throw InputError(path + ": the header (" + c.text() + ", padded vocabulary " +
                     std::to_string(padded_vocab) + ", " + (bf16 ? "bfloat16" : "float32") +
                     ") implies " + (expected >> 63 ? std::string("an impossibly large file")
                                                    : std::to_string(uint64_t(expected)) + " bytes") +
                     " but the file has " + std::to_string(file_bytes));
  Gpt2Model model = zero_model(c, path);
  ValueReader values(in, bf16, path);
  std::map<std::string, NamedTensor*> by_name;
  for (NamedTensor& t : model.tensors) by_name[t.name] = &t;
  for (const TensorDesc& desc : llmc_order(c)) {
    NamedTensor& t = *by_name.at(desc.name);
    values.read(t.values.data(), t.values.size());
    if (desc.split == Split::vocab)
      values.skip(size_t(padded_vocab - c.vocab_size) * size_t(c.n_embd));
  }
  return model;
}

void write_llmc(const Gpt2Model& model, const std::string& path) {
  const Gpt2Config& c = model.config;
  const int padded_vocab =
      (c.vocab_size + llmc_vocab_multiple - 1) / llmc_vocab_multiple * llmc_vocab_multiple;
  int32_t header[llmc_header_ints] = {};
  header[0] = llmc_model_magic;
  header[1] = 3;  // float32
  header[2] = c.n_positions;
  header[3] = c.vocab_size;
  header[4] = c.n_layer;
  header[5] = c.n_head;
  header[6] = c.n_embd;
  header[7] = padded_vocab;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw InputError(path + ": cannot create: " + std::strerror(errno));
  try {
    write_or_throw(f, header, sizeof header, path);
    for (const TensorDesc& desc : llmc_order(c)) {
      const NamedTensor& t = model.at(desc.name);
      write_or_throw(f, t.values.data(), t.values.size() * sizeof(float), path);
      if (desc.split == Split::vocab) {
        const std::vector<float> padding(size_t(padded_vocab - c.vocab_size) * c.n_embd, 0.0f);
        write_or_throw(f, padding.data(), padding.size() * sizeof(float), path);
      }
    }
  } catch (...) {
    std::fclose(f);
    throw;
  }
  if (std::fclose(f) != 0) throw InputError(path + ": cannot finish writing: " + std::strerror(errno));
}

}  // namespace mptrain::gpt2io
