// Each rank's tensors of a checkpoint (checkpoint_internal.hpp): its shard descriptions
// checked before any file is touched, and the global list of tensors the ranks agree on (the
// union of what any rank lists, its shapes consistent, and, for a save, the writers' blocks
// covering every element exactly once). Shared by the writer and the reader
// (src/io/checkpoint.cpp).
#include <algorithm>
#include <map>
#include <sstream>

#include "io/checkpoint_internal.hpp"

namespace mptrain::checkpoint_detail {

namespace {

constexpr int n_groups = int(checkpoint_groups.size());

std::array<std::span<const TensorIO>, n_groups> groups_of(const CheckpointTensors& tensors) {
  return {tensors.model, tensors.adam_m, tensors.adam_v};
}

// ---------------------------------------------------------------- checking local shards

bool ranges_overlap(int64_t a, int64_t a_len, int64_t b, int64_t b_len) {
  return a < b + b_len && b < a + a_len;
}

// "" when the rank's description of one tensor is usable, else what is wrong with it.
std::string check_tensor_io(const TensorIO& io, const std::string& where) {
  const ShardSpec& s = io.spec;
  if (s.name.empty() || s.name == "." || s.name.find_first_of("/\t\n") != std::string::npos) {
    return where + ": invalid tensor name '" + s.name + "'";
  }
  const std::string what = where + ": tensor " + s.name + ": ";
  if (s.global_shape.empty() || s.global_shape.size() > 2) {
    return what + "global shape must have 1 or 2 dimensions";
  }
  for (auto d : s.global_shape) {
    if (d <= 0) return what + "empty global shape " + shape_text(s.global_shape);
  }
  const int64_t rows = s.global_shape[0];
  const int64_t cols = s.global_shape.size() == 2 ? s.global_shape[1] : 1;
  if (s.local_rows < 0 || s.local_cols < 1) return what + "invalid local array size";
  const auto blocks = nonempty_blocks(s);
  if (!blocks.empty() && io.host == nullptr) return what + "no host array";
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& b = blocks[i];
    if (b.global_row < 0 || b.global_col < 0 || b.global_row + b.rows > rows ||
        b.global_col + b.cols > cols) {
      return what + "block " + std::to_string(i) + " lies outside the global shape " +
             shape_text(s.global_shape);
    }
    if (b.local_row < 0 || b.local_col < 0 || b.local_row + b.rows > s.local_rows ||
        b.local_col + b.cols > s.local_cols) {
      return what + "block " + std::to_string(i) + " lies outside the local array";
    }
    for (size_t j = 0; j < i; ++j) {
      const auto& o = blocks[j];
      if (ranges_overlap(b.global_row, b.rows, o.global_row, o.rows) &&
          ranges_overlap(b.global_col, b.cols, o.global_col, o.cols)) {
        return what + "blocks " + std::to_string(j) + " and " + std::to_string(i) + " overlap";
      }
      if (ranges_overlap(b.local_row, b.rows, o.local_row, o.rows) &&
          ranges_overlap(b.local_col, b.cols, o.local_col, o.cols)) {
        return what + "blocks " + std::to_string(j) + " and " + std::to_string(i) +
               " overlap in the local array";
      }
    }
  }
  return {};
}


// A block some rank writes, in global coordinates.
struct WrittenBlock {
  int rank;
  int64_t row, col, rows, cols;
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

// "" when the writers' blocks cover every element of the tensor exactly once (a hole would
// read back as zeros; an overlap means two writers for one element), else the problem.
std::string check_writer_coverage(const std::string& what, const std::vector<int64_t>& shape,
                                  const std::vector<WrittenBlock>& blocks) {
  int64_t total = 1, covered = 0;
  for (auto d : shape) total *= d;
  for (const auto& b : blocks) covered += b.rows * b.cols;
  constexpr size_t max_pairwise = 4096;  // beyond this many blocks, trust the count alone
  if (blocks.size() <= max_pairwise) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        const auto &a = blocks[j], &b = blocks[i];
        if (ranges_overlap(a.row, a.rows, b.row, b.rows) &&
            ranges_overlap(a.col, a.cols, b.col, b.cols)) {
          return what + ": blocks written by ranks " + std::to_string(a.rank) + " and " +
                 std::to_string(b.rank) + " overlap (is a replica marked as a writer?)";
        }
      }
    }
  }
  if (covered != total) {
    return what + ": the writing ranks' blocks cover " + std::to_string(covered) + " of its " +
           std::to_string(total) + " elements";
  }
  return {};
}

}  // namespace

std::vector<ShardBlock> nonempty_blocks(const ShardSpec& spec) {
  std::vector<ShardBlock> blocks;
  for (const auto& b : spec.blocks) {
    if (b.rows > 0 && b.cols > 0) blocks.push_back(b);
  }
  return blocks;
}

std::string check_local_tensors(const CheckpointTensors& tensors, const std::string& path) {
  const auto groups = groups_of(tensors);
  for (int g = 0; g < n_groups; ++g) {
    std::map<std::string, int> seen;
    for (const auto& io : groups[g]) {
      std::string problem = check_tensor_io(io, path + ": " + checkpoint_groups[g]);
      if (!problem.empty()) return problem;
      if (++seen[io.spec.name] > 1) {
        return path + ": tensor " + checkpoint_groups[g] + "/" + io.spec.name + " listed twice";
      }
    }
  }
  return {};
}

// Collective: the union over all ranks of the listed tensors, sorted by group then name (the
// same order everywhere). Every rank parses the same gathered text, so a problem (a shape
// conflict; with `check_writers`, writer blocks that miss or repeat elements) is seen, and
// thrown, identically on all ranks.
std::vector<GlobalTensor> agree_on_tensor_list(const Comm& comm, const CheckpointTensors& tensors,
                                               const std::string& path, bool check_writers) {
  // One line per tensor: group, name, global dims, and the blocks this rank writes.
  const auto groups = groups_of(tensors);
  std::ostringstream mine;
  for (int g = 0; g < n_groups; ++g) {
    for (const auto& io : groups[g]) {
      mine << g << '\t' << io.spec.name << '\t';
      for (auto d : io.spec.global_shape) mine << d << ' ';
      mine << '\t';
      if (io.spec.writer) {
        for (const auto& b : nonempty_blocks(io.spec)) {
          mine << b.global_row << ' ' << b.global_col << ' ' << b.rows << ' ' << b.cols << ';';
        }
      }
      mine << '\n';
    }
  }
  const std::vector<std::string> all = comm.allgather_strings(mine.str());  // collective

  struct Entry {
    std::vector<int64_t> shape;
    int first_rank;
    std::vector<WrittenBlock> written;
  };
  std::map<std::pair<int, std::string>, Entry> found;
  for (int rank = 0; rank < static_cast<int>(all.size()); ++rank) {
    for (const std::string& line : split(all[rank], '\n')) {
      std::vector<std::string> fields = split(line, '\t');
      fields.resize(4);
      const int g = std::stoi(fields[0]);
      const std::string& name = fields[1];
      std::vector<int64_t> shape;
      std::istringstream dims(fields[2]);
      for (int64_t d; dims >> d;) shape.push_back(d);
      auto [it, inserted] = found.try_emplace({g, name}, Entry{shape, rank, {}});
      if (!inserted && it->second.shape != shape) {
        throw CheckpointError(path + ": tensor " + checkpoint_groups[g] + "/" + name + " has shape " +
                              shape_text(it->second.shape) + " on rank " +
                              std::to_string(it->second.first_rank) + " but " +
                              shape_text(shape) + " on rank " + std::to_string(rank));
      }
      for (const std::string& block : split(fields[3], ';')) {
        WrittenBlock w{rank, 0, 0, 0, 0};
        std::istringstream(block) >> w.row >> w.col >> w.rows >> w.cols;
        it->second.written.push_back(w);
      }
    }
  }
  std::vector<GlobalTensor> list;
  for (const auto& [key, entry] : found) {
    GlobalTensor t;
    t.group = key.first;
    t.name = key.second;
    t.shape = entry.shape;
    if (check_writers) {
      std::string problem = check_writer_coverage(path + ": tensor " + t.path(), t.shape,
                                                  entry.written);
      if (!problem.empty()) throw CheckpointError(problem);
    }
    for (const auto& io : groups[t.group]) {
      if (io.spec.name == t.name) t.local = &io;
    }
    list.push_back(std::move(t));
  }
  return list;
}

}  // namespace mptrain::checkpoint_detail
