// ZBL screened nuclear repulsion between two atoms, switched off smoothly before chemical-bond
// distances (equipot/model/terms/zbl.py has the maths and the PyTorch twin; the tests hold the
// two to 1e-12). Header-only so that every engine (the inference pass, the LAMMPS plugin)
// uses this one implementation.
#pragma once

#include <cmath>

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

}  // namespace zbl
}  // namespace equipot
