// Whole-model inference pass for frozen models: atomic energies and the gradient of the total
// energy with respect to every edge vector, in one call (the maths and the Python side are in
// equipot/model/inference.py; the tests check it against autograd on the reference modules).
//
// On small molecules the model's arithmetic takes a fraction of a millisecond, and running it
// as ~250 separate PyTorch operations plus an autograd graph costs several times that. Here
// the same operations (ATen matrix products, the fused kernels of tp_sc.h, a few loops) run
// back to back in C++, with the first-order backward pass written out.
//
// This header needs ATen only (no Python, no pybind11): the Python binding (inference.cpp)
// and the LAMMPS pair style (equipot/lammps) share it.
#pragma once

#include "tp_sc.h"

#include <atomic>
#include <cmath>

namespace equipot {

using at::Tensor;

namespace detail {

// Linear maps act per spherical component d with the weights of its degree l(d); they are
// stored expanded to one matrix per component, (D, C_in, C_out), so that each map is a single
// batched product (per_component) instead of one product per degree.
struct Layer {
  Tensor up, up_t;                     // linear_up (D_in, C, C) and ᵀ; undefined in layer 0
  std::vector<Tensor> mlp;             // radial MLP; SiLU normalisation folded into w[1:]
  Tensor table_y, table_m, table_s;    // or R(r) tabulated: R, h·R', h²·R'' at the nodes
  Tensor mix, mix_t;                   // path mixing (D_A, P_max*C, C), 1/n̄ folded in, and ᵀ
  int64_t num_columns = 0;             // D_A * P_max: TP output column (d, path rank)
  PathTables tables;
  std::vector<Tensor> sc_factors, sc_outputs, sc_values;  // symmetric-contraction terms
  std::vector<int64_t> sc_entries;
  int64_t dim_b = 0;                   // components of B
  Tensor out, out_t;                   // linear_out (D_out, C, C) and ᵀ
  Tensor sc, sc_t;                     // skip path (D_sc, C, E*C): all elements side by side
  std::vector<Tensor> readout;         // [(C,1)] or [(C,H), (H,1)] (SiLU scale folded in)
  Tensor ceiling;                      // (L_A+1, C) block-norm maxima of A; undefined: none
};

struct Saved {  // what the backward pass needs from one layer's forward pass
  Tensor h_in, h_up, readout_pre;
  Tensor A, R;               // only for a single-chunk pass (else rebuilt per chunk)
  std::vector<Tensor> pre;   // radial-MLP pre-activations, same condition
};

// A forward pass kept for its backward pass (InferenceEngine::forward / backward): the inputs,
// the edge features and every layer's saved tensors.
struct Pass {
  Tensor vectors, nbr, cnt, species, dist;
  Tensor Y, basis;           // only when the pass runs as a single chunk (keep)
  std::vector<Saved> saved;
  int64_t rows = 1;          // centres per chunk
  int64_t nb_used = 0;       // Bessel basis size (0: every layer is tabulated)
  bool keep = false;
  bool held = false;         // the feature ceiling changed some block of some A
  bool fused = false;        // the last layer's backward ran in the forward pass:
  Tensor g_vec, G;           // its ∂E/∂vectors so far and ∂E/∂h of the layer before
};

template <typename T>
inline void silu_grad_mul(Tensor& g, const Tensor& z) {  // g *= SiLU'(z), in place
  T* gp = g.data_ptr<T>();
  const T* zp = z.data_ptr<T>();
  at::parallel_for(0, g.numel(), 16384, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      const T s = T(1) / (T(1) + std::exp(-zp[i]));
      gp[i] *= s * (T(1) + zp[i] * (T(1) - s));
    }
  });
}

// out[n, m, c] += every[n, m, z_n*C + c] for m < every.size(1): each atom's own element's
// block of a product against all elements' weights side by side.
template <typename T>
void add_selected(Tensor& out, const Tensor& every, const int64_t* species, int64_t C) {
  const int64_t N = out.size(0), D = out.size(1), rows = every.size(1), width = every.size(2);
  T* o = out.data_ptr<T>();
  const T* e = every.data_ptr<T>();
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t m = 0; m < rows; ++m) {
        T* dst = o + (n * D + m) * C;
        const T* src = e + (n * rows + m) * width + species[n] * C;
        for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
      }
  });
}

// y[n, d] = x[n, d] @ w[d] for the first w.size(0) components d of x (N, D, C).
inline Tensor per_component(const Tensor& x, const Tensor& w) {
  return at::bmm(x.narrow(1, 0, w.size(0)).transpose(0, 1), w).transpose(0, 1).contiguous();
}

}  // namespace detail

using detail::Layer;
using detail::Pass;
using detail::Saved;
using detail::add_selected;
using detail::per_component;
using detail::silu_grad_mul;

// Node features of atoms that are not centres (ghosts: atoms owned by another MPI rank or
// periodic images, LAMMPS) are the owners' features, so a multi-layer model needs them
// exchanged between layers. The engine calls forward(h) after each layer but the last, with h
// (N_all, D, C) filled for the centres (rows < N_centre): fill the ghost rows from their
// owners. In the backward pass it calls reverse(g) with g = dE/dh (N_all, D, C): add the ghost
// rows to their owners' rows (they are not read afterwards).
struct GhostExchange {
  virtual ~GhostExchange() = default;
  virtual void forward(Tensor& h) = 0;
  virtual void reverse(Tensor& g) = 0;
};

class InferenceEngine {
 public:
  static constexpr int64_t kChunkBytes = int64_t(8) << 20;

  InferenceEngine(double r_max, int64_t envelope_p, std::vector<double> frequencies,
                  double prefactor, Tensor sh_coefficients, std::vector<int64_t> sh_exponents,
                  int64_t lmax_sh, double inv_avg, double scale, double shift, Tensor e0,
                  Tensor embedding, int64_t chunk_slots, double table_step)
      : r_max_(r_max), p_(envelope_p), freq_(std::move(frequencies)), pref_(prefactor),
        sh_coeff_(sh_coefficients.contiguous()), exps_(std::move(sh_exponents)),
        lmax_sh_(lmax_sh), inv_avg_(inv_avg), scale_(scale), shift_(shift),
        e0_(e0.contiguous()), embedding_(embedding.contiguous()), chunk_slots_(chunk_slots),
        step_(table_step) {}

  void add_layer(Tensor up, std::vector<Tensor> mlp, Tensor table_y, Tensor table_m,
                 Tensor table_s, Tensor mix, int64_t num_columns, std::vector<Tensor> tp_tables,
                 std::vector<Tensor> sc_factors, std::vector<Tensor> sc_outputs,
                 std::vector<Tensor> sc_values, int64_t dim_b, Tensor out, Tensor sc,
                 Tensor sc_t, std::vector<Tensor> readout) {
    Layer L;
    if (up.numel()) {
      L.up = up.contiguous();
      L.up_t = up.transpose(1, 2).contiguous();
    }
    for (auto& w : mlp) L.mlp.push_back(w.contiguous());
    if (table_y.numel()) {
      L.table_y = table_y.contiguous();
      L.table_m = table_m.contiguous();
      L.table_s = table_s.contiguous();
    }
    L.mix = mix.contiguous();
    L.mix_t = mix.transpose(1, 2).contiguous();
    L.num_columns = num_columns;
    L.tables = make_tables(tp_tables[0], tp_tables[1], tp_tables[2], tp_tables[3], tp_tables[4]);
    for (size_t v = 0; v < sc_factors.size(); ++v) {
      L.sc_factors.push_back(sc_factors[v].contiguous());
      L.sc_outputs.push_back(sc_outputs[v].contiguous());
      L.sc_values.push_back(sc_values[v].contiguous());
      L.sc_entries.push_back(sc_outputs[v].size(0));
    }
    L.dim_b = dim_b;
    L.out = out.contiguous();
    L.out_t = out.transpose(1, 2).contiguous();
    if (sc.numel()) {
      L.sc = sc.contiguous();
      L.sc_t = sc_t.contiguous();
    }
    for (auto& w : readout) L.readout.push_back(w.contiguous());
    radial_width_ = std::max<int64_t>(
        radial_width_, L.table_y.defined() ? L.table_y.size(1) : L.mlp.back().size(1));
    layers_.push_back(std::move(L));
  }

  // The feature ceiling of layer t (equipot/nn/feature_ceiling.py): each block of A^(t) whose
  // norm n exceeds m = tops[l, c] is scaled to m + δ·tanh((n − m)/δ), δ = softness·m.
  void set_ceiling(int64_t t, Tensor tops, double softness) {
    TORCH_CHECK(t >= 0 && t < int64_t(layers_.size()), "feature ceiling for layer ", t,
                " of ", layers_.size());
    Layer& L = layers_[t];
    TORCH_CHECK(tops.dim() == 2 && tops.size(1) == embedding_.size(1) &&
                    tops.size(0) * tops.size(0) == L.mix.size(0),
                "feature ceiling of layer ", t, ": (L+1, C) norms for A of ", L.mix.size(0),
                " components and ", embedding_.size(1), " channels");
    L.ceiling = tops.to(embedding_.scalar_type()).contiguous();
    ceiling_softness_ = softness;
  }

  // Whether the feature ceiling changes any block on this input (one forward pass): the
  // second-order engine, which does not apply the ceiling, hands such inputs to autograd.
  bool ceiling_holds(Tensor vectors, Tensor neighbors, Tensor counts, Tensor species) {
    bool any = false;
    for (const Layer& L : layers_) any = any || L.ceiling.defined();
    if (!any) return false;
    c10::InferenceMode guard;
    Pass pass;
    AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "ceiling_holds", [&] {
      forward_impl<scalar_t>(pass, vectors.contiguous(), neighbors.contiguous(),
                             counts.contiguous(), species.contiguous(), nullptr, false, false);
    });
    return pass.held;
  }

  // vectors (N, K, 3) in the padded slot layout; neighbors (N, K); counts (N,); species (N,).
  // Returns [atomic energies (N,), dE/dvectors (N, K, 3) or an undefined tensor, readout
  // features (N, D) or an undefined tensor]. The features are what each layer's last readout
  // matrix multiplies (h'⁰, or SiLU(h'⁰ W₁) without the SiLU normalisation), side by side.
  // With ``ghosts``, the first N atoms are the centres and species (N_all,) ≥ N also lists the
  // ghost atoms that neighbors may point to (see GhostExchange).
  std::vector<Tensor> run(Tensor vectors, Tensor neighbors, Tensor counts, Tensor species,
                          bool gradient, GhostExchange* ghosts = nullptr,
                          bool features = false) {
    TORCH_CHECK(vectors.scalar_type() == embedding_.scalar_type(),
                "inference engine built for another dtype");
    TORCH_CHECK(ghosts ? species.size(0) >= neighbors.size(0)
                       : species.size(0) == neighbors.size(0),
                "species must list every centre (and, with a ghost exchange, every ghost)");
    vectors = vectors.contiguous();
    neighbors = neighbors.contiguous();
    counts = counts.contiguous();
    species = species.contiguous();
    // Results go into ordinary tensors; everything in between runs in inference mode (no
    // autograd dispatch or version counting: per-operation overhead is what this saves).
    Tensor atomic = at::empty({neighbors.size(0)}, vectors.options());
    Tensor grad = gradient ? at::empty_like(vectors) : Tensor();
    int64_t width = 0;
    for (const Layer& L : layers_) width += L.readout.back().size(0);
    Tensor feats = features ? at::empty({neighbors.size(0), width}, vectors.options()) : Tensor();
    {
      c10::InferenceMode guard;
      AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "inference", [&] {
        auto out =
            run_impl<scalar_t>(vectors, neighbors, counts, species, gradient, ghosts, features);
        atomic.copy_(out[0]);
        if (gradient) grad.copy_(out[1]);
        if (features) feats.copy_(out[2]);
      });
    }
    return {atomic, grad, feats};
  }

  // The two halves of run() for callers that compute more from the last layer's scalars
  // (long-range charges): forward() returns [atomic (N,), h^(T)_{i,0} (N, C)] and keeps the
  // pass; backward(pass, g_last) returns dE/dvectors (N, K, 3) of the atomic energies plus
  // Σ_i g_last[i]·h^(T)_{i,0} (g_last undefined: the energies alone). No ghost exchange.
  std::vector<Tensor> forward(std::shared_ptr<Pass>& pass, Tensor vectors, Tensor neighbors,
                              Tensor counts, Tensor species) {
    TORCH_CHECK(vectors.scalar_type() == embedding_.scalar_type(),
                "inference engine built for another dtype");
    TORCH_CHECK(species.size(0) == neighbors.size(0), "species must list every centre");
    pass = std::make_shared<Pass>();
    Tensor atomic = at::empty({neighbors.size(0)}, vectors.options());
    Tensor scalars = at::empty({neighbors.size(0), channels()}, vectors.options());
    {
      c10::InferenceMode guard;
      AT_DISPATCH_FLOATING_TYPES(vectors.scalar_type(), "inference_forward", [&] {
        auto out = forward_impl<scalar_t>(*pass, vectors.contiguous(), neighbors.contiguous(),
                                          counts.contiguous(), species.contiguous(), nullptr,
                                          false, false);
        atomic.copy_(out[0]);
        scalars.copy_(out[2]);
      });
    }
    return {atomic, scalars};
  }

  Tensor backward(const std::shared_ptr<Pass>& pass, Tensor g_last) {
    TORCH_CHECK(pass && pass->vectors.defined(), "backward needs the pass of forward()");
    const int64_t N = pass->nbr.size(0);
    if (g_last.defined())
      TORCH_CHECK(g_last.dim() == 2 && g_last.size(0) == N && g_last.size(1) == channels() &&
                      g_last.scalar_type() == embedding_.scalar_type(),
                  "g_last must be (N, C) in the engine's dtype");
    Tensor grad = at::empty_like(pass->vectors);
    Tensor seed = g_last.defined() ? g_last.contiguous() : Tensor();
    {
      c10::InferenceMode guard;
      AT_DISPATCH_FLOATING_TYPES(pass->vectors.scalar_type(), "inference_backward", [&] {
        grad.copy_(backward_impl<scalar_t>(*pass, nullptr, seed, false));
      });
    }
    return grad;
  }

  double r_max() const { return r_max_; }
  int64_t num_layers() const { return int64_t(layers_.size()); }
  int64_t channels() const { return embedding_.size(1); }
  int64_t num_elements() const { return embedding_.size(0); }
  // Spherical components of the features that layer t passes on (the ghost-exchange width).
  int64_t feature_components(int64_t t) const { return layers_[t].out.size(0); }
  at::ScalarType dtype() const { return embedding_.scalar_type(); }

 private:
  double r_max_;
  int64_t p_;
  std::vector<double> freq_;
  double pref_;
  Tensor sh_coeff_;            // (U, (lmax_sh+1)^2): Y = monomials(û) @ coeff
  std::vector<int64_t> exps_;  // U x 3 exponents of the monomials û_x^a û_y^b û_z^c
  int64_t lmax_sh_;
  double inv_avg_, scale_, shift_;
  Tensor e0_, embedding_;
  int64_t chunk_slots_;
  int64_t radial_width_ = 1;  // the widest layer's R per slot (paths × channels)
  double step_;  // node spacing of the radial tables
  double ceiling_softness_ = 1.0;
  std::vector<Layer> layers_;

  // A held below the layer's ceiling (set_ceiling): a copy where the layer has one, else A
  // itself. Sets *held when some block was over its maximum.
  template <typename T>
  Tensor ceiling_forward(const Layer& L, const Tensor& A_raw, bool* held) const {
    if (!L.ceiling.defined()) return A_raw;
    Tensor A = A_raw.clone();
    const int64_t n = A.size(0), D = A.size(1), C = A.size(2), degrees = L.ceiling.size(0);
    const T* top = L.ceiling.data_ptr<T>();
    const T soft = T(ceiling_softness_);
    T* o = A.data_ptr<T>();
    std::atomic<bool> over{false};
    at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
      bool mine = false;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t l = 0; l < degrees; ++l)
          for (int64_t c = 0; c < C; ++c) {
            T* x = o + (i * D + l * l) * C + c;  // component m at x[m·C]
            T n2 = T(0);
            for (int64_t m = 0; m <= 2 * l; ++m) n2 += x[m * C] * x[m * C];
            const T norm = std::sqrt(n2), m_top = top[l * C + c];
            if (!(norm > m_top)) continue;
            mine = true;
            const T d = soft * m_top;
            const T f = m_top > T(0) ? (m_top + d * std::tanh((norm - m_top) / d)) / norm : T(0);
            for (int64_t m = 0; m <= 2 * l; ++m) x[m * C] *= f;
          }
      if (mine) over = true;
    });
    if (held && over) *held = true;
    return A;
  }

  // gA (∂E/∂ of the held A) → ∂E/∂A_raw in place: for a held block a, n = |a|, g = ñ/n,
  //   ∂E/∂a = g·gA + ((ñ' − g)/n²)(a·gA) a
  template <typename T>
  void ceiling_backward(const Layer& L, const Tensor& A_raw, Tensor& gA) const {
    if (!L.ceiling.defined()) return;
    const int64_t n = A_raw.size(0), D = A_raw.size(1), C = A_raw.size(2);
    const int64_t degrees = L.ceiling.size(0);
    const T* top = L.ceiling.data_ptr<T>();
    const T soft = T(ceiling_softness_);
    const T* a = A_raw.data_ptr<T>();
    T* g = gA.data_ptr<T>();
    at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t l = 0; l < degrees; ++l)
          for (int64_t c = 0; c < C; ++c) {
            const int64_t base = (i * D + l * l) * C + c;
            T n2 = T(0), dot = T(0);
            for (int64_t m = 0; m <= 2 * l; ++m) {
              n2 += a[base + m * C] * a[base + m * C];
              dot += a[base + m * C] * g[base + m * C];
            }
            const T norm = std::sqrt(n2), m_top = top[l * C + c];
            if (!(norm > m_top)) continue;
            if (!(m_top > T(0))) {
              for (int64_t m = 0; m <= 2 * l; ++m) g[base + m * C] = T(0);
              continue;
            }
            const T d = soft * m_top, t = std::tanh((norm - m_top) / d);
            const T ratio = (m_top + d * t) / norm, slope = T(1) - t * t;
            const T radial = (slope - ratio) / n2 * dot;
            for (int64_t m = 0; m <= 2 * l; ++m)
              g[base + m * C] = ratio * g[base + m * C] + radial * a[base + m * C];
          }
    });
  }

  // R(r) from the layer's table by quintic Hermite interpolation between nodes k, k+1 with
  // t = r/h − k: R = Σ_q H_q(t) c_q over c = (y_k, h y'_k, h² y''_k, h² y''_k+1, h y'_k+1,
  // y_k+1) — values, slopes and curvatures exact at the nodes, so R is C² (continuous forces
  // and Hessians). Beyond the last node (the cutoff) R = 0. With ``g`` given, accumulates
  // ∂E/∂r = Σ_c g_c dR_c/dr instead.
  template <typename T>
  void table_rows(const Layer& L, const T* r, int64_t S, T* R, const T* g, T* g_r) const {
    const int64_t G = L.table_y.size(0), PC = L.table_y.size(1);
    const T* ty = L.table_y.data_ptr<T>();
    const T* tm = L.table_m.data_ptr<T>();
    const T* ts = L.table_s.data_ptr<T>();
    const T inv_h = T(1.0 / step_);
    at::parallel_for(0, S, 64, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const T x = r[s] * inv_h;
        int64_t k = int64_t(x);
        if (k >= G - 1) {  // at or beyond the cutoff
          if (R) std::fill(R + s * PC, R + (s + 1) * PC, T(0));
          continue;
        }
        const T t = x - T(k), t2 = t * t, t3 = t2 * t, t4 = t3 * t, t5 = t4 * t;
        const T *y0 = ty + k * PC, *y1 = y0 + PC;
        const T *m0 = tm + k * PC, *m1 = m0 + PC;
        const T *s0p = ts + k * PC, *s1p = s0p + PC;
        T w[6];
        if (R) {
          w[0] = T(1) - T(10) * t3 + T(15) * t4 - T(6) * t5;
          w[1] = t - T(6) * t3 + T(8) * t4 - T(3) * t5;
          w[2] = T(0.5) * (t2 - T(3) * t3 + T(3) * t4 - t5);
          w[3] = T(0.5) * (t3 - T(2) * t4 + t5);
          w[4] = -T(4) * t3 + T(7) * t4 - T(3) * t5;
          w[5] = T(10) * t3 - T(15) * t4 + T(6) * t5;
        } else {  // d/dr = (1/h) d/dt
          w[0] = inv_h * (-T(30) * t2 + T(60) * t3 - T(30) * t4);
          w[1] = inv_h * (T(1) - T(18) * t2 + T(32) * t3 - T(15) * t4);
          w[2] = inv_h * (t - T(4.5) * t2 + T(6) * t3 - T(2.5) * t4);
          w[3] = inv_h * (T(1.5) * t2 - T(4) * t3 + T(2.5) * t4);
          w[4] = inv_h * (-T(12) * t2 + T(28) * t3 - T(15) * t4);
          w[5] = -w[0];
        }
        if (R) {
          T* out = R + s * PC;
#pragma omp simd
          for (int64_t j = 0; j < PC; ++j)
            out[j] = w[0] * y0[j] + w[1] * m0[j] + w[2] * s0p[j] + w[3] * s1p[j] +
                     w[4] * m1[j] + w[5] * y1[j];
        } else {
          const T* gs = g + s * PC;
          T acc = T(0);
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < PC; ++j)
            acc += gs[j] * (w[0] * y0[j] + w[1] * m0[j] + w[2] * s0p[j] + w[3] * s1p[j] +
                            w[4] * m1[j] + w[5] * y1[j]);
          g_r[s] += acc;
        }
      }
    });
  }

  // Envelope u(r) and u'(r) (equipot/nn/radial.py).
  template <typename T>
  inline void envelope(T r, T& u, T& du) const {
    const T d = r / T(r_max_);
    if (d >= T(1)) { u = T(0); du = T(0); return; }
    const int64_t p = p_;
    const T c = T((p + 1) * (p + 2)) / T(2);
    T dp1 = T(1);
    for (int64_t i = 0; i < p - 1; ++i) dp1 *= d;
    const T dp = dp1 * d;
    u = T(1) - c * dp + T(p * (p + 2)) * dp * d - T(p * (p + 1)) / T(2) * dp * d * d;
    du = (T(p) / T(r_max_)) * dp1 * (-c + T(2) * c * d - c * d * d);
  }

  // Length r, unit vector u and the powers pw[a][k] = u_a^k (k <= lmax_sh) of one vector.
  template <typename T>
  inline T unit_powers(const T* v, T* u, T (*pw)[8]) const {
    const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int a = 0; a < 3; ++a) {
      u[a] = v[a] / r;
      pw[a][0] = T(1);
      for (int64_t k = 1; k <= lmax_sh_; ++k) pw[a][k] = pw[a][k - 1] * u[a];
    }
    return r;
  }

  // Per slot: length r and envelope u(r); per centre: Σ_k u(r_k) (the coordination term).
  template <typename T>
  void slot_lengths(const Tensor& vectors, Tensor& dist, Tensor& env_sum) const {
    const int64_t N = vectors.size(0), K = vectors.size(1);
    const T* v = vectors.data_ptr<T>();
    T *dp = dist.data_ptr<T>(), *es = env_sum.data_ptr<T>();
    at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        T sum = T(0);
        for (int64_t s = n * K; s < (n + 1) * K; ++s) {
          const T* x = v + 3 * s;
          dp[s] = std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
          T e, de;
          envelope<T>(dp[s], e, de);
          sum += e;
        }
        es[n] = sum;
      }
    });
  }

  // Spherical harmonics Y (n, (lmax_sh+1)²) and, with ``nb`` > 0, the enveloped Bessel basis
  // (n, nb) of the n slots from s0. Built per chunk of centres, so that no whole-system
  // (slots × 16) buffer is held: for 10⁵–10⁶ atoms those buffers were most of the memory.
  template <typename T>
  void slot_geometry(const Tensor& vectors, int64_t s0, int64_t n, int64_t nb, Tensor& Y,
                     Tensor& basis) const {
    const int64_t U = sh_coeff_.size(0);
    const auto opts = vectors.options();
    Tensor mono = at::empty({n, U}, opts);
    basis = at::empty({n, nb}, opts);
    const T* v = vectors.data_ptr<T>() + 3 * s0;
    T *mp = mono.data_ptr<T>(), *bp = basis.data_ptr<T>();
    at::parallel_for(0, n, 256, [&](int64_t a, int64_t b) {
      T pw[3][8];
      for (int64_t s = a; s < b; ++s) {
        T u[3];
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        for (int64_t m = 0; m < U; ++m)
          mp[s * U + m] = pw[0][exps_[3 * m]] * pw[1][exps_[3 * m + 1]] * pw[2][exps_[3 * m + 2]];
        if (!nb) continue;
        T e, de;
        envelope<T>(r, e, de);
        for (int64_t k = 0; k < nb; ++k)
          bp[s * nb + k] = e == T(0) ? T(0) : T(pref_) * std::sin(T(freq_[k]) * r) / r * e;
      }
    });
    Y = at::mm(mono, sh_coeff_);
  }

  // Adds to ∂E/∂v of the n slots from s0 the part coming from ∂E/∂monomials, ∂E/∂basis
  // (nb > 0), the constant ∂E/∂u (coordination term) and a direct ∂E/∂r (g_dist, may be null):
  //   ∂E/∂v += (g_û − (g_û·û) û)/r + g_r û,  g_r = Σ_n g_n (b_n' u + b_n u') + g_u u' + ∂E/∂r
  // Linear in the incoming gradients, so each layer (and chunk) adds its own share.
  template <typename T>
  void edge_backward(const Tensor& vectors, int64_t s0, int64_t n, const T* gm, const T* gb,
                     int64_t nb, T g_env, const T* gd, T* gv) const {
    const int64_t U = sh_coeff_.size(0);
    const T* v = vectors.data_ptr<T>() + 3 * s0;
    gv += 3 * s0;
    at::parallel_for(0, n, 256, [&](int64_t a, int64_t b) {
      T pw[3][8];
      for (int64_t s = a; s < b; ++s) {
        T u[3];
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        T e, de;
        envelope<T>(r, e, de);
        if (e == T(0) && de == T(0)) continue;  // beyond the cutoff (empty slots): no gradient
        T gu[3] = {T(0), T(0), T(0)};
        for (int64_t m = 0; m < U; ++m) {
          const T g = gm[s * U + m];
          const int64_t x = exps_[3 * m], y = exps_[3 * m + 1], z = exps_[3 * m + 2];
          if (x) gu[0] += g * T(x) * pw[0][x - 1] * pw[1][y] * pw[2][z];
          if (y) gu[1] += g * T(y) * pw[0][x] * pw[1][y - 1] * pw[2][z];
          if (z) gu[2] += g * T(z) * pw[0][x] * pw[1][y] * pw[2][z - 1];
        }
        T gr = g_env * de + (gd ? gd[s] : T(0));
        for (int64_t k = 0; k < nb; ++k) {
          const T fr = T(freq_[k]) * r, sn = std::sin(fr), cs = std::cos(fr);
          const T bk = T(pref_) * sn / r, dbk = T(pref_) * (fr * cs - sn) / (r * r);
          gr += gb[s * nb + k] * (dbk * e + bk * de);
        }
        const T radial = gu[0] * u[0] + gu[1] * u[1] + gu[2] * u[2];
        for (int c = 0; c < 3; ++c) gv[3 * s + c] += (gu[c] - radial * u[c]) / r + gr * u[c];
      }
    });
  }

  // R for the n slots from s0 (basis: theirs): from the table, or the MLP (keeping
  // pre-activations if asked).
  template <typename T>
  Tensor radial(const Layer& L, const Tensor& basis, const Tensor& dist, int64_t s0, int64_t n,
                std::vector<Tensor>* pre) const {
    if (L.table_y.defined()) {
      Tensor R = at::empty({n, L.table_y.size(1)}, dist.options());
      table_rows<T>(L, dist.data_ptr<T>() + s0, n, R.data_ptr<T>(), nullptr, nullptr);
      return R;
    }
    return radial_mlp(L, basis, pre);
  }

  static Tensor radial_mlp(const Layer& L, const Tensor& x, std::vector<Tensor>* pre) {
    Tensor z = at::mm(x, L.mlp[0]);
    for (size_t i = 1; i < L.mlp.size(); ++i) {
      if (pre) pre->push_back(z);
      z = at::mm(at::silu(z), L.mlp[i]);
    }
    return z;
  }

  // Y and basis of centres [r0, r0+n): the pass's own when it ran as one chunk, else rebuilt.
  template <typename T>
  void chunk_geometry(const Pass& pass, int64_t r0, int64_t n, Tensor& Y, Tensor& basis) const {
    if (pass.keep) {
      Y = pass.Y;
      basis = pass.basis;
      return;
    }
    const int64_t K = pass.nbr.size(1);
    slot_geometry<T>(pass.vectors, r0 * K, n * K, pass.nb_used, Y, basis);
  }

  // One chunk of centres [r0, r0+n): its slots' Y, basis and R (with the MLP's
  // pre-activations when ``pre`` is given), taken from the pass or the saved layer if kept.
  struct Chunk {
    int64_t r0 = 0, n = 0;
    Tensor Y, basis, R;
    std::vector<Tensor> pre;
  };

  template <typename T>
  Chunk chunk_edges(const Layer& L, Saved& sv, const Pass& pass, int64_t r0, int64_t n,
                    bool with_pre) const {
    Chunk c;
    c.r0 = r0, c.n = n;
    chunk_geometry<T>(pass, r0, n, c.Y, c.basis);
    const int64_t K = pass.nbr.size(1);
    if (sv.R.defined()) {
      c.R = sv.R;
      c.pre = sv.pre;
    } else {
      c.R = radial<T>(L, c.basis, pass.dist, r0 * K, n * K, with_pre ? &c.pre : nullptr);
    }
    return c;
  }

  // A of the chunk's centres: mixing(Σ_j TP(h_up_j, Y_ij, R_ij)), (n, D_A, C). The TP columns
  // (D_A·P_max per channel, the largest per-atom buffer) exist per chunk only.
  template <typename T>
  Tensor chunk_A(const Layer& L, const Saved& sv, const Pass& pass, const Chunk& c) const {
    const int64_t K = pass.nbr.size(1), C = sv.h_up.size(2), D_A = L.mix.size(0);
    Tensor columns = at::zeros({c.n, L.num_columns, C}, pass.dist.options());
    tp_forward_impl<T>(sv.h_up.data_ptr<T>(), c.Y.data_ptr<T>(), c.R.data_ptr<T>(),
                       pass.nbr.data_ptr<int64_t>() + c.r0 * K,
                       pass.cnt.data_ptr<int64_t>() + c.r0, columns.data_ptr<T>(), c.n, K, C,
                       sv.h_up.size(1), c.Y.size(1), L.tables.a0.size(), L.num_columns,
                       L.tables);
    return per_component(columns.view({c.n, D_A, -1}), L.mix);
  }

  // h_new of the chunk from its A: linear_out(SC(A)) + the element-dependent skip path of h.
  template <typename T>
  Tensor chunk_update(const Layer& L, const Tensor& A, const Tensor& h, const int64_t* z,
                      const Chunk& c) const {
    const int64_t C = A.size(2);
    Tensor B = at::zeros({c.n, L.dim_b, C}, A.options());
    std::vector<const int64_t*> f, o;
    std::vector<const T*> vals;
    sc_pointers<T>(L, f, o, vals);
    sc_forward_impl<T>(A.data_ptr<T>(), z + c.r0, B.data_ptr<T>(), c.n, A.size(1), C, L.dim_b,
                       f, o, vals, L.sc_entries);
    Tensor h_new = per_component(B, L.out);
    if (L.sc.defined())
      add_selected<T>(h_new, per_component(h.narrow(0, c.r0, c.n), L.sc), z + c.r0, C);
    return h_new;
  }

  template <typename T>
  static void sc_pointers(const Layer& L, std::vector<const int64_t*>& f,
                          std::vector<const int64_t*>& o, std::vector<const T*>& vals) {
    for (size_t v = 0; v < L.sc_factors.size(); ++v) {
      f.push_back(L.sc_factors[v].data_ptr<int64_t>());
      o.push_back(L.sc_outputs[v].data_ptr<int64_t>());
      vals.push_back(L.sc_values[v].data_ptr<T>());
    }
  }

  // The chunk's backward from Gc = ∂E/∂h_new of its centres: through linear_out, the SC and
  // the edge block. Adds the chunk's share of ∂E/∂vectors to g_vec, of ∂E/∂h_up to the
  // per-thread rows gh_threads (if defined) and of the skip path to g_in (if defined).
  template <typename T>
  void chunk_backward(const Layer& L, const Saved& sv, const Pass& pass, const Chunk& c,
                      const Tensor& A_raw, const Tensor& A, const Tensor& Gc, const int64_t* z,
                      T g_env,
                      Tensor& gh_threads, Tensor& g_in, Tensor& g_vec) const {
    const int64_t K = pass.nbr.size(1), C = A.size(2), S = c.n * K;
    Tensor gB = per_component(Gc, L.out_t);
    Tensor gA = at::zeros_like(A);
    std::vector<const int64_t*> f, o;
    std::vector<const T*> vals;
    sc_pointers<T>(L, f, o, vals);
    sc_backward_impl<T>(gB.data_ptr<T>(), A.data_ptr<T>(), z + c.r0, gA.data_ptr<T>(), c.n,
                        A.size(1), C, L.dim_b, f, o, vals, L.sc_entries);
    if (g_in.defined() && L.sc.defined()) {
      Tensor rows = g_in.narrow(0, c.r0, c.n);
      add_selected<T>(rows, per_component(Gc, L.sc_t), z + c.r0, C);
    }
    ceiling_backward<T>(L, A_raw, gA);
    Tensor g_columns = per_component(gA, L.mix_t);  // (n, D_A, P_max·C) = (n, columns, C)
    const int64_t Dsh = c.Y.size(1), Ns = sv.h_up.size(0);
    const bool need_h = gh_threads.defined();
    Tensor gY = at::empty({S, Dsh}, A.options()), gR = at::empty_like(c.R);
    tp_backward_impl<T>(g_columns.data_ptr<T>(), sv.h_up.data_ptr<T>(), c.Y.data_ptr<T>(),
                        c.R.data_ptr<T>(), pass.nbr.data_ptr<int64_t>() + c.r0 * K,
                        pass.cnt.data_ptr<int64_t>() + c.r0,
                        need_h ? gh_threads.data_ptr<T>() : nullptr, gY.data_ptr<T>(),
                        gR.data_ptr<T>(), Ns, c.n, K, C, sv.h_up.size(1), Dsh,
                        L.tables.a0.size(), L.num_columns, need_h, L.tables);
    Tensor g_mono = at::mm(gY, sh_coeff_.t());
    if (L.table_y.defined()) {
      Tensor g_dist = at::zeros({S}, A.options());
      table_rows<T>(L, pass.dist.data_ptr<T>() + c.r0 * K, S, nullptr, gR.data_ptr<T>(),
                    g_dist.data_ptr<T>());
      edge_backward<T>(pass.vectors, c.r0 * K, S, g_mono.data_ptr<T>(), nullptr, 0, g_env,
                       g_dist.data_ptr<T>(), g_vec.data_ptr<T>());
      return;
    }
    Tensor g = gR.view({S, -1});
    for (size_t i = L.mlp.size() - 1; i >= 1; --i) {
      g = at::mm(g, L.mlp[i].t());
      silu_grad_mul<T>(g, c.pre[i - 1]);
    }
    Tensor g_basis = at::mm(g, L.mlp[0].t()).contiguous();
    edge_backward<T>(pass.vectors, c.r0 * K, S, g_mono.data_ptr<T>(), g_basis.data_ptr<T>(),
                     g_basis.size(1), g_env, nullptr, g_vec.data_ptr<T>());
  }

  // ∂E/∂s of the readout (s = h_new's scalars), E = scale·Σ readout(s): (n, C).
  template <typename T>
  Tensor readout_gradient(const Layer& L, const Tensor& readout_pre, int64_t n) const {
    if (L.readout.size() == 1) return (T(scale_) * L.readout[0].t()).expand({n, -1}).contiguous();
    Tensor gz = (T(scale_) * L.readout[1].t()).expand({n, L.readout[1].size(0)}).contiguous();
    silu_grad_mul<T>(gz, readout_pre);
    return at::mm(gz, L.readout[0].t());
  }

  // Readout of scalars s into ``interaction`` rows (and the features); returns the
  // pre-activation of a hidden readout layer (or undefined).
  static Tensor readout(const Layer& L, const Tensor& s, Tensor interaction, Tensor feats) {
    Tensor pre, x = s;
    if (L.readout.size() > 1) {
      pre = at::mm(s, L.readout[0]);
      x = at::silu(pre);
    }
    interaction.add_(at::mm(x, L.readout.back()));
    if (feats.defined()) feats.copy_(x);
    return pre;
  }

  // Zeroed accumulators of layer t's input gradient (none for the first layer, whose input is
  // the embedding): ∂E/∂h_up per thread (N_all, D_up, C each) and ∂E/∂h (N_all, D_in, C).
  static bool input_gradient_buffers(const Saved& sv, int64_t t, Tensor& gh_threads,
                                     Tensor& g_in) {
    if (t == 0) return false;
    gh_threads = at::zeros({at::get_num_threads(), sv.h_up.size(0), sv.h_up.size(1),
                            sv.h_up.size(2)}, sv.h_up.options());
    g_in = at::zeros_like(sv.h_in);
    return true;
  }

  // After a layer's chunks: g_in (N_all, D_in, C) gets ∂E/∂h through linear_up, then the
  // ghosts' rows go to their owners. Returns the centres' rows: G of the layer before.
  static Tensor finish_input_gradient(const Layer& L, Tensor& g_in, Tensor& gh_threads,
                                      GhostExchange* ghosts, int64_t N) {
    Tensor gh_up = gh_threads.size(0) == 1 ? gh_threads.select(0, 0) : gh_threads.sum(0);
    gh_threads = Tensor();
    if (L.up.defined())
      g_in.narrow(1, 0, L.up_t.size(0)).add_(per_component(gh_up, L.up_t));
    else
      g_in.add_(gh_up);
    if (ghosts) ghosts->reverse(g_in);
    return g_in.narrow(0, 0, N);
  }

  template <typename T>
  std::vector<Tensor> run_impl(const Tensor& vectors, const Tensor& nbr, const Tensor& cnt,
                               const Tensor& species, bool gradient, GhostExchange* ghosts,
                               bool features) const {
    Pass pass;
    auto out = forward_impl<T>(pass, vectors, nbr, cnt, species, ghosts, features, gradient);
    if (!gradient) return {out[0], Tensor(), out[1]};
    return {out[0], backward_impl<T>(pass, ghosts, Tensor(), true), out[1]};
  }

  // Forward pass: [atomic energies (N,), readout features or undefined, the last layer's
  // scalars h^(T)_{i,0} (N, C) or undefined]; ``pass`` keeps what backward_impl needs.
  //
  // Memory (what lets 10⁶ atoms fit in 24 GB): only per-atom node tensors are whole; every
  // per-slot buffer (Y, R, the TP columns and their gradients) exists per chunk of centres.
  // A layer's A (N, D_A, C) is kept only when the pass is a single chunk (a small system);
  // otherwise the backward pass rebuilds it chunk by chunk from the Y and R it rebuilds
  // anyway. With ``fuse`` (the caller wants dE/dvectors of the energies alone), the last layer
  // runs its backward pass chunk by chunk right after its forward pass: its A is never whole.
  template <typename T>
  std::vector<Tensor> forward_impl(Pass& pass, const Tensor& vectors, const Tensor& nbr,
                                   const Tensor& cnt, const Tensor& species,
                                   GhostExchange* ghosts, bool features, bool fuse) const {
    const int64_t N = nbr.size(0), K = nbr.size(1), S = N * K, C = embedding_.size(1);
    const int64_t n_all = species.size(0);  // centres first, then ghosts
    const int64_t T_layers = int64_t(layers_.size());
    const auto opts = vectors.options();
    const int64_t* z = species.data_ptr<int64_t>();

    bool mlp_layers = false;  // the Bessel basis is only needed by layers without a table
    for (const Layer& L : layers_) mlp_layers = mlp_layers || !L.table_y.defined();
    pass.vectors = vectors, pass.nbr = nbr, pass.cnt = cnt, pass.species = species;
    pass.nb_used = mlp_layers ? int64_t(freq_.size()) : 0;
    // Up to chunk_slots slots the pass is one chunk that keeps Y, basis, R and A for the
    // backward pass. Beyond, chunks are small enough that the largest per-chunk buffers (R and
    // ∂E/∂R, slots × radial_width) stay under kChunkBytes: glibc serves larger blocks with
    // fresh mmap pages on every allocation (page faults took up to a third of a 32,000-atom
    // step with 16,384-slot chunks), and smaller ones stay in cache.
    pass.rows = std::max<int64_t>(1, chunk_slots_ / std::max<int64_t>(K, 1));
    pass.keep = pass.rows >= N;
    if (!pass.keep) {
      const int64_t budget = kChunkBytes / (radial_width_ * int64_t(sizeof(T)));
      pass.rows = std::max<int64_t>(1, std::min(pass.rows, budget / std::max<int64_t>(K, 1)));
    }
    pass.dist = at::empty({S}, opts);
    Tensor env_sum = at::empty({N}, opts);
    slot_lengths<T>(vectors, pass.dist, env_sum);
    if (pass.keep) slot_geometry<T>(vectors, 0, S, pass.nb_used, pass.Y, pass.basis);

    std::vector<Saved>& saved = pass.saved;
    saved.assign(layers_.size(), Saved());
    int64_t width = 0;
    for (const Layer& L : layers_) width += L.readout.back().size(0);
    Tensor feats = features ? at::empty({N, width}, opts) : Tensor();
    Tensor h = embedding_.index_select(0, species).unsqueeze(1);  // (N_all, 1, C)
    Tensor interaction = at::zeros({N, 1}, opts);
    Tensor last_scalars;
    int64_t column = 0;
    for (int64_t t = 0; t < T_layers; ++t) {
      const Layer& L = layers_[t];
      Saved& sv = saved[t];
      sv.h_in = h;
      sv.h_up = L.up.defined() ? per_component(h, L.up) : h.contiguous();
      const int64_t w = L.readout.back().size(0);
      Tensor feats_t = features ? feats.narrow(1, column, w) : Tensor();
      column += w;
      if (fuse && t + 1 == T_layers) {
        fused_last_layer<T>(L, sv, pass, h, t, interaction, feats_t, ghosts);
        break;
      }
      Tensor h_new = at::empty({N, L.out.size(0), C}, opts);
      for (int64_t r0 = 0; r0 < N; r0 += pass.rows) {
        Chunk c = chunk_edges<T>(L, sv, pass, r0, std::min(pass.rows, N - r0), pass.keep);
        Tensor A_raw = chunk_A<T>(L, sv, pass, c);
        Tensor A = ceiling_forward<T>(L, A_raw, &pass.held);
        if (pass.keep) sv.A = A_raw, sv.R = c.R, sv.pre = std::move(c.pre);
        h_new.narrow(0, r0, c.n).copy_(chunk_update<T>(L, A, h, z, c));
      }
      Tensor s = h_new.select(1, 0);
      last_scalars = s;
      sv.readout_pre = readout(L, s, interaction, feats_t);
      h = h_new;
      if (ghosts && t + 1 < T_layers) {
        h = at::empty({n_all, h_new.size(1), C}, opts);
        h.narrow(0, 0, N).copy_(h_new);
        ghosts->forward(h);
      }
    }
    Tensor atomic = e0_.index_select(0, species.narrow(0, 0, N)) +
                    T(scale_) * interaction.squeeze(1) + T(shift_ * inv_avg_) * env_sum;
    return {atomic, feats, last_scalars};
  }

  // The last layer's forward and backward passes, chunk by chunk (forward_impl with fuse):
  // adds its energies to ``interaction``, its share of ∂E/∂vectors to pass.g_vec and leaves
  // ∂E/∂h of the layer before in pass.G.
  template <typename T>
  void fused_last_layer(const Layer& L, Saved& sv, Pass& pass, const Tensor& h, int64_t t,
                        Tensor& interaction, Tensor& feats_t, GhostExchange* ghosts) const {
    const int64_t N = pass.nbr.size(0), C = embedding_.size(1);
    const int64_t* z = pass.species.data_ptr<int64_t>();
    const auto opts = pass.vectors.options();
    Tensor gh_threads, g_in;
    const bool need_h = input_gradient_buffers(sv, t, gh_threads, g_in);
    const T g_env = t == 0 ? T(shift_ * inv_avg_) : T(0);
    pass.g_vec = at::zeros_like(pass.vectors);
    for (int64_t r0 = 0; r0 < N; r0 += pass.rows) {
      Chunk c = chunk_edges<T>(L, sv, pass, r0, std::min(pass.rows, N - r0), true);
      Tensor A_raw = chunk_A<T>(L, sv, pass, c);
      Tensor A = ceiling_forward<T>(L, A_raw, &pass.held);
      Tensor s = chunk_update<T>(L, A, h, z, c).select(1, 0);
      Tensor pre = readout(L, s, interaction.narrow(0, r0, c.n),
                           feats_t.defined() ? feats_t.narrow(0, r0, c.n) : Tensor());
      Tensor Gc = at::zeros({c.n, L.out.size(0), C}, opts);
      Gc.select(1, 0).copy_(readout_gradient<T>(L, pre, c.n));
      chunk_backward<T>(L, sv, pass, c, A_raw, A, Gc, z, g_env, gh_threads, g_in, pass.g_vec);
    }
    sv = Saved();  // h_up: done with it before finish_input_gradient allocates
    if (need_h) pass.G = finish_input_gradient(L, g_in, gh_threads, ghosts, N);
    pass.fused = true;
  }

  // dE/dvectors (N, K, 3) of the pass's energies plus, with ``g_last`` (N, C) defined, of
  // Σ_i g_last[i]·h^(T)_{i,0}: the gradient of anything computed from the last scalars
  // (long-range charges) comes through the same backward pass. With ``release`` the pass is
  // used up: each layer's saved tensors are freed once the backward pass is done with them.
  template <typename T>
  Tensor backward_impl(Pass& pass, GhostExchange* ghosts, const Tensor& g_last,
                       bool release) const {
    TORCH_CHECK(!(pass.fused && g_last.defined()), "a fused pass has no g_last seed");
    const int64_t N = pass.nbr.size(0), C = embedding_.size(1);
    const int64_t T_layers = int64_t(layers_.size());
    const auto opts = pass.vectors.options();
    const int64_t* z = pass.species.data_ptr<int64_t>();
    Tensor g_vec = pass.fused ? pass.g_vec : at::zeros_like(pass.vectors);
    Tensor G = pass.G;  // ∂E/∂h_new of layer t through the later layers
    for (int64_t t = T_layers - (pass.fused ? 2 : 1); t >= 0; --t) {
      const Layer& L = layers_[t];
      Saved& sv = pass.saved[t];
      if (!G.defined()) G = at::zeros({N, L.out.size(0), C}, opts);
      G.select(1, 0).add_(readout_gradient<T>(L, sv.readout_pre, N));
      if (g_last.defined() && t + 1 == T_layers) G.select(1, 0).add_(g_last);
      Tensor gh_threads, g_in;
      const bool need_h = input_gradient_buffers(sv, t, gh_threads, g_in);
      // the coordination term's ∂E/∂u is added once, with the first layer
      const T g_env = t == 0 ? T(shift_ * inv_avg_) : T(0);
      for (int64_t r0 = 0; r0 < N; r0 += pass.rows) {
        Chunk c = chunk_edges<T>(L, sv, pass, r0, std::min(pass.rows, N - r0), true);
        Tensor A_raw = sv.A.defined() ? sv.A : chunk_A<T>(L, sv, pass, c);
        Tensor A = ceiling_forward<T>(L, A_raw, nullptr);
        chunk_backward<T>(L, sv, pass, c, A_raw, A, G.narrow(0, r0, c.n), z, g_env, gh_threads,
                          g_in, g_vec);
      }
      if (!need_h) break;
      G = finish_input_gradient(L, g_in, gh_threads, ghosts, N);
      if (release) sv = Saved();
    }
    return g_vec;
  }
};

}  // namespace equipot
