// The checkpoint directory (CheckpointDir in checkpoint.hpp): DIR/step_NNNNNNNN.h5 files, a
// save protocol that never leaves a half-written file under a final name, DIR/latest naming
// the newest complete one, pruning, the restart search, and the restart's model check
// (check_checkpoint_model). The protocol: rank 0 creates DIR;
// all ranks write DIR/.step_NNNNNNNN.h5.tmp collectively (flushed to storage); rank 0 renames
// it into place, syncs the directory, replaces `latest` through a temporary file, and prunes.
// A crash at any point leaves the previous checkpoint and `latest` as they were. Every step
// that can fail ends in an agreement, so all ranks throw the same CheckpointError or none.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <system_error>

#include "io/checkpoint_internal.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/io/deck.hpp"

namespace mptrain {

namespace fs = std::filesystem;
using checkpoint_detail::agree;
using checkpoint_detail::attempt;
using checkpoint_detail::write_checkpoint;

namespace {

// The step of "step_NNNNNNNN.h5" (or of ".step_NNNNNNNN.h5.tmp" when `temporary`), else -1.
long step_of_file_name(const std::string& name, bool temporary) {
  static const std::regex final_name(R"(step_(\d+)\.h5)");
  static const std::regex temp_name(R"(\.step_(\d+)\.h5\.tmp)");
  std::smatch match;
  if (!std::regex_match(name, match, temporary ? temp_name : final_name)) return -1;
  try {
    return std::stol(match[1].str());
  } catch (const std::exception&) {
    return -1;  // too many digits: not one of ours
  }
}

// (step, file name) of every checkpoint (or temporary file) in dir; empty if dir is missing.
std::vector<std::pair<long, std::string>> list_steps(const std::string& dir, bool temporary) {
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const long step = step_of_file_name(name, temporary);
    if (step >= 0) found.emplace_back(step, name);
  }
  std::sort(found.rbegin(), found.rend());  // newest first
  return found;
}

// fsync of a file or directory, so a rename or a small file survives a crash of the node.
void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: durability, not correctness
  ::fsync(fd);
  ::close(fd);
}

// Writes DIR/latest naming `file_name`, through a temporary file and a rename.
void write_latest(const std::string& dir, const std::string& file_name) {
  const std::string temp = dir + "/.latest.tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << file_name << '\n';
    out.close();
    if (!out) throw CheckpointError(temp + ": cannot write");
  }
  sync_path(temp);
  std::error_code ec;
  fs::rename(temp, dir + "/latest", ec);
  if (ec) throw CheckpointError(dir + "/latest: cannot replace: " + ec.message());
}

// Removes checkpoints older than `step` beyond the newest keep-1 of them, and temporary files
// of older saves that never completed. Removal failures leave the file in place.
void prune(const std::string& dir, long step, long keep) {
  std::error_code ignored;
  if (keep > 0) {
    long kept = 1;  // the checkpoint just written
    for (const auto& [older, name] : list_steps(dir, false)) {
      if (older >= step) continue;
      if (kept < keep) {
        ++kept;
      } else {
        fs::remove(dir + "/" + name, ignored);
      }
    }
  }
  for (const auto& [older, name] : list_steps(dir, true)) {
    if (older < step) fs::remove(dir + "/" + name, ignored);
  }
}

}  // namespace

CheckpointDir::CheckpointDir(std::string dir, long keep) : dir_(std::move(dir)), keep_(keep) {}

void check_checkpoint_model(const std::string& path, const CheckpointMeta& meta,
                            const ModelConfig& model) {
  // A placeholder [data] train makes the stored [model] section a complete deck.
  Deck stored;
  try {
    stored = parse_deck_text(meta.model_text + "\n[data]\ntrain = (stored)\n",
                             path + " (stored [model] section)");
  } catch (const InputError& e) {
    throw CheckpointError(path + ": the stored [model] section cannot be read: " + e.what());
  }
  const ModelConfig& a = stored.model;
  const std::pair<const char*, std::pair<int, int>> keys[] = {
      {"n_layer", {a.n_layer, model.n_layer}}, {"n_head", {a.n_head, model.n_head}},
      {"n_embd", {a.n_embd, model.n_embd}},    {"seq_len", {a.seq_len, model.seq_len}},
      {"vocab_size", {a.vocab_size, model.vocab_size}}};
  for (const auto& [key, values] : keys)
    if (values.first != values.second)
      throw CheckpointError(path + ": written for a different model: [model] " + key + " = " +
                            std::to_string(values.first) + " in the checkpoint, " +
                            std::to_string(values.second) + " in the deck");
}

std::string CheckpointDir::path_for_step(long step) const {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08ld.h5", step);
  return dir_.empty() ? std::string(name) : dir_ + "/" + name;
}

std::string CheckpointDir::save(const Comm& comm, const CheckpointMeta& meta,
                                const CheckpointTensors& tensors, double* seconds,
                                uint64_t* bytes) const {
  const double start = Comm::wtime();
  const std::string dir = dir_.empty() ? std::string(".") : dir_;
  const std::string final_path = path_for_step(meta.step);
  const std::string final_name = fs::path(final_path).filename().string();
  const std::string temp_path = dir + "/." + final_name + ".tmp";

  std::string error;
  if (comm.rank() == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      error = dir + ": cannot create the checkpoint directory: " +
              (ec ? ec.message() : std::string("not a directory"));
    }
  }
  agree(comm, error);

  const bool kill_midway = meta.step == kill_in_save_;  // the test hook
  uint64_t written = 0;
  try {
    written = write_checkpoint(comm, temp_path, meta, tensors, kill_midway);  // collective
  } catch (const CheckpointError& e) {
    // Every rank has given up on the file; drop the partial file, keep the old checkpoints.
    std::error_code ignored;
    if (comm.rank() == 0) fs::remove(temp_path, ignored);
    throw CheckpointWriteError(e.what());
  }

  error.clear();
  if (comm.rank() == 0) {
    error = attempt(final_path + ": cannot complete the checkpoint", [&] {
      std::error_code ec;
      fs::rename(temp_path, final_path, ec);
      if (ec) {
        fs::remove(temp_path, ec);
        throw CheckpointError(final_path + ": cannot rename from " + temp_path + ": " +
                              ec.message());
      }
      sync_path(dir);
      write_latest(dir, final_name);
      sync_path(dir);
      prune(dir, meta.step, keep_);
    });
  }
  agree(comm, error);  // also the barrier: every rank returns after the file is complete

  if (seconds) *seconds = Comm::wtime() - start;
  if (bytes) *bytes = written;
  return final_path;
}

std::vector<std::string> CheckpointDir::candidates() const {
  const std::string dir = dir_.empty() ? std::string(".") : dir_;
  std::string latest;
  {
    std::ifstream in(dir + "/latest");
    if (in) std::getline(in, latest);
  }
  std::vector<std::string> paths;
  for (const auto& [step, name] : list_steps(dir, false)) {
    const std::string path = dir_.empty() ? name : dir_ + "/" + name;
    if (name == latest) {
      paths.insert(paths.begin(), path);
    } else {
      paths.push_back(path);
    }
  }
  return paths;
}

}  // namespace mptrain
