// ZBL screened nuclear repulsion between two atoms, switched off smoothly before chemical-bond
// distances (equipot/model/terms/zbl.py has the maths and the PyTorch twin; the tests hold the
// two to 1e-12). Header-only so that every engine (the inference pass, the LAMMPS plugin)
// uses this one implementation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace equipot {
namespace zbl {

constexpr double kCoulomb = 14.399645478425668;  // e²/(4πε0) in eV·Å
constexpr double kScreening = 0.46850;          // 0.8854 a0 in Å
constexpr double kCoeff[4] = {0.18175, 0.50986, 0.28022, 0.02817};
constexpr double kExponent[4] = {3.19980, 0.94229, 0.40290, 0.20162};

// V(r)·S(r) and its r-derivative for nuclear charges zi, zj:
//   V = k zi zj / r · φ(r/a),  a = 0.4685 Å / (zi^0.23 + zj^0.23),  φ(x) = Σ c_k exp(−d_k x)
//   S = 1 − 10t³ + 15t⁴ − 6t⁵,  t = (r − r_in)/(r_out − r_in) clamped to [0, 1]
// Returns false (energy and derivative zero) at and beyond r_out.
template <typename T>
inline bool pair(T zi, T zj, T r, T r_in, T r_out, T& energy, T& denergy) {
  if (r >= r_out) {
    energy = denergy = T(0);
    return false;
  }
  const T a = T(kScreening) / (std::pow(zi, T(0.23)) + std::pow(zj, T(0.23)));
  const T x = r / a;
  T phi = T(0), dphi = T(0);
  for (int k = 0; k < 4; ++k) {
    const T term = T(kCoeff[k]) * std::exp(-T(kExponent[k]) * x);
    phi += term;
    dphi -= T(kExponent[k]) * term;
  }
  const T q = T(kCoulomb) * zi * zj;
  const T v = q * phi / r;
  const T dv = q * (dphi / (a * r) - phi / (r * r));
  T s = T(1), ds = T(0);
  if (r > r_in) {
    const T w = r_out - r_in, t = (r - r_in) / w, t2 = t * t;
    s = T(1) - t2 * t * (T(10) - T(15) * t + T(6) * t2);
    ds = -T(30) * t2 * (T(1) - T(2) * t + t2) / w;
  }
  energy = v * s;
  denergy = dv * s + v * ds;
  return true;
}

// The term of one model: nuclear charge Z and covalent radius R (Å) per model element. The
// switch of an element pair (a, b) ends at r_out = min(outer·(R_a + R_b), cap) (cap = r_max)
// and starts at r_in = r_out·inner/outer.
struct Parameters {
  std::vector<double> charge, radius;
  double inner = 0.0, outer = 1.0, cap = 0.0;

  // Each directed edge i→j carries half the pair energy, given to its centre i: that half
  // and its gradient ∂/∂x (x = r_j − r_i) for centre element a and neighbour element b.
  // Returns false (nothing written) at and beyond r_out.
  template <typename T>
  bool half_edge(int64_t a, int64_t b, const T* x, T& energy, T* gradient) const {
    const T r_out = T(std::min(outer * (radius[a] + radius[b]), cap));
    const T r2 = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
    if (r2 >= r_out * r_out) return false;
    const T r = std::sqrt(r2);
    T e, de;
    pair<T>(T(charge[a]), T(charge[b]), r, r_out * T(inner / outer), r_out, e, de);
    energy = T(0.5) * e;
    for (int k = 0; k < 3; ++k) gradient[k] = T(0.5) * de * x[k] / r;
    return true;
  }

  // The engine's padded slot layout (engine.h): vectors (N, K, 3), neighbors (N, K), counts
  // (N,), species of centres and neighbours. Adds each centre's halves to atomic (N,) and the
  // gradients to grad (N, K, 3).
  template <typename T>
  void add_to_slots(const T* vectors, const int64_t* neighbors, const int64_t* counts,
                    const int64_t* species, int64_t N, int64_t K, T* atomic, T* grad) const {
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < counts[i]; ++k) {
        const int64_t s = i * K + k;
        T half, g[3];
        if (!half_edge<T>(species[i], species[neighbors[s]], vectors + 3 * s, half, g)) continue;
        atomic[i] += half;
        for (int c = 0; c < 3; ++c) grad[3 * s + c] += g[c];
      }
  }
};

}  // namespace zbl
}  // namespace equipot
