// Reads the packed inference engine out of an equipot model file without Python.
//
// A model file is a safetensors container: 8 bytes (little-endian) with the length of a JSON
// header, the header {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...},
// then the raw little-endian tensor bytes. `equipot lammps export` writes the engine's tensors
// (pack_engine in equipot/model/inference.py) under the prefix "engine.".
#pragma once

#include "engine_tensors.h"
#include "json.h"  // LAMMPS's bundled nlohmann::json

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace equipot {

struct ModelFile {
  std::map<std::string, std::string> metadata;
  TensorMap engine;  // names without the "engine." prefix
};

inline at::ScalarType safetensors_dtype(const std::string& name, const std::string& where) {
  if (name == "F64") return at::kDouble;
  if (name == "F32") return at::kFloat;
  if (name == "I64") return at::kLong;
  if (name == "I32") return at::kInt;
  if (name == "BOOL") return at::kBool;
  throw std::runtime_error(where + ": unsupported tensor dtype " + name);
}

inline ModelFile read_model_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open model file " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto fail = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error(path + " is not an equipot model file (" + why + ")");
  };
  if (bytes.size() < 8) throw fail("shorter than a safetensors header");
  uint64_t length = 0;
  for (int b = 7; b >= 0; --b) length = (length << 8) | uint8_t(bytes[b]);
  if (length > bytes.size() - 8) throw fail("header length beyond the end of the file");
  LAMMPS_NS::json header;
  try {
    header = LAMMPS_NS::json::parse(bytes.begin() + 8, bytes.begin() + 8 + int64_t(length));
  } catch (const std::exception& e) {
    throw fail(std::string("header is not JSON: ") + e.what());
  }
  const size_t data = 8 + length;
  ModelFile file;
  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      for (auto& [key, text] : value.items())
        if (text.is_string()) file.metadata[key] = text.get<std::string>();
      continue;
    }
    if (name.rfind("engine.", 0) != 0) continue;
    const std::string where = path + ", tensor " + name;
    std::vector<int64_t> shape = value.at("shape").get<std::vector<int64_t>>();
    auto offsets = value.at("data_offsets").get<std::vector<uint64_t>>();
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(
                                        safetensors_dtype(value.at("dtype"), where)));
    const uint64_t nbytes = t.numel() * t.element_size();
    if (offsets.size() != 2 || offsets[1] - offsets[0] != nbytes ||
        data + offsets[1] > bytes.size())
      throw fail(where + " has inconsistent offsets");
    if (nbytes) std::memcpy(t.data_ptr(), bytes.data() + data + offsets[0], nbytes);
    file.engine[name.substr(7)] = t;
  }
  return file;
}

}  // namespace equipot
