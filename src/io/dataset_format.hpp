// The layout of a token dataset file (doc/DESIGN.md §4), shared by its reader (data.cpp) and its
// writers (io/token_writer.cpp); private to the library.
#pragma once

#include <hdf5.h>

namespace mptrain::dataset_format {

constexpr const char* tokens_path = "/tokens";
// Attributes, on /tokens (vocab_size may also be on the root group, as other tools write it).
constexpr const char* vocab_attr = "vocab_size";
constexpr const char* tokenizer_attr = "tokenizer";
constexpr const char* tokenizer_vocab_attr = "tokenizer_vocab";
// 64 Ki tokens per chunk (128 KiB as uint16, 256 KiB as int32). A chunk is the unit of
// reading: training reads each rank's rows of a batch, and HDF5 reads (and checksums) every
// chunk they touch whole, so a rank reads its rows plus at most two partial chunks; smaller
// chunks waste less of each read, and one fits HDF5's default 1 MiB chunk cache. Larger ones
// would only shrink the chunk index (5 G tokens: 76 Ki chunks) and the writer's calls.
constexpr hsize_t chunk_tokens = hsize_t{1} << 16;

}  // namespace mptrain::dataset_format
