// Edge geometry of the second-order engine (training.cpp): per slot of the padded neighbour
// layout, the length r and direction û of the edge vector v, the monomials of û that give the
// spherical harmonics, the enveloped Bessel basis and the envelope, with derivatives up to
// second order; and the chain rule back to v to first and second order.
//
//   r = |v|, û = v/r,  ∂E/∂v = (I − ûûᵀ) g_û / r + g_r û
//   tangent along v':  r' = û·v',  û' = (v' − r' û)/r,
//   (∂E/∂v)' = [g_û' − (g_û'·û + g_û·û') û − (g_û·û) û']/r − (I − ûûᵀ) g_û r'/r² + g_r' û + g_r û'
// (equipot/nn/edge_features.py and nn/radial.py hold the same functions in PyTorch.)
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace equipot {
namespace so {

struct EdgeGeometry {
  double r_max;
  int64_t p;                  // envelope exponent
  std::vector<double> freq;   // Bessel frequencies nπ/r_max
  double pref;                // √(2/r_max)
  std::vector<int64_t> exps;  // U × 3 exponents of the monomials û_x^a û_y^b û_z^c
  int64_t lmax;

  int64_t num_monomials() const { return int64_t(exps.size() / 3); }

  // u(r), u'(r), u''(r) of the polynomial envelope; zero at and beyond r_max.
  template <typename T>
  void envelope(T r, T& u, T& du, T& d2u) const {
    const T d = r / T(r_max);
    if (d >= T(1)) { u = du = d2u = T(0); return; }
    const T a = T((p + 1) * (p + 2)) / T(2);
    T dp2 = T(1);  // d^(p−2)
    for (int64_t i = 0; i < p - 2; ++i) dp2 *= d;
    const T dp1 = dp2 * d, dp = dp1 * d, e = T(1) - d;
    u = T(1) - a * dp + T(p * (p + 2)) * dp * d - T(p * (p + 1)) / T(2) * dp * d * d;
    du = -(a * T(p) / T(r_max)) * dp1 * e * e;
    d2u = -(a * T(p) / T(r_max * r_max)) * dp2 * e * (T(p - 1) * e - T(2) * d);
  }

  // r, û and the powers pw[a][k] = û_a^k of one edge vector.
  template <typename T>
  T unit_powers(const T* v, T* u, T (*pw)[8]) const {
    const T r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int a = 0; a < 3; ++a) {
      u[a] = v[a] / r;
      pw[a][0] = T(1);
      for (int64_t k = 1; k <= lmax; ++k) pw[a][k] = pw[a][k - 1] * u[a];
    }
    return r;
  }

  // ∂monomial_m/∂û_a (jac) and, if hess is given, ∂²monomial_m/∂û_a∂û_b (3×3, row-major).
  template <typename T>
  void monomial_derivatives(int64_t m, const T (*pw)[8], T* jac, T* hess) const {
    const int64_t e[3] = {exps[3 * m], exps[3 * m + 1], exps[3 * m + 2]};
    auto power = [&](int a, int64_t k) { return k < 0 ? T(0) : pw[a][k]; };
    for (int a = 0; a < 3; ++a) {
      T t = T(e[a]) * power(a, e[a] - 1);
      for (int b = 0; b < 3; ++b)
        if (b != a) t *= power(b, e[b]);
      jac[a] = t;
    }
    if (!hess) return;
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) {
        T t;
        if (a == b) {
          t = T(e[a] * (e[a] - 1)) * power(a, e[a] - 2);
        } else {
          t = T(e[a] * e[b]) * power(a, e[a] - 1) * power(b, e[b] - 1);
        }
        for (int c = 0; c < 3; ++c)
          if (c != a && c != b) t *= power(c, e[c]);
        hess[3 * a + b] = t;
      }
  }

  // Per slot: r, monomials, the enveloped Bessel basis x_n = b_n u and its r-derivatives,
  // the envelope and its r-derivatives. Output pointers may be null (not needed).
  template <typename T>
  void features(const T* v, int64_t S, T* dist, T* mono, T* x, T* dx, T* d2x, T* env, T* denv,
                T* d2env) const {
    const int64_t U = num_monomials(), nb = int64_t(freq.size());
    at::parallel_for(0, S, 256, [&](int64_t s0, int64_t s1) {
      T pw[3][8];
      for (int64_t s = s0; s < s1; ++s) {
        T u[3];
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        if (dist) dist[s] = r;
        if (mono)
          for (int64_t m = 0; m < U; ++m)
            mono[s * U + m] = pw[0][exps[3 * m]] * pw[1][exps[3 * m + 1]] * pw[2][exps[3 * m + 2]];
        T e, de, d2e;
        envelope<T>(r, e, de, d2e);
        if (env) env[s] = e;
        if (denv) denv[s] = de;
        if (d2env) d2env[s] = d2e;
        if (!x) continue;
        for (int64_t n = 0; n < nb; ++n) {
          const T f = T(freq[n]), fr = f * r, sn = std::sin(fr), cs = std::cos(fr);
          const T b = T(pref) * sn / r;
          const T db = T(pref) * (fr * cs - sn) / (r * r);
          const T d2b = T(pref) * (T(2) * sn - T(2) * fr * cs - fr * fr * sn) / (r * r * r);
          x[s * nb + n] = b * e;
          if (dx) dx[s * nb + n] = db * e + b * de;
          if (d2x) d2x[s * nb + n] = d2b * e + T(2) * db * de + b * d2e;
        }
      }
    });
  }

  // Tangents of r and of the monomials along B directions dv (B, S, 3): dr (B, S), dmono
  // (B, S, U).
  template <typename T>
  void tangents(const T* v, const T* dv, int64_t B, int64_t S, T* dr, T* dmono) const {
    const int64_t U = num_monomials();
    at::parallel_for(0, B * S, 256, [&](int64_t r0, int64_t r1) {
      T pw[3][8];
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t s = row % S;
        T u[3], jac[3];
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        const T* d = dv + 3 * row;
        const T rdot = u[0] * d[0] + u[1] * d[1] + u[2] * d[2];
        const T du[3] = {(d[0] - rdot * u[0]) / r, (d[1] - rdot * u[1]) / r,
                         (d[2] - rdot * u[2]) / r};
        dr[row] = rdot;
        for (int64_t m = 0; m < U; ++m) {
          monomial_derivatives<T>(m, pw, jac, nullptr);
          dmono[row * U + m] = jac[0] * du[0] + jac[1] * du[1] + jac[2] * du[2];
        }
      }
    });
  }

  // ∂E/∂v from ∂E/∂monomials (S, U) and the total ∂E/∂r (S,); slots beyond the cutoff get 0.
  template <typename T>
  void backward(const T* v, const T* g_mono, const T* g_r, int64_t S, T* g_v) const {
    const int64_t U = num_monomials();
    at::parallel_for(0, S, 256, [&](int64_t s0, int64_t s1) {
      T pw[3][8];
      for (int64_t s = s0; s < s1; ++s) {
        T u[3], jac[3], gu[3] = {T(0), T(0), T(0)};
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        T* out = g_v + 3 * s;
        if (r >= T(r_max)) { out[0] = out[1] = out[2] = T(0); continue; }
        for (int64_t m = 0; m < U; ++m) {
          monomial_derivatives<T>(m, pw, jac, nullptr);
          for (int a = 0; a < 3; ++a) gu[a] += g_mono[s * U + m] * jac[a];
        }
        const T radial = gu[0] * u[0] + gu[1] * u[1] + gu[2] * u[2];
        for (int a = 0; a < 3; ++a) out[a] = (gu[a] - radial * u[a]) / r + g_r[s] * u[a];
      }
    });
  }

  // The tangent of backward() along dv (B, S, 3), given the tangents of its inputs
  // dg_mono (B, S, U) and dg_r (B, S): (∂E/∂v)' (B, S, 3) — the Hessian-vector product per edge.
  template <typename T>
  void backward_tangent(const T* v, const T* dv, const T* g_mono, const T* dg_mono,
                        const T* g_r, const T* dg_r, int64_t B, int64_t S, T* dg_v) const {
    const int64_t U = num_monomials();
    at::parallel_for(0, B * S, 256, [&](int64_t r0, int64_t r1) {
      T pw[3][8];
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t s = row % S;
        T u[3], jac[3], hess[9];
        const T r = unit_powers<T>(v + 3 * s, u, pw);
        T* out = dg_v + 3 * row;
        if (r >= T(r_max)) { out[0] = out[1] = out[2] = T(0); continue; }
        const T* d = dv + 3 * row;
        const T rdot = u[0] * d[0] + u[1] * d[1] + u[2] * d[2];
        T du[3];
        for (int a = 0; a < 3; ++a) du[a] = (d[a] - rdot * u[a]) / r;
        T gu[3] = {T(0), T(0), T(0)}, dgu[3] = {T(0), T(0), T(0)};
        for (int64_t m = 0; m < U; ++m) {
          monomial_derivatives<T>(m, pw, jac, hess);
          const T g = g_mono[s * U + m], dg = dg_mono[row * U + m];
          for (int a = 0; a < 3; ++a) {
            gu[a] += g * jac[a];
            dgu[a] += dg * jac[a] +
                      g * (hess[3 * a] * du[0] + hess[3 * a + 1] * du[1] + hess[3 * a + 2] * du[2]);
          }
        }
        const T gu_u = gu[0] * u[0] + gu[1] * u[1] + gu[2] * u[2];
        const T dgu_u = dgu[0] * u[0] + dgu[1] * u[1] + dgu[2] * u[2];
        const T gu_du = gu[0] * du[0] + gu[1] * du[1] + gu[2] * du[2];
        for (int a = 0; a < 3; ++a)
          out[a] = (dgu[a] - (dgu_u + gu_du) * u[a] - gu_u * du[a]) / r -
                   (gu[a] - gu_u * u[a]) * rdot / (r * r) + dg_r[row] * u[a] + g_r[s] * du[a];
      }
    });
  }
};

}  // namespace so
}  // namespace equipot
