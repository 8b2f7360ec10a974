// The safetensors format (safetensors.hpp): header parsing and validation with nlohmann-json,
// dtype widening to float32, and the writer. The format is little-endian; so are the machines
// mptrain runs on (checked at compile time), so values are copied, not byte-swapped.
#include "mptrain/io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "mptrain/core/error.hpp"

namespace mptrain::safetensors {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this build assumes a little-endian host");

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

struct DtypeInfo {
  const char* name;
  size_t bytes;
};
// Every dtype of the format's specification.
constexpr DtypeInfo dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
    {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
    {"F64", 8},  {"I64", 8}, {"U64", 8}};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

// Thrown from inside the JSON parser's callback, turned into an InputError by parse_json().
struct HeaderDefect {
  std::string what;
};

// The header as JSON, refusing duplicate keys in any object (nlohmann would keep the last
// silently) and absurd nesting (a fuzzer's favourite; the format nests three levels).
json parse_json(std::string_view text, const std::string& origin) {
  constexpr int max_depth = 16;
  std::vector<std::set<std::string>> open_objects;
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event,
                                            json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth) throw HeaderDefect{"it nests deeper than the format allows"};
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second)
          throw HeaderDefect{"the name \"" + parsed.get<std::string>() + "\" appears twice"};
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    throw InputError(origin + ": the safetensors header is not valid JSON (" + e.what() + ")");
  } catch (const HeaderDefect& d) {
    throw InputError(origin + ": bad safetensors header: " + d.what);
  }
}

bool fits_int64(const json& v) {
  return v.is_number_unsigned() &&
         v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// One tensor's entry: {"dtype": str, "shape": [uint...], "data_offsets": [begin, end]}, with
// the byte count the shape implies equal to the offsets' span. Other fields are ignored.
TensorEntry parse_entry(const std::string& name, const json& v, const std::string& where) {
  if (!v.is_object()) throw InputError(where + " is not an object");
  TensorEntry t;
  t.name = name;
  const auto dtype = v.find("dtype");
  if (dtype == v.end() || !dtype->is_string()) throw InputError(where + " has no string \"dtype\"");
  t.dtype = dtype->get<std::string>();
  const size_t element_bytes = dtype_size(t.dtype);
  if (element_bytes == 0) throw InputError(where + ": unknown dtype \"" + t.dtype + "\"");
  const auto shape = v.find("shape");
  if (shape == v.end() || !shape->is_array())
    throw InputError(where + " has no \"shape\" array");
  uint64_t bytes = element_bytes;
  bool overflow = false;
  for (const json& d : *shape) {
    if (!fits_int64(d)) throw InputError(where + ": \"shape\" holds " + d.dump() +
                                         ", not a non-negative integer");
    t.shape.push_back(d.get<int64_t>());
    overflow = overflow || __builtin_mul_overflow(bytes, d.get<uint64_t>(), &bytes);
  }
  const auto offsets = v.find("data_offsets");
  if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 ||
      !fits_int64((*offsets)[0]) || !fits_int64((*offsets)[1]))
    throw InputError(where + ": \"data_offsets\" must be [begin, end], two non-negative integers");
  t.begin = (*offsets)[0].get<uint64_t>();
  t.end = (*offsets)[1].get<uint64_t>();
  if (t.end < t.begin)
    throw InputError(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + "] end before they begin");
  if (overflow || bytes != t.end - t.begin)
    throw InputError(where + ": shape " + shape_text(t.shape) + " of " + t.dtype + " needs " +
                     (overflow ? std::string("more bytes than a file can hold")
                               : std::to_string(bytes) + " bytes") +
                     " but data_offsets span " + std::to_string(t.end - t.begin));
  return t;
}

// The tensors must tile the data section: sorted by offset, each begins where the previous
// ends, the first at 0 and the last at the end of the file.
void check_tiling(std::vector<TensorEntry>& tensors, uint64_t data_bytes,
                  const std::string& origin) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& t : tensors) {
    std::string span = "[";  // (built with += : GCC 12 warns falsely on "[" + std::string)
    span += std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.end > data_bytes)
      throw InputError(origin + ": tensor \"" + t.name + "\": data_offsets " + span +
                       " lie outside the data section (" + std::to_string(data_bytes) +
                       " bytes)");
    if (t.begin < at)
      throw InputError(origin + ": tensors \"" + previous->name + "\" and \"" + t.name +
                       "\" overlap (data_offsets " + span + " begin before byte " +
                       std::to_string(at) + ")");
    if (t.begin > at)
      throw InputError(origin + ": " + std::to_string(t.begin - at) + " bytes before tensor \"" +
                       t.name + "\" belong to no tensor (data_offsets " + span + ")");
    at = t.end;
    previous = &t;
  }
  if (at != data_bytes)
    throw InputError(origin + ": the data section has " + std::to_string(data_bytes) +
                     " bytes but the tensors cover " + std::to_string(at) +
                     " (trailing bytes, or a truncated header)");
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// The header text as the reference writer lays it out: compact JSON, "__metadata__" first,
// tensors in the given order, padded with spaces to a multiple of 8 bytes.
std::string header_text(std::span<const TensorEntry> entries,
                        const std::map<std::string, std::string>& metadata,
                        const std::string& path) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const TensorEntry& t : entries) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
      throw InputError(path + ": cannot write tensor name \"" + t.name +
                       "\" (empty, reserved or repeated)");
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// A file being written; every failure names the file and the system's reason.
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "wb")) {
    if (!file_) fail("cannot create");
  }
  ~OutFile() {
    if (file_) std::fclose(file_);
  }
  void write(const void* data, size_t bytes) {
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes) fail("cannot write");
  }
  void close() {
    std::FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) fail("cannot finish writing");
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw InputError(path_ + ": " + what + ": " + std::strerror(errno));
  }
  std::string path_;
  std::FILE* file_;
};

void write_header(OutFile& out, const std::string& text) {
  const uint64_t length = text.size();
  out.write(&length, sizeof length);
  out.write(text.data(), text.size());
}

}  // namespace

size_t dtype_size(const std::string& dtype) {
  for (const DtypeInfo& d : dtypes)
    if (dtype == d.name) return d.bytes;
  return 0;
}

int64_t TensorEntry::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorEntry* Header::find(const std::string& name) const {
  for (const TensorEntry& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Header parse_header(std::string_view text, uint64_t data_bytes, const std::string& origin) {
  const json root = parse_json(text, origin);
  if (!root.is_object())
    throw InputError(origin + ": the safetensors header is " + root.type_name() +
                     ", not a JSON object");
  Header header;
  header.data_start = 8 + text.size();
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object())
        throw InputError(origin + ": \"__metadata__\" is not an object of strings");
      for (const auto& [key, text_value] : value.items()) {
        if (!text_value.is_string())
          throw InputError(origin + ": \"__metadata__\" entry \"" + key + "\" is not a string");
        header.metadata[key] = text_value.get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_entry(name, value, origin + ": tensor \"" + name + "\""));
  }
  check_tiling(header.tensors, data_bytes, origin);
  return header;
}

std::vector<float> to_float32(const TensorEntry& t, std::span<const std::byte> raw,
                              const std::string& origin) {
  const std::string where = origin + ": tensor \"" + t.name + "\"";
  if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16")
    throw InputError(where + " has dtype " + t.dtype + "; floating-point weights are needed "
                     "(F32, F16 or BF16)");
  if (raw.size() != t.end - t.begin)
    throw InputError(where + ": got " + std::to_string(raw.size()) + " bytes, expected " +
                     std::to_string(t.end - t.begin));
  std::vector<float> out(static_cast<size_t>(t.end - t.begin) /
                         std::max<size_t>(1, dtype_size(t.dtype)));
  if (t.dtype == "F32") {
    if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
  } else {  // F16 or BF16
    const bool brain = t.dtype == "BF16";
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, raw.data() + 2 * i, 2);
      out[i] = brain ? std::bit_cast<float>(uint32_t(bits) << 16) : half_to_float(bits);
    }
  }
  return out;
}

Reader::Reader(const std::string& path) : path_(path) {
  in_.open(path, std::ios::binary);
  if (!in_) throw InputError(path + ": cannot open: " + std::strerror(errno));
  in_.seekg(0, std::ios::end);
  const std::streamoff size = in_.tellg();
  in_.seekg(0);
  if (size < 0) throw InputError(path + ": cannot determine the file size");
  const uint64_t file_bytes = static_cast<uint64_t>(size);
  if (file_bytes < 8)
    throw InputError(path + ": " + std::to_string(file_bytes) + " bytes, too short for a "
                     "safetensors file (it starts with an 8-byte header length)");
  uint64_t length = 0;
  in_.read(reinterpret_cast<char*>(&length), 8);
  if (length > file_bytes - 8)
    throw InputError(path + ": safetensors header length " + std::to_string(length) +
                     " runs past the end of the file (" + std::to_string(file_bytes) + " bytes)");
  if (length > max_header_bytes)
    throw InputError(path + ": safetensors header length " + std::to_string(length) +
                     " exceeds the limit of " + std::to_string(max_header_bytes) + " bytes");
  std::string text(length, '\0');
  if (!in_.read(text.data(), static_cast<std::streamsize>(length)))
    throw InputError(path + ": cannot read the safetensors header");
  header_ = parse_header(text, file_bytes - 8 - length, path);
}

std::vector<float> Reader::read_float32(const std::string& name) {
  const TensorEntry* t = header_.find(name);
  if (!t) throw InputError(path_ + ": no tensor \"" + name + "\"");
  if (t->dtype != "F32" && t->dtype != "F16" && t->dtype != "BF16")
    return to_float32(*t, {}, path_);  // throws the message for a non-float dtype, unread
  std::vector<std::byte> raw(static_cast<size_t>(t->end - t->begin));
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(header_.data_start + t->begin));
  if (!in_.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
    throw InputError(path_ + ": tensor \"" + name + "\": cannot read its data");
  return to_float32(*t, raw, path_);
}

Header parse_bytes(std::string_view file, const std::string& origin) {
  if (file.size() < 8)
    throw InputError(origin + ": " + std::to_string(file.size()) + " bytes, too short for a "
                     "safetensors file (it starts with an 8-byte header length)");
  uint64_t length = 0;
  std::memcpy(&length, file.data(), 8);
  if (length > file.size() - 8)
    throw InputError(origin + ": safetensors header length " + std::to_string(length) +
                     " runs past the end of the file (" + std::to_string(file.size()) + " bytes)");
  if (length > max_header_bytes)
    throw InputError(origin + ": safetensors header length " + std::to_string(length) +
                     " exceeds the limit of " + std::to_string(max_header_bytes) + " bytes");
  return parse_header(file.substr(8, length), file.size() - 8 - length, origin);
}

void write_file(const std::string& path, std::span<const RawTensor> tensors,
                const std::map<std::string, std::string>& metadata) {
  std::vector<TensorEntry> entries;
  uint64_t at = 0;
  for (const RawTensor& r : tensors) {
    TensorEntry t{r.name, r.dtype, r.shape, at, at + r.bytes.size()};
    const size_t element_bytes = dtype_size(r.dtype);
    if (element_bytes == 0)
      throw InputError(path + ": cannot write tensor \"" + r.name + "\": unknown dtype " + r.dtype);
    if (static_cast<uint64_t>(t.elements()) * element_bytes != r.bytes.size())
      throw InputError(path + ": cannot write tensor \"" + r.name + "\": " +
                       std::to_string(r.bytes.size()) + " bytes for shape " +
                       shape_text(r.shape) + " of " + r.dtype);
    at = t.end;
    entries.push_back(std::move(t));
  }
  const std::string text = header_text(entries, metadata, path);  // checks names first
  OutFile out(path);
  write_header(out, text);
  for (const RawTensor& r : tensors) out.write(r.bytes.data(), r.bytes.size());
  out.close();
}

void write_float32_file(const std::string& path, std::span<const Float32Spec> tensors,
                        const std::map<std::string, std::string>& metadata,
                        const std::function<void(size_t, std::span<float>)>& fill) {
  std::vector<TensorEntry> entries;
  uint64_t at = 0;
  for (const Float32Spec& s : tensors) {
    TensorEntry t{s.name, "F32", s.shape, at, 0};
    t.end = at + static_cast<uint64_t>(t.elements()) * sizeof(float);
    at = t.end;
    entries.push_back(std::move(t));
  }
  const std::string text = header_text(entries, metadata, path);  // checks names first
  OutFile out(path);
  write_header(out, text);
  std::vector<float> buffer;
  for (size_t i = 0; i < entries.size(); ++i) {
    buffer.assign(static_cast<size_t>(entries[i].elements()), 0.0f);
    fill(i, buffer);
    out.write(buffer.data(), buffer.size() * sizeof(float));
  }
  out.close();
}

}  // namespace mptrain::safetensors
