"""Progress output: live bars on a terminal, a few plain lines in logs (no carriage returns)."""

from __future__ import annotations

import yaml
from ase.build import molecule
from ase.io import write

from equipot.cli.main import main
from equipot.progress import LineProgress
from tests.conftest import small_model
from tests.train_utils import tiny_config, write_emt


def test_line_progress_prints_every_tenth_and_at_the_end(capsys):
    bar = LineProgress(1000, "md", "step")
    for _ in range(995):
        bar.update()
    bar.set_postfix(T="300K")
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("md: 995/1000 step") and "T 300K" in lines[-1]


def test_md_and_train_logs_have_no_carriage_returns(tmp_path, capsys, monkeypatch):
    small_model().save(tmp_path / "m.eqp")
    write(tmp_path / "w.xyz", molecule("H2O"))
    argv = ["md", str(tmp_path / "m.eqp"), str(tmp_path / "w.xyz"), "--steps", "300",
            "--timestep", "0.2", "--log-every", "1", "--out", str(tmp_path / "t.extxyz"),
            "--log", str(tmp_path / "t.csv")]  # fmt: skip
    assert main(argv) == 0  # stdout / stderr captured: not a terminal
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("md: ")]
    assert 5 <= len(progress) <= 11, captured.err  # a line per 10 %, not one per step
    data = write_emt(tmp_path / "emt.xyz", 8, seed=1)
    config = tiny_config(data, tmp_path / "run", output={"progress": True})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    assert captured.out.count("epoch    1") == 1 and captured.out.count("epoch    2") == 1
    monkeypatch.setenv("EQUIPOT_PROGRESS", "bar")  # the check can see a live bar's output
    assert (
        main([*argv[:-4], "--out", str(tmp_path / "u.extxyz"), "--log", str(tmp_path / "u.csv")])
        == 0
    )
    assert "\r" in capsys.readouterr().err
