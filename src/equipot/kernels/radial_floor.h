// The radial floor for hosts without Python (LAMMPS plugin, metatomic operator): the network
// reads no edge shorter than the training data's shortest of its element pair. The same
// function as equipot/nn/radial_floor.py, on the engine's padded slot layout:
//
//   ṽ = v·r̃/r,  r̃ = f − δ·tanh((f − r)/δ) for r < f (δ = softness·f), r̃ = r otherwise
//   ∂E/∂v = (r̃/r)·g + (r̃' − r̃/r)(û·g) û,   g = ∂E/∂ṽ (the engine's slot gradient)
//
// The engine runs on ṽ; the parameter-free terms (ZBL) keep reading v.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace equipot {
namespace floor {

struct Parameters {
  std::vector<double> table;  // (E, E) floor distances, 0 where none
  int64_t elements = 0;
  double softness = 0.1;

  // r̃ and dr̃/dr of an edge of length r between elements a and b; false where not held.
  bool held(int64_t a, int64_t b, double r, double& length, double& slope) const {
    const double f = table[size_t(a * elements + b)];
    if (!(r < f)) return false;
    const double d = softness * f, t = std::tanh((f - r) / d);
    length = f - d * t;
    slope = 1.0 - t * t;
    return true;
  }

  // fn(slot, x, r, r̃, dr̃/dr) for every held slot of the N×K×3 slot vectors v.
  template <typename Fn>
  void for_each_held(const double* v, const int64_t* neighbors, const int64_t* counts,
                     const int64_t* species, int64_t N, int64_t K, Fn&& fn) const {
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < counts[i]; ++k) {
        const int64_t s = i * K + k;
        const double* x = v + 3 * s;
        const double r = std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
        double length, slope;
        if (held(species[i], species[neighbors[s]], r, length, slope)) fn(s, x, r, length, slope);
      }
  }

  // ``out`` (a copy of v) gets the held vectors; true if any was held.
  bool apply(const double* v, const int64_t* neighbors, const int64_t* counts,
             const int64_t* species, int64_t N, int64_t K, double* out) const {
    bool any = false;
    for_each_held(v, neighbors, counts, species, N, K,
                  [&](int64_t s, const double* x, double r, double length, double) {
                    for (int c = 0; c < 3; ++c) out[3 * s + c] = x[c] * (length / r);
                    any = true;
                  });
    return any;
  }

  // In place: the engine's ∂E/∂ṽ in ``grad`` becomes ∂E/∂v.
  void chain(const double* v, const int64_t* neighbors, const int64_t* counts,
             const int64_t* species, int64_t N, int64_t K, double* grad) const {
    for_each_held(v, neighbors, counts, species, N, K,
                  [&](int64_t s, const double* x, double r, double length, double slope) {
                    double* g = grad + 3 * s;
                    const double ratio = length / r;
                    const double along = (x[0] * g[0] + x[1] * g[1] + x[2] * g[2]) / r;
                    for (int c = 0; c < 3; ++c)
                      g[c] = ratio * g[c] + (slope - ratio) * along * x[c] / r;
                  });
  }
};

}  // namespace floor
}  // namespace equipot
