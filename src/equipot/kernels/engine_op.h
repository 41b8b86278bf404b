// The inference engine as a TorchScript custom class and operator, for hosts that run
// TorchScript models (metatomic: i-PI, PLUMED, ASE's metatomic calculator, ...):
//
//   engine = torch.classes.equipot.Engine(packed)          # pack_engine() tensors, float64
//   atomic = torch.ops.equipot.atomic_energies(engine, vectors, centres, neighbours, species)
//
// vectors (E, 3) are the edge vectors r_ij = r_j − r_i (+ cell shifts) of a full neighbour
// list (both directions), centres/neighbours (E,) atom indices, species (N,) model element
// indices. atomic (N,) are the model's atomic energies, ZBL repulsion included (the packed
// term.* tensors), and autograd gives ∂E/∂vectors from the engine's own backward pass: the
// host turns that into forces and stress (positions and strain are upstream of the vectors).
// Only gradients of the total energy (the same weight on every atom) are exact this way.
// The packed tensors are the class's pickled state, so a saved TorchScript model stays data.
#pragma once

#include <torch/custom_class.h>
#include <torch/script.h>

#include <memory>

#include "engine_tensors.h"

namespace equipot {

struct EngineHolder : torch::CustomClassHolder {
  c10::Dict<std::string, Tensor> packed;
  std::shared_ptr<InferenceEngine> engine;
  Terms terms;

  explicit EngineHolder(c10::Dict<std::string, Tensor> tensors) : packed(std::move(tensors)) {
    TensorMap map;
    for (const auto& item : packed) map[item.key()] = item.value();
    engine = std::make_shared<InferenceEngine>(engine_from_tensors(map));
    terms = terms_from_tensors(map);
  }
};

namespace detail {

// Full edge list → the engine's padded slot layout (engine.h); edges at or beyond r_max are
// dropped (hosts may hand a list with a skin). slot_of (E,) is each edge's slot or −1.
struct Slots {
  Tensor vectors, neighbors, counts, slot_of;
  int64_t K = 1;
};

inline Slots to_slots(const Tensor& vectors, const Tensor& centres, const Tensor& neighbours,
                      int64_t N, double r_max) {
  const int64_t E = vectors.size(0);
  const double* v = vectors.data_ptr<double>();
  const int64_t *ci = centres.data_ptr<int64_t>(), *nj = neighbours.data_ptr<int64_t>();
  Slots s;
  s.counts = at::zeros({N}, at::kLong);
  s.slot_of = at::full({E}, -1, at::kLong);
  int64_t* cn = s.counts.data_ptr<int64_t>();
  int64_t* slot = s.slot_of.data_ptr<int64_t>();
  const double cut2 = r_max * r_max;
  for (int64_t e = 0; e < E; ++e) {
    const double* x = v + 3 * e;
    TORCH_CHECK(ci[e] >= 0 && ci[e] < N && nj[e] >= 0 && nj[e] < N,
                "equipot.atomic_energies: edge ", e, " names an atom outside 0..", N - 1);
    if (x[0] * x[0] + x[1] * x[1] + x[2] * x[2] >= cut2) continue;
    slot[e] = cn[ci[e]]++;
    s.K = std::max(s.K, cn[ci[e]]);
  }
  s.vectors = at::empty({N, s.K, 3}, at::kDouble);
  s.neighbors = at::zeros({N, s.K}, at::kLong);
  double* sv = s.vectors.data_ptr<double>();
  int64_t* sn = s.neighbors.data_ptr<int64_t>();
  for (int64_t i = 0; i < N * s.K; ++i) {  // empty slots: beyond the cutoff, contribute nothing
    sv[3 * i] = 2.0 * r_max, sv[3 * i + 1] = sv[3 * i + 2] = 0.0;
  }
  for (int64_t e = 0; e < E; ++e) {
    if (slot[e] < 0) continue;
    const int64_t row = ci[e] * s.K + slot[e];
    for (int k = 0; k < 3; ++k) sv[3 * row + k] = v[3 * e + k];
    sn[row] = nj[e];
  }
  return s;
}

class EngineEnergy : public torch::autograd::Function<EngineEnergy> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor vectors, Tensor centres,
                        Tensor neighbours, Tensor species,
                        const c10::intrusive_ptr<EngineHolder>& holder) {
    TORCH_CHECK(vectors.dim() == 2 && vectors.size(1) == 3, "vectors must be (E, 3)");
    TORCH_CHECK(vectors.scalar_type() == at::kDouble && holder->engine->dtype() == at::kDouble,
                "equipot.atomic_energies runs in float64 (the model was exported in float64)");
    vectors = vectors.detach().contiguous();
    centres = centres.to(at::kLong).contiguous();
    neighbours = neighbours.to(at::kLong).contiguous();
    species = species.to(at::kLong).contiguous();
    const int64_t N = species.size(0), E = vectors.size(0);
    if (N > 0) {
      const int64_t lo = species.min().item<int64_t>(), hi = species.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < holder->engine->num_elements(), "equipot.atomic_energies: ",
                  "species must be model element indices 0..", holder->engine->num_elements() - 1);
    }
    Slots s = to_slots(vectors, centres, neighbours, N, holder->engine->r_max());
    Tensor atomic, slot_grad;
    if (N > 0) {
      const auto& fl = holder->terms.floor;
      Tensor seen = fl ? s.vectors.clone() : s.vectors;
      const bool held = fl && fl->apply(s.vectors.data_ptr<double>(), s.neighbors.data_ptr<int64_t>(),
                                        s.counts.data_ptr<int64_t>(), species.data_ptr<int64_t>(),
                                        N, s.K, seen.data_ptr<double>());
      auto out = holder->engine->run(seen, s.neighbors, s.counts, species, true);
      atomic = out[0].contiguous();
      slot_grad = out[1].contiguous();
      if (held)
        fl->chain(s.vectors.data_ptr<double>(), s.neighbors.data_ptr<int64_t>(),
                  s.counts.data_ptr<int64_t>(), species.data_ptr<int64_t>(), N, s.K,
                  slot_grad.data_ptr<double>());
      if (holder->terms.repulsion)
        holder->terms.repulsion->add_to_slots<double>(
            s.vectors.data_ptr<double>(), s.neighbors.data_ptr<int64_t>(),
            s.counts.data_ptr<int64_t>(), species.data_ptr<int64_t>(), N, s.K,
            atomic.data_ptr<double>(), slot_grad.data_ptr<double>());
    } else {
      atomic = at::zeros({0}, at::kDouble);
    }
    Tensor edge_grad = at::zeros({E, 3}, at::kDouble);
    const int64_t* slot = s.slot_of.data_ptr<int64_t>();
    const int64_t* ci = centres.data_ptr<int64_t>();
    double* g = edge_grad.data_ptr<double>();
    for (int64_t e = 0; e < E; ++e) {
      if (slot[e] < 0) continue;
      const double* src = slot_grad.data_ptr<double>() + 3 * (ci[e] * s.K + slot[e]);
      for (int k = 0; k < 3; ++k) g[3 * e + k] = src[k];
    }
    ctx->save_for_backward({edge_grad});
    return atomic;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Tensor edge_grad = ctx->get_saved_variables()[0];
    Tensor g = grads[0];
    Tensor weight = g.numel() ? g.reshape(-1)[0] : at::zeros({}, edge_grad.options());
    TORCH_CHECK(g.numel() == 0 || at::allclose(g, weight.expand_as(g), 0.0, 0.0),
                "equipot.atomic_energies: only gradients of the total energy are available "
                "(every atom's energy weighted alike)");
    return {edge_grad * weight, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

inline Tensor atomic_energies(const c10::intrusive_ptr<EngineHolder>& engine, Tensor vectors,
                              Tensor centres, Tensor neighbours, Tensor species) {
  return EngineEnergy::apply(vectors, centres, neighbours, species, engine);
}

}  // namespace detail

}  // namespace equipot

TORCH_LIBRARY(equipot, m) {
  m.class_<equipot::EngineHolder>("Engine")
      .def(torch::init<c10::Dict<std::string, at::Tensor>>())
      .def("r_max", [](const c10::intrusive_ptr<equipot::EngineHolder>& self) {
        return self->engine->r_max();
      })
      .def_pickle(
          [](const c10::intrusive_ptr<equipot::EngineHolder>& self) { return self->packed; },
          [](c10::Dict<std::string, at::Tensor> state) {
            return c10::make_intrusive<equipot::EngineHolder>(std::move(state));
          });
  m.def("atomic_energies", &equipot::detail::atomic_energies);
}
