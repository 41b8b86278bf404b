// Second-order kernels: tangents (forward mode) of the tensor product and of the symmetric
// contraction, and of their first-order backward passes (tp_sc.h). Together with the forward
// and backward kernels they give, exactly and without an autograd graph,
//   * the gradient of a force / stress loss with respect to the weights (training.cpp), and
//   * Hessian-vector products (the tangent of ∂E/∂r along displacement directions).
//
// Notation: x' is the tangent of x along the direction being differentiated, gx = ∂E/∂x the
// first-order adjoint, gx' its tangent. Several directions ("B") can be carried at once; their
// tangent arrays are laid out (B, rows, ...) next to one primal array (rows, ...).
#pragma once

#include "tp_sc.h"

#include <type_traits>
#include <utility>

namespace equipot {
namespace so {

// Calls f(std::integral_constant<int, M1>{}, std::integral_constant<int, MN>{}) for the path's
// numbers of feature and output components, so the channel loops have compile-time bounds.
template <typename F>
inline void with_sizes(int64_t m1n, int64_t mn, F&& f) {
  auto outer = [&](auto m1) {
    switch (mn) {
      case 1: f(m1, std::integral_constant<int, 1>{}); break;
      case 3: f(m1, std::integral_constant<int, 3>{}); break;
      case 5: f(m1, std::integral_constant<int, 5>{}); break;
      default: f(m1, std::integral_constant<int, 7>{}); break;
    }
  };
  switch (m1n) {
    case 1: outer(std::integral_constant<int, 1>{}); break;
    case 3: outer(std::integral_constant<int, 3>{}); break;
    case 5: outer(std::integral_constant<int, 5>{}); break;
    default: outer(std::integral_constant<int, 7>{}); break;
  }
}

// Shapes shared by the tensor-product kernels: N centre atoms with K slots, Ns atoms that can
// be neighbours (rows of h), features (Ns, Din, C), Y (N*K, Dsh), R (N*K, P*C), S (N, ncols, C).
struct TpShape {
  int64_t B, N, Ns, K, C, Din, Dsh, P, ncols;
};

// S' = TP(h', Y, R) + TP(h, Y', R) + TP(h, Y, R'), i.e. per slot and path
//   S'_M[c] += Σ_m1 w[m1,M](Y) (R' h + R h')[m1,c] + w[m1,M](Y') (R h)[m1,c].
// dh may be null (features that do not depend on the direction, e.g. the embedding).
template <typename T>
void tp_tangent_forward(const T* h, const T* dh, const T* Y, const T* dY, const T* R,
                        const T* dR, const int64_t* nbr, const int64_t* count, T* dS,
                        const TpShape& s, const PathTables& tb) {
  const int64_t C = s.C, S = s.N * s.K;
  at::parallel_for(0, s.B * s.N, 4, [&](int64_t r0, int64_t r1) {
    T w[kMaxM1 * kMaxM], dw[kMaxM1 * kMaxM];
    std::vector<T> rh(kMaxM1 * C), drh(kMaxM1 * C);
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / s.N, n = row % s.N;
      T* out = dS + row * s.ncols * C;
      for (int64_t k = 0; k < count[n]; ++k) {
        const int64_t slot = n * s.K + k, j = nbr[slot];
        const T* hj = h + j * s.Din * C;
        const T* dhj = dh ? dh + (b * s.Ns + j) * s.Din * C : nullptr;
        const T* Rs = R + slot * s.P * C;
        const T* dRs = dR + (b * S + slot) * s.P * C;
        for (int64_t p = 0; p < s.P; ++p) {
          path_weights(tb, p, Y + slot * s.Dsh, w);
          path_weights(tb, p, dY + (b * S + slot) * s.Dsh, dw);
          const T *Rp = Rs + p * C, *dRp = dRs + p * C;
          with_sizes(tb.m1n[p], tb.mn[p], [&](auto m1c, auto mnc) {
            constexpr int M1 = decltype(m1c)::value, MN = decltype(mnc)::value;
            for (int m1 = 0; m1 < M1; ++m1) {
              const T* hp = hj + (tb.a0[p] + m1) * C;
              T *a = rh.data() + m1 * C, *da = drh.data() + m1 * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                a[c] = Rp[c] * hp[c];
                da[c] = dRp[c] * hp[c];
              }
              if (dhj) {
                const T* dhp = dhj + (tb.a0[p] + m1) * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) da[c] += Rp[c] * dhp[c];
              }
            }
            for (int M = 0; M < MN; ++M) {
              T* o = out + tb.cols[p * kMaxM + M] * C;
              T wl[M1], dwl[M1];
              for (int m1 = 0; m1 < M1; ++m1) {
                wl[m1] = w[m1 * kMaxM + M];
                dwl[m1] = dw[m1 * kMaxM + M];
              }
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                T t = T(0);
                for (int m1 = 0; m1 < M1; ++m1)
                  t += wl[m1] * drh[m1 * C + c] + dwl[m1] * rh[m1 * C + c];
                o[c] += t;
              }
            }
          });
        }
      }
    }
  });
}

// Tangent of the tensor product's backward pass (backward_path in tp_sc.h). With the column
// adjoints g_M (primal, shared by all directions) and their tangents g'_M:
//   v_m1 = Σ_M w g_M                v'_m1 = Σ_M (w' g_M + w g'_M)
//   gR'[c]      = Σ_m1 (h' v + h v')                (written)
//   gh'[j][m1]  += R' v + R v'                       (accumulated; per-thread buffer)
//   gY'[y0+m2]  += Σ cg · gw'[m1,M],  gw' = Σ_c ((h' R + h R') g_M + h R g'_M)   (written)
// dgh and dgY may be null; dh may be null (then h' = 0).
template <typename T>
void tp_tangent_backward(const T* gS, const T* dgS, const T* h, const T* dh, const T* Y,
                         const T* dY, const T* R, const T* dR, const int64_t* nbr,
                         const int64_t* count, T* dgR, T* dgh_threads, T* dgY,
                         const TpShape& s, const PathTables& tb) {
  const int64_t C = s.C, S = s.N * s.K, PC = s.P * C;
  at::parallel_for(0, s.B * s.N, 4, [&](int64_t r0, int64_t r1) {
    T* dgh = dgh_threads ? dgh_threads + at::get_thread_num() * s.B * s.Ns * s.Din * C
                         : nullptr;
    T w[kMaxM1 * kMaxM], dw[kMaxM1 * kMaxM], dgw[kMaxM1 * kMaxM];
    std::vector<T> v(kMaxM1 * C), dv(kMaxM1 * C), hr(kMaxM1 * C), dhr(kMaxM1 * C);
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / s.N, n = row % s.N;
      const T* gSn = gS + n * s.ncols * C;
      const T* dgSn = dgS + row * s.ncols * C;
      for (int64_t k = count[n]; k < s.K; ++k) {  // empty slots
        const int64_t slot = (b * S) + n * s.K + k;
        std::fill(dgR + slot * PC, dgR + (slot + 1) * PC, T(0));
        if (dgY) std::fill(dgY + slot * s.Dsh, dgY + (slot + 1) * s.Dsh, T(0));
      }
      for (int64_t k = 0; k < count[n]; ++k) {
        const int64_t slot = n * s.K + k, j = nbr[slot], tslot = b * S + slot;
        const T* hj = h + j * s.Din * C;
        const T* dhj = dh ? dh + (b * s.Ns + j) * s.Din * C : nullptr;
        T* dghj = dgh ? dgh + (b * s.Ns + j) * s.Din * C : nullptr;
        T* gy = dgY ? dgY + tslot * s.Dsh : nullptr;
        if (gy) std::fill(gy, gy + s.Dsh, T(0));
        for (int64_t p = 0; p < s.P; ++p) {
          path_weights(tb, p, Y + slot * s.Dsh, w);
          path_weights(tb, p, dY + tslot * s.Dsh, dw);
          const T* Rp = R + slot * PC + p * C;
          const T* dRp = dR + tslot * PC + p * C;
          T* out = dgR + tslot * PC + p * C;
          std::fill(out, out + C, T(0));
          std::fill(dgw, dgw + kMaxM1 * kMaxM, T(0));
          with_sizes(tb.m1n[p], tb.mn[p], [&](auto m1c, auto mnc) {
            constexpr int M1 = decltype(m1c)::value, MN = decltype(mnc)::value;
            const T* g[MN];
            const T* dg[MN];
            for (int M = 0; M < MN; ++M) {
              g[M] = gSn + tb.cols[p * kMaxM + M] * C;
              dg[M] = dgSn + tb.cols[p * kMaxM + M] * C;
            }
            for (int m1 = 0; m1 < M1; ++m1) {
              const T* hp = hj + (tb.a0[p] + m1) * C;
              const T* dhp = dhj ? dhj + (tb.a0[p] + m1) * C : nullptr;
              T wl[MN], dwl[MN];
              for (int M = 0; M < MN; ++M) {
                wl[M] = w[m1 * kMaxM + M];
                dwl[M] = dw[m1 * kMaxM + M];
              }
              T *vp = v.data() + m1 * C, *dvp = dv.data() + m1 * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                T a = T(0), da = T(0);
                for (int M = 0; M < MN; ++M) {
                  a += wl[M] * g[M][c];
                  da += dwl[M] * g[M][c] + wl[M] * dg[M][c];
                }
                vp[c] = a;
                dvp[c] = da;
                out[c] += hp[c] * da;
              }
              if (dhp) {
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) out[c] += dhp[c] * vp[c];
              }
              if (dghj) {
                T* o = dghj + (tb.a0[p] + m1) * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) o[c] += dRp[c] * vp[c] + Rp[c] * dvp[c];
              }
              if (gy) {
                T *a = hr.data(), *da = dhr.data();
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) {
                  a[c] = hp[c] * Rp[c];
                  da[c] = hp[c] * dRp[c] + (dhp ? dhp[c] * Rp[c] : T(0));
                }
                for (int M = 0; M < MN; ++M) {
                  T acc = T(0);
#pragma omp simd reduction(+ : acc)
                  for (int64_t c = 0; c < C; ++c) acc += da[c] * g[M][c] + a[c] * dg[M][c];
                  dgw[m1 * kMaxM + M] += acc;
                }
              }
            }
          });
          if (gy)
            for (int64_t e = tb.ptr[p]; e < tb.ptr[p + 1]; ++e)
              gy[tb.y0[p] + tb.m2[e]] += T(tb.val[e]) * dgw[tb.m1[e] * kMaxM + tb.mo[e]];
        }
      }
    }
  });
}

// ------------------------------------------------------------------ symmetric contraction

// Symmetric-contraction terms of every order ν (see tp_sc.h): B[n, M_e] += T[z_n, e] Π A[f_e,i].
template <typename T>
struct ScTerms {
  std::vector<const int64_t*> factors, outputs;
  std::vector<const T*> values;  // (Z, E_ν, C) per order
  std::vector<int64_t> entries;  // E_ν
  int64_t Z = 0;
};

// Compile-time loops: f(std::integral_constant<int, I>{}) for I = 0..N−1, and f called with
// the order ν of a term list (1..4) as a constant. Constant indices let every channel loop
// below vectorise (a factor index known only at run time defeats the vectoriser).
template <int N, typename F, int... I>
inline void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
inline void static_for(F&& f) {
  static_for_impl<N>(f, std::make_integer_sequence<int, N>{});
}

template <typename F>
inline void with_order(size_t v, F&& f) {
  switch (v + 1) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
  }
}

// For one term e of order NU with factor rows a[i], tangents da[i] (channel vectors):
// P_I = Π_{j≠I} a_j (skip = I) or Π_j a_j (skip = NU), and its tangent Q by the product rule.
template <typename T, int NU, int SKIP>
inline void product_and_tangent(const T* const* a, const T* const* da, int64_t c, T& p, T& q) {
  p = T(1);
  q = T(0);
  static_for<NU>([&](auto j) {
    if constexpr (decltype(j)::value != SKIP) {
      q = q * a[j][c] + p * da[j][c];
      p *= a[j][c];
    }
  });
}

// B' = Σ_e T Σ_i A'_i P_i  (= the tangent of Π_i A_i) for rows (b, n) of the tangents (B, N, ...).
template <typename T>
void sc_tangent_forward(const T* A, const T* dA, const int64_t* species, T* dB, int64_t B,
                        int64_t N, int64_t D, int64_t C, int64_t M, const ScTerms<T>& st) {
  at::parallel_for(0, B * N, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row % N, z = species[n];
      const T* An = A + n * D * C;
      const T* dAn = dA + row * D * C;
      T* out = dB + row * M * C;
      for (size_t v = 0; v < st.entries.size(); ++v) {
        const int64_t E = st.entries[v];
        const T* vals = st.values[v] + z * E * C;
        with_order(v, [&](auto nuc) {
          constexpr int NU = decltype(nuc)::value;
          const int64_t* f = st.factors[v];
          for (int64_t e = 0; e < E; ++e) {
            const T* a[NU];
            const T* da[NU];
            for (int i = 0; i < NU; ++i) {
              a[i] = An + f[e * NU + i] * C;
              da[i] = dAn + f[e * NU + i] * C;
            }
            const T* __restrict__ t = vals + e * C;
            T* __restrict__ o = out + st.outputs[v][e] * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
              T p, q;
              product_and_tangent<T, NU, NU>(a, da, c, p, q);
              o[c] += t[c] * q;
            }
          }
        });
      }
    }
  });
}

// Tangent of the backward pass gA_i = Σ_e T gB P_i:   gA'_i += T (gB' P_i + gB Q_i)
// and, if dgT is given (per-thread buffers (threads, Z, E_ν, C) per order), the tangent of the
// gradient with respect to the coefficients, gT[z, e] = Σ_n gB Π A:
//   gT'[z, e] += gB' Π A + gB (Π A)'.
// One pass per factor: factors may repeat (A_a² terms), so the gA' rows may coincide.
template <typename T>
void sc_tangent_backward(const T* gB, const T* dgB, const T* A, const T* dA,
                         const int64_t* species, T* dgA, const std::vector<T*>& dgT, int64_t B,
                         int64_t N, int64_t D, int64_t C, int64_t M, const ScTerms<T>& st) {
  at::parallel_for(0, B * N, 8, [&](int64_t r0, int64_t r1) {
    const int thread = at::get_thread_num();
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row % N, z = species[n];
      const T* An = A + n * D * C;
      const T* dAn = dA + row * D * C;
      const T* gBn = gB + n * M * C;
      const T* dgBn = dgB + row * M * C;
      T* out = dgA + row * D * C;
      for (size_t v = 0; v < st.entries.size(); ++v) {
        const int64_t E = st.entries[v];
        const T* vals = st.values[v] + z * E * C;
        T* gt = dgT.empty() ? nullptr : dgT[v] + ((thread * st.Z + z) * E) * C;
        with_order(v, [&](auto nuc) {
          constexpr int NU = decltype(nuc)::value;
          const int64_t* f = st.factors[v];
          for (int64_t e = 0; e < E; ++e) {
            const T* a[NU];
            const T* da[NU];
            for (int i = 0; i < NU; ++i) {
              a[i] = An + f[e * NU + i] * C;
              da[i] = dAn + f[e * NU + i] * C;
            }
            const T* __restrict__ t = vals + e * C;
            const T* __restrict__ go = gBn + st.outputs[v][e] * C;
            const T* __restrict__ dgo = dgBn + st.outputs[v][e] * C;
            static_for<NU>([&](auto i) {
              constexpr int I = decltype(i)::value;
              T* __restrict__ o = out + f[e * NU + I] * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                T p, q;
                product_and_tangent<T, NU, I>(a, da, c, p, q);
                o[c] += t[c] * (dgo[c] * p + go[c] * q);
              }
            });
            if (gt) {
              T* __restrict__ g = gt + e * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                T p, q;
                product_and_tangent<T, NU, NU>(a, da, c, p, q);
                g[c] += dgo[c] * p + go[c] * q;
              }
            }
          }
        });
      }
    }
  });
}

}  // namespace so
}  // namespace equipot
