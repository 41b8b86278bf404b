// An InferenceEngine from named tensors: the layout written by pack_engine()
// (equipot/model/inference.py), which both the Python binding and the LAMMPS plugin (from a
// model file) hand to engine_from_tensors(). One packing of the model, one engine.
#pragma once

#include "engine.h"
#include "radial_floor.h"
#include "zbl.h"

#include <optional>
#include <string>
#include <unordered_map>

namespace equipot {

// Bump together with ENGINE_FORMAT in equipot/model/inference.py when the layout changes.
// 2: parameters of the model's extra energy terms ("term.<name>.<key>", ZBL repulsion).
// 3: the radial floor ("floor.table", "floor.softness"), which a format-2 host would ignore.
// 4: the feature ceiling ("layer<t>.ceiling", "ceiling_softness"), applied by the engine.
constexpr int64_t kEngineFormat = 4;

using TensorMap = std::unordered_map<std::string, Tensor>;

namespace detail {

inline const Tensor& entry(const TensorMap& t, const std::string& name) {
  auto it = t.find(name);
  TORCH_CHECK(it != t.end(), "packed inference engine: tensor '", name, "' is missing");
  return it->second;
}

inline double real(const TensorMap& t, const std::string& name) {
  return entry(t, name).to(at::kDouble).item<double>();
}

inline int64_t integer(const TensorMap& t, const std::string& name) {
  return entry(t, name).to(at::kLong).item<int64_t>();
}

inline std::vector<double> reals(const TensorMap& t, const std::string& name) {
  Tensor v = entry(t, name).to(at::kDouble).contiguous();
  return std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
}

inline std::vector<int64_t> integers(const TensorMap& t, const std::string& name) {
  Tensor v = entry(t, name).to(at::kLong).contiguous();
  return std::vector<int64_t>(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
}

// name.0, name.1, ... up to the first missing index
inline std::vector<Tensor> sequence(const TensorMap& t, const std::string& name) {
  std::vector<Tensor> out;
  for (size_t i = 0;; ++i) {
    auto it = t.find(name + "." + std::to_string(i));
    if (it == t.end()) return out;
    out.push_back(it->second);
  }
}

}  // namespace detail

inline InferenceEngine engine_from_tensors(const TensorMap& t) {
  using namespace detail;
  const int64_t format = integer(t, "format");
  TORCH_CHECK(format == kEngineFormat, "packed inference engine has format ", format,
              ", this build of equipot reads format ", kEngineFormat);
  InferenceEngine engine(real(t, "r_max"), integer(t, "envelope_exponent"),
                         reals(t, "frequencies"), real(t, "prefactor"),
                         entry(t, "sh_coefficients"), integers(t, "sh_exponents"),
                         integer(t, "lmax_sh"), real(t, "inv_avg"), real(t, "scale"),
                         real(t, "shift"), entry(t, "e0"), entry(t, "embedding"),
                         integer(t, "chunk_slots"), real(t, "table_step"));
  const int64_t layers = integer(t, "num_layers");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "layer" + std::to_string(i) + ".";
    engine.add_layer(entry(t, p + "up"), sequence(t, p + "mlp"), entry(t, p + "table_y"),
                     entry(t, p + "table_m"), entry(t, p + "table_s"), entry(t, p + "mix"),
                     integer(t, p + "num_columns"), sequence(t, p + "tp_tables"),
                     sequence(t, p + "sc_factors"), sequence(t, p + "sc_outputs"),
                     sequence(t, p + "sc_values"), integer(t, p + "dim_b"), entry(t, p + "out"),
                     entry(t, p + "sc"), entry(t, p + "sc_t"), sequence(t, p + "readout"));
    auto ceiling = t.find(p + "ceiling");
    if (ceiling != t.end() && ceiling->second.numel())
      engine.set_ceiling(i, ceiling->second, real(t, "ceiling_softness"));
  }
  return engine;
}

// The model's extra energy terms, packed beside the engine as "term.<name>.<key>"
// (EnergyTerm.engine_tensors in equipot/model/terms). The engine evaluates the network; a host
// without Python (the LAMMPS plugin) adds the terms per edge. A term this code does not know
// is an error, never a silently missing energy.
struct Terms {
  std::optional<zbl::Parameters> repulsion;
  std::optional<floor::Parameters> floor;  // applied by the host to the engine's input edges
};

inline Terms terms_from_tensors(const TensorMap& t) {
  using namespace detail;
  for (const auto& [name, tensor] : t) {
    if (name.rfind("term.", 0) != 0) continue;
    const std::string term = name.substr(5, name.find('.', 5) - 5);
    TORCH_CHECK(term == "repulsion", "packed inference engine: energy term '", term,
                "' is not known to this build of equipot (tensor '", name, "')");
  }
  Terms terms;
  if (t.count("term.repulsion.charge")) {
    zbl::Parameters p;
    p.charge = reals(t, "term.repulsion.charge");
    p.radius = reals(t, "term.repulsion.radius");
    p.inner = real(t, "term.repulsion.inner");
    p.outer = real(t, "term.repulsion.outer");
    p.cap = real(t, "term.repulsion.cap");
    TORCH_CHECK(p.charge.size() == p.radius.size() &&
                    int64_t(p.charge.size()) == entry(t, "embedding").size(0),
                "packed inference engine: ZBL repulsion needs a charge and a radius per element");
    terms.repulsion = std::move(p);
  }
  if (t.count("floor.table")) {
    floor::Parameters f;
    f.table = reals(t, "floor.table");
    f.elements = entry(t, "embedding").size(0);
    f.softness = real(t, "floor.softness");
    TORCH_CHECK(int64_t(f.table.size()) == f.elements * f.elements && f.softness > 0.0,
                "packed inference engine: the radial floor needs an element × element table");
    terms.floor = std::move(f);
  }
  return terms;
}

}  // namespace equipot
