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
// 1 Mi tokens per chunk: large enough for fast sequential reads, small enough that a checksum
// failure points at a small region.
constexpr hsize_t chunk_tokens = hsize_t{1} << 20;

}  // namespace mptrain::dataset_format
