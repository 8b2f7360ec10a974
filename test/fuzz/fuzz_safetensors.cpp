// libFuzzer harness for the safetensors reader (src/io/safetensors.hpp; test/fuzz_run.sh builds
// and runs it). Each input is a whole file: it is parsed in memory (parse_bytes: the length
// field, the JSON header, every entry and the tiling of the data section), then every float
// tensor is widened to float32 from its bytes, and the file is read once more from disk through
// the Reader the importer uses. The contract under test: a file either passes -- and then every
// tensor's offsets lie inside the data, its element count matches its shape, and the disk
// reader returns exactly the in-memory floats -- or the reader throws InputError. Anything else
// (another exception, a crash, a sanitizer report) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mptrain/io/safetensors.hpp"
#include "mptrain/core/error.hpp"

namespace st = mptrain::safetensors;

namespace {
std::string path;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  path = "fuzz_safetensors_" + std::to_string(::getpid()) + ".safetensors";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  std::vector<std::vector<float>> in_memory;
  st::Header header;
  try {
    header = st::parse_bytes(file, "fuzz input");
  } catch (const mptrain::InputError&) {
    return 0;
  }
  for (const st::TensorEntry& t : header.tensors) {
    if (t.end < t.begin || header.data_start + t.end > size) std::abort();  // promised
    const auto raw = std::as_bytes(std::span<const uint8_t>(data + header.data_start + t.begin,
                                                            t.end - t.begin));
    try {
      in_memory.push_back(st::to_float32(t, raw, "fuzz input"));
      if (in_memory.back().size() != static_cast<size_t>(t.elements())) std::abort();
    } catch (const mptrain::InputError&) {
      in_memory.emplace_back();  // not a float dtype
    }
  }
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) {
      std::perror(path.c_str());
      std::abort();
    }
  }
  try {
    st::Reader reader(path);
    if (reader.header().tensors.size() != header.tensors.size()) std::abort();
    for (size_t i = 0; i < header.tensors.size(); ++i) {
      const st::TensorEntry& t = header.tensors[i];
      if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") continue;
      const std::vector<float> from_disk = reader.read_float32(t.name);
      if (from_disk.size() != in_memory[i].size() ||
          (!from_disk.empty() &&
           std::memcmp(from_disk.data(), in_memory[i].data(), from_disk.size() * sizeof(float))))
        std::abort();
    }
  } catch (const mptrain::InputError& e) {
    std::fprintf(stderr, "fuzz_safetensors: the disk reader refused what parse_bytes took: %s\n",
                 e.what());
    std::abort();
  }
  std::remove(path.c_str());
  return 0;
}
