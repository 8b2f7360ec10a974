// Feeding the pipeline schedule: the tokens each rank reads for a batch. DP rank d's rows of a
// batch are consecutive in its span (doc/DESIGN.md §4), so a rank reads one run of tokens per batch,
// and only what its stage uses: the first stage the rows' inputs, the last their targets,
// other stages nothing. Every rank reads for itself, independently: DP ranks need different
// rows, so collective I/O would have nothing to merge, and it would make the middle stages
// (which need nothing) join every read. The TP ranks of a stage read the same rows; the bytes
// are few (their rows, plus at most two partial chunks), and having one of them read and
// broadcast would add a TP collective to every step for no saving that matters. A failed read
// on any rank becomes the same InputError on every rank, before the step starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mptrain/io/data.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/model/pipeline.hpp"

namespace mptrain {

// Collective over the world (the failure check): reads this rank's rows of the sampler's
// current batch of `data` into `buffer` and returns views of them for the schedule (valid while
// `buffer` is unchanged). A failed read on any rank (a token outside the vocabulary, a damaged
// chunk) throws that rank's InputError on every rank.
BatchRows read_batch_rows(const Grid& grid, const TokenDataset& data,
                          const SequentialSampler& sampler, std::vector<int32_t>& buffer);

}  // namespace mptrain
