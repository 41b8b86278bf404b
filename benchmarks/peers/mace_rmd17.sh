#!/usr/bin/env bash
# MACE on one rMD17 molecule, as benchmarks/rmd17.py runs it side by side with equipot.
#
# The model and optimisation flags are the baseline command verbatim (ethanol: 25
# epochs with the SWA stage from epoch 19 ≈ 27 min on 2 cores; aspirin: 12 / 9). Added here:
# the data files (the same fixed 950/50 split as equipot, --valid_file), the keys of the
# converted extxyz files, the seed, the error-table type, and --restart_latest (used by the
# driver to let MACE evaluate its latest checkpoint if the run had to be stopped at the
# budget). EPOCHS / START_SWA come from the driver (scaled with the budget); any extra
# arguments are appended and override the flags above.
#
# Inputs (environment): WORKDIR TRAIN VALID TEST EPOCHS START_SWA SEED
# MACE's e3nn 0.4.4 predates torch's weights_only default: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1.
set -euo pipefail
MACE_BIN=${MACE_BIN:-/work/peers/mace/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export MKL_NUM_THREADS=$OMP_NUM_THREADS
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
cd "$WORKDIR"
exec "$MACE_BIN/mace_run_train" \
    --device cpu --default_dtype float64 --E0s average --model MACE \
    --hidden_irreps '64x0e + 64x1o' --max_L 1 --r_max 5.0 --num_interactions 2 --correlation 3 \
    --batch_size 5 --loss weighted --forces_weight 1000 --energy_weight 10 --lr 0.01 --amsgrad \
    --ema --ema_decay 0.99 --swa --start_swa "$START_SWA" --swa_lr 0.001 \
    --swa_energy_weight 1000 --swa_forces_weight 100 --max_num_epochs "$EPOCHS" \
    --name MACE --train_file "$TRAIN" --valid_file "$VALID" --test_file "$TEST" \
    --energy_key REF_energy --forces_key REF_forces --seed "$SEED" \
    --error_table TotalMAE --restart_latest \
    "$@"
