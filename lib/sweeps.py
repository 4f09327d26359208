"""Chapter 4's many runs, declared once: which are done, which are still to run, their results over seeds.

A sweep is a list of :class:`Run` (role, seed, data fraction, overrides) built from the
:class:`lib.chapters.base.Sweep` that the chapter's spec declares for the profile.
``python -m lib.sweeps run 04_alternet`` trains the pending ones, one at a time, cheapest first,
each through :func:`lib.runs.trained` (so an interrupted run resumes from its last epoch). A run
marked ``keep`` is analysed further and keeps its committed weights; the others keep only their
``meta.json`` (metrics, curves, provenance) in ``data/checkpoints/``: their weights are moved to
the git-ignored ``data/runs/`` so that the repository stays small.
``python -m lib.sweeps status 04_alternet`` prints the list of what is still to run.
``--shard I/N`` trains only the I-th of N disjoint parts of the sweep (one part per machine; the
results merge by copying run folders, see :func:`shard`); under ``torchrun`` the processes train
each run together and rank 0 alone prunes and prints.

:func:`results` reads every run's final test metrics into one table (under ``smoke`` it trains them on
the fly), and :func:`summary` gives mean ± std over seeds, which :func:`record` writes to
``data/results/<profile>/runs/<chapter>.json`` (beside, not among, the verdict files).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib import chapters, distributed, profiles, runs, storage, train
from lib.chapters.base import Sweep

__all__ = ["Run", "budget", "has_sweep", "plan", "size", "pending", "shard", "parse_shard", "results", "epochs_of", "summary",
           "record", "prune"]

Overrides = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep.

    Attributes:
        group: ``"build-up"`` or ``"data"``: which part of the chapter it serves.
        label: What distinguishes it in its group, for tables (e.g. ``"MSAs (0, 0, 0, 1)"``).
        role, seed, fraction: As for :func:`lib.runs.trained`.
        overrides: Recipe or model overrides as sorted ``(name, value)`` pairs (hashable).
        keep: Commit its weights (it is analysed further); otherwise metrics only.
    """

    group: str
    label: str
    role: str
    seed: int = 0
    fraction: float = 1.0
    overrides: Overrides = ()
    keep: bool = False

    @property
    def kwargs(self) -> dict:
        """Keyword arguments of :func:`lib.runs.trained` (besides role and profile)."""
        return {"seed": self.seed, "fraction": self.fraction, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.overrides}}

    def folder(self, profile: str) -> Path:
        return runs.run_dir(self.role, profile, **self.kwargs)

    def done(self, profile: str) -> bool:
        return (self.folder(profile) / "meta.json").exists()

    def command(self, profile: str) -> str:
        kw = self.kwargs
        return runs.train_command(self.role, profile, kw.pop("seed"), kw.pop("fraction"), kw)


def _overrides(**kw) -> Overrides:
    return tuple(sorted(kw.items()))


def budget(chapter: str, profile: str) -> Sweep:
    """The sweep that ``chapter``'s spec declares for ``profile`` (:class:`lib.chapters.base.Sweep`)."""
    module = chapters.spec(chapter)
    if not hasattr(module, "SWEEP"):
        raise ValueError(f"no sweep for chapter {chapter!r}; chapters with one: {has_sweep_chapters()}")
    return module.sweep(profile)


def has_sweep_chapters() -> list[str]:
    """The chapters whose spec declares a sweep."""
    return sorted(name for name, m in chapters.SPECS.items() if hasattr(m, "SWEEP"))


def has_sweep(chapter: str, profile: str) -> bool:
    """Whether ``chapter`` declares a sweep for ``profile``."""
    module = chapters.SPECS.get(chapter)
    return module is not None and profiles.get(profile).name in getattr(module, "SWEEP", {})


def msa_label(msa_per_stage) -> str:
    return f"MSAs {tuple(msa_per_stage)}" if any(msa_per_stage) else "no MSA (pre-activation ResNet)"


def plan(chapter: str = "04_alternet", profile: str = "cpu") -> list[Run]:
    """Every run of the chapter's sweep, cheapest first: the small fractions and seed 0 of the full data,
    then the build-up and the extra full-data seeds (the build-up first when it trains for fewer epochs)."""
    b = budget(chapter, profile)
    out: list[Run] = []
    for fraction in b.fractions:
        for seed in range(b.seeds[fraction]):
            for role in b.roles:
                out.append(Run("data", f"{fraction:.0%} data", role, seed, fraction, keep=(role, seed, fraction) in b.keep))
    build_up = []
    kept = {r.folder(profile) for r in out if r.keep}
    for msa in b.build_up:
        recipe = _overrides(**b.build_up_recipe)
        if any(msa):
            run = Run("build-up", msa_label(msa), "alternet", 0, 1.0, tuple(sorted(recipe + (("msa_per_stage", msa),))))
        else:  # no MSA: the pre-activation baseline itself, trained with the same budget
            run = Run("build-up", msa_label(msa), "preresnet", 0, 1.0, recipe)
        # a configuration may be a data run too (same checkpoint): it shares that run's keep
        build_up.append(dataclasses.replace(run, keep=run.folder(profile) in kept))
    full_extra = [r for r in out if r.fraction == 1.0 and r.seed > 0]
    first = [r for r in out if r not in full_extra]
    return first + build_up + full_extra if b.build_up_recipe else first + full_extra + build_up


def size(chapter: str = "04_alternet", profile: str = "cpu", *, group: str | None = None) -> int:
    """How many training runs the sweep holds, each checkpoint counted once; with ``group``, only
    that group's runs that no other group shares (e.g. the build-up runs that are not data runs)."""
    every = plan(chapter, profile)
    mine = {r.folder(profile) for r in every if group in (None, r.group)}
    others = {r.folder(profile) for r in every if group not in (None, r.group)}
    return len(mine - others)


def pending(chapter: str = "04_alternet", profile: str = "cpu") -> list[Run]:
    """The runs of the sweep with no ``meta.json`` yet, in the order they will be trained (each
    checkpoint once: a build-up configuration may also be a data run)."""
    return [r for r in _distinct(plan(chapter, profile), profile) if not r.done(profile)]


def _distinct(every: list[Run], profile: str) -> list[Run]:
    """Each checkpoint once, in the order given (a build-up configuration may also be a data run)."""
    out, seen = [], set()
    for r in every:
        if r.folder(profile) not in seen:
            seen.add(r.folder(profile))
            out.append(r)
    return out


def shard(chapter: str, profile: str, index: int, count: int) -> list[Run]:
    """The ``index``-th (1-based) of ``count`` disjoint parts of the sweep, for training on several machines.

    Parts are dealt round-robin from the whole plan (each checkpoint once, cheapest first), so
    they are about equally costly and do not depend on what a machine has already finished:
    every machine computes the same split. Runs keep their keys, so the results merge by
    copying the run folders of ``data/checkpoints/<profile>/`` from each machine into one.
    """
    if not (isinstance(count, int) and isinstance(index, int) and count >= 1 and 1 <= index <= count):
        raise ValueError(f"shard {index}/{count}: need 1 ≤ I ≤ N, e.g. 1/2 and 2/2 for two machines")
    return _distinct(plan(chapter, profile), profile)[index - 1::count]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` → ``(2, 3)``, with a clear error for anything else."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 1/2") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: need 1 ≤ I ≤ N, e.g. 1/2 and 2/2 for two machines")
    return index, count


def prune(run: Run, profile: str) -> None:
    """Move a finished run's weights out of ``data/checkpoints/`` (committed) into ``data/runs/`` (ignored)."""
    folder = run.folder(profile)
    if run.keep or not (folder / "meta.json").exists() or folder in chapters.loaded_folders(profile):
        return
    kept = runs.runs_root(profile) / folder.name / "weights"
    for path in folder.glob("*.safetensors"):
        kept.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), kept / path.name)


def _metrics_row(run: Run, meta: dict) -> dict:
    final = meta["test"]["final"]
    history = meta.get("history") or [{}]
    return {
        "group": run.group, "label": run.label, "role": run.role, "model": meta["spec"]["model"], "seed": run.seed,
        "fraction": run.fraction, "train images": meta["train_images"], "epochs": meta["spec"]["recipe"]["epochs"],
        "parameters": meta["parameters"], "accuracy (%)": 100 * final["accuracy"], "NLL": final["nll"],
        "train loss": history[-1].get("train_loss", math.nan), "minutes": meta["provenance"]["wall_seconds"] / 60,
    }


def results(chapter: str = "04_alternet", profile: str = "cpu", *, allow_missing: bool = False):
    """One row per run of the sweep: final test accuracy and NLL, last-epoch training loss, minutes.

    Under ``smoke`` the runs are trained on the fly. Elsewhere each run's committed ``meta.json`` is
    read (no weights needed); a missing one is an error naming what is still to run and how to
    run it, unless ``allow_missing`` (then those rows are left out).
    """
    import pandas as pd

    name = profiles.get(profile).name
    rows, missing = [], []
    for run in plan(chapter, name):
        if name == "smoke":
            meta = runs.trained(run.role, name, **run.kwargs).book_run
        elif run.done(name):
            meta = storage.load_json(run.folder(name) / "meta.json", rebuild_hint=f"Delete the folder and retrain it with: {run.command(name)}")
        else:
            missing.append(run)
            continue
        rows.append(_metrics_row(run, meta))
    if missing and not allow_missing:
        listing = "\n  ".join(f"{r.group}: {r.label}, {r.role}, seed {r.seed}" for r in missing)
        raise runs.TrainingDisabledError(
            f"{len(missing)} run(s) of {chapter} ({name}) are not trained yet:\n  {listing}\n"
            f"Train them (resumable, one at a time) with: python -m lib.sweeps run {chapter} --profile {name}")
    return pd.DataFrame(rows)


def epochs_of(frame, group: str = "data") -> int:
    """The one number of epochs every ``group`` run of ``results`` trained for; an error if they differ,
    since the comparisons across data fractions assume equal epochs."""
    epochs = sorted(set(frame.loc[frame["group"] == group, "epochs"].astype(int)))
    if len(epochs) != 1:
        raise ValueError(f"the {group!r} runs should share one number of epochs, found {epochs}")
    return epochs[0]


def summary(frame, by=("group", "label", "role", "fraction"), value: str = "accuracy (%)"):
    """Mean, standard deviation (n − 1; NaN for one seed) and seed count of ``value`` per configuration."""
    by = list(by)
    grouped = frame.groupby(by, sort=False)[value]
    out = grouped.agg(mean="mean", std="std", seeds="count").reset_index()
    return out


def record(chapter: str, profile: str, frame) -> Path:
    """Write the per-run table and its mean ± std summary to ``data/results/<profile>/runs/<chapter>.json``."""
    from lib import verdict

    path = verdict.results_path(chapter, profile).parent / "runs" / f"{chapter}.json"
    storage.save_json({"runs": frame.to_dict(orient="records"),
                       "summary": summary(frame).to_dict(orient="records"),
                       "provenance": runs.provenance(profiles.get(profile).dataset)}, path)
    return path


def _status(chapter: str, profile: str) -> None:
    todo = pending(chapter, profile)
    every = size(chapter, profile)
    print(f"{chapter} ({profile}): {every - len(todo)} of {every} runs done; still to run:")
    for r in todo:
        print(f"  {r.group:9s} {r.label:32s} {r.role:10s} seed {r.seed}  {r.command(profile)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.sweeps", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["status", "run"])
    parser.add_argument("chapter", nargs="?", default="04_alternet")
    parser.add_argument("--profile", default="cpu", choices=sorted(profiles.PROFILES))
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--stop-file", default=None, help="stop before the next run once this file exists")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="train only the I-th of N disjoint parts of the sweep (one per machine; merge by copying run folders)")
    args = parser.parse_args(argv)
    try:
        part = parse_shard(args.shard) if args.shard else None
    except ValueError as err:
        parser.error(str(err))
    if args.command == "status":
        _status(args.chapter, args.profile)
        return
    os.environ["BOOK_TRAINING"] = "on"
    distributed.setup(train.resolve_device("auto"))  # under torchrun: join the others, so that the processes decide together
    lead = distributed.is_main()  # every process trains each run; rank 0 alone moves files and prints
    todo = distributed.broadcast(pending(args.chapter, args.profile))  # rank 0's list, the same for all
    if lead:
        for r in plan(args.chapter, args.profile):  # finished runs may still hold weights to prune
            prune(r, args.profile)
    if part:
        mine = {r.folder(args.profile) for r in shard(args.chapter, args.profile, *part)}
        todo = [r for r in todo if r.folder(args.profile) in mine]
        if lead:
            print(f"shard {part[0]}/{part[1]}: {len(mine)} runs of the sweep, {len(todo)} still to train here", flush=True)
    for i, r in enumerate(todo):
        stop = (args.max_runs is not None and i >= args.max_runs) or bool(args.stop_file and Path(args.stop_file).exists())
        if distributed.broadcast(stop):
            break
        tic = time.time()
        model = runs.trained(r.role, args.profile, **r.kwargs)
        distributed.barrier()  # every process has loaded the run's weights before rank 0 moves them
        if lead:
            prune(r, args.profile)
            print(f"done: {r.group}, {r.label}, {r.role}, seed {r.seed}: accuracy {model.book_run['test']['final']['accuracy']:.4f} "
                  f"in {(time.time() - tic) / 60:.1f} min → {r.folder(args.profile).name}", flush=True)
    if lead:
        _status(args.chapter, args.profile)


if __name__ == "__main__":
    sys.exit(main())
