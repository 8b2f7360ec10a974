// Serial, read-only access to the tensors of one checkpoint file (checkpoint_reader.hpp).
#include "mptrain/io/checkpoint_reader.hpp"

#include "io/h5util.hpp"

namespace mptrain {

namespace {

// The stored shape of dataset `name` in `file`.
std::vector<int64_t> shape_of(hid_t file, const std::string& name) {
  h5::Dataset d(h5::check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), "open " + name));
  h5::Dataspace space(h5::check(H5Dget_space(d), "dataspace of " + name));
  const int ndims = h5::check(H5Sget_simple_extent_ndims(space), "rank of " + name);
  std::vector<hsize_t> dims(static_cast<size_t>(ndims));
  h5::check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "dims of " + name);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// The name of link `i` (in name order) of group `g`.
std::string link_name(hid_t g, hsize_t i) {
  const ssize_t length = h5::check(
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT),
      "link name");
  std::string name(static_cast<size_t>(length) + 1, '\0');
  h5::check(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                               H5P_DEFAULT),
            "link name");
  name.resize(static_cast<size_t>(length));
  return name;
}

}  // namespace

struct CheckpointReader::File {
  h5::File file;
};

int64_t StoredTensor::elements() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

CheckpointReader::CheckpointReader(const std::string& path)
    : path_(path), file_(std::make_unique<File>()) {
  try {
    file_->file = h5::open_file(path, H5F_ACC_RDONLY);
  } catch (const h5::Error& e) {
    throw CheckpointError(path + ": cannot open: " + e.reason());
  }
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

std::vector<StoredTensor> CheckpointReader::list(const std::string& group) const {
  const hid_t file = file_->file;
  std::vector<StoredTensor> tensors;
  if (!h5::link_exists(file, group)) return tensors;
  try {
    h5::Group g(h5::check(H5Gopen2(file, group.c_str(), H5P_DEFAULT), "open group"));
    H5G_info_t info;
    h5::check(H5Gget_info(g, &info), "group info");
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      const std::string name = link_name(g, i);
      const hid_t object = h5::check(H5Oopen(g, name.c_str(), H5P_DEFAULT), "open " + name);
      const bool is_dataset = H5Iget_type(object) == H5I_DATASET;
      H5Oclose(object);
      if (is_dataset) tensors.push_back({group + "/" + name, shape_of(file, group + "/" + name)});
    }
  } catch (const h5::Error& e) {
    throw CheckpointError(path_ + ": cannot list " + group + ": " + e.what());
  }
  return tensors;
}

std::vector<float> CheckpointReader::read(const StoredTensor& t) const {
  std::vector<float> values(static_cast<size_t>(t.elements()));
  try {
    h5::Dataset d(h5::check(H5Dopen2(file_->file, t.path.c_str(), H5P_DEFAULT), "open dataset"));
    h5::check(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
              "H5Dread");
  } catch (const h5::Error& e) {
    const bool checksum = e.reason().find("Fletcher32") != std::string::npos;
    throw CheckpointError(path_ + ": tensor " + t.path +
                          (checksum ? ": checksum failed, the file is damaged (" : ": ") +
                          e.what() + (checksum ? ")" : ""));
  }
  return values;
}

}  // namespace mptrain
