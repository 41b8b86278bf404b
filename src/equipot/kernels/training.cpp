// Second-order engine: the model's energy, its first-order backward pass (forces, stress) and
// the tangents of both, written out in C++ (the maths and the Python side are in
// equipot/model/second_order.py; tests compare every output with autograd on the modules).
//
// Two uses of one program:
//   * training (trainable weights, the radial MLP evaluated): forward_backward() gives atomic
//     energies and ∂E/∂r_ij; parameter_gradients() then gives the gradient of the loss with
//     respect to every weight, as the tangent of ∂E/∂θ along the loss's derivatives
//     (edge-vector direction r' = ∂L/∂(∂E/∂r) and per-atom seed a = ∂L/∂E_i):
//       dL/dθ = Σ_i a_i ∂E_i/∂θ + Σ_e r'_e · ∂(∂E/∂r_e)/∂θ.
//   * Hessians (frozen weights): hessian_vector() gives (∂E/∂r_e)' along B directions at once;
//     R(r) is then differentiated in r directly (R, R', R'' per slot by forward mode).
//
// Layout as in the inference engine: padded slots (N, K), features (N, D, C), per-component
// linear maps as batched products. Tangent arrays carry a leading direction axis (B, ...).

#include "edge_geometry.h"
#include "second_order.h"

#include <torch/extension.h>


namespace py = pybind11;
using torch::Tensor;

namespace equipot {
namespace so {
namespace {

// y[n, d] = x[n, d] @ w[d] for the first w.size(0) components d of x (rows, D, C).
Tensor pc(const Tensor& x, const Tensor& w) {
  return at::bmm(x.narrow(1, 0, w.size(0)).transpose(0, 1), w).transpose(0, 1).contiguous();
}

// grad[d] += Σ_n x[n, d]ᵀ g[n, d] for d < grad.size(0): the weight gradient of pc().
void pc_wgrad_add(Tensor& grad, const Tensor& x, const Tensor& g) {
  const int64_t D = grad.size(0);
  grad.baddbmm_(x.narrow(1, 0, D).transpose(0, 1).transpose(1, 2), g.narrow(1, 0, D).transpose(0, 1));
}

// Per-degree weights (l+1, ...) → one matrix per component (D, ...), and the reverse sum.
Tensor per_component(const Tensor& w) {
  std::vector<Tensor> parts;
  for (int64_t l = 0; l < w.size(0); ++l) parts.push_back(w[l].expand({2 * l + 1, w.size(1), w.size(2)}));
  return at::cat(parts).contiguous();
}

void add_per_degree(Tensor& grad_w, const Tensor& grad_e) {
  for (int64_t l = 0; l < grad_w.size(0); ++l) grad_w[l].add_(grad_e.narrow(0, l * l, 2 * l + 1).sum(0));
}

// out[r, m, c] += every[r, m, z_(r mod N) C + c]: each atom's own element's block of a
// product against all elements' weights side by side (rows r = direction · N + atom).
template <typename T>
void add_selected(Tensor& out, const Tensor& every, const int64_t* species, int64_t N, int64_t C) {
  const int64_t rows = out.size(0), D = out.size(1), M = every.size(1), width = every.size(2);
  T* o = out.data_ptr<T>();
  const T* e = every.data_ptr<T>();
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t m = 0; m < M; ++m) {
        T* dst = o + (r * D + m) * C;
        const T* src = e + (r * M + m) * width + species[r % N] * C;
        for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
      }
  });
}

// The inverse placement: (N, D', C) → (N, D, Z·C) with row n's values in block z_n, zeros
// elsewhere (so Σ_n x[n]ᵀ placed[n] is the per-element weight gradient).
template <typename T>
Tensor place_selected(const Tensor& g, const int64_t* species, int64_t D, int64_t Z) {
  const int64_t N = g.size(0), Dg = g.size(1), C = g.size(2);
  Tensor out = at::zeros({N, D, Z * C}, g.options());
  const T* gp = g.data_ptr<T>();
  T* o = out.data_ptr<T>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < D; ++m)
      std::copy(gp + (n * Dg + m) * C, gp + (n * Dg + m + 1) * C, o + (n * D + m) * Z * C + species[n] * C);
  return out;
}

// SiLU and its first two derivatives: a = z σ, s1 = σ(1 + z(1−σ)), s2 = σ(1−σ)(2 + z(1−2σ)).
template <typename T>
void silu_parts(const Tensor& z, Tensor* a, Tensor* s1, Tensor* s2) {
  if (a) *a = at::empty_like(z);
  if (s1) *s1 = at::empty_like(z);
  if (s2) *s2 = at::empty_like(z);
  const T* zp = z.data_ptr<T>();
  T* ap = a ? a->data_ptr<T>() : nullptr;
  T* p1 = s1 ? s1->data_ptr<T>() : nullptr;
  T* p2 = s2 ? s2->data_ptr<T>() : nullptr;
  at::parallel_for(0, z.numel(), 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T x = zp[i], s = T(1) / (T(1) + std::exp(-x));
      if (ap) ap[i] = x * s;
      if (p1) p1[i] = s * (T(1) + x * (T(1) - s));
      if (p2) p2[i] = s * (T(1) - s) * (T(2) + x * (T(1) - T(2) * s));
    }
  });
}

// The tangent of the adjoint ga·SiLU'(z) of a pre-activation: ga'·s1 + ga·s2·z'.
template <typename T>
Tensor silu_adjoint_tangent(const Tensor& dga, const Tensor& s1, const Tensor& ga,
                            const Tensor& s2, const Tensor& dz) {
  Tensor out = at::empty_like(dga);
  const T *a = dga.data_ptr<T>(), *b = s1.data_ptr<T>(), *c = ga.data_ptr<T>();
  const T *d = s2.data_ptr<T>(), *e = dz.data_ptr<T>();
  T* o = out.data_ptr<T>();
  at::parallel_for(0, out.numel(), 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) o[i] = a[i] * b[i] + c[i] * d[i] * e[i];
  });
  return out;
}

}  // namespace

struct Layer {
  // parameters (the Python module's tensors: current values are read at every call)
  Tensor up, out, skip;
  std::vector<Tensor> mlp, mixing, readout, sc_weights;
  // constants
  std::vector<Tensor> sc_terms, sc_factors, sc_outputs;  // terms (E_ν, K_ν) in the engine dtype
  std::vector<int64_t> sc_entries, paths_per_l;
  PathTables tables;
  int64_t pmax = 0, dim_a = 0, dim_b = 0, ncols = 0;
  // index of each parameter in the gradient list
  int64_t i_up = -1, i_mlp = 0, i_mixing = 0, i_sc = 0, i_out = 0, i_skip = -1, i_readout = 0;
  // packed from the parameters by pack()
  Tensor up_e, up_t, mix_e, mix_t, out_e, out_t, skip_e, skip_t;
  std::vector<Tensor> mlp_e, readout_e, sc_values;

  template <typename T>
  ScTerms<T> terms() const {
    ScTerms<T> st;
    for (size_t v = 0; v < sc_factors.size(); ++v) {
      st.factors.push_back(sc_factors[v].data_ptr<int64_t>());
      st.outputs.push_back(sc_outputs[v].data_ptr<int64_t>());
      st.values.push_back(sc_values[v].data_ptr<T>());
      st.entries.push_back(sc_entries[v]);
    }
    st.Z = sc_values.empty() ? 0 : sc_values[0].size(0);
    return st;
  }
};

// What the later passes need from forward_backward(), per layer.
struct LayerTape {
  Tensor h, h_up, R, dR_dr, d2R_dr2, cols, A, B, h_new, q, q_silu, q_s1, q_s2;
  std::vector<Tensor> a, z, s1, s2;  // radial MLP: inputs a[k] (a[0] = basis), z[k] = a[k-1] W
  Tensor G, gB, gA, gcols, gR, gRp, gh_up, gq;  // adjoints, seed 1 on every atomic energy
  std::vector<Tensor> ga, gz;
  Tensor dh, dh_up, dR, dcols, dA, dB, dh_new, dq;  // tangents
  std::vector<Tensor> da, dz;
};

class SecondOrderEngine {
 public:
  SecondOrderEngine(double r_max, int64_t envelope_p, std::vector<double> frequencies,
                    double prefactor, Tensor sh_coefficients, std::vector<int64_t> sh_exponents,
                    int64_t lmax_sh, double inv_avg, double scale, double shift, Tensor e0,
                    Tensor embedding, double silu_scale)
      : geo_{r_max, envelope_p, std::move(frequencies), prefactor, std::move(sh_exponents), lmax_sh},
        sh_coeff_(sh_coefficients.contiguous()), inv_avg_(inv_avg), scale_(scale), shift_(shift),
        e0_(e0.contiguous()), embedding_(embedding), silu_scale_(silu_scale) {}

  void add_layer(Tensor up, std::vector<Tensor> mlp, std::vector<Tensor> mixing,
                 std::vector<int64_t> paths_per_l, int64_t pmax, std::vector<Tensor> tp_tables,
                 std::vector<Tensor> sc_factors, std::vector<Tensor> sc_outputs,
                 std::vector<Tensor> sc_terms, std::vector<Tensor> sc_weights, int64_t dim_b,
                 Tensor out, Tensor skip, std::vector<Tensor> readout) {
    Layer L;
    int64_t index = num_parameters_;
    if (up.numel()) { L.up = up; L.i_up = index++; }
    L.mlp = mlp; L.i_mlp = index; index += mlp.size();
    L.mixing = mixing; L.i_mixing = index; index += mixing.size();
    L.sc_weights = sc_weights; L.i_sc = index; index += sc_weights.size();
    L.out = out; L.i_out = index++;
    if (skip.numel()) { L.skip = skip; L.i_skip = index++; }
    L.readout = readout; L.i_readout = index; index += readout.size();
    num_parameters_ = index;
    L.paths_per_l = paths_per_l;
    L.pmax = pmax;
    L.dim_a = int64_t(paths_per_l.size() * paths_per_l.size());
    L.ncols = L.dim_a * pmax;
    L.tables = make_tables(tp_tables[0], tp_tables[1], tp_tables[2], tp_tables[3], tp_tables[4]);
    for (size_t v = 0; v < sc_factors.size(); ++v) {
      L.sc_factors.push_back(sc_factors[v].contiguous());
      L.sc_outputs.push_back(sc_outputs[v].contiguous());
      L.sc_terms.push_back(sc_terms[v].contiguous());
      L.sc_entries.push_back(sc_outputs[v].size(0));
    }
    L.dim_b = dim_b;
    layers_.push_back(std::move(L));
  }

  int64_t num_parameters() const { return num_parameters_; }

  // vectors (N, K, 3) in the padded slot layout; neighbors (N, K); counts (N,); species (N,).
  // ``frozen``: the Hessian mode (R, R', R'' per slot) instead of the training mode.
  // R(r) depends on the distance alone, and the two slots of an edge and its reverse (j, i,
  // −shift) have bitwise the same distance: the radial network runs once per such pair.
  // pair_first (P,): a slot of each pair; pair_slot (S,): each slot's pair, P for empty slots.
  // Empty tensors: one pair per slot.
  // Returns [atomic energies (N,), ∂E/∂vectors (N, K, 3)] and keeps what later passes need.
  std::vector<Tensor> forward_backward(Tensor vectors, Tensor neighbors, Tensor counts,
                                       Tensor species, bool frozen, Tensor pair_first,
                                       Tensor pair_slot) {
    TORCH_CHECK(vectors.scalar_type() == embedding_.scalar_type(),
                "second-order engine: edge vectors have another dtype than the weights");
    v_ = vectors.contiguous();
    nbr_ = neighbors.contiguous();
    cnt_ = counts.contiguous();
    z_ = species.contiguous();
    frozen_ = frozen;
    pair_first_ = pair_first.contiguous();
    pair_slot_ = pair_slot.contiguous();
    Tensor atomic = at::empty({nbr_.size(0)}, v_.options());
    Tensor grad = at::empty_like(v_);
    {
      c10::InferenceMode guard;
      AT_DISPATCH_FLOATING_TYPES(v_.scalar_type(), "forward_backward", [&] {
        pack();
        auto out = forward_backward_impl<scalar_t>();
        atomic.copy_(out[0]);
        grad.copy_(out[1]);
      });
    }
    ready_ = true;
    return {atomic, grad};
  }

  // Adds dL/dθ to ``grads`` (the parameters' gradients, in the engine's parameter order),
  // for the edge-vector tangent ``dv`` (N, K, 3) and per-atom seed tangent ``seed`` (N,).
  void parameter_gradients(Tensor dv, Tensor seed, std::vector<Tensor> grads) {
    TORCH_CHECK(ready_ && !frozen_, "parameter_gradients() needs forward_backward(frozen=False)");
    TORCH_CHECK(int64_t(grads.size()) == num_parameters_, "expected ", num_parameters_, " gradients");
    c10::InferenceMode guard;
    AT_DISPATCH_FLOATING_TYPES(v_.scalar_type(), "parameter_gradients", [&] {
      parameter_gradients_impl<scalar_t>(dv.contiguous(), seed.contiguous(), grads);
    });
  }

  // (∂E/∂v)' along B directions dv (B, N, K, 3): Hessian-vector products per edge.
  Tensor hessian_vector(Tensor dv) {
    TORCH_CHECK(ready_ && frozen_, "hessian_vector() needs forward_backward(frozen=True)");
    Tensor out = at::empty_like(dv);
    {
      c10::InferenceMode guard;
      AT_DISPATCH_FLOATING_TYPES(v_.scalar_type(), "hessian_vector", [&] {
        out.copy_(hessian_vector_impl<scalar_t>(dv.contiguous()));
      });
    }
    return out;
  }

 private:
  EdgeGeometry geo_;
  Tensor sh_coeff_;
  double inv_avg_, scale_, shift_;
  Tensor e0_, embedding_;
  double silu_scale_;
  std::vector<Layer> layers_;
  int64_t num_parameters_ = 1;  // the embedding is parameter 0
  // the tape of the last forward_backward()
  bool ready_ = false, frozen_ = false;
  Tensor v_, nbr_, cnt_, z_, pair_first_, pair_slot_;
  Tensor dist_, mono_, Y_, x_, dx_, d2x_, env_, denv_, d2env_, g_mono_, g_r_;
  std::vector<LayerTape> tape_;

  void pack() {
    for (Layer& L : layers_) {
      if (L.up.defined()) {
        L.up_e = per_component(L.up.detach());
        L.up_t = L.up_e.transpose(1, 2).contiguous();
      }
      L.mlp_e.clear();
      for (size_t k = 0; k < L.mlp.size(); ++k)
        L.mlp_e.push_back(k == 0 ? L.mlp[k].detach() : L.mlp[k].detach() * silu_scale_);
      const int64_t C = L.out.size(2), P = L.pmax;
      L.mix_e = at::zeros({L.dim_a, P * C, C}, L.out.options());
      for (size_t l = 0; l < L.mixing.size(); ++l)
        L.mix_e.narrow(0, l * l, 2 * l + 1).narrow(1, 0, L.mixing[l].size(0)).copy_(L.mixing[l].detach() * inv_avg_);
      L.mix_t = L.mix_e.transpose(1, 2).contiguous();
      L.sc_values.clear();
      for (size_t v = 0; v < L.sc_weights.size(); ++v)
        L.sc_values.push_back(at::matmul(L.sc_terms[v], L.sc_weights[v].detach()).contiguous());
      L.out_e = per_component(L.out.detach());
      L.out_t = L.out_e.transpose(1, 2).contiguous();
      if (L.skip.defined()) {  // (l+1, Z, C, C) → per l: (C, Z·C) and (C, Z·C) of Wᵀ
        const Tensor w = L.skip.detach();
        L.skip_e = per_component(w.permute({0, 2, 1, 3}).flatten(2));
        L.skip_t = per_component(w.transpose(2, 3).permute({0, 2, 1, 3}).flatten(2));
      }
      L.readout_e.clear();
      for (size_t k = 0; k < L.readout.size(); ++k) {
        const bool hidden_next = L.readout.size() > 1 && k == L.readout.size() - 1;
        L.readout_e.push_back(hidden_next ? L.readout[k].detach() * silu_scale_ : L.readout[k].detach());
      }
    }
  }

  // Radial quantities between slots (S, W) and pairs (P, W): a pair takes its first slot's
  // values; slot values are their pair's (zero for empty slots); adjoints add up per pair.
  bool paired() const { return pair_first_.numel() > 0; }
  Tensor to_pairs(const Tensor& x) const { return paired() ? x.index_select(0, pair_first_) : x; }
  Tensor to_slots(const Tensor& x) const {
    if (!paired()) return x;
    return at::cat({x, at::zeros({1, x.size(1)}, x.options())}).index_select(0, pair_slot_);
  }
  Tensor sum_to_pairs(const Tensor& g) const {
    if (!paired()) return g;
    const int64_t P = pair_first_.size(0);
    return at::zeros({P + 1, g.size(1)}, g.options()).index_add_(0, pair_slot_, g).narrow(0, 0, P);
  }
  void add_to_first_slots(Tensor& slots, const Tensor& pairs) const {
    if (paired()) slots.index_add_(0, pair_first_, pairs);
    else slots.add_(pairs);
  }

  // ------------------------------------------------------------------ forward + backward
  template <typename T>
  std::vector<Tensor> forward_backward_impl() {
    const int64_t N = nbr_.size(0), K = nbr_.size(1), S = N * K, C = embedding_.size(1);
    const int64_t U = geo_.num_monomials(), nb = int64_t(geo_.freq.size());
    const auto opts = v_.options();
    const int64_t* z = z_.data_ptr<int64_t>();
    dist_ = at::empty({S}, opts);
    mono_ = at::empty({S, U}, opts);
    x_ = at::empty({S, nb}, opts);
    dx_ = at::empty({S, nb}, opts);
    d2x_ = frozen_ ? at::empty({S, nb}, opts) : Tensor();
    env_ = at::empty({S}, opts);
    denv_ = at::empty({S}, opts);
    d2env_ = at::empty({S}, opts);
    geo_.features<T>(v_.data_ptr<T>(), S, dist_.data_ptr<T>(), mono_.data_ptr<T>(),
                     x_.data_ptr<T>(), dx_.data_ptr<T>(), frozen_ ? d2x_.data_ptr<T>() : nullptr,
                     env_.data_ptr<T>(), denv_.data_ptr<T>(), d2env_.data_ptr<T>());
    Y_ = at::mm(mono_, sh_coeff_);
    const int64_t Dsh = Y_.size(1);
    tape_.assign(layers_.size(), LayerTape());

    Tensor h = embedding_.detach().index_select(0, z_).unsqueeze(1);  // (N, 1, C)
    Tensor interaction = at::zeros({N, 1}, opts);
    for (size_t t = 0; t < layers_.size(); ++t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      tp.h = h;
      tp.h_up = L.up.defined() ? pc(h, L.up_e) : h.contiguous();
      radial_forward<T>(L, tp);
      tp.cols = at::zeros({N, L.ncols, C}, opts);
      tp_forward_impl<T>(tp.h_up.data_ptr<T>(), Y_.data_ptr<T>(), tp.R.data_ptr<T>(),
                         nbr_.data_ptr<int64_t>(), cnt_.data_ptr<int64_t>(), tp.cols.data_ptr<T>(),
                         N, K, C, tp.h_up.size(1), Dsh, int64_t(L.tables.a0.size()), L.ncols,
                         L.tables);
      tp.A = pc(tp.cols.view({N, L.dim_a, -1}), L.mix_e);
      tp.B = at::zeros({N, L.dim_b, C}, opts);
      const ScTerms<T> st = L.terms<T>();
      sc_forward_impl<T>(tp.A.data_ptr<T>(), z, tp.B.data_ptr<T>(), N, L.dim_a, C, L.dim_b,
                         st.factors, st.outputs, st.values, st.entries);
      tp.h_new = pc(tp.B, L.out_e);
      if (L.skip.defined()) add_selected<T>(tp.h_new, pc(h, L.skip_e), z, N, C);
      const Tensor s = tp.h_new.select(1, 0);
      if (L.readout.size() == 1) {
        interaction.add_(at::mm(s, L.readout_e[0]));
      } else {
        tp.q = at::mm(s, L.readout_e[0]);
        silu_parts<T>(tp.q, &tp.q_silu, &tp.q_s1, &tp.q_s2);
        interaction.add_(at::mm(tp.q_silu, L.readout_e[1]));
      }
      h = tp.h_new;
    }
    Tensor atomic = e0_.index_select(0, z_) + T(scale_) * interaction.squeeze(1) +
                    T(shift_ * inv_avg_) * env_.view({N, K}).sum(1);

    // first-order backward, seed 1 on every atomic energy
    Tensor gY = at::zeros({S, Dsh}, opts);
    g_r_ = T(shift_ * inv_avg_) * denv_;
    Tensor G;
    for (int64_t t = int64_t(layers_.size()) - 1; t >= 0; --t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      if (!G.defined()) G = at::zeros({N, L.out.size(0) * L.out.size(0), C}, opts);
      tp.G = G;
      readout_backward<T>(L, tp, N);
      tp.gB = pc(G, L.out_t);
      tp.gA = at::zeros_like(tp.A);
      const ScTerms<T> st = L.terms<T>();
      sc_backward_impl<T>(tp.gB.data_ptr<T>(), tp.A.data_ptr<T>(), z, tp.gA.data_ptr<T>(), N,
                          L.dim_a, C, L.dim_b, st.factors, st.outputs, st.values, st.entries);
      tp.gcols = pc(tp.gA, L.mix_t);
      const bool need_h = t > 0;
      const int64_t Din = tp.h_up.size(1);
      Tensor gh = need_h ? at::zeros({at::get_num_threads(), N, Din, C}, opts) : Tensor();
      Tensor gY_layer = at::empty({S, Dsh}, opts);
      tp.gR = at::empty_like(tp.R);
      tp_backward_impl<T>(tp.gcols.data_ptr<T>(), tp.h_up.data_ptr<T>(), Y_.data_ptr<T>(),
                          tp.R.data_ptr<T>(), nbr_.data_ptr<int64_t>(), cnt_.data_ptr<int64_t>(),
                          need_h ? gh.data_ptr<T>() : nullptr, gY_layer.data_ptr<T>(),
                          tp.gR.data_ptr<T>(), N, N, K, C, Din, Dsh, int64_t(L.tables.a0.size()),
                          L.ncols, need_h, L.tables);
      gY.add_(gY_layer);
      radial_backward<T>(L, tp);
      if (!need_h) break;
      tp.gh_up = gh.sum(0);
      Tensor g_in = at::zeros_like(tp.h);
      if (L.skip.defined()) add_selected<T>(g_in, pc(G, L.skip_t), z, N, C);
      if (L.up.defined())
        g_in.narrow(1, 0, L.up_t.size(0)).add_(pc(tp.gh_up, L.up_t));
      else
        g_in.add_(tp.gh_up);
      G = g_in;
    }
    g_mono_ = at::mm(gY, sh_coeff_.t());
    Tensor g_vec = at::empty_like(v_);
    geo_.backward<T>(v_.data_ptr<T>(), g_mono_.data_ptr<T>(), g_r_.data_ptr<T>(), S,
                     g_vec.data_ptr<T>());
    return {atomic, g_vec};
  }

  // R for every slot. Training: the MLP chain, keeping its activations. Frozen: R, R' and R''
  // with respect to r by second-order forward mode (inputs x, x', x'').
  template <typename T>
  void radial_forward(const Layer& L, LayerTape& tp) {
    const size_t depth = L.mlp_e.size();
    if (!frozen_) {
      tp.a = {to_pairs(x_)};
      Tensor zk = at::mm(tp.a[0], L.mlp_e[0]);
      for (size_t k = 1; k < depth; ++k) {
        Tensor a, s1, s2;
        silu_parts<T>(zk, &a, &s1, &s2);
        tp.z.push_back(zk);
        tp.s1.push_back(s1);
        tp.s2.push_back(s2);
        tp.a.push_back(a);
        zk = at::mm(a, L.mlp_e[k]);
      }
      tp.R = to_slots(zk);
      return;
    }
    const Tensor x = to_pairs(x_);
    Tensor y = at::mm(x, L.mlp_e[0]), dy = at::mm(to_pairs(dx_), L.mlp_e[0]);
    Tensor d2y = at::mm(to_pairs(d2x_), L.mlp_e[0]);
    for (size_t k = 1; k < depth; ++k) {
      Tensor a, s1, s2;
      silu_parts<T>(y, &a, &s1, &s2);
      Tensor da = s1 * dy;
      Tensor d2a = s2 * dy * dy + s1 * d2y;
      y = at::mm(a, L.mlp_e[k]);
      dy = at::mm(da, L.mlp_e[k]);
      d2y = at::mm(d2a, L.mlp_e[k]);
    }
    tp.R = to_slots(y);
    tp.dR_dr = to_slots(dy);
    tp.d2R_dr2 = to_slots(d2y);
  }

  // ∂E/∂R → ∂E/∂r of every slot (added to g_r_); training keeps the MLP's adjoints.
  template <typename T>
  void radial_backward(const Layer& L, LayerTape& tp) {
    if (frozen_) {
      g_r_.add_((tp.gR * tp.dR_dr).sum(1));
      return;
    }
    const size_t depth = L.mlp_e.size();
    tp.gz.assign(depth, Tensor());
    tp.ga.assign(depth, Tensor());
    tp.gRp = sum_to_pairs(tp.gR);
    Tensor g = tp.gRp;  // adjoint of z[depth] = R (per pair)
    for (size_t k = depth - 1; k >= 1; --k) {
      tp.ga[k] = at::mm(g, L.mlp_e[k].t());
      g = tp.ga[k] * tp.s1[k - 1];
      tp.gz[k - 1] = g;  // adjoint of the pre-activation z_k (stored at k−1, like z and s1)
    }
    Tensor g_x = at::mm(g, L.mlp_e[0].t());
    add_to_first_slots(g_r_, (g_x * to_pairs(dx_)).sum(1));
  }

  // The readout's adjoint into G[:, 0] (∂E/∂y = scale on every atom).
  template <typename T>
  void readout_backward(const Layer& L, LayerTape& tp, int64_t N) {
    Tensor g_s;
    if (L.readout.size() == 1) {
      g_s = (T(scale_) * L.readout_e[0].t()).expand({N, L.readout_e[0].size(0)});
    } else {
      tp.gq = T(scale_) * L.readout_e[1].t() * tp.q_s1;  // (N, H)
      g_s = at::mm(tp.gq, L.readout_e[0].t());
    }
    tp.G.select(1, 0).add_(g_s);
  }

  // ------------------------------------------------------------------ training: dL/dθ
  template <typename T>
  void parameter_gradients_impl(const Tensor& dv, const Tensor& seed, std::vector<Tensor>& grads) {
    const int64_t N = nbr_.size(0), K = nbr_.size(1), S = N * K, C = embedding_.size(1);
    const int64_t U = geo_.num_monomials();
    const auto opts = v_.options();
    const int64_t* z = z_.data_ptr<int64_t>();
    Tensor dr = at::empty({S}, opts), dmono = at::empty({S, U}, opts);
    geo_.tangents<T>(v_.data_ptr<T>(), dv.data_ptr<T>(), 1, S, dr.data_ptr<T>(), dmono.data_ptr<T>());
    const Tensor dY = at::mm(dmono, sh_coeff_);
    const Tensor dx = to_pairs(dx_) * to_pairs(dr.unsqueeze(1));
    const int64_t Dsh = dY.size(1);

    Tensor dh;  // the embedding does not depend on positions
    for (size_t t = 0; t < layers_.size(); ++t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      tp.dh = dh;
      if (dh.defined()) tp.dh_up = L.up.defined() ? pc(dh, L.up_e) : dh.contiguous();
      tp.da = {dx};
      tp.dz.clear();
      Tensor dzk = at::mm(dx, L.mlp_e[0]);
      for (size_t k = 1; k < L.mlp_e.size(); ++k) {
        tp.dz.push_back(dzk);
        Tensor dak = tp.s1[k - 1] * dzk;
        tp.da.push_back(dak);
        dzk = at::mm(dak, L.mlp_e[k]);
      }
      tp.dR = to_slots(dzk);
      tangent_layer_forward<T>(L, tp, dY, 1, N, K, C, Dsh, z);
      dh = tp.dh_new;
    }

    const Tensor gy_dot = (T(scale_) * seed).unsqueeze(1);  // tangent of ∂E/∂y = scale, (N, 1)
    Tensor gy = at::full({N, 1}, T(scale_), opts);
    Tensor dG;
    for (int64_t t = int64_t(layers_.size()) - 1; t >= 0; --t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      const int64_t d_out = L.out.size(0) * L.out.size(0);
      if (!dG.defined()) dG = at::zeros({N, d_out, C}, opts);
      const Tensor s = tp.h_new.select(1, 0), ds = tp.dh_new.select(1, 0);
      // readout
      if (L.readout.size() == 1) {
        dG.select(1, 0).add_(at::mm(gy_dot, L.readout_e[0].t()));
        grads[L.i_readout].add_(at::mm(ds.t(), gy) + at::mm(s.t(), gy_dot));
      } else {
        Tensor dgq = at::mm(gy_dot, L.readout_e[1].t()) * tp.q_s1 +
                     T(scale_) * L.readout_e[1].t() * tp.q_s2 * tp.dq;
        dG.select(1, 0).add_(at::mm(dgq, L.readout_e[0].t()));
        grads[L.i_readout].add_(at::mm(ds.t(), tp.gq) + at::mm(s.t(), dgq));
        grads[L.i_readout + 1].add_(T(silu_scale_) * (at::mm((tp.q_s1 * tp.dq).t(), gy) + at::mm(tp.q_silu.t(), gy_dot)));
      }
      // linear_out
      Tensor g_out = at::zeros({d_out, C, C}, opts);
      pc_wgrad_add(g_out, tp.dB, tp.G);
      pc_wgrad_add(g_out, tp.B, dG);
      add_per_degree(grads[L.i_out], g_out);
      // symmetric contraction
      Tensor dgB = pc(dG, L.out_t);
      Tensor dgA = at::zeros_like(tp.A);
      const ScTerms<T> st = L.terms<T>();
      std::vector<Tensor> gT;
      std::vector<T*> gT_ptr;
      const int64_t threads = at::get_num_threads();
      for (size_t v = 0; v < st.entries.size(); ++v) {
        gT.push_back(at::zeros({threads, st.Z, st.entries[v], C}, opts));
        gT_ptr.push_back(gT.back().data_ptr<T>());
      }
      sc_tangent_backward<T>(tp.gB.data_ptr<T>(), dgB.data_ptr<T>(), tp.A.data_ptr<T>(),
                             tp.dA.data_ptr<T>(), z, dgA.data_ptr<T>(), gT_ptr, 1, N, L.dim_a, C,
                             L.dim_b, st);
      for (size_t v = 0; v < gT.size(); ++v)
        grads[L.i_sc + v].add_(at::matmul(L.sc_terms[v].t(), gT[v].sum(0)));
      Tensor g_mix = at::zeros_like(L.mix_e);
      pc_wgrad_add(g_mix, tp.dcols.view({N, L.dim_a, -1}), tp.gA);
      pc_wgrad_add(g_mix, tp.cols.view({N, L.dim_a, -1}), dgA);
      for (size_t l = 0; l < L.mixing.size(); ++l)
        grads[L.i_mixing + l].add_(T(inv_avg_) * g_mix.narrow(0, l * l, 2 * l + 1).narrow(1, 0, L.mixing[l].size(0)).sum(0));
      Tensor dgcols = pc(dgA, L.mix_t);
      const int64_t Din = tp.h_up.size(1);
      const TpShape shape{1, N, N, K, C, Din, Dsh, int64_t(L.tables.a0.size()), L.ncols};
      Tensor dgR = at::empty_like(tp.R);
      Tensor dgh = at::zeros({threads, N, Din, C}, opts);
      tp_tangent_backward<T>(tp.gcols.data_ptr<T>(), dgcols.data_ptr<T>(), tp.h_up.data_ptr<T>(),
                             tp.dh_up.defined() ? tp.dh_up.data_ptr<T>() : nullptr,
                             Y_.data_ptr<T>(), dY.data_ptr<T>(), tp.R.data_ptr<T>(),
                             tp.dR.data_ptr<T>(), nbr_.data_ptr<int64_t>(),
                             cnt_.data_ptr<int64_t>(), dgR.data_ptr<T>(), dgh.data_ptr<T>(),
                             nullptr, shape, L.tables);
      Tensor dgh_up = dgh.sum(0);
      Tensor dg = sum_to_pairs(dgR);  // tangent of the adjoint of z[depth] = R
      Tensor g = tp.gRp;
      for (size_t k = L.mlp_e.size() - 1; k >= 1; --k) {
        Tensor& gw = grads[L.i_mlp + k];
        gw.addmm_(tp.da[k].t(), g, 1.0, silu_scale_);
        gw.addmm_(tp.a[k].t(), dg, 1.0, silu_scale_);
        Tensor dga = at::mm(dg, L.mlp_e[k].t());
        dg = silu_adjoint_tangent<T>(dga, tp.s1[k - 1], tp.ga[k], tp.s2[k - 1], tp.dz[k - 1]);
        g = tp.gz[k - 1];
      }
      grads[L.i_mlp].addmm_(tp.da[0].t(), g).addmm_(tp.a[0].t(), dg);
      Tensor dG_in = at::zeros_like(tp.h);
      if (L.up.defined()) {
        Tensor g_up = at::zeros_like(L.up_e);
        if (tp.dh.defined()) pc_wgrad_add(g_up, tp.dh, tp.gh_up);
        pc_wgrad_add(g_up, tp.h, dgh_up);
        add_per_degree(grads[L.i_up], g_up);
        dG_in.narrow(1, 0, L.up_t.size(0)).add_(pc(dgh_up, L.up_t));
      } else {
        dG_in.add_(dgh_up);
      }
      if (L.skip.defined()) {
        const int64_t Dsc = L.skip_e.size(0), Z = L.skip.size(1);
        Tensor g_skip = at::zeros_like(L.skip_e);
        if (tp.dh.defined()) pc_wgrad_add(g_skip, tp.dh, place_selected<T>(tp.G, z, Dsc, Z));
        pc_wgrad_add(g_skip, tp.h, place_selected<T>(dG, z, Dsc, Z));
        // (D, C_in, Z·C_out) → per degree (Z, C_in, C_out)
        Tensor per_l = at::zeros({L.skip.size(0), C, Z * C}, opts);
        add_per_degree(per_l, g_skip);
        grads[L.i_skip].add_(per_l.view({L.skip.size(0), C, Z, C}).permute({0, 2, 1, 3}));
        add_selected<T>(dG_in, pc(dG, L.skip_t), z, N, C);
      }
      if (t == 0) grads[0].index_add_(0, z_, dG_in.select(1, 0));
      dG = dG_in;
    }
  }

  // Tangents of one layer's forward pass for B directions (rows b·N + n), given tp.dh_up and
  // tp.dR: sets tp.dcols, tp.dA, tp.dB, tp.dh_new (the layer's output) and tp.dq.
  template <typename T>
  void tangent_layer_forward(const Layer& L, LayerTape& tp, const Tensor& dY, int64_t Bdir,
                             int64_t N, int64_t K, int64_t C, int64_t Dsh, const int64_t* z) {
    const auto opts = v_.options();
    const TpShape shape{Bdir, N, N, K, C, tp.h_up.size(1), Dsh, int64_t(L.tables.a0.size()), L.ncols};
    tp.dcols = at::zeros({Bdir * N, L.ncols, C}, opts);
    tp_tangent_forward<T>(tp.h_up.data_ptr<T>(), tp.dh_up.defined() ? tp.dh_up.data_ptr<T>() : nullptr,
                          Y_.data_ptr<T>(), dY.data_ptr<T>(), tp.R.data_ptr<T>(), tp.dR.data_ptr<T>(),
                          nbr_.data_ptr<int64_t>(), cnt_.data_ptr<int64_t>(), tp.dcols.data_ptr<T>(),
                          shape, L.tables);
    tp.dA = pc(tp.dcols.view({Bdir * N, L.dim_a, -1}), L.mix_e);
    tp.dB = at::zeros({Bdir * N, L.dim_b, C}, opts);
    const ScTerms<T> st = L.terms<T>();
    sc_tangent_forward<T>(tp.A.data_ptr<T>(), tp.dA.data_ptr<T>(), z, tp.dB.data_ptr<T>(), Bdir,
                          N, L.dim_a, C, L.dim_b, st);
    tp.dh_new = pc(tp.dB, L.out_e);
    if (L.skip.defined() && tp.dh.defined())
      add_selected<T>(tp.dh_new, pc(tp.dh, L.skip_e), z, N, C);
    if (L.readout.size() > 1) tp.dq = at::mm(tp.dh_new.select(1, 0), L.readout_e[0]);
  }

  // ------------------------------------------------------------------ Hessian-vector products
  template <typename T>
  Tensor hessian_vector_impl(const Tensor& dv) {
    const int64_t Bdir = dv.size(0), N = nbr_.size(0), K = nbr_.size(1), S = N * K;
    const int64_t C = embedding_.size(1), U = geo_.num_monomials(), Dsh = Y_.size(1);
    const auto opts = v_.options();
    const int64_t* z = z_.data_ptr<int64_t>();
    Tensor dr = at::empty({Bdir, S}, opts), dmono = at::empty({Bdir, S, U}, opts);
    geo_.tangents<T>(v_.data_ptr<T>(), dv.data_ptr<T>(), Bdir, S, dr.data_ptr<T>(), dmono.data_ptr<T>());
    const Tensor dY = at::mm(dmono.view({Bdir * S, U}), sh_coeff_).view({Bdir, S, Dsh});
    Tensor dh;
    for (size_t t = 0; t < layers_.size(); ++t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      tp.dh = dh;
      tp.dh_up = dh.defined() ? (L.up.defined() ? pc(dh, L.up_e) : dh.contiguous()) : Tensor();
      tp.dR = (tp.dR_dr.unsqueeze(0) * dr.unsqueeze(2)).contiguous();  // (B, S, P·C)
      tangent_layer_forward<T>(L, tp, dY, Bdir, N, K, C, Dsh, z);
      dh = tp.dh_new;
    }
    Tensor dgY = at::zeros({Bdir, S, Dsh}, opts);
    Tensor dg_r = (T(shift_ * inv_avg_) * d2env_).unsqueeze(0) * dr;  // (B, S)
    Tensor dG;
    for (int64_t t = int64_t(layers_.size()) - 1; t >= 0; --t) {
      const Layer& L = layers_[t];
      LayerTape& tp = tape_[t];
      const int64_t d_out = L.out.size(0) * L.out.size(0);
      if (!dG.defined()) dG = at::zeros({Bdir * N, d_out, C}, opts);
      if (L.readout.size() > 1) {  // the seed does not move: only the curvature of the SiLU
        Tensor dgq = (T(scale_) * L.readout_e[1].t() * tp.q_s2).unsqueeze(0) * tp.dq.view({Bdir, N, -1});
        dG.select(1, 0).add_(at::mm(dgq.view({Bdir * N, -1}), L.readout_e[0].t()));
      }
      Tensor dgB = pc(dG, L.out_t);
      Tensor dgA = at::zeros_like(tp.dA);
      const ScTerms<T> st = L.terms<T>();
      sc_tangent_backward<T>(tp.gB.data_ptr<T>(), dgB.data_ptr<T>(), tp.A.data_ptr<T>(),
                             tp.dA.data_ptr<T>(), z, dgA.data_ptr<T>(), {}, Bdir, N, L.dim_a, C,
                             L.dim_b, st);
      Tensor dgcols = pc(dgA, L.mix_t);
      const int64_t Din = tp.h_up.size(1);
      const bool need_h = t > 0;
      const TpShape shape{Bdir, N, N, K, C, Din, Dsh, int64_t(L.tables.a0.size()), L.ncols};
      Tensor dgR = at::empty({Bdir, S, tp.R.size(1)}, opts);
      Tensor dgh = need_h ? at::zeros({at::get_num_threads(), Bdir, N, Din, C}, opts) : Tensor();
      Tensor dgY_layer = at::empty({Bdir, S, Dsh}, opts);
      tp_tangent_backward<T>(tp.gcols.data_ptr<T>(), dgcols.data_ptr<T>(), tp.h_up.data_ptr<T>(),
                             tp.dh_up.defined() ? tp.dh_up.data_ptr<T>() : nullptr,
                             Y_.data_ptr<T>(), dY.data_ptr<T>(), tp.R.data_ptr<T>(),
                             tp.dR.data_ptr<T>(), nbr_.data_ptr<int64_t>(),
                             cnt_.data_ptr<int64_t>(), dgR.data_ptr<T>(),
                             need_h ? dgh.data_ptr<T>() : nullptr, dgY_layer.data_ptr<T>(), shape,
                             L.tables);
      dgY.add_(dgY_layer);
      dg_r.add_((dgR * tp.dR_dr.unsqueeze(0)).sum(2) + dr * (tp.gR * tp.d2R_dr2).sum(1).unsqueeze(0));
      if (!need_h) break;
      Tensor dgh_up = dgh.sum(0).view({Bdir * N, Din, C});
      Tensor dG_in = at::zeros({Bdir * N, tp.h.size(1), C}, opts);
      if (L.skip.defined()) add_selected<T>(dG_in, pc(dG, L.skip_t), z, N, C);
      if (L.up.defined())
        dG_in.narrow(1, 0, L.up_t.size(0)).add_(pc(dgh_up, L.up_t));
      else
        dG_in.add_(dgh_up);
      dG = dG_in;
    }
    Tensor dg_mono = at::mm(dgY.view({Bdir * S, Dsh}), sh_coeff_.t());
    Tensor dg_v = at::empty({Bdir, S, 3}, opts);
    geo_.backward_tangent<T>(v_.data_ptr<T>(), dv.data_ptr<T>(), g_mono_.data_ptr<T>(),
                             dg_mono.data_ptr<T>(), g_r_.data_ptr<T>(), dg_r.data_ptr<T>(), Bdir,
                             S, dg_v.data_ptr<T>());
    return dg_v.view(dv.sizes());
  }
};

// Several engines, each on its own part of a batch, at once: one thread per engine, inside which
// the engine's own loops run serially (a nested parallel region does). A small molecule's batch
// (a few dozen atoms) parallelises badly loop by loop; split by frames it keeps every core busy.
// inputs[k] = {vectors, neighbors, counts, species, pair_first, pair_slot} of forward_backward.
std::vector<std::vector<Tensor>> forward_backward_many(
    const std::vector<SecondOrderEngine*>& engines, const std::vector<std::vector<Tensor>>& inputs) {
  TORCH_CHECK(engines.size() == inputs.size(), "forward_backward_many: one input per engine");
  std::vector<std::vector<Tensor>> out(engines.size());
  at::parallel_for(0, int64_t(engines.size()), 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const auto& x = inputs[k];
      TORCH_CHECK(x.size() == 6, "forward_backward_many: six tensors per engine");
      out[k] = engines[k]->forward_backward(x[0], x[1], x[2], x[3], false, x[4], x[5]);
    }
  });
  return out;
}

// parameter_gradients of several engines at once (after forward_backward_many), each adding
// into its own list of gradient tensors.
void parameter_gradients_many(const std::vector<SecondOrderEngine*>& engines,
                              const std::vector<Tensor>& dv, const std::vector<Tensor>& seed,
                              const std::vector<std::vector<Tensor>>& grads) {
  TORCH_CHECK(engines.size() == dv.size() && dv.size() == seed.size() && seed.size() == grads.size(),
              "parameter_gradients_many: one tangent, seed and gradient list per engine");
  at::parallel_for(0, int64_t(engines.size()), 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) engines[k]->parameter_gradients(dv[k], seed[k], grads[k]);
  });
}

}  // namespace so
}  // namespace equipot

void register_training(py::module& m) {
  using equipot::so::SecondOrderEngine;
  m.def("forward_backward_many", &equipot::so::forward_backward_many,
        py::call_guard<py::gil_scoped_release>());
  m.def("parameter_gradients_many", &equipot::so::parameter_gradients_many,
        py::call_guard<py::gil_scoped_release>());
  py::class_<SecondOrderEngine>(m, "SecondOrderEngine")
      .def(py::init<double, int64_t, std::vector<double>, double, Tensor, std::vector<int64_t>,
                    int64_t, double, double, double, Tensor, Tensor, double>())
      .def("add_layer", &SecondOrderEngine::add_layer)
      .def("num_parameters", &SecondOrderEngine::num_parameters)
      .def("forward_backward", &SecondOrderEngine::forward_backward,
           py::call_guard<py::gil_scoped_release>())
      .def("parameter_gradients", &SecondOrderEngine::parameter_gradients,
           py::call_guard<py::gil_scoped_release>())
      .def("hessian_vector", &SecondOrderEngine::hessian_vector,
           py::call_guard<py::gil_scoped_release>());
}
