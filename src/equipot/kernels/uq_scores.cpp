// One model's per-step uncertainties from its readout features (equipot/uq/local_scores.py):
// y_i = x_i M − b split into B blocks of D; σ(E_i) = ‖y_i0‖, σ(E_s) = ‖Σ_{i∈s} y_i0‖, the
// latent distance d_i = ‖y_{i,c_i}‖ of the atom's element block c_i (∞ where c_i < 0), and the
// ball σ_i = hypot(score_i, floor), R_i = q̂ σ_i. The same numbers as the Python fold; one call
// instead of a dozen small tensor operations, which on a 3-atom molecule cost as much as a
// sixth of the model's MD step.
#include <torch/extension.h>

#include <cmath>
#include <limits>
#include <vector>

namespace py = pybind11;
using torch::Tensor;

namespace {

// x (N, D) float64; matrix (D, B·D); offset (B·D,); columns (N,) int64 (empty: no latent
// fit); batch (N,) int64 system of each atom; ball: 0 none, 1 the local score, 2 the latent
// score. Returns [energy_std (S,), atomic_std (N,), latent (N,), sigma (N,), radius (N,)],
// empty tensors for what the fits do not provide.
std::vector<Tensor> uq_scores(Tensor x, Tensor matrix, Tensor offset, int64_t dim,
                              bool posterior, Tensor columns, Tensor batch, int64_t systems,
                              int64_t ball, double floor, double quantile) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat64, "x must be (N, D) float64");
  const int64_t N = x.size(0), width = matrix.size(1), B = width / dim;
  Tensor y = at::addmm(offset, x.contiguous(), matrix, /*beta=*/-1.0, /*alpha=*/1.0);
  const double* py = y.data_ptr<double>();
  auto options = x.options();
  Tensor empty = at::empty({0}, options);
  Tensor energy = empty, atomic = empty, latent = empty, sigma = empty, radius = empty;
  if (posterior) {
    energy = at::zeros({systems}, options);
    atomic = at::empty({N}, options);
    double* pa = atomic.data_ptr<double>();
    const int64_t* sys = batch.contiguous().data_ptr<int64_t>();
    std::vector<double> sums(systems * dim, 0.0);
    for (int64_t i = 0; i < N; ++i) {
      const double* row = py + i * width;
      double* s = sums.data() + sys[i] * dim;
      double acc = 0.0;
      for (int64_t k = 0; k < dim; ++k) {
        acc += row[k] * row[k];
        s[k] += row[k];
      }
      pa[i] = std::sqrt(acc);
    }
    double* pe = energy.data_ptr<double>();
    for (int64_t s = 0; s < systems; ++s) {
      double acc = 0.0;
      for (int64_t k = 0; k < dim; ++k) acc += sums[s * dim + k] * sums[s * dim + k];
      pe[s] = std::sqrt(acc);
    }
  }
  if (columns.numel() > 0) {
    latent = at::empty({N}, options);
    double* pl = latent.data_ptr<double>();
    const int64_t* col = columns.contiguous().data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      if (col[i] < 0 || col[i] >= B) {
        pl[i] = std::numeric_limits<double>::infinity();
        continue;
      }
      const double* block = py + i * width + col[i] * dim;
      double acc = 0.0;
      for (int64_t k = 0; k < dim; ++k) acc += block[k] * block[k];
      pl[i] = std::sqrt(acc);
    }
  }
  if (ball != 0) {
    const Tensor& score = ball == 1 ? atomic : latent;
    TORCH_CHECK(score.numel() == N, "the ball's score is not available");
    sigma = at::empty({N}, options);
    radius = at::empty({N}, options);
    const double* sc = score.data_ptr<double>();
    double *ps = sigma.data_ptr<double>(), *pr = radius.data_ptr<double>();
    for (int64_t i = 0; i < N; ++i) {
      ps[i] = std::hypot(sc[i], floor);
      pr[i] = quantile * ps[i];
    }
  }
  return {energy, atomic, latent, sigma, radius};
}

}  // namespace

void register_uq_scores(py::module& m) {
  m.def("uq_scores", &uq_scores, py::call_guard<py::gil_scoped_release>(),
        "one model's σ(E_s), σ(E_i), latent distances and force ball from its features");
}
