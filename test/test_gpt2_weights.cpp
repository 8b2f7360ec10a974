// Tests of the GPT-2 weight formats (src/io/gpt2_formats.hpp) and of [checkpoint] init, on
// the fixtures of test/weights/ (written once by make_fixtures.py with PyTorch, independently
// of mptrain's code):
//   * the three fixture forms of one model (a current Hugging Face directory, a legacy one with
//     unprefixed keys, mask buffers and an explicit tied lm_head, an llm.c file) read to the
//     same tensors, bit for bit, and an llm.c bfloat16 file to the truncated values;
//   * written back, the Hugging Face directory and the llm.c file are byte-identical to the
//     fixtures; a step-0 checkpoint reads back bit for bit, with zero AdamW moments;
//   * the imported model's loss and logits (Run::init_model on the golden text, reading only the
//     first seq_len rows of wpe for the short case) equal the float64 PyTorch reference of
//     golden.json within float32 rounding;
//   * init refuses another model or a longer seq_len, naming the key;
//   * malformed directories and llm.c files are refused with their own messages;
//   * the GPT-2 size decks (input/gpt2-*.deck) parse, have GPT-2's shapes and parameter counts,
//     and their layouts are valid.
// One process (make check).
#define BOOST_TEST_MODULE gpt2_weights
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/gpt2_formats.hpp"
#include "mptrain/io/safetensors.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/train/trainer.hpp"
#include "mptrain/train/run.hpp"

using namespace mptrain;
using namespace mptrain::gpt2io;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string fixture(const std::string& name) {
  const char* src = std::getenv("top_srcdir");
  return (fs::path(src ? src : ".") / "test" / "weights" / name).string();
}

// A fresh scratch directory in the test's directory.
std::string scratch(const std::string& name) {
  const char* work = std::getenv("TEST_WORKDIR");
  const fs::path dir = fs::path(work ? work : fs::temp_directory_path().string()) /
                       ("gpt2_weights_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir.string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

bool bitwise_equal(const Gpt2Model& a, const Gpt2Model& b) {
  if (!(a.config == b.config) || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const NamedTensor &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.shape != y.shape || x.values.size() != y.values.size() ||
        std::memcmp(x.values.data(), y.values.data(), x.values.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

// `call` must throw InputError (CheckpointError is one) whose message contains `expected`.
void expect_refused(const std::function<void()>& call, const std::string& expected) {
  try {
    call();
    BOOST_ERROR("accepted; expected a refusal saying: " << expected);
  } catch (const InputError& e) {
    BOOST_TEST_INFO("message: " << e.what());
    BOOST_TEST(std::string(e.what()).find(expected) != std::string::npos);
  }
}

const Gpt2Config tiny{2, 4, 16, 64, 300};  // make_fixtures.py's model

// The golden text's bytes as tokens.
std::vector<int32_t> golden_tokens() {
  const std::string text = slurp(fixture("golden-text.txt"));
  std::vector<int32_t> tokens;
  for (unsigned char c : text) tokens.push_back(c);
  return tokens;
}

// A one-rank run of the tiny model over the golden text, built as mptrain builds one.
std::unique_ptr<Run> tiny_run(int seq_len, long rows, int n_embd = 16) {
  Deck deck;
  deck.model = {tiny.n_layer, tiny.n_head, n_embd, seq_len, tiny.vocab_size};
  deck.train.global_batch = rows;
  deck.data.train = "golden-text.txt";
  deck.device.threads = 1;
  static const TokenDataset data = TokenDataset::from_tokens("golden-text.txt", 256, golden_tokens());
  RunOptions options;
  options.train_data = &data;
  return build_run(deck, Comm::self(), options);
}

// The imported tiny model as a checkpoint, written once.
const std::string& imported_checkpoint() {
  static const std::string path = [] {
    const std::string p = scratch("imported") + ".h5";
    write_initial_checkpoint(read_hf(fixture("hf-tiny")), p, "test");
    return p;
  }();
  return path;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fixture_forms_agree) {
  const Gpt2Model hf = read_hf(fixture("hf-tiny"));
  BOOST_TEST(hf.config.text() == tiny.text());
  BOOST_TEST(hf.tensors.size() == 4 + 12 * 2u);
  BOOST_TEST(bitwise_equal(hf, read_hf(fixture("hf-tiny-legacy"))));
  BOOST_TEST(bitwise_equal(hf, read_llmc(fixture("gpt2-tiny.bin"))));
  // Conv1D [in, out] transposed to [out, in]: element (o, i) of c_attn is element (i, o) of
  // the stored matrix.
  safetensors::Reader st(fixture("hf-tiny/model.safetensors"));
  const std::vector<float> stored = st.read_float32("transformer.h.1.attn.c_attn.weight");  // [16,48]
  const NamedTensor& ours = hf.at("h.1.attn.c_attn.weight");                              // [48,16]
  BOOST_TEST(ours.shape == (std::vector<int64_t>{48, 16}), boost::test_tools::per_element());
  BOOST_TEST(ours.values[5 * 16 + 3] == stored[3 * 48 + 5]);

  // llm.c version 5 (bfloat16): the same file with every value cut to its top 16 bits.
  std::string bytes = slurp(fixture("gpt2-tiny.bin"));
  std::string brain = bytes.substr(0, 1024);
  brain[4] = 5;
  for (size_t at = 1024; at < bytes.size(); at += 4) brain += bytes.substr(at + 2, 2);
  const std::string path = scratch("bf16.bin");
  spit(path, brain);
  const Gpt2Model b = read_llmc(path);
  bool truncated = true;
  for (size_t t = 0; t < hf.tensors.size(); ++t)
    for (size_t i = 0; i < hf.tensors[t].values.size(); ++i)
      truncated = truncated && std::bit_cast<uint32_t>(b.tensors[t].values[i]) ==
                                   (std::bit_cast<uint32_t>(hf.tensors[t].values[i]) & 0xffff0000u);
  BOOST_TEST(truncated);
}

BOOST_AUTO_TEST_CASE(written_files_equal_the_fixtures_byte_for_byte) {
  const std::string dir = scratch("hf-out");
  write_hf(read_hf(fixture("hf-tiny-legacy")), dir);
  BOOST_TEST(slurp(dir + "/model.safetensors") == slurp(fixture("hf-tiny/model.safetensors")));
  BOOST_TEST(slurp(dir + "/config.json") == slurp(fixture("hf-tiny/config.json")));
  const std::string bin = scratch("llmc-out.bin");
  write_llmc(read_hf(fixture("hf-tiny")), bin);
  BOOST_TEST(slurp(bin) == slurp(fixture("gpt2-tiny.bin")));
  // GPT-2's vocabulary gets the <|endoftext|> token ids in config.json.
  Gpt2Model big = zero_model({1, 1, 1, 1, 50257}, "test");
  write_hf(big, dir);
  const json config = json::parse(slurp(dir + "/config.json"));
  BOOST_TEST(config["bos_token_id"] == 50256);
  BOOST_TEST(config["eos_token_id"] == 50256);
  BOOST_TEST(config["model_type"] == "gpt2");
  BOOST_TEST(config["architectures"][0] == "GPT2LMHeadModel");
}

BOOST_AUTO_TEST_CASE(step0_checkpoint_round_trip) {
  const Gpt2Model model = read_llmc(fixture("gpt2-tiny.bin"));
  const std::string path = scratch("step0.h5");
  write_initial_checkpoint(model, path, "llm.c test");
  BOOST_TEST(!fs::exists(path + ".tmp"));
  BOOST_TEST(bitwise_equal(model, read_checkpoint_model(path)));
  const CheckpointMeta meta = read_checkpoint_meta(Comm::self(), path);
  BOOST_TEST(meta.step == 0);
  BOOST_TEST(meta.adam_step == 0);
  BOOST_TEST(meta.sampler_position == 0u);
  BOOST_TEST(meta.layout.find("imported from llm.c test") != std::string::npos);
  const Deck stored = parse_deck_text(meta.deck_text, "stored deck");
  BOOST_TEST(stored.model.n_head == 4);
  BOOST_TEST(stored.model.seq_len == 64);
  BOOST_TEST(stored.model.vocab_size == 300);
  // Fresh AdamW: every moment zero.
  Gpt2Model m = zero_model(model.config, "m"), v = zero_model(model.config, "v");
  std::vector<TensorIO> m_views, v_views;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    ShardSpec spec;
    spec.name = m.tensors[i].name;
    spec.global_shape = m.tensors[i].shape;
    spec.local_rows = spec.global_shape[0];
    spec.local_cols = spec.global_shape.size() > 1 ? spec.global_shape[1] : 1;
    spec.blocks = {{0, 0, 0, 0, spec.local_rows, spec.local_cols}};
    std::fill(m.tensors[i].values.begin(), m.tensors[i].values.end(), 1.0f);
    std::fill(v.tensors[i].values.begin(), v.tensors[i].values.end(), 1.0f);
    m_views.push_back({spec, m.tensors[i].values.data()});
    v_views.push_back({spec, v.tensors[i].values.data()});
  }
  read_checkpoint_tensors(Comm::self(), path, {{}, m_views, v_views});
  bool zeros = true;
  for (const Gpt2Model* g : {&m, &v})
    for (const NamedTensor& t : g->tensors)
      zeros = zeros && std::all_of(t.values.begin(), t.values.end(), [](float x) { return x == 0; });
  BOOST_TEST(zeros);
}

// The imported model against the float64 PyTorch reference: the mean loss of the first global
// batch and row 0's logits.
BOOST_AUTO_TEST_CASE(imported_model_matches_pytorch_reference) {
  const json golden = json::parse(slurp(fixture("golden.json")));
  const std::vector<int32_t> tokens = golden_tokens();
  for (const json& c : golden["cases"]) {
    const int T = c["seq_len"];
    const long rows = c["rows"];
    std::unique_ptr<Run> run = tiny_run(T, rows);
    run->init_model(imported_checkpoint());
    Model& model = *run->model;
    double loss_sum = 0, max_logit_dev = 0, max_logit = 0;
    for (long r = 0; r < rows; ++r) {
      const std::vector<int32_t> inputs(tokens.begin() + r * T, tokens.begin() + r * T + T);
      const std::vector<int32_t> targets(tokens.begin() + r * T + 1, tokens.begin() + r * T + T + 1);
      model.set_tokens(0, inputs.data(), targets.data());
      model.forward(0);
      loss_sum += model.loss(0, 1.0f, false);
      if (r != 0) continue;
      const std::vector<int> positions = c["row0_positions"];
      const std::vector<double> reference = c["row0_logits"];
      BOOST_REQUIRE(reference.size() == positions.size() * size_t(tiny.vocab_size));
      for (size_t p = 0; p < positions.size(); ++p) {
        const std::vector<float> logits = model.logits_row(positions[p]);
        BOOST_REQUIRE(logits.size() == size_t(tiny.vocab_size));
        for (size_t v = 0; v < logits.size(); ++v) {
          const double ref = reference[p * tiny.vocab_size + v];
          max_logit_dev = std::max(max_logit_dev, std::fabs(logits[v] - ref));
          max_logit = std::max(max_logit, std::fabs(ref));
        }
      }
    }
    const double loss = loss_sum / double(rows * T), ref_loss = c["loss"];
    const double loss_dev = std::fabs(loss - ref_loss) / ref_loss;
    std::printf("reference T=%d rows=%ld: loss %.9g vs PyTorch %.9g (relative deviation %.2e); "
                "row-0 logits: max |deviation| %.2e, largest |logit| %.3g (relative %.2e)\n",
                T, rows, loss, ref_loss, loss_dev, max_logit_dev, max_logit,
                max_logit_dev / max_logit);
    // float32 against float64: measured 1e-8 (loss) and 4e-7 (logits, relative to the largest)
    // here; the bounds leave room for other BLAS kernels' rounding, far below 1e-5.
    BOOST_TEST(loss_dev <= 1e-6);
    BOOST_TEST(max_logit_dev / max_logit <= 2e-6);
  }
}

BOOST_AUTO_TEST_CASE(init_refuses_another_model) {
  const std::string& path = imported_checkpoint();
  expect_refused([&] { tiny_run(16, 4, 32)->init_model(path); },
                 "[checkpoint] init = " + path + ": written for a different model: [model] "
                 "n_embd = 16 in the checkpoint, 32 in the deck");
  expect_refused([&] { tiny_run(128, 2)->init_model(path); },
                 "[model] seq_len = 128 exceeds the 64 positions the checkpoint holds");
  expect_refused([&] { tiny_run(16, 4)->init_model(scratch("absent.h5")); },
                 "absent.h5: cannot open checkpoint");
  // seq_len equal to the stored positions reads all of wpe.
  BOOST_CHECK_NO_THROW(tiny_run(64, 2)->init_model(path));
}

BOOST_AUTO_TEST_CASE(hf_directories_refused) {
  const Gpt2Model model = read_hf(fixture("hf-tiny"));
  const std::string config = slurp(fixture("hf-tiny/config.json"));
  // A copy of hf-tiny with config.json edited (`from` -> `to`) and/or other tensors.
  auto variant = [&](const std::string& name, const std::string& from, const std::string& to,
                     const std::function<void(std::vector<std::pair<std::string, NamedTensor>>&)>&
                         edit = nullptr) {
    const std::string dir = scratch(name);
    fs::create_directories(dir);
    std::string text = config;
    if (!from.empty()) {
      BOOST_REQUIRE(text.find(from) != std::string::npos);
      text.replace(text.find(from), from.size(), to);
    }
    spit(dir + "/config.json", text);
    if (!edit) {
      fs::copy_file(fixture("hf-tiny/model.safetensors"), dir + "/model.safetensors");
      return dir;
    }
    safetensors::Reader in(fixture("hf-tiny/model.safetensors"));
    std::vector<std::pair<std::string, NamedTensor>> tensors;
    for (const auto& e : in.header().tensors)
      tensors.push_back({e.name, {e.name, e.shape, in.read_float32(e.name)}});
    edit(tensors);
    std::vector<safetensors::RawTensor> raw;
    for (const auto& [key, t] : tensors)
      raw.push_back({key, "F32", t.shape, std::as_bytes(std::span<const float>(t.values))});
    safetensors::write_file(dir + "/model.safetensors", raw, {{"format", "pt"}});
    return dir;
  };
  auto refused = [&](const std::string& dir, const std::string& expected) {
    expect_refused([&] { read_hf(dir); }, expected);
  };
  refused(variant("relu", "\"gelu_new\"", "\"relu\""),
          "\"activation_function\" = \"relu\": mptrain's GPT-2 needs \"gelu_new\"");
  refused(variant("eps", "1e-05", "1e-06"), "\"layer_norm_epsilon\" = 1e-06");
  refused(variant("llama", "\"gpt2\"", "\"llama\""), "\"model_type\" = \"llama\"");
  refused(variant("no-heads", "\"n_head\"", "\"n_heads\""), "config.json: no \"n_head\"");
  refused(variant("inner", "\"n_inner\": null", "\"n_inner\": 32"), "\"n_inner\" = 32");
  refused(variant("bad-json", "{", "{,"), "config.json: not valid JSON");
  refused(variant("positions", "\"n_positions\": 64", "\"n_positions\": 32"),
          "tensor \"transformer.wpe.weight\" has shape [64,16], config.json implies [32,16]");
  refused(variant("untied", "", "",
                  [&](auto& t) {
                    NamedTensor head = model.at("wte");
                    head.values[7] += 1.0f;
                    t.push_back({"lm_head.weight", head});
                  }),
          "\"lm_head.weight\" differs from the token embedding wte.weight; mptrain's LM head is "
          "tied to wte");
  refused(variant("extra", "", "",
                  [&](auto& t) { t.push_back({"score.weight", model.at("ln_f.bias")}); }),
          "unexpected tensor \"score.weight\": not part of a GPT-2 language model");
  refused(variant("missing", "", "", [](auto& t) { t.pop_back(); }),
          "no tensor \"ln_f.bias\" (nor \"transformer.ln_f.bias\")");
  refused(variant("twice", "", "",
                  [&](auto& t) { t.push_back({"wte.weight", model.at("wte")}); }),
          "holds both \"transformer.wte.weight\" and \"wte.weight\"");
  const std::string bare = scratch("bare");
  fs::create_directories(bare);
  refused(bare, "no model.safetensors");
  spit(bare + "/model.safetensors.index.json", "{}");
  refused(bare, "sharded safetensors checkpoints are not supported");
  refused(fixture("gpt2-tiny.bin"), "not a directory");
  // A tied head that equals wte is accepted (the legacy fixture holds one); so is a config with
  // only n_ctx.
  BOOST_TEST(bitwise_equal(model, read_hf(variant("n_ctx", "\"n_positions\": 64,", ""))));
}

BOOST_AUTO_TEST_CASE(llmc_files_refused) {
  const std::string good = slurp(fixture("gpt2-tiny.bin"));
  auto with_int = [&](const std::string& name, int index, int32_t value) {
    std::string bytes = good;
    std::memcpy(bytes.data() + 4 * index, &value, 4);
    const std::string path = scratch(name);
    spit(path, bytes);
    return path;
  };
  auto refused = [&](const std::string& path, const std::string& expected) {
    expect_refused([&] { read_llmc(path); }, expected);
  };
  refused(with_int("magic.bin", 0, 12345),
          "not an llm.c GPT-2 model file: magic number 12345, expected 20240326");
  refused(with_int("shard.bin", 0, 20240520), "is an llm.c token shard");
  refused(with_int("version.bin", 1, 4), "llm.c model version 4 is not supported");
  refused(with_int("padded.bin", 7, 299), "impossible llm.c header");
  refused(with_int("layers.bin", 4, 3), "implies 69184 bytes but the file has 56064");
  refused(with_int("huge.bin", 6, 2000000000), "implies an impossibly large file");
  const std::string truncated = scratch("truncated.bin");
  spit(truncated, good.substr(0, good.size() - 4));
  refused(truncated, "but the file has 56060");
  spit(truncated, good.substr(0, 100));
  refused(truncated, "100 bytes, shorter than the 1024-byte header");
  refused(scratch("absent.bin"), "cannot open");
}

BOOST_AUTO_TEST_CASE(gpt2_size_decks) {
  struct Size {
    const char* name;
    int n_layer, n_head, n_embd;
    int64_t parameters;  // GPT2LMHeadModel.num_parameters() of the published models
  };
  const Size sizes[] = {{"124M", 12, 12, 768, 124'439'808},
                        {"350M", 24, 16, 1024, 354'823'168},
                        {"774M", 36, 20, 1280, 774'030'080},
                        {"1558M", 48, 25, 1600, 1'557'611'200}};
  for (const Size& s : sizes) {
    BOOST_TEST_CONTEXT("gpt2-" << s.name << ".deck") {
      const Deck deck = read_deck(fixture("../../input/gpt2-" + std::string(s.name) + ".deck"));
      BOOST_TEST(deck.model.n_layer == s.n_layer);
      BOOST_TEST(deck.model.n_head == s.n_head);
      BOOST_TEST(deck.model.n_embd == s.n_embd);
      BOOST_TEST(deck.model.seq_len == 1024);
      BOOST_TEST(deck.model.vocab_size == 50257);
      BOOST_TEST(deck.optim.weight_decay == 0.1);
      BOOST_TEST(deck.optim.grad_clip == 1.0);
      BOOST_TEST(deck.optim.schedule == "cosine");
      BOOST_TEST(deck.optim.warmup_steps > 0);
      int64_t parameters = 0;
      for (const auto& [name, shape] : gpt2_tensor_shapes(s.n_layer, s.n_embd, 1024, 50257)) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        parameters += n;
      }
      BOOST_TEST(parameters == s.parameters);
      // The deck's layout is valid with two DP replicas.
      const int world = deck.parallel.tp * deck.parallel.pp * 2;
      BOOST_CHECK_NO_THROW(resolve_layout(deck, world));
    }
  }
}
