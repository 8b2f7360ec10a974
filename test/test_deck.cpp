// Unit tests of the input deck (deck.hpp): a full deck parses to the values written, its
// resolved text parses back to exactly the same deck, command-line overrides win, and every kind
// of mistake (unknown key or section, bad value of each type, out-of-range or cross-key value,
// missing file, missing [data] train) is refused with an InputError that says where and what.
#define BOOST_TEST_MODULE deck
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"

using namespace mptrain;

namespace {

// Every key set to a value different from its default.
const char* const full_deck = R"(# a deck touching every key
[model]
n_layer = 3
n_head = 6
n_embd = 96      # 16 per head
seq_len = 32
vocab_size = 300

[parallel]
tp = 2
pp = 3
dp = 4
micro_batch = 2
bucket_mb = 2.5

[train]
global_batch = 16
steps = 250
seed = 18446744073709551615
max_bad_steps = 7
recompute = selective

[optim]
lr = 6e-4
min_lr = 0.00006
warmup_steps = 10
schedule = linear
beta1 = 0.85
beta2 = 0.999
eps = 1e-10
weight_decay = 0.01
decay_all = yes
grad_clip = 0.5
zero = 1

[data]
train = data/train.h5
val = data/val.h5
sampler = shuffle
val_every = 50
val_batches = 4

[checkpoint]
dir = ckpt
every = 100
keep = 3
save_initial = 1
restart = none

[log]
every = 5
metrics = out/metrics.csv

[device]
backend = auto
threads = 8
precision = bf16
)";

const std::string minimal_deck = "[data]\ntrain = t.h5\n";

// Runs `parse` expecting an InputError; checks that its message contains every fragment.
template <class F>
void expect_input_error(F parse, const std::vector<std::string>& fragments) {
  try {
    parse();
    BOOST_ERROR("no InputError thrown; expected one mentioning '" + fragments.front() + "'");
  } catch (const InputError& e) {
    std::string message = e.what();
    BOOST_TEST_MESSAGE("InputError: " << message);
    for (const std::string& fragment : fragments) {
      BOOST_TEST(message.find(fragment) != std::string::npos,
                 "message '" << message << "' lacks '" << fragment << "'");
    }
    BOOST_TEST(e.code() == exit_bad_input);
  }
}

void expect_text_error(const std::string& text, const std::vector<std::string>& fragments,
                       const std::vector<std::string>& overrides = {}) {
  expect_input_error([&] { parse_deck_text(text, "input/test.deck", overrides); }, fragments);
}

// A scratch directory removed at the end of the test, inside the test's own work directory
// when run by test/run-test.sh (TEST_WORKDIR), else in the system's temporary directory.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    const char* workdir = std::getenv("TEST_WORKDIR");
    std::filesystem::path base = workdir != nullptr ? std::filesystem::path(workdir)
                                                    : std::filesystem::temp_directory_path();
    std::string pattern = (base / "deck-XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    BOOST_REQUIRE(mkdtemp(buffer.data()) != nullptr);
    path = buffer.data();
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

BOOST_AUTO_TEST_CASE(full_deck_values) {
  Deck d = parse_deck_text(full_deck, "full.deck");
  BOOST_TEST(d.model.n_layer == 3);
  BOOST_TEST(d.model.n_head == 6);
  BOOST_TEST(d.model.n_embd == 96);
  BOOST_TEST(d.model.seq_len == 32);
  BOOST_TEST(d.model.vocab_size == 300);
  BOOST_TEST(d.parallel.tp == 2);
  BOOST_TEST(d.parallel.pp == 3);
  BOOST_TEST(d.parallel.dp == 4);
  BOOST_TEST(d.parallel.micro_batch == 2);
  BOOST_TEST(d.parallel.bucket_mb == 2.5);
  BOOST_TEST(d.train.global_batch == 16);
  BOOST_TEST(d.train.steps == 250);
  BOOST_TEST(d.train.seed == 18446744073709551615ull);
  BOOST_TEST(d.train.max_bad_steps == 7);
  BOOST_TEST(d.train.recompute == "selective");
  BOOST_TEST(same_bits(d.optim.lr, 6e-4));
  BOOST_TEST(same_bits(d.optim.min_lr, 0.00006));
  BOOST_TEST(d.optim.warmup_steps == 10);
  BOOST_TEST(d.optim.schedule == "linear");
  BOOST_TEST(d.optim.beta1 == 0.85);
  BOOST_TEST(d.optim.beta2 == 0.999);
  BOOST_TEST(d.optim.eps == 1e-10);
  BOOST_TEST(d.optim.weight_decay == 0.01);
  BOOST_TEST(d.optim.decay_all);
  BOOST_TEST(d.optim.grad_clip == 0.5);
  BOOST_TEST(d.optim.zero == 1);
  BOOST_TEST(d.data.train == "data/train.h5");
  BOOST_TEST(d.data.val == "data/val.h5");
  BOOST_TEST(d.data.sampler == "shuffle");
  BOOST_TEST(d.data.val_every == 50);
  BOOST_TEST(d.data.val_batches == 4);
  BOOST_TEST(d.checkpoint.dir == "ckpt");
  BOOST_TEST(d.checkpoint.every == 100);
  BOOST_TEST(d.checkpoint.keep == 3);
  BOOST_TEST(d.checkpoint.save_initial);
  BOOST_TEST(d.checkpoint.restart == "none");
  BOOST_TEST(d.log.every == 5);
  BOOST_TEST(d.log.metrics == "out/metrics.csv");
  BOOST_TEST(d.device.backend == "auto");
  BOOST_TEST(d.device.threads == 8);
  BOOST_TEST(d.device.precision == "bf16");
}

BOOST_AUTO_TEST_CASE(defaults_when_absent) {
  Deck d = parse_deck_text(minimal_deck, "min.deck");
  Deck defaults;
  defaults.data.train = "t.h5";
  BOOST_TEST(d.text() == defaults.text());
  BOOST_TEST(d.optim.schedule == "cosine");
  BOOST_TEST(d.data.val.empty());
}

BOOST_AUTO_TEST_CASE(text_round_trips_exactly) {
  // Doubles that need all 17 digits, strings left empty, the largest seed.
  Deck original = parse_deck_text(full_deck, "full.deck",
                                  {"--optim.lr=0.30000000000000004", "--optim.min_lr=1e-300",
                                   "--optim.beta2=0.99999999999999989", "--log.metrics="});
  std::string text = original.text();
  BOOST_TEST_MESSAGE(text);
  Deck again = parse_deck_text(text, "resolved");
  BOOST_TEST(again.text() == text);
  BOOST_TEST(same_bits(again.optim.lr, 0.1 + 0.2));
  BOOST_TEST(same_bits(again.optim.min_lr, 1e-300));
  BOOST_TEST(same_bits(again.optim.beta2, original.optim.beta2));
  BOOST_TEST(again.log.metrics.empty());
  BOOST_TEST(again.train.seed == original.train.seed);
  BOOST_TEST(again.data.val == "data/val.h5");
  // Every section appears, and every line is "key = value" or a header.
  for (const char* section : {"[model]", "[parallel]", "[train]", "[optim]", "[data]",
                              "[checkpoint]", "[log]", "[device]"}) {
    BOOST_TEST(text.find(section) != std::string::npos, section);
  }
  // The model section alone.
  std::string model = original.model_text();
  BOOST_TEST(model.find("[model]") == 0);
  BOOST_TEST(model.find("n_embd = 96") != std::string::npos);
  BOOST_TEST(model.find("[optim]") == std::string::npos);
  BOOST_TEST(parse_deck_text(model + minimal_deck, "model").model_text() == model);
}

// Deck::value (mptrain --print-deck=KEYS): every key of the resolved text, by name, with the
// text's own spelling of its value; names that are not keys are refused with a suggestion.
BOOST_AUTO_TEST_CASE(value_of_each_key) {
  Deck d = parse_deck_text(full_deck, "full.deck",
                           {"--optim.lr=0.30000000000000004", "--log.metrics=",
                            "--checkpoint.dir=run 1/ck=a"});
  std::istringstream text(d.text());
  std::string line, section;
  int keys = 0;
  while (std::getline(text, line)) {
    if (line.empty()) continue;
    if (line.front() == '[') {
      section = line.substr(1, line.size() - 2);
      continue;
    }
    const size_t equals = line.find(" =");
    BOOST_REQUIRE(equals != std::string::npos);
    const std::string value = line.size() > equals + 3 ? line.substr(equals + 3) : "";
    const std::string name = section + "." + line.substr(0, equals);
    BOOST_TEST(d.value(name) == value, name);
    ++keys;
  }
  BOOST_TEST(keys >= 40);
  BOOST_TEST(d.value("optim.lr") == "0.30000000000000004");
  BOOST_TEST(d.value("log.metrics") == "");
  BOOST_TEST(d.value("checkpoint.dir") == "run 1/ck=a");
  BOOST_TEST(d.value("train.seed") == "18446744073709551615");
  BOOST_TEST(d.value("optim.decay_all") == "true");
  expect_input_error([&] { d.value("train.step"); }, {"[train] step", "did you mean [train] steps"});
  expect_input_error([&] { d.value("optimizer.lr"); }, {"unknown section [optimizer]"});
  expect_input_error([&] { d.value("lr"); }, {"outside any section", "[optim] lr"});
}

BOOST_AUTO_TEST_CASE(overrides_win) {
  ScratchDir dir;
  std::string path = dir.write("run.deck", full_deck);
  Deck d = read_deck(path, {"--train.steps=7", "--optim.schedule=cosine",
                            "--data.val=", "--parallel.bucket_mb", "8", "--checkpoint.save_initial=no"});
  BOOST_TEST(d.path == path);
  BOOST_TEST(d.train.steps == 7);
  BOOST_TEST(d.optim.schedule == "cosine");
  BOOST_TEST(d.data.val.empty());
  BOOST_TEST(d.parallel.bucket_mb == 8.0);
  BOOST_TEST(!d.checkpoint.save_initial);
  BOOST_TEST(d.model.n_layer == 3);  // untouched keys keep the file's value
  // The last of two overrides wins; an override may also set a key the file leaves out.
  Deck e = parse_deck_text(minimal_deck, "x", {"--train.steps=1", "--train.steps=2"});
  BOOST_TEST(e.train.steps == 2);
  // An override may repair a bad value in the file.
  Deck f = parse_deck_text(minimal_deck + "[optim]\nschedule = cosin\n", "x",
                           {"--optim.schedule=constant"});
  BOOST_TEST(f.optim.schedule == "constant");
  // Every ZeRO stage, 0 to 2, is a valid value.
  for (int zero : {0, 1, 2})
    BOOST_TEST(parse_deck_text(minimal_deck, "x", {"--optim.zero=" + std::to_string(zero)}).optim.zero == zero);
}

BOOST_AUTO_TEST_CASE(unknown_keys_and_sections) {
  expect_text_error(
      minimal_deck + "[optim]\nlerning_rate = 0.1\n",
      {"input/test.deck:4:", "unknown key [optim] lerning_rate", "did you mean [optim] lr?"});
  expect_text_error(minimal_deck + "[model]\nn_layers = 4\n",
                    {"input/test.deck:4:", "n_layers", "did you mean [model] n_layer?"});
  // A key in the wrong section is pointed to the right one.
  expect_text_error(minimal_deck + "[train]\nlr = 0.1\n", {"[train] lr", "[optim] lr"});
  expect_text_error(minimal_deck + "[optimizer]\nlr = 0.1\n",
                    {"input/test.deck:4:", "unknown section [optimizer]", "did you mean [optim]"});
  expect_text_error("steps = 3\n" + minimal_deck,
                    {"input/test.deck:1:", "steps", "outside any section"});
  expect_text_error(minimal_deck, {"command line", "unknown key [train] stepz", "[train] steps"},
                    {"--train.stepz=3"});
  expect_text_error(minimal_deck, {"command line", "unknown section [gpu]"}, {"--gpu.count=3"});
  expect_text_error(minimal_deck, {"command line", "unexpected argument 'steps=3'"}, {"steps=3"});
  expect_text_error(minimal_deck + "[model]\nn_layer\n",
                    {"input/test.deck:4:", "cannot read line 'n_layer'"});
  expect_text_error(minimal_deck + "[train]\nsteps = 1\nsteps = 2\n",
                    {"input/test.deck:5:", "[train] steps", "more than once", "line 4"});
}

BOOST_AUTO_TEST_CASE(bad_values) {
  // Wrong type for an integer, a double, a bool; out of range; not one of the choices.
  expect_text_error(minimal_deck + "[model]\nn_layer = 2.5\n",
                    {"input/test.deck:4:", "[model] n_layer = \"2.5\"", "must be an integer >= 1"});
  expect_text_error(minimal_deck + "[train]\nsteps = ten\n",
                    {"[train] steps", "\"ten\"", "integer"});
  expect_text_error(minimal_deck + "[optim]\nlr = fast\n",
                    {"input/test.deck:4:", "[optim] lr = \"fast\"", "must be a number > 0"});
  expect_text_error(minimal_deck + "[optim]\nlr = 0\n", {"[optim] lr = \"0\"", "> 0"});
  expect_text_error(minimal_deck + "[optim]\nlr = nan\n", {"[optim] lr", "> 0"});
  expect_text_error(minimal_deck + "[optim]\nbeta2 = 1\n", {"[optim] beta2", "[0, 1)"});
  expect_text_error(minimal_deck + "[optim]\nschedule = cosin\n",
                    {"input/test.deck:4: [optim] schedule = \"cosin\": must be one of constant, "
                     "cosine, linear"});
  expect_text_error(minimal_deck + "[optim]\nzero = 3\n",
                    {"input/test.deck:4: [optim] zero = \"3\": must be an integer in [0, 2]"});
  expect_text_error(minimal_deck + "[optim]\ndecay_all = maybe\n",
                    {"[optim] decay_all = \"maybe\"", "true or false"});
  expect_text_error(minimal_deck + "[device]\nbackend = gpu\n",
                    {"[device] backend", "cpu, cuda, auto"});
  expect_text_error(minimal_deck + "[parallel]\ntp = 0\n", {"[parallel] tp = \"0\"", ">= 1"});
  expect_text_error(minimal_deck + "[parallel]\ndp = -1\n", {"[parallel] dp", ">= 0"});
  expect_text_error(minimal_deck + "[parallel]\nbucket_mb = 0\n", {"[parallel] bucket_mb", "> 0"});
  expect_text_error(minimal_deck + "[train]\nseed = -1\n", {"[train] seed", ">= 0"});
  expect_text_error(minimal_deck + "[train]\nmax_bad_steps = 0\n", {"[train] max_bad_steps"});
  expect_text_error(minimal_deck + "[train]\nrecompute = yes\n",
                    {"[train] recompute = \"yes\"", "none, selective, full"});
  expect_text_error(minimal_deck + "[model]\nn_head = 99999999999\n",
                    {"[model] n_head", "at most 2147483647"});
  expect_text_error(minimal_deck + "[log]\nevery = 0\n", {"[log] every", ">= 1"});
  expect_text_error(minimal_deck + "[data]\nval_batches = 0\n", {"[data] val_batches"});
  expect_text_error(minimal_deck + "[data]\nsampler = random\n", {"sequential, shuffle"});
  expect_text_error(minimal_deck + "[checkpoint]\nrestart =\n",
                    {"[checkpoint] restart", "non-empty"});
  // Cross-key checks name both keys.
  expect_text_error(minimal_deck + "[model]\nn_head = 5\nn_embd = 128\n",
                    {"[model] n_embd = 128", "multiple of [model] n_head (5)"});
  expect_text_error(minimal_deck + "[optim]\nlr = 0.001\nmin_lr = 0.01\n",
                    {"[optim] min_lr", "[optim] lr"});
  // GPU precisions with the CPU backend (the default) would be silently fp32: refused, at the
  // line of whichever key was set, or on the command line when set there.
  expect_text_error(minimal_deck + "[device]\nprecision = bf16\n",
                    {"input/test.deck:4: [device] precision = bf16 needs [device] backend = cuda",
                     "fp32 only"});
  expect_text_error(minimal_deck + "[device]\nprecision = tf32\nbackend = cpu\n",
                    {"[device] precision = tf32 needs [device] backend = cuda"});
  expect_text_error(minimal_deck + "[device]\nbackend = cuda\nprecision = tf32\n",
                    {"command line: [device] precision = tf32"}, {"--device.backend=cpu"});
  for (const char* backend : {"cuda", "auto"})  // checked where the backend is chosen
    BOOST_TEST(parse_deck_text(minimal_deck + "[device]\nprecision = bf16\nbackend = " +
                                   backend + "\n",
                               "x")
                   .device.precision == "bf16");
  // Bad values on the command line say so.
  expect_text_error(minimal_deck, {"command line: [train] global_batch = \"x\""},
                    {"--train.global_batch=x"});
}

BOOST_AUTO_TEST_CASE(bools_accept_the_usual_spellings) {
  for (const char* yes : {"true", "1", "yes", "Yes", "TRUE"}) {
    BOOST_TEST(
        parse_deck_text(minimal_deck, "x", {std::string("--optim.decay_all=") + yes}).optim.decay_all);
  }
  for (const char* no : {"false", "0", "no", "No", "FALSE"}) {
    BOOST_TEST(!parse_deck_text(full_deck, "x", {std::string("--optim.decay_all=") + no}).optim.decay_all);
  }
}

BOOST_AUTO_TEST_CASE(missing_file_and_required_keys) {
  ScratchDir dir;
  std::string missing = (dir.path / "nope.deck").string();
  expect_input_error([&] { read_deck(missing); }, {"cannot open deck file '" + missing + "'"});
  expect_input_error([&] { read_deck(dir.path.string()); }, {"cannot open deck file"});
  std::string no_train = dir.write("no_train.deck", "[model]\nn_layer = 2\n");
  expect_input_error([&] { read_deck(no_train); }, {no_train, "[data] train is required"});
  // An empty [data] train is refused too, and a command-line train satisfies the requirement.
  expect_text_error("[data]\ntrain =\n", {"input/test.deck:2:", "[data] train"});
  BOOST_TEST(read_deck(no_train, {"--data.train=x.h5"}).data.train == "x.h5");
  // Values that could not be written back unchanged are refused.
  expect_text_error(minimal_deck, {"[log] metrics"}, {"--log.metrics=a#b"});
}

BOOST_AUTO_TEST_CASE(an_override_without_a_value_is_refused) {
  try {
    parse_deck_text(minimal_deck, "x", {"--data.train", "--checkpoint.dir=x"});
    BOOST_FAIL("an override without a value was accepted");
  } catch (const InputError& e) {
    BOOST_TEST(std::string(e.what()).find("--data.train needs a value") != std::string::npos,
               e.what());
  }
}
