// `plugin load equipot_lammps.so` registers pair_style equipot.

#include "lammpsplugin.h"
#include "version.h"

#include "pair_equipot.h"

using namespace LAMMPS_NS;

static Pair *pair_equipot_creator(LAMMPS *lmp) { return new PairEquipot(lmp); }

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc)regfunc;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "equipot";
  plugin.info = "equipot equivariant neural-network potential (model files of equipot)";
  plugin.author = "equipot developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *)&pair_equipot_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
