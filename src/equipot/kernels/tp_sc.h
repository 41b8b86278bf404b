// Fused CPU kernels for equipot's two hot operations (first derivatives only).
//
// * Edge tensor product (see equipot/nn/tensor_product.py for the maths):
//     S[n, col(p,M), c] = sum_k R[n,k,p,c] * sum_{m1} w_p[m1,M](Y[n,k]) * h[nbr[n,k], a0_p+m1, c]
//   with w_p[m1,M] = sum_{m2} CG_p[m1,m2,M] * Y[n,k,y0_p+m2].
//   No per-edge intermediate is written: each slot's contribution goes straight into S.
// * Symmetric contraction (equipot/nn/product_basis.py), as a sum over the non-zero terms
//     B[n, M_e, c] += T[z_n, e, c] * prod_i A[n, f_e,i, c]        (i < nu)
//
// Both are parallel over centre atoms. Gradients of the tensor product with respect to the
// neighbour features scatter to other atoms; each thread accumulates into its own buffer.
// Shared by the per-operation bindings (cpu_kernels.cpp) and the whole-model inference pass
// (engine.h); needs ATen only, no Python. Double backward (training, Hessians) is served by
// the PyTorch reference.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace equipot {


struct PathTables {
  std::vector<int64_t> a0, m1n, y0, mn;  // per path: feature block start/size, Y start, 2L+1
  std::vector<int64_t> cols;             // per path, per M (stride 7): output column
  std::vector<int64_t> ptr;              // CG entries of path p: ptr[p] .. ptr[p+1]
  std::vector<int64_t> m1, m2, mo;       // per CG entry
  std::vector<double> val;
};

inline std::vector<int64_t> to_vec(const at::Tensor& t) {
  auto c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

inline PathTables make_tables(const at::Tensor& path_info, const at::Tensor& path_cols,
                       const at::Tensor& cg_ptr, const at::Tensor& cg_index,
                       const at::Tensor& cg_value) {
  PathTables t;
  auto info = to_vec(path_info);  // (P, 4): a0, m1n, y0, mn
  int64_t P = path_info.size(0);
  for (int64_t p = 0; p < P; ++p) {
    t.a0.push_back(info[4 * p]);
    t.m1n.push_back(info[4 * p + 1]);
    t.y0.push_back(info[4 * p + 2]);
    t.mn.push_back(info[4 * p + 3]);
  }
  t.cols = to_vec(path_cols);
  t.ptr = to_vec(cg_ptr);
  auto idx = to_vec(cg_index);  // (E, 3): m1, m2, M
  for (size_t e = 0; e < idx.size() / 3; ++e) {
    t.m1.push_back(idx[3 * e]);
    t.m2.push_back(idx[3 * e + 1]);
    t.mo.push_back(idx[3 * e + 2]);
  }
  auto v = cg_value.to(at::kDouble).contiguous();
  t.val.assign(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
  return t;
}

constexpr int64_t kMaxM = 7;  // 2L+1 for L <= 3
constexpr int64_t kMaxM1 = 7;

// w[m1 * kMaxM + M] = sum over the path's CG entries of value * Y[y0 + m2]
template <typename T>
inline void path_weights(const PathTables& tb, int64_t p, const T* y, T* w) {
  for (int64_t i = 0; i < kMaxM1 * kMaxM; ++i) w[i] = T(0);
  for (int64_t e = tb.ptr[p]; e < tb.ptr[p + 1]; ++e)
    w[tb.m1[e] * kMaxM + tb.mo[e]] += T(tb.val[e]) * y[tb.y0[p] + tb.m2[e]];
}

// For one (slot, path): out_M[c] += sum_{m1} w[m1, M] R[c] h[m1, c] for all M. M1 (feature
// components) and MN (output components) are compile-time; every channel loop is a simple
// vectorisable pass (rh is a small scratch buffer of M1 x C values).
template <typename T, int M1, int MN>
inline void forward_path(T* const* out, const T* __restrict__ Rp, const T* __restrict__ hp,
                         const T* w, T* __restrict__ rh, int64_t C) {
  for (int m1 = 0; m1 < M1; ++m1) {
    const T* __restrict__ h = hp + m1 * C;
    T* __restrict__ o = rh + m1 * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = Rp[c] * h[c];
  }
  for (int M = 0; M < MN; ++M) {
    T wl[M1];
    for (int m1 = 0; m1 < M1; ++m1) wl[m1] = w[m1 * kMaxM + M];
    T* __restrict__ o = out[M];
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T t = T(0);
      for (int m1 = 0; m1 < M1; ++m1) t += wl[m1] * rh[m1 * C + c];
      o[c] += t;
    }
  }
}

template <typename T, int M1>
inline void forward_path_mn(int64_t mn, T* const* out, const T* Rp, const T* hp, const T* w,
                            T* rh, int64_t C) {
  switch (mn) {
    case 1: forward_path<T, M1, 1>(out, Rp, hp, w, rh, C); break;
    case 3: forward_path<T, M1, 3>(out, Rp, hp, w, rh, C); break;
    case 5: forward_path<T, M1, 5>(out, Rp, hp, w, rh, C); break;
    default: forward_path<T, M1, 7>(out, Rp, hp, w, rh, C); break;
  }
}

template <typename T>
inline void forward_path_dispatch(int64_t m1n, int64_t mn, T* const* out, const T* Rp,
                                  const T* hp, const T* w, T* rh, int64_t C) {
  switch (m1n) {
    case 1: forward_path_mn<T, 1>(mn, out, Rp, hp, w, rh, C); break;
    case 3: forward_path_mn<T, 3>(mn, out, Rp, hp, w, rh, C); break;
    case 5: forward_path_mn<T, 5>(mn, out, Rp, hp, w, rh, C); break;
    default: forward_path_mn<T, 7>(mn, out, Rp, hp, w, rh, C); break;
  }
}

template <typename T>
void tp_forward_impl(const T* h, const T* Y, const T* R, const int64_t* nbr, const int64_t* count,
                     T* S, int64_t N, int64_t K, int64_t C, int64_t Din, int64_t Dsh, int64_t P,
                     int64_t ncols, const PathTables& tb) {
  at::parallel_for(0, N, 4, [&](int64_t n0, int64_t n1) {
    T w[kMaxM1 * kMaxM];
    std::vector<T> rh(kMaxM1 * C);
    for (int64_t n = n0; n < n1; ++n) {
      T* Sn = S + n * ncols * C;
      for (int64_t k = 0; k < count[n]; ++k) {
        const int64_t slot = n * K + k;
        const T* hj = h + nbr[slot] * Din * C;
        const T* y = Y + slot * Dsh;
        for (int64_t p = 0; p < P; ++p) {
          path_weights(tb, p, y, w);
          T* out[kMaxM];
          for (int64_t M = 0; M < tb.mn[p]; ++M) out[M] = Sn + tb.cols[p * kMaxM + M] * C;
          forward_path_dispatch(tb.m1n[p], tb.mn[p], out, R + (slot * P + p) * C,
                                hj + tb.a0[p] * C, w, rh.data(), C);
        }
      }
    }
  });
}

// Backward of forward_path for one (slot, path), with g_M = dL/dS[col(p, M)]:
//   gw[m1, M] += sum_c h[m1, c] R[c] g_M[c]
//   v_m1[c]   = sum_M w[m1, M] g_M[c]
//   gR[c]     = sum_m1 h[m1, c] v_m1[c]        (written: one path owns this row of gR)
//   gh[m1, c] += R[c] v_m1[c]
// as separate vectorisable passes over channels (scratch: M1 x C values).
template <typename T, int M1, int MN>
inline void backward_path(const T* const* g, const T* __restrict__ Rp, const T* __restrict__ hp,
                          const T* w, T* __restrict__ gRp, T* __restrict__ ghp, T* gw,
                          T* __restrict__ scratch, int64_t C) {
  for (int m1 = 0; m1 < M1; ++m1) {
    const T* __restrict__ h = hp + m1 * C;
    T* __restrict__ hr = scratch + m1 * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) hr[c] = h[c] * Rp[c];
    for (int M = 0; M < MN; ++M) {
      const T* __restrict__ gM = g[M];
      T s = T(0);
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < C; ++c) s += hr[c] * gM[c];
      gw[m1 * kMaxM + M] += s;
    }
  }
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) gRp[c] = T(0);
  for (int m1 = 0; m1 < M1; ++m1) {
    T wl[MN];
    for (int M = 0; M < MN; ++M) wl[M] = w[m1 * kMaxM + M];
    const T* __restrict__ h = hp + m1 * C;
    T* __restrict__ v = scratch + m1 * C;  // reuse: hr of this m1 is no longer needed
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T t = T(0);
      for (int M = 0; M < MN; ++M) t += wl[M] * g[M][c];
      v[c] = t;
      gRp[c] += h[c] * t;
    }
    if (ghp != nullptr) {
      T* __restrict__ gh = ghp + m1 * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) gh[c] += Rp[c] * v[c];
    }
  }
}

template <typename T, int M1>
inline void backward_path_mn(int64_t mn, const T* const* g, const T* Rp, const T* hp,
                             const T* w, T* gRp, T* ghp, T* gw, T* scratch, int64_t C) {
  switch (mn) {
    case 1: backward_path<T, M1, 1>(g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    case 3: backward_path<T, M1, 3>(g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    case 5: backward_path<T, M1, 5>(g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    default: backward_path<T, M1, 7>(g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
  }
}

template <typename T>
inline void backward_path_dispatch(int64_t m1n, int64_t mn, const T* const* g, const T* Rp,
                                   const T* hp, const T* w, T* gRp, T* ghp, T* gw, T* scratch,
                                   int64_t C) {
  switch (m1n) {
    case 1: backward_path_mn<T, 1>(mn, g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    case 3: backward_path_mn<T, 3>(mn, g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    case 5: backward_path_mn<T, 5>(mn, g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
    default: backward_path_mn<T, 7>(mn, g, Rp, hp, w, gRp, ghp, gw, scratch, C); break;
  }
}

template <typename T>
void tp_backward_impl(const T* gS, const T* h, const T* Y, const T* R, const int64_t* nbr,
                      const int64_t* count, T* gh_threads, T* gY, T* gR, int64_t Ns, int64_t N,
                      int64_t K, int64_t C, int64_t Din, int64_t Dsh, int64_t P, int64_t ncols,
                      bool need_h, const PathTables& tb) {
  at::parallel_for(0, N, 4, [&](int64_t n0, int64_t n1) {
    T* gh = need_h ? gh_threads + at::get_thread_num() * Ns * Din * C : nullptr;
    T w[kMaxM1 * kMaxM];
    T gw[kMaxM1 * kMaxM];
    std::vector<T> scratch(kMaxM1 * C);
    for (int64_t n = n0; n < n1; ++n) {
      const T* gSn = gS + n * ncols * C;
      // gR and gY come uninitialised: empty slots get zeros, occupied ones are written below
      for (int64_t k = count[n]; k < K; ++k) {
        std::fill(gR + (n * K + k) * P * C, gR + (n * K + k + 1) * P * C, T(0));
        std::fill(gY + (n * K + k) * Dsh, gY + (n * K + k + 1) * Dsh, T(0));
      }
      for (int64_t k = 0; k < count[n]; ++k) {
        const int64_t slot = n * K + k;
        const int64_t j = nbr[slot];
        const T* hj = h + j * Din * C;
        const T* y = Y + slot * Dsh;
        T* gy = gY + slot * Dsh;
        for (int64_t d = 0; d < Dsh; ++d) gy[d] = T(0);
        for (int64_t p = 0; p < P; ++p) {
          path_weights(tb, p, y, w);
          for (int64_t i = 0; i < kMaxM1 * kMaxM; ++i) gw[i] = T(0);
          const T* gM[kMaxM];
          for (int64_t M = 0; M < tb.mn[p]; ++M) gM[M] = gSn + tb.cols[p * kMaxM + M] * C;
          T* ghp = need_h ? gh + (j * Din + tb.a0[p]) * C : nullptr;
          backward_path_dispatch(tb.m1n[p], tb.mn[p], gM, R + (slot * P + p) * C,
                                 hj + tb.a0[p] * C, w, gR + (slot * P + p) * C, ghp, gw,
                                 scratch.data(), C);
          for (int64_t e = tb.ptr[p]; e < tb.ptr[p + 1]; ++e)
            gy[tb.y0[p] + tb.m2[e]] += T(tb.val[e]) * gw[tb.m1[e] * kMaxM + tb.mo[e]];
        }
      }
    }
  });
}


// ------------------------------------------------------------------ symmetric contraction


// One term of order NU: out[c] += t[c] * prod_i a_i[c].
template <typename T, int NU>
inline void term_forward(T* out, const T* t, const T* const* a, int64_t C) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    T p = t[c];
    for (int i = 0; i < NU; ++i) p *= a[i][c];
    out[c] += p;
  }
}

// Its backward: ga_i[c] += t[c] go[c] prod_{j != i} a_j[c]. Factors may repeat (A_a^2 terms),
// so the ga_i can be the same array: one vectorised pass per factor, each writing one array.
template <typename T, int NU>
inline void term_backward(T* const* ga, const T* t, const T* go, const T* const* a, int64_t C) {
  for (int i = 0; i < NU; ++i) {
    T* out = ga[i];
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T p = t[c] * go[c];
      for (int j = 0; j < NU; ++j)
        if (j != i) p *= a[j][c];
      out[c] += p;
    }
  }
}

template <typename T, int NU>
void terms_forward(const T* An, T* Bn, const int64_t* factors, const int64_t* outputs,
                   const T* vals, int64_t E, int64_t C) {
  const T* a[NU];
  for (int64_t e = 0; e < E; ++e) {
    for (int i = 0; i < NU; ++i) a[i] = An + factors[e * NU + i] * C;
    term_forward<T, NU>(Bn + outputs[e] * C, vals + e * C, a, C);
  }
}

template <typename T, int NU>
void terms_backward(const T* An, T* gAn, const T* gBn, const int64_t* factors,
                    const int64_t* outputs, const T* vals, int64_t E, int64_t C) {
  const T* a[NU];
  T* ga[NU];
  for (int64_t e = 0; e < E; ++e) {
    for (int i = 0; i < NU; ++i) {
      a[i] = An + factors[e * NU + i] * C;
      ga[i] = gAn + factors[e * NU + i] * C;
    }
    term_backward<T, NU>(ga, vals + e * C, gBn + outputs[e] * C, a, C);
  }
}

template <typename T>
void sc_forward_impl(const T* A, const int64_t* species, T* B, int64_t N, int64_t D, int64_t C,
                     int64_t M, const std::vector<const int64_t*>& factors,
                     const std::vector<const int64_t*>& outputs,
                     const std::vector<const T*>& values, const std::vector<int64_t>& entries) {
  at::parallel_for(0, N, 8, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* An = A + n * D * C;
      T* Bn = B + n * M * C;
      const int64_t z = species[n];
      for (size_t v = 0; v < entries.size(); ++v) {
        const int64_t E = entries[v];
        const T* vals = values[v] + z * E * C;
        switch (v + 1) {
          case 1: terms_forward<T, 1>(An, Bn, factors[v], outputs[v], vals, E, C); break;
          case 2: terms_forward<T, 2>(An, Bn, factors[v], outputs[v], vals, E, C); break;
          case 3: terms_forward<T, 3>(An, Bn, factors[v], outputs[v], vals, E, C); break;
          default: terms_forward<T, 4>(An, Bn, factors[v], outputs[v], vals, E, C); break;
        }
      }
    }
  });
}

template <typename T>
void sc_backward_impl(const T* gB, const T* A, const int64_t* species, T* gA, int64_t N,
                      int64_t D, int64_t C, int64_t M, const std::vector<const int64_t*>& factors,
                      const std::vector<const int64_t*>& outputs,
                      const std::vector<const T*>& values, const std::vector<int64_t>& entries) {
  at::parallel_for(0, N, 8, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* An = A + n * D * C;
      T* gAn = gA + n * D * C;
      const T* gBn = gB + n * M * C;
      const int64_t z = species[n];
      for (size_t v = 0; v < entries.size(); ++v) {
        const int64_t E = entries[v];
        const T* vals = values[v] + z * E * C;
        switch (v + 1) {
          case 1: terms_backward<T, 1>(An, gAn, gBn, factors[v], outputs[v], vals, E, C); break;
          case 2: terms_backward<T, 2>(An, gAn, gBn, factors[v], outputs[v], vals, E, C); break;
          case 3: terms_backward<T, 3>(An, gAn, gBn, factors[v], outputs[v], vals, E, C); break;
          default: terms_backward<T, 4>(An, gAn, gBn, factors[v], outputs[v], vals, E, C); break;
        }
      }
    }
  });
}


}  // namespace equipot
