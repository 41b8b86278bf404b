// Parameter-free pair terms for the inference path: energies per atom and ∂E/∂r_ij per edge.
#include <torch/extension.h>

#include <vector>

#include "zbl.h"

namespace py = pybind11;
using torch::Tensor;

namespace {

template <typename T>
void zbl_edges(const Tensor& vectors, const Tensor& centre, const Tensor& neighbour,
               const Tensor& species, const equipot::zbl::Parameters& zbl, Tensor& atomic,
               Tensor& grad) {
  const int64_t E = vectors.size(0);
  const T* v = vectors.data_ptr<T>();
  const int64_t *ci = centre.data_ptr<int64_t>(), *nj = neighbour.data_ptr<int64_t>();
  const int64_t* z = species.data_ptr<int64_t>();
  T* g = grad.data_ptr<T>();
  std::vector<T> half(E, T(0));
  at::parallel_for(0, E, 1024, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T* ge = g + 3 * e;
      if (!zbl.half_edge<T>(z[ci[e]], z[nj[e]], v + 3 * e, half[e], ge))
        ge[0] = ge[1] = ge[2] = T(0);
    }
  });
  T* out = atomic.data_ptr<T>();
  for (int64_t e = 0; e < E; ++e) out[ci[e]] += half[e];
}

// vectors (E, 3); edge_index (2, E); species (N,) model element indices; charge, radius
// (elements,) float64 nuclear charges and covalent radii. Returns [atomic (N,), grad (E, 3)].
std::vector<Tensor> zbl_term(Tensor vectors, Tensor edge_index, Tensor species, Tensor charge,
                             Tensor radius, double inner, double outer, double cap) {
  TORCH_CHECK(vectors.dim() == 2 && vectors.size(1) == 3, "vectors must be (E, 3)");
  vectors = vectors.contiguous();
  Tensor centre = edge_index[0].contiguous(), neighbour = edge_index[1].contiguous();
  species = species.contiguous();
  charge = charge.to(torch::kFloat64).contiguous();
  radius = radius.to(torch::kFloat64).contiguous();
  equipot::zbl::Parameters zbl;
  zbl.charge.assign(charge.data_ptr<double>(), charge.data_ptr<double>() + charge.numel());
  zbl.radius.assign(radius.data_ptr<double>(), radius.data_ptr<double>() + radius.numel());
  zbl.inner = inner, zbl.outer = outer, zbl.cap = cap;
  Tensor atomic = at::zeros({species.size(0)}, vectors.options());
  Tensor grad = at::empty_like(vectors);
  AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "zbl_term", [&] {
    zbl_edges<scalar_t>(vectors, centre, neighbour, species, zbl, atomic, grad);
  });
  return {atomic, grad};
}

}  // namespace

void register_pair_terms(py::module& m) {
  m.def("zbl_term", &zbl_term, py::call_guard<py::gil_scoped_release>(),
        "ZBL repulsion: atomic energies and dE/dr_ij per edge");
}
