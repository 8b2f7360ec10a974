// Feeding the pipeline schedule: the tokens each rank reads for a batch. DP rank d's rows of a
// batch are consecutive in its span (DESIGN §4), so a rank reads one run of tokens per batch,
// and only what its stage uses: the first stage the rows' inputs, the last their targets,
// other stages nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mptrain/io/data.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/parallel/pipeline.hpp"

namespace mptrain {

// Not collective: reads this rank's rows of the sampler's current batch of `data` into
// `buffer` and returns views of them for the schedule (valid while `buffer` is unchanged).
BatchRows read_batch_rows(const Grid& grid, const TokenDataset& data,
                          const SequentialSampler& sampler, std::vector<int32_t>& buffer);

}  // namespace mptrain
