// The data-feeding part of a run (batches.hpp, run.hpp): this rank's rows of each batch, read
// when the step needs them and handed to the pipeline schedule.
#include "mptrain/train/batches.hpp"

#include <span>

#include "mptrain/core/error.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

BatchRows read_batch_rows(const Grid& grid, const TokenDataset& data,
                          const SequentialSampler& sampler, std::vector<int32_t>& buffer) {
  const bool first = grid.first_stage(), last = grid.last_stage();
  const long rows = sampler.global_batch() / grid.layout().dp;
  const uint64_t n = uint64_t(rows) * uint64_t(sampler.seq_len());  // tokens per (rows, T)
  // The rows' span is n + 1 tokens: inputs [0, n), targets [1, n + 1). Read what this stage
  // uses: both on a single stage, the inputs on the first, the targets on the last.
  const TokenRange span = sampler.row_tokens(long(grid.dp_rank()) * rows, rows);
  const uint64_t from = span.begin + (first ? 0 : 1);
  const uint64_t count = first && last ? n + 1 : n;
  buffer.resize(first || last ? count : 0);
  agree_on<InputError>(grid.world(), [&] {  // collective over the world
    if (first || last) data.read(from, buffer);
  });
  BatchRows out;
  if (first) out.inputs = std::span<const int32_t>(buffer.data(), n);
  if (last) out.targets = std::span<const int32_t>(buffer.data() + (first ? 1 : 0), n);
  return out;
}

double Run::train_batch() {
  const BatchRows rows = read_batch_rows(grid, train_data, *sampler, batch_tokens);  // world
  return schedule->train_batch(rows, *optimizer);  // collective over TP, PP and DP
}

double Run::eval_batch(const TokenDataset& data, const SequentialSampler& batches) {
  const BatchRows rows = read_batch_rows(grid, data, batches, batch_tokens);  // world
  return schedule->eval_batch(rows);  // collective over TP and PP
}

}  // namespace mptrain
