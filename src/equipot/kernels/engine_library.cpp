// The inference engine as a TorchScript library of its own, without Python or pybind11:
// torch.classes.equipot.Engine and torch.ops.equipot.atomic_energies (engine_op.h). It is
// loaded with torch.ops.load_library, so metatomic copies it beside an exported model
// (`collect_extensions`) and engines without Python (LAMMPS-metatomic, C++ i-PI drivers)
// load it from there; equipot.metatomic.build_library compiles it against libtorch alone.
#include "engine_op.h"
