// pair_style equipot (see pair_equipot.h).

#include "pair_equipot.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include "model_file.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

namespace {

// rows of a (rows, ...) tensor of T <-> LAMMPS's double buffers
template <typename T>
void copy_rows_out(const at::Tensor &t, int n, const int *rows, int first, int width,
                   double *buf) {
  const T *src = t.data_ptr<T>();
  for (int k = 0; k < n; ++k) {
    const T *row = src + int64_t(rows ? rows[k] : first + k) * width;
    for (int c = 0; c < width; ++c) buf[k * width + c] = double(row[c]);
  }
}

template <typename T>
void copy_rows_in(at::Tensor &t, int n, const int *rows, int first, int width,
                  const double *buf, bool add) {
  T *dst = t.data_ptr<T>();
  for (int k = 0; k < n; ++k) {
    T *row = dst + int64_t(rows ? rows[k] : first + k) * width;
    for (int c = 0; c < width; ++c) row[c] = add ? row[c] + T(buf[k * width + c]) : T(buf[k * width + c]);
  }
}

// glibc returns every freed block above its mmap threshold (128 kB rising to 32 MB) to the
// system and trims the heap top above 2× that, so buffers freed after one step are faulted in
// again on the next. Keep blocks up to 32 MB in a heap that is trimmed only above 1 GB of free
// space (whole-system tensors of large runs stay mmap-ed, so the peak memory does not grow
// with them). With the engine's chunk buffers capped at 8 MB (engine.h) this leaves little to
// fault in: Cu-2,048, 6 evaluations, 81k → 58k page faults. The same settings as equipot's
// Python entry points (equipot/runtime.py); EQUIPOT_TUNE_MALLOC=0 opts out.
bool tune_allocator() {
#if defined(__GLIBC__)
  const char *off = std::getenv("EQUIPOT_TUNE_MALLOC");
  if (off && std::strcmp(off, "0") == 0) return false;
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 &&
         mallopt(M_TOP_PAD, 64 << 20) == 1;
#else
  return false;
#endif
}

// The price of a heap that is rarely trimmed: freed chunks of slightly different sizes
// fragment it and it grows slowly; one malloc_trim every kReleaseEvery evaluations hands the
// free pages back (the soak test of equipot/sim/runner.py, issue 9).
constexpr bigint kReleaseEvery = 1000;

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace

PairEquipot::PairEquipot(LAMMPS *lmp) : Pair(lmp) {
  tune_allocator();
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the edge gradients (any newton setting)
  centroidstressflag = CENTROID_NOTAVAIL;
  comm_forward = comm_reverse = 3;
  exchange_.pair = this;
}

PairEquipot::~PairEquipot() {
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairEquipot::allocate() {
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 0; i <= n; ++i)
    for (int j = 0; j <= n; ++j) setflag[i][j] = 0;
  species_of_type_.assign(n + 1, -1);
}

void PairEquipot::settings(int narg, char **arg) {
  dtype_ = at::kDouble;
  for (int i = 0; i < narg; ++i) {
    if (strcmp(arg[i], "float64") == 0)
      dtype_ = at::kDouble;
    else if (strcmp(arg[i], "float32") == 0)
      dtype_ = at::kFloat;
    else
      error->all(FLERR, "pair_style equipot: unknown option '{}' (expected float64 or float32)",
                 arg[i]);
  }
}

void PairEquipot::coeff(int narg, char **arg) {
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff equipot: expected `pair_coeff * * model.eqp` and one element per atom "
               "type ({} types), got {} arguments",
               ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff equipot: the first two arguments must be * *");
  const std::string path = arg[2];
  equipot::ModelFile file;
  try {
    file = equipot::read_model_file(path);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff equipot: {}", e.what());
  }
  if (file.metadata["format"] != "equipot-model")
    error->all(FLERR, "pair_coeff equipot: {} is a safetensors file but not an equipot model", path);
  const std::string version = file.metadata.count("equipot_version")
                                  ? file.metadata["equipot_version"] : std::string("unknown");
  if (file.engine.empty())
    error->all(FLERR,
               "pair_coeff equipot: {} (equipot {}) carries no packed inference engine; write "
               "one with `equipot lammps export {} -o model-lammps.eqp`",
               path, version, path);
  const std::string format = file.metadata["engine_format"];
  if (format != std::to_string(equipot::kEngineFormat))
    error->all(FLERR,
               "pair_coeff equipot: {} was written by equipot {} with engine format {}, but this "
               "plugin reads format {}: export the model again with the equipot this plugin was "
               "built from (`equipot lammps export`), or rebuild the plugin (`equipot lammps "
               "build`) with the equipot that wrote the file",
               path, version, format.empty() ? "(none)" : format, equipot::kEngineFormat);
  elements_.clear();
  try {
    auto config = json::parse(file.metadata.at("config"));
    elements_ = config.at("elements").get<std::vector<std::string>>();
    terms_ = equipot::terms_from_tensors(file.engine);  // float64 parameters, any engine dtype
    if (dtype_ != at::kDouble)
      for (auto &[name, t] : file.engine)
        if (t.is_floating_point()) t = t.to(dtype_);
    engine_ = std::make_unique<equipot::InferenceEngine>(equipot::engine_from_tensors(file.engine));
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff equipot: {}: {}", path, e.what());
  }
  if (int64_t(elements_.size()) != engine_->num_elements())
    error->all(FLERR, "pair_coeff equipot: {}: config lists {} elements, engine has {}", path,
               elements_.size(), engine_->num_elements());
  r_max_ = engine_->r_max();

  std::string known;
  for (auto &e : elements_) known += (known.empty() ? "" : " ") + e;
  for (int i = 1; i <= ntypes; ++i) {
    const std::string symbol = arg[2 + i];
    species_of_type_[i] = -1;
    if (symbol == "NULL") continue;
    auto it = std::find(elements_.begin(), elements_.end(), symbol);
    if (it == elements_.end())
      error->all(FLERR,
                 "pair_coeff equipot: element {} (atom type {}) is not in model {} (model "
                 "elements: {})",
                 symbol, i, path, known);
    species_of_type_[i] = int(it - elements_.begin());
  }
  int count = 0;
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j)
      if (species_of_type_[i] >= 0 && species_of_type_[j] >= 0) {
        setflag[i][j] = 1;
        ++count;
      }
  if (count == 0) error->all(FLERR, "pair_coeff equipot: no atom type mapped to an element");

  int width = 3;
  for (int64_t t = 0; t + 1 < engine_->num_layers(); ++t)
    width = std::max<int>(width, int(engine_->feature_components(t) * engine_->channels()));
  comm_forward = comm_reverse = width;
}

void PairEquipot::init_style() {
  if (!engine_) error->all(FLERR, "pair_style equipot: pair_coeff has not been given");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style equipot needs atom IDs");
  neighbor->add_request(this, NeighConst::REQ_FULL);
  at::set_num_threads(std::max(1, comm->nthreads));  // OMP_NUM_THREADS / package omp
}

double PairEquipot::init_one(int i, int j) {
  if (setflag[i][j] == 0) error->all(FLERR, "pair equipot: all pair coeffs are not set");
  return r_max_;
}

void PairEquipot::compute(int eflag, int vflag) {
  const double started = MPI_Wtime();
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  double **x = atom->x, **f = atom->f;
  const int *type = atom->type;
  const int inum = list->inum;
  const int *ilist = list->ilist, *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const bool newton = force->newton_pair;
  if (inum != nlocal)
    error->one(FLERR, "pair equipot: the neighbour list holds {} of {} local atoms (pair_style "
               "hybrid with a subset of types is not supported)", inum, nlocal);

  // Every neighbour within r_max must be a local or ghost atom: the ghost shell must reach
  // the cutoff (LAMMPS communicates at least the neighbour cutoff; this guards exotic setups).
  double shell = 1e300;
  for (int d = 0; d < 3; ++d) {
    double c = comm->cutghost[d];
    if (domain->triclinic) {  // lamda units: distance between the planes of the box
      const double *hinv = domain->h_inv;
      const double row[3][3] = {{hinv[0], hinv[5], hinv[4]}, {0, hinv[1], hinv[3]}, {0, 0, hinv[2]}};
      c /= std::sqrt(row[d][0] * row[d][0] + row[d][1] * row[d][1] + row[d][2] * row[d][2]);
    }
    if (domain->periodicity[d] || comm->nprocs > 1) shell = std::min(shell, c);
  }
  if (shell < r_max_ * (1.0 - 1e-12))
    error->all(FLERR, "pair equipot: ghost atoms are communicated out to {:.6g} Å only, less than "
               "the model's cutoff {:.6g} Å; raise it with `comm_modify cutoff {:.6g}`",
               shell, r_max_, r_max_ + neighbor->skin);

  at::Tensor species = at::empty({std::max(nall, 1)}, at::kLong);
  int64_t *z = species.data_ptr<int64_t>();
  for (int i = 0; i < nall; ++i) {
    z[i] = species_of_type_[type[i]];
    if (z[i] < 0) error->one(FLERR, "pair equipot: atom type {} has no element", type[i]);
  }
  const double cut2 = r_max_ * r_max_;
  std::vector<int> count(nlocal, 0);
  int K = 1;
  for (int ii = 0; ii < inum; ++ii) {
    const int i = ilist[ii];
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      const int j = firstneigh[i][jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cut2) ++count[i];
    }
    K = std::max(K, count[i]);
  }
  at::Tensor vectors = at::empty({nlocal, K, 3}, at::kDouble);
  at::Tensor neighbors = at::zeros({nlocal, K}, at::kLong);
  at::Tensor counts = at::empty({nlocal}, at::kLong);
  double *v = vectors.data_ptr<double>();
  int64_t *nb = neighbors.data_ptr<int64_t>(), *cn = counts.data_ptr<int64_t>();
  for (int ii = 0; ii < inum; ++ii) {
    const int i = ilist[ii];
    int k = 0;
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      const int j = firstneigh[i][jj] & NEIGHMASK;
      const double d[3] = {x[j][0] - x[i][0], x[j][1] - x[i][1], x[j][2] - x[i][2]};
      if (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] >= cut2) continue;
      double *slot = v + (int64_t(i) * K + k) * 3;
      slot[0] = d[0], slot[1] = d[1], slot[2] = d[2];
      nb[int64_t(i) * K + k] = j;
      ++k;
    }
    cn[i] = k;
    for (; k < K; ++k) {  // empty slots: beyond the cutoff, contribute nothing
      double *slot = v + (int64_t(i) * K + k) * 3;
      slot[0] = 2.0 * r_max_, slot[1] = 0.0, slot[2] = 0.0;
    }
  }

  at::Tensor atomic, grad;
  if (nlocal == 0) {  // an empty sub-domain still takes part in every feature exchange
    for (int64_t t = 0; t + 1 < engine_->num_layers(); ++t) {
      at::Tensor h = at::zeros({nall, engine_->feature_components(t), engine_->channels()},
                               at::TensorOptions().dtype(dtype_));
      forward(h);
    }
    for (int64_t t = engine_->num_layers() - 1; t >= 1; --t) {
      at::Tensor g = at::zeros({nall, engine_->feature_components(t - 1), engine_->channels()},
                               at::TensorOptions().dtype(dtype_));
      reverse(g);
    }
  } else {
    try {
      // the radial floor: the network reads held copies of the edges shorter than the data's
      at::Tensor seen = terms_.floor ? vectors.clone() : vectors;
      const bool held =
          terms_.floor && terms_.floor->apply(v, nb, cn, z, nlocal, K, seen.data_ptr<double>());
      auto out = engine_->run(seen.to(dtype_), neighbors, counts, species.narrow(0, 0, nall),
                              true, &exchange_);
      atomic = out[0].to(at::kDouble).contiguous();
      grad = out[1].to(at::kDouble).contiguous();
      if (held) terms_.floor->chain(v, nb, cn, z, nlocal, K, grad.data_ptr<double>());
    } catch (const std::exception &e) {
      error->one(FLERR, "pair equipot: {}", e.what());
    }
  }

  if (nlocal && terms_.repulsion)  // ZBL per edge, in float64 whatever the engine's dtype
    terms_.repulsion->add_to_slots<double>(v, nb, cn, z, nlocal, K, atomic.data_ptr<double>(),
                                           grad.data_ptr<double>());

  if (!newton) ghost_forces_.assign(size_t(3) * nall, 0.0);
  const double *e = nlocal ? atomic.data_ptr<double>() : nullptr;
  const double *g = nlocal ? grad.data_ptr<double>() : nullptr;
  for (int i = 0; i < nlocal; ++i) {
    if (eflag_global) eng_vdwl += e[i];
    if (eflag_atom) eatom[i] += e[i];
    for (int k = 0; k < cn[i]; ++k) {
      // E depends on r_ij = x_j - x_i: F_i = +dE/dr_ij, F_j = -dE/dr_ij
      const int64_t s = int64_t(i) * K + k;
      const int j = int(nb[s]);
      const double *gs = g + 3 * s, *r = v + 3 * s;
      for (int a = 0; a < 3; ++a) f[i][a] += gs[a];
      double *fj = (newton || j < nlocal) ? f[j] : &ghost_forces_[size_t(3) * j];
      for (int a = 0; a < 3; ++a) fj[a] -= gs[a];
      if (vflag_either) {  // W = sum x·F = -sum_ij r_ij ⊗ dE/dr_ij, all given to the centre
        const double w[6] = {-r[0] * gs[0], -r[1] * gs[1], -r[2] * gs[2],
                             -r[0] * gs[1], -r[0] * gs[2], -r[1] * gs[2]};
        if (vflag_global)
          for (int a = 0; a < 6; ++a) virial[a] += w[a];
        if (vflag_atom)
          for (int a = 0; a < 6; ++a) vatom[i][a] += w[a];
      }
    }
  }
  if (!newton) {  // LAMMPS sums ghost forces into their owners only with newton on
    width_ = 3;
    comm->reverse_comm(this, 3);
    for (int i = 0; i < nlocal; ++i)
      for (int a = 0; a < 3; ++a) f[i][a] += ghost_forces_[size_t(3) * i + a];
  }
  compute_seconds_ += MPI_Wtime() - started;
  ++computes_;
  if (++evaluations_ % kReleaseEvery == 0) release_free_memory();
}

void PairEquipot::finish() {
  double mine[3] = {exchange_seconds_, compute_seconds_, double(exchanged_values_)}, sum[3];
  double slowest = 0.0;
  MPI_Allreduce(mine, sum, 3, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(&exchange_seconds_, &slowest, 1, MPI_DOUBLE, MPI_MAX, world);
  const int n = comm->nprocs;
  if (comm->me == 0 && computes_ > 0)
    utils::logmesg(lmp,
                   "pair equipot: {} evaluations; per rank (mean) {:.4g} s in the pair style, "
                   "{:.4g} s of it in feature exchanges ({:.3g} %, slowest rank {:.4g} s); {:.4g} "
                   "ghost feature values moved per evaluation (all ranks)\n",
                   computes_, sum[1] / n, sum[0] / n, 100.0 * sum[0] / std::max(sum[1], 1e-300),
                   slowest, sum[2] / double(computes_));
  exchange_seconds_ = compute_seconds_ = 0.0;
  exchanged_values_ = computes_ = 0;
}

void PairEquipot::exchange(at::Tensor &t, bool reverse) {
  const double start = MPI_Wtime();
  exchanged_ = &t;
  width_ = int(t.numel() / std::max<int64_t>(t.size(0), 1));
  if (reverse)
    comm->reverse_comm(this, width_);
  else
    comm->forward_comm(this, width_);
  exchanged_ = nullptr;
  exchange_seconds_ += MPI_Wtime() - start;
  exchanged_values_ += bigint(atom->nghost) * width_;
}

int PairEquipot::pack_forward_comm(int n, int *list, double *buf, int, int *) {
  if (exchanged_->scalar_type() == at::kDouble)
    copy_rows_out<double>(*exchanged_, n, list, 0, width_, buf);
  else
    copy_rows_out<float>(*exchanged_, n, list, 0, width_, buf);
  return n * width_;
}

void PairEquipot::unpack_forward_comm(int n, int first, double *buf) {
  if (exchanged_->scalar_type() == at::kDouble)
    copy_rows_in<double>(*exchanged_, n, nullptr, first, width_, buf, false);
  else
    copy_rows_in<float>(*exchanged_, n, nullptr, first, width_, buf, false);
}

int PairEquipot::pack_reverse_comm(int n, int first, double *buf) {
  if (!exchanged_) {  // ghost forces (newton off)
    std::memcpy(buf, &ghost_forces_[size_t(3) * first], sizeof(double) * 3 * n);
  } else if (exchanged_->scalar_type() == at::kDouble) {
    copy_rows_out<double>(*exchanged_, n, nullptr, first, width_, buf);
  } else {
    copy_rows_out<float>(*exchanged_, n, nullptr, first, width_, buf);
  }
  return n * width_;
}

void PairEquipot::unpack_reverse_comm(int n, int *list, double *buf) {
  if (!exchanged_) {
    for (int k = 0; k < n; ++k)
      for (int a = 0; a < 3; ++a) ghost_forces_[size_t(3) * list[k] + a] += buf[3 * k + a];
  } else if (exchanged_->scalar_type() == at::kDouble) {
    copy_rows_in<double>(*exchanged_, n, list, 0, width_, buf, true);
  } else {
    copy_rows_in<float>(*exchanged_, n, list, 0, width_, buf, true);
  }
}

double PairEquipot::memory_usage() {
  return Pair::memory_usage() + double(ghost_forces_.capacity()) * sizeof(double);
}
