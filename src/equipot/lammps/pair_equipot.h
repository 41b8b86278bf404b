// pair_style equipot: an equipot model in LAMMPS, evaluated by the same C++ inference engine as
// the ASE calculator (equipot/kernels/engine.h), from a model file written by
// `equipot lammps export` (no Python, no TorchScript). The model's extra energy terms (ZBL
// repulsion, equipot/kernels/zbl.h) are added per edge to the engine's energies and gradients,
// so forces, per-atom energies and the virial include them like the network's.
//
//   pair_style equipot [float64|float32]
//   pair_coeff * * model.eqp Cu O ...     (one element symbol per LAMMPS atom type)
//
// Domain decomposition: the ghost shell is the model's cutoff (+ skin) only. Each rank
// evaluates its own atoms; between layers the node features of ghost atoms are fetched from
// their owners (forward communication) and, in the backward pass, the feature gradients of
// ghost atoms are summed into their owners (reverse communication). Forces on ghost atoms go
// back through LAMMPS's reverse communication (newton on) or our own (newton off).
#pragma once

#include "pair.h"

#include "engine_tensors.h"

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairEquipot : public Pair {
 public:
  explicit PairEquipot(class LAMMPS *);
  ~PairEquipot() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  double memory_usage() override;
  void finish() override;  // time in feature exchanges vs the whole pair style, per run

  // node features of ghost atoms between layers (the engine's GhostExchange)
  void forward(at::Tensor &h) { exchange(h, false); }
  void reverse(at::Tensor &g) { exchange(g, true); }

 private:
  struct Exchange : equipot::GhostExchange {
    PairEquipot *pair = nullptr;
    void forward(at::Tensor &h) override { pair->forward(h); }
    void reverse(at::Tensor &g) override { pair->reverse(g); }
  } exchange_;

  std::unique_ptr<equipot::InferenceEngine> engine_;
  equipot::Terms terms_;  // the model's extra energy terms (ZBL repulsion), added per edge
  std::vector<int> species_of_type_;  // LAMMPS type (1..ntypes) → model element index
  std::vector<std::string> elements_;  // model elements (symbols)
  at::ScalarType dtype_ = at::kDouble;
  double r_max_ = 0.0;
  // what pack/unpack_*_comm move: a feature tensor (its rows) or the ghost forces
  at::Tensor *exchanged_ = nullptr;
  int width_ = 0;
  std::vector<double> ghost_forces_;  // newton off: forces on ghost atoms, 3 per atom
  double exchange_seconds_ = 0.0;     // time in feature exchanges (reported by finish())
  double compute_seconds_ = 0.0;      // time in compute(), exchanges included
  bigint exchanged_values_ = 0;
  bigint computes_ = 0;                // evaluations since the last finish()
  bigint evaluations_ = 0;             // all evaluations (for the periodic heap release)

  void allocate();
  void exchange(at::Tensor &t, bool reverse);
};

}  // namespace LAMMPS_NS
