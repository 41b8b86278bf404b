"""``equipot learn``: rounds of train → explore → select → label, resumable from its files.

Output folder (``out``)::

    learn.yaml                 the resolved config
    labelled.extxyz            every labelled frame, appended as soon as it is computed
    round-<r>/train.extxyz     the labelled frames round r trains on (a snapshot)
    round-<r>/train/           the training run (best.eqp or committee.eqp)
    round-<r>/metrics.json     test errors and label count of round r's model
    round-<r>/explore/         MD replicas (trajectories, thermo CSV, alarm frames)
    round-<r>/candidates.extxyz, selected.json
    learning_curve.csv / .png  test force MAE against the number of labels

Every phase writes its result atomically and is skipped when its result exists, labelling
skips frames already in ``labelled.extxyz``, and training resumes from its checkpoint, so a
killed loop picks up where it stopped without repeating a reference calculation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from ase.io import read

from equipot.learn.config import LearnConfig
from equipot.learn.explore import explore, pool_candidates, rattled_copies, write_atomically
from equipot.learn.labelling import LABEL_ID, label_frames, read_labelled
from equipot.learn.rounds import test_errors, train_round
from equipot.learn.select import score_frames, select
from equipot.persist import atomic_write


def _write_json(path: Path, data) -> None:
    atomic_write(path, json.dumps(data, indent=1))


class LearnLoop:
    def __init__(self, config: LearnConfig, *, progress: bool = True, verbose: bool = True):
        self.config, self.progress, self.verbose = config, progress, verbose
        self.out = config.out
        self.labelled = self.out / "labelled.extxyz"

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"equipot learn: {text}", flush=True)

    def run(self) -> dict:
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "learn.yaml").write_text(yaml.safe_dump(c.model_dump(mode="json")))
        structures = read(c.initial.structures, index=":")
        self._initial_labels(structures)
        previous = None
        for r in range(1, c.stop.max_rounds + 1):
            round_dir = self.out / f"round-{r}"
            round_dir.mkdir(exist_ok=True)
            data = round_dir / "train.extxyz"
            if not data.is_file():  # in label-id order: the labelling processes append in
                # the order they finish, and the split (by position) must not depend on that
                frames = read_labelled(self.labelled)
                frames.sort(key=lambda a: str(a.info.get(LABEL_ID, "")))
                write_atomically(data, frames)
            n_labels = len(read(data, index=":"))
            self.log(f"round {r}: training on {n_labels} labelled frames")
            model = train_round(
                round_dir / "train",
                data,
                c.train,
                previous=previous,
                members=c.committee,
                valid_fraction=c.valid_fraction,
                seed=c.seed,
                min_steps=c.min_steps,
                verbose=False,
            )
            metrics = self._metrics(round_dir, model, n_labels)
            self._learning_curve()
            reason = self._stop_reason(r, n_labels, metrics)
            if reason:
                self.log(f"stopping after round {r}: {reason}")
                return {"rounds": r, "labels": n_labels, "model": str(model), "reason": reason}
            candidates = self._candidates(round_dir, model, structures, r)
            chosen = self._select(round_dir, model, candidates, r, c.stop.max_labels - n_labels)
            jobs = [(f"r{r}-{candidates[k].info['candidate']}", candidates[k]) for k in chosen]
            counts = label_frames(
                jobs,
                c.reference.calculator,
                c.reference.options,
                self.labelled,
                workers=c.workers,
                progress=self.progress,
            )
            self.log(f"round {r}: labelled {counts['labelled']} ({counts['failed']} failed)")
            previous = model
        return {"rounds": c.stop.max_rounds, "reason": "max_rounds"}

    # ------------------------------------------------------------------ phases
    def _initial_labels(self, structures) -> None:
        c = self.config
        if c.initial.labelled is not None:
            have = {a.info.get(LABEL_ID) for a in read_labelled(self.labelled)}
            from equipot.learn.labelling import append_frame

            for k, atoms in enumerate(read(c.initial.labelled, index=":")):
                if f"init-{k}" not in have:
                    atoms.info[LABEL_ID] = f"init-{k}"
                    append_frame(self.labelled, atoms)
            return
        frames = rattled_copies(structures, c.initial.count, c.initial.rattle, c.seed)
        jobs = [(f"r0-{k}", a) for k, a in enumerate(frames)]
        for k, a in enumerate(frames):
            a.info["candidate"] = f"initial-{k}"
        counts = label_frames(
            jobs,
            c.reference.calculator,
            c.reference.options,
            self.labelled,
            workers=c.workers,
            progress=self.progress,
        )
        self.log(f"initial set: {counts}")

    def _metrics(self, round_dir: Path, model: Path, n_labels: int) -> dict:
        path = round_dir / "metrics.json"
        if path.is_file():
            return json.loads(path.read_text())
        metrics = {"round": int(round_dir.name.split("-")[1]), "labels": n_labels}
        if self.config.stop.test is not None:
            metrics["test"] = test_errors(model, self.config.stop.test)
        elif model.name == "committee.eqp":  # no test set: member 0's validation errors
            summary = json.loads((model.parent / "committee.json").read_text())
            metrics["valid"] = summary["members"][0]["valid"]
        else:
            metrics["valid"] = json.loads((model.parent / "results.json").read_text())["valid"]
        _write_json(path, metrics)
        split = "test" if "test" in metrics else "valid"
        self.log(
            f"{round_dir.name}: {split} force MAE {1e3 * metrics[split]['forces_mae']:.2f} meV/Å"
        )
        return metrics

    def _stop_reason(self, r: int, n_labels: int, metrics: dict) -> str | None:
        stop = self.config.stop
        errors = metrics.get("test", metrics.get("valid", {}))
        if stop.target_force_mae is not None and errors.get("forces_mae", math.inf) <= (
            stop.target_force_mae
        ):
            return f"target force MAE {stop.target_force_mae} eV/Å reached"
        if n_labels >= stop.max_labels:
            return f"label budget {stop.max_labels} used"
        if r == stop.max_rounds:
            return f"{stop.max_rounds} rounds done"
        return None

    def _candidates(self, round_dir: Path, model: Path, structures, r: int):
        path = round_dir / "candidates.extxyz"
        if path.is_file():
            return read(path, index=":")
        c = self.config
        if c.explore.pool is not None:
            taken = {a.info.get("candidate") for a in read_labelled(self.labelled)}
            frames = pool_candidates(c.explore.pool, taken)
        else:
            frames = explore(
                model,
                structures,
                c.explore,
                round_dir / "explore",
                seed=c.seed + 1000 * r,
                progress=self.progress,
            )
        if not frames:
            raise ValueError(f"round {r}: exploration produced no candidate frames")
        write_atomically(path, frames)
        self.log(f"round {r}: {len(frames)} candidates")
        return read(path, index=":")

    def _select(self, round_dir: Path, model: Path, candidates, r: int, budget: int) -> list:
        path = round_dir / "selected.json"
        if path.is_file():
            return json.loads(path.read_text())["indices"]
        s = self.config.select
        n = min(round(s.per_round * s.growth ** (r - 1)), budget)
        scores, descriptors, name = score_frames(model, candidates, s.score)
        labelled = None
        if s.method == "uncertainty" and s.diversity:
            frames = read_labelled(self.labelled)
            labelled = score_frames(model, frames, name)[1] if frames else None
        chosen = select(
            scores,
            descriptors,
            n,
            method=s.method,
            pool_factor=s.pool_factor,
            diversity=s.diversity,
            strategy=s.strategy,
            labelled=labelled,
            seed=self.config.seed + r,
        )
        _write_json(path, {"indices": chosen, "score": name, "scores": scores[chosen].tolist()})
        return chosen

    def _learning_curve(self) -> None:
        rows = []
        for path in sorted(
            self.out.glob("round-*/metrics.json"), key=lambda p: int(p.parent.name.split("-")[1])
        ):
            m = json.loads(path.read_text())
            errors = m.get("test", m.get("valid"))
            rows.append(
                {
                    "round": m["round"],
                    "labels": m["labels"],
                    "energy_mae": errors["energy_mae"],
                    "forces_mae": errors["forces_mae"],
                }
            )
        if not rows:
            return
        lines = ["round,labels,energy_mae_eV,forces_mae_eV_A"]
        lines += [f"{r['round']},{r['labels']},{r['energy_mae']},{r['forces_mae']}" for r in rows]
        (self.out / "learning_curve.csv").write_text("\n".join(lines) + "\n")
        plot_learning_curve(
            rows, self.out / "learning_curve.png", "test" if self.config.stop.test else "validation"
        )


def plot_learning_curve(rows: list[dict], png: Path, split: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["labels"] for r in rows], [1e3 * r["forces_mae"] for r in rows], "o-")
    ax.set_xlabel("labelled frames")
    ax.set_ylabel(f"{split} force MAE (meV/Å)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
