// GPT-2 weights in the formats other tools use, converted to and from mptrain's own tensor set
// (the checkpoint schema of doc/DESIGN.md §4: the names and [out, in] shapes of the model catalogue,
// gpt2_tensors() in model/catalogue.hpp, float32, wpe with n_positions rows, wte with the
// unpadded vocabulary):
//   * a Hugging Face GPT-2 directory: config.json + model.safetensors. Keys are read with or
//     without the "transformer." prefix; the attention-mask buffers (attn.bias,
//     attn.masked_bias) are ignored; Conv1D weights are stored [in, out] and transposed;
//     lm_head.weight must be absent or equal to wte (mptrain's head is tied). Written with the
//     prefix, float32, and __metadata__ {"format": "pt"}, so GPT2LMHeadModel.from_pretrained
//     loads it.
//   * an llm.c model file (gpt2_*.bin): a 256-int32 header (magic 20240326, version 3 = fp32,
//     5 = bf16 read only; maxT, V, n_layer, n_head, C, padded vocabulary Vp) and the 16 tensors
//     stacked over layers in llm.c's order. The padding rows V..Vp-1 of wte are dropped on
//     reading and written as zeros (Vp = V rounded up to 128).
//   * a step-0 mptrain checkpoint (fresh AdamW state) written with the library's writer, and
//     the model section of any checkpoint read back.
// Everything malformed is refused with an InputError naming the file and the problem.
// Memory: the whole model in float32 on one process (import and export are serial tools).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mptrain::gpt2io {

// The shape of a GPT-2; n_positions is the number of wpe rows (the longest context).
struct Gpt2Config {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;
  int n_positions = 0;
  int vocab_size = 0;
  bool operator==(const Gpt2Config&) const = default;
  std::string text() const;  // "n_layer=12 n_head=12 n_embd=768 n_positions=1024 vocab_size=50257"
};

struct NamedTensor {
  std::string name;            // checkpoint name, e.g. "h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;  // [out, in] for matrices
  std::vector<float> values;   // row-major
};

// A model in the checkpoint schema: exactly the tensors of the model catalogue (gpt2_tensors)
// for this config (seq_len = n_positions), in that order.
struct Gpt2Model {
  Gpt2Config config;
  std::vector<NamedTensor> tensors;
  const NamedTensor& at(const std::string& name) const;  // throws std::out_of_range
};

// Zero-filled tensors of a GPT-2 of this shape. Throws InputError for a non-positive size or
// n_embd % n_head != 0.
Gpt2Model zero_model(const Gpt2Config& config, const std::string& origin);

// Hugging Face directory (config.json + model.safetensors).
Gpt2Model read_hf(const std::string& dir);
// Creates `dir` if needed and writes config.json and model.safetensors into it.
void write_hf(const Gpt2Model& model, const std::string& dir);

// llm.c model file.
inline constexpr int32_t llmc_model_magic = 20240326;
Gpt2Model read_llmc(const std::string& path);
void write_llmc(const Gpt2Model& model, const std::string& path);  // version 3 (fp32)

// Not collective (one process, MPI_COMM_SELF): writes a step-0 checkpoint of `model` with
// zero AdamW moments and a resolved deck whose [model] section has the model's shape
// (seq_len = n_positions). `source` is noted in the layout attribute.
void write_initial_checkpoint(const Gpt2Model& model, const std::string& path,
                              const std::string& source);
// Not collective: the /model tensors of a checkpoint, its shape taken from the stored [model]
// section. Throws CheckpointError for an unusable file.
Gpt2Model read_checkpoint_model(const std::string& path);

}  // namespace mptrain::gpt2io
