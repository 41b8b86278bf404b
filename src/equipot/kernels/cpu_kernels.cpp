// Python bindings of the fused tensor-product and symmetric-contraction kernels (tp_sc.h)
// and of the whole-model inference pass (inference.cpp, engine.h).

#include <torch/extension.h>

#include "tp_sc.h"

using namespace equipot;

void register_inference(pybind11::module& m);  // inference.cpp
void register_pair_terms(pybind11::module& m);  // pair_terms.cpp
void register_training(pybind11::module& m);   // training.cpp
void register_uq_scores(pybind11::module& m);  // uq_scores.cpp

torch::Tensor tp_forward(torch::Tensor h, torch::Tensor Y, torch::Tensor R, torch::Tensor nbr,
                         torch::Tensor count, int64_t ncols, torch::Tensor path_info,
                         torch::Tensor path_cols, torch::Tensor cg_ptr, torch::Tensor cg_index,
                         torch::Tensor cg_value) {
  h = h.contiguous(); Y = Y.contiguous(); R = R.contiguous();
  nbr = nbr.contiguous(); count = count.contiguous();
  auto tb = make_tables(path_info, path_cols, cg_ptr, cg_index, cg_value);
  const int64_t N = R.size(0), K = R.size(1), P = R.size(2), C = R.size(3);
  auto S = torch::zeros({N, ncols, C}, R.options());
  AT_DISPATCH_FLOATING_TYPES(R.scalar_type(), "tp_forward", [&] {
    tp_forward_impl<scalar_t>(h.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(),
                              R.data_ptr<scalar_t>(), nbr.data_ptr<int64_t>(),
                              count.data_ptr<int64_t>(), S.data_ptr<scalar_t>(), N, K, C,
                              h.size(1), Y.size(2), P, ncols, tb);
  });
  return S;
}

std::vector<torch::Tensor> tp_backward(torch::Tensor gS, torch::Tensor h, torch::Tensor Y,
                                       torch::Tensor R, torch::Tensor nbr, torch::Tensor count,
                                       bool need_h, torch::Tensor path_info,
                                       torch::Tensor path_cols, torch::Tensor cg_ptr,
                                       torch::Tensor cg_index, torch::Tensor cg_value) {
  gS = gS.contiguous(); h = h.contiguous(); Y = Y.contiguous(); R = R.contiguous();
  nbr = nbr.contiguous(); count = count.contiguous();
  auto tb = make_tables(path_info, path_cols, cg_ptr, cg_index, cg_value);
  const int64_t N = R.size(0), K = R.size(1), P = R.size(2), C = R.size(3);
  const int64_t Ns = h.size(0), Din = h.size(1);
  const int64_t threads = need_h ? at::get_num_threads() : 0;
  auto gh_threads = torch::zeros({threads, Ns, Din, C}, R.options());
  auto gY = torch::empty_like(Y);
  auto gR = torch::empty_like(R);
  AT_DISPATCH_FLOATING_TYPES(R.scalar_type(), "tp_backward", [&] {
    tp_backward_impl<scalar_t>(gS.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                               Y.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
                               nbr.data_ptr<int64_t>(), count.data_ptr<int64_t>(),
                               gh_threads.data_ptr<scalar_t>(), gY.data_ptr<scalar_t>(),
                               gR.data_ptr<scalar_t>(), Ns, N, K, C, Din, Y.size(2), P,
                               gS.size(1), need_h, tb);
  });
  torch::Tensor gh = need_h ? gh_threads.sum(0) : torch::Tensor();
  return {gh, gY, gR};
}

// factors[v]: (E_v, v+1) int64 component indices; outputs[v]: (E_v,) output component;
// values[v]: (Z, E_v, C) per-element, per-channel coefficients.
torch::Tensor sc_forward(torch::Tensor A, torch::Tensor species, int64_t M,
                         std::vector<torch::Tensor> factors, std::vector<torch::Tensor> outputs,
                         std::vector<torch::Tensor> values) {
  A = A.contiguous(); species = species.contiguous();
  const int64_t N = A.size(0), D = A.size(1), C = A.size(2);
  auto B = torch::zeros({N, M, C}, A.options());
  std::vector<const int64_t*> f, o;
  std::vector<int64_t> entries;
  for (size_t v = 0; v < factors.size(); ++v) {
    factors[v] = factors[v].contiguous(); outputs[v] = outputs[v].contiguous();
    values[v] = values[v].contiguous();
    f.push_back(factors[v].data_ptr<int64_t>());
    o.push_back(outputs[v].data_ptr<int64_t>());
    entries.push_back(outputs[v].size(0));
  }
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "sc_forward", [&] {
    std::vector<const scalar_t*> vals;
    for (auto& t : values) vals.push_back(t.data_ptr<scalar_t>());
    sc_forward_impl<scalar_t>(A.data_ptr<scalar_t>(), species.data_ptr<int64_t>(),
                              B.data_ptr<scalar_t>(), N, D, C, M, f, o, vals, entries);
  });
  return B;
}

torch::Tensor sc_backward(torch::Tensor gB, torch::Tensor A, torch::Tensor species,
                          std::vector<torch::Tensor> factors, std::vector<torch::Tensor> outputs,
                          std::vector<torch::Tensor> values) {
  gB = gB.contiguous(); A = A.contiguous(); species = species.contiguous();
  const int64_t N = A.size(0), D = A.size(1), C = A.size(2), M = gB.size(1);
  auto gA = torch::zeros_like(A);
  std::vector<const int64_t*> f, o;
  std::vector<int64_t> entries;
  for (size_t v = 0; v < factors.size(); ++v) {
    factors[v] = factors[v].contiguous(); outputs[v] = outputs[v].contiguous();
    values[v] = values[v].contiguous();
    f.push_back(factors[v].data_ptr<int64_t>());
    o.push_back(outputs[v].data_ptr<int64_t>());
    entries.push_back(outputs[v].size(0));
  }
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "sc_backward", [&] {
    std::vector<const scalar_t*> vals;
    for (auto& t : values) vals.push_back(t.data_ptr<scalar_t>());
    sc_backward_impl<scalar_t>(gB.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                               species.data_ptr<int64_t>(), gA.data_ptr<scalar_t>(), N, D, C, M,
                               f, o, vals, entries);
  });
  return gA;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("tp_forward", &tp_forward, "edge tensor product, forward");
  m.def("tp_backward", &tp_backward, "edge tensor product, backward");
  m.def("sc_forward", &sc_forward, "symmetric contraction, forward");
  m.def("sc_backward", &sc_backward, "symmetric contraction, backward");
  register_inference(m);
  register_pair_terms(m);
  register_training(m);
  register_uq_scores(m);
}
