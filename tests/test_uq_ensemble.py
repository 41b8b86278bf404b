"""``equipot train --ensemble K``: members in parallel processes, bootstrap, resume."""

from __future__ import annotations

import json

import numpy as np
import yaml

import equipot
from equipot.cli.main import main
from equipot.uq.committee import load_committee
from tests.train_utils import tiny_config, write_emt


def test_ensemble_trains_resumes_and_loads(tmp_path):
    data = write_emt(tmp_path / "data.xyz", n=14, seed=2)
    run = tmp_path / "committee"
    config = tiny_config(data, run, optim={"max_epochs": 1, "batch_size": 4})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    args = ["train", str(tmp_path / "c.yaml"), "--ensemble", "2", "--bootstrap"]
    assert main([*args, "--jobs", "2"]) == 0

    members, _ = load_committee(run / "committee.eqp")
    assert len(members) == 2
    w0, w1 = (m.readout_weights().detach().numpy() for m in members)
    assert not np.allclose(w0, w1)  # different seeds
    splits = [json.loads((run / f"member-{k}" / "data.json").read_text()) for k in range(2)]
    assert splits[0]["valid"] == splits[1]["valid"]  # shared validation split
    train0, train1 = (s["train"]["frames"] for s in splits)
    assert train0 != train1 and len(train0) == len(train1)  # own bootstrap resamples
    assert len(set(train0)) < len(train0)  # drawn with replacement
    assert members[0].uncertainty is not None and members[0].uncertainty.latent is not None

    # interrupted committee: member 1 unfinished → rerun skips member 0, resumes member 1
    stamp = (run / "member-0" / "best.eqp").stat().st_mtime_ns
    (run / "member-1" / "results.json").unlink()
    assert main(args) == 0
    assert (run / "member-0" / "best.eqp").stat().st_mtime_ns == stamp
    assert (run / "member-1" / "results.json").is_file()

    atoms = equipot.EquipotCalculator(run / "committee.eqp")
    frame = __import__("ase.io", fromlist=["read"]).read(data, index=0)
    frame.calc = atoms
    frame.get_forces()
    assert atoms.results["forces_std"].shape == (len(frame),)
    assert atoms.results["member_energies"].shape == (2,)
