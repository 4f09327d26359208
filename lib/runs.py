"""Trained models on demand: ``trained(role, profile)`` loads the committed checkpoint or trains it.

A run is looked up by its key (:mod:`lib.run_store`: a hash of what changes its result; the run
tables are in :mod:`lib.run_reports`, both re-exported here). Committed: half-precision final and end-of-warm-up
weights with their metrics and provenance under ``data/checkpoints/<profile>/``. Git-ignored:
the resume state under ``data/runs/<profile>/``. ``smoke`` runs always train, into a temporary
cache. With ``BOOK_TRAINING=off`` (tests, CI) ``cpu`` and ``paper`` runs never train: a missing
checkpoint is an error naming the command that trains it.

Command line::

    python -m lib.runs train resnet vit alternet --profile cpu [--seed 0] [--fraction 1.0] [--set epochs=8 local=3]
    python -m lib.runs list [--profile cpu]
    python -m lib.runs add-init resnet vit alternet --profile cpu   # runs trained before init snapshots
    torchrun --standalone --nproc_per_node=4 -m lib.runs train vit --profile paper   # data-parallel over 4 GPUs

Under torchrun the processes train each run together (:mod:`lib.distributed`); rank 0 alone
writes its snapshots and checkpoint, and the others load it once it is whole.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lib import data, distributed, metrics, models, profiles, storage, train
from lib.paths import REPO, checkpoint_root, runs_root, smoke_root, training_enabled  # noqa: F401  (re-exported)
from lib.run_reports import compare_training, curves, table  # noqa: F401  (re-exported: the chapters call runs.table)
from lib.run_store import (  # noqa: F401  (re-exported: runs.spec, runs.key, runs.run_dir … are the public names)
    AT, KEY_VERSION, SCORED, committed, finish_supersede, git_sha, key, provenance, recipe_with_overrides, run_dir, spec,
    split_overrides, train_command,
)

evaluate = metrics.evaluate  # the engine and the analyses score models with the same function


class TrainingDisabledError(FileNotFoundError):
    """``BOOK_TRAINING=off`` and the checkpoint a chapter needs is not committed."""


def build(role: str, profile: str = "cpu", *, seed: int = 0, **overrides) -> nn.Module:
    """A freshly initialised model for ``role`` (init seeded by ``seed``), with its data set recorded."""
    prof = profiles.get(profile)
    recipe_over, model_over = split_overrides(overrides)
    recipe = recipe_with_overrides(prof, recipe_over)
    if recipe.drop_path_rate is not None:
        model_over.setdefault("drop_path_rate", recipe.drop_path_rate)
    num_classes = data.NUM_CLASSES[prof.dataset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.create(prof.model_name(role), num_classes=num_classes, **model_over)
    model.book_dataset = prof.dataset
    return model


def test_set(profile: str = "cpu", *, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images (uint8) and labels the chapters analyse under ``profile`` (all 10,000 for ``cpu``).

    ``limit`` keeps a fixed, class-balanced, nested subset of about that many images (for
    sweeps that cannot afford the whole set); a limit above the set's size keeps it whole.
    """
    prof = profiles.get(profile)
    test = data.load(prof.dataset, "test", fraction=prof.test_fraction, seed=0)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    return test if limit is None else _balanced(test, limit)


def _balanced(test, limit: int):
    """A fixed, class-balanced, nested subset of about ``limit`` images (all of them if fewer)."""
    images, labels = test
    if limit >= len(images):
        return test
    keep = data.subset_indices(labels, limit / len(images), seed=0)
    return images[keep], labels[keep]


def recipe_of(model: nn.Module) -> profiles.Recipe:
    """The training recipe a trained model (from :func:`trained`) was trained with."""
    run = getattr(model, "book_run", None)
    if run is None:
        raise ValueError("this model has no training record; load it with lib.runs.trained(...)")
    return profiles.Recipe(**run["spec"]["recipe"])


def training_loss(model: nn.Module) -> dict:
    """The training loss's settings as Hessian and landscape arguments: ``label_smoothing``, ``weight_decay``.

    The weight decay enters as the L2 term (wd/2)·‖w‖² (methods.md §4).
    """
    recipe = recipe_of(model)
    return {"label_smoothing": float(recipe.label_smoothing), "weight_decay": float(recipe.weight_decay)}


def training_batches(model: nn.Module, *, batches: int, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed batches of the model's own training set with the random crop and flip (``data.augmented_batches``).

    For Hessians and landscapes on the data the model was trained on (its fraction, its seed).
    Under the ``paper`` recipe RandAugment and Mixup/CutMix are left out: crop and flip only.
    """
    run = getattr(model, "book_run", None)
    if run is None:
        raise ValueError("this model has no training record; load it with lib.runs.trained(...)")
    prof = profiles.get(run["profile"])
    spec = run["spec"]
    images, labels = data.load(prof.dataset, "train", fraction=spec["fraction"] * prof.train_fraction, seed=spec["seed"])
    return data.augmented_batches(images, labels, batches=batches, batch_size=min(batch_size, len(images)), seed=seed,
                                  crop_flip=True, dataset=prof.dataset)


def _load(role, profile, seed, fraction, at, overrides, folder: Path) -> nn.Module:
    cmd = train_command(role, profile, seed, fraction, overrides)
    hint = f"Delete {folder} and retrain it with: {cmd}"
    meta = storage.load_json(folder / "meta.json", rebuild_hint=hint)
    if at == "init" and not (folder / "init.safetensors").exists():
        raise TrainingDisabledError(
            f"{folder} has no init snapshot: the run was trained before runs kept their starting point. "
            f"Add it from the run's seed with: python -m lib.runs add-init {role} --profile {profile} --seed {seed} "
            f"--fraction {fraction}" + (f" --set {' '.join(f'{k}={v}' for k, v in sorted(overrides.items()))}" if overrides else ""))
    model = build(role, profile, seed=seed, **overrides)
    state = storage.load_weights(folder / f"{at}.safetensors", rebuild_hint=hint)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise storage.CorruptFileError(f"{folder / f'{at}.safetensors'} does not fit {meta['spec']['model']}: {err}. {hint}") from err
    model.eval()
    model.book_run = {"role": role, "profile": profile, "at": at, "dir": str(folder), **meta}
    return model


def trained(
    role: str,
    profile: str = "cpu",
    *,
    seed: int = 0,
    fraction: float = 1.0,
    at: str = "final",
    device: str = "auto",
    progress: bool | None = None,
    retrain: bool = False,
    **overrides,
) -> nn.Module:
    """The model of ``role`` trained under ``profile``: fp32, eval mode, on the CPU.

    Loads the committed checkpoint when there is one; otherwise trains it (resumably) and
    commits-to-be its half-precision weights, metrics and provenance. ``at="warmup"`` returns
    the snapshot taken at the end of warm-up, ``at="init"`` the weights training started from
    (the control "at initialisation" of a trained model: read from disk, so the same on every
    CPU, where a model built afresh is not). ``overrides`` are recipe fields (``epochs=8``)
    or model arguments (``local=3``). ``retrain=True`` trains a committed run again (to add a
    snapshot it lacks): the old record stays under ``superseded`` with its final weights' hash,
    and ``final_reproduced`` says whether the new final weights are byte for byte the old ones.
    The normalisation is recorded as ``model.book_dataset`` and the run's metadata as
    ``model.book_run``. ``progress=None`` shows progress bars except
    for ``smoke`` runs, which are quick and silent.
    """
    if at not in AT:
        raise ValueError(f"at={at!r}; valid: {AT}")
    prof = profiles.get(profile)
    if progress is None:
        progress = prof.name != "smoke"
    folder = run_dir(role, prof.name, seed=seed, fraction=fraction, **overrides)
    if folder.exists() and not (folder / "meta.json").exists():
        raise storage.CorruptFileError(
            f"{folder} has no meta.json: the checkpoint is incomplete. Delete the folder and retrain it with: "
            + train_command(role, prof.name, seed, fraction, overrides))
    finish_supersede(folder)
    metrics_only = folder.exists() and not (folder / "final.safetensors").exists()
    if not folder.exists() or metrics_only or retrain:
        if prof.name != "smoke" and not training_enabled():
            command = train_command(role, prof.name, seed, fraction, overrides)
            if retrain:
                raise TrainingDisabledError(f"retrain=True trains {folder} again, and BOOK_TRAINING=off. Run:\n  {command} --retrain")
            if metrics_only:
                raise TrainingDisabledError(
                    f"{folder} keeps only the metrics of this run (its weights were not committed), and BOOK_TRAINING=off. "
                    f"Retrain it with:\n  {command}\nThe new run supersedes the record (the old metrics stay in its "
                    "meta.json under 'superseded'); trained on another machine it differs from it by training noise.")
            raise TrainingDisabledError(
                f"No committed checkpoint for role {role!r} of profile {prof.name!r} (seed {seed}, fraction {fraction}, "
                f"overrides {overrides or 'none'}) at {folder}, and BOOK_TRAINING=off. Train it with:\n  " + command
            )
        _train(role, prof, seed=seed, fraction=fraction, overrides=overrides, folder=folder, device=device, progress=progress)
    return _load(role, prof.name, seed, fraction, at, overrides, folder)


def _train(role, prof, *, seed, fraction, overrides, folder: Path, device, progress) -> None:
    run_spec = spec(role, prof.name, seed=seed, fraction=fraction, **overrides)
    recipe_over, _ = split_overrides(overrides)
    recipe = recipe_with_overrides(prof, recipe_over)
    distributed.setup(train.resolve_device(device))  # under torchrun: join the other processes now
    with distributed.main_first():  # one process decodes (or downloads) the data set into its cache
        # a profile may train on a share of the data (smoke); a run's own fraction is a share of that
        train_set = data.load(prof.dataset, "train", fraction=fraction * prof.train_fraction, seed=seed)
        test_set = data.load(prof.dataset, "test", fraction=prof.test_fraction, seed=0)
    if prof.name == "smoke" and len(train_set[0]) < recipe.batch_size:  # smoke only proves the path runs:
        recipe = dataclasses.replace(recipe, batch_size=len(train_set[0]))  # a tiny fraction gets one small batch
    monitor_set = _monitor_set(test_set, fraction)
    model = build(role, prof.name, seed=seed, **overrides)
    state_path = runs_root(prof.name) / folder.name / "state.pt"
    warmup_path = runs_root(prof.name) / folder.name / "warmup.safetensors"
    init_path = runs_root(prof.name) / folder.name / "init.safetensors"
    if not state_path.exists():  # the very weights this run starts from (a resume keeps the first start's)
        if distributed.is_main():
            storage.save_weights(model.state_dict(), init_path)
    elif not init_path.exists():
        raise storage.CorruptFileError(
            f"{state_path} resumes a run whose init snapshot {init_path} is missing (started by older code). "
            f"Delete {state_path.parent} and retrain it with: {train_command(role, prof.name, seed, fraction, overrides)}")

    def snapshot(epoch, net, history):
        if epoch == recipe.warmup_epochs:
            storage.save_weights(net.state_dict(), warmup_path)

    if progress and distributed.is_main():
        print(f"training {role} ({run_spec['model']}, profile {prof.name}, seed {seed}, fraction {fraction}) → {folder}"
              + (f" on {distributed.world_size()} processes" if distributed.world_size() > 1 else ""), file=sys.stderr, flush=True)
    tic = time.time()
    sha_at_start = git_sha()[0]
    history = train.fit(model, recipe, train_set, monitor_set, seed=seed, num_classes=data.NUM_CLASSES[prof.dataset],
                        dataset=prof.dataset, state_path=state_path, on_epoch_end=snapshot, device=device, progress=progress)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes the checkpoint below; then every process loads it
        return
    wall = sum(h["seconds"] for h in history)
    final = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if recipe.warmup_epochs == 0:
        shutil.copyfile(init_path, warmup_path)
    # Score what is committed: the half-precision weights, reloaded.
    staged = folder.with_name(folder.name + ".staging")
    storage.save_weights(final, staged / "final.safetensors")
    for at, path in (("warmup", warmup_path), ("init", init_path)):  # already half precision
        shutil.copyfile(path, staged / f"{at}.safetensors")
    results = {}
    for at in SCORED:
        net = build(role, prof.name, seed=seed, **overrides)
        net.load_state_dict(storage.load_weights(staged / f"{at}.safetensors"))
        results[at] = metrics.evaluate(net, *test_set)
    meta = {
        "spec": run_spec,
        "key": key(run_spec),
        "role": role,
        "profile": prof.name,
        "test": results,
        "test_images": len(test_set[0]),
        "train_images": len(train_set[0]),
        "monitor_images": len(monitor_set[0]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
        "init": {"how": "saved as training started"},
        "provenance": provenance(prof.dataset, wall_seconds=wall, elapsed_seconds=time.time() - tic,
                                 device=str(train.resolve_device(device)), git_sha_at_start=sha_at_start,
                                 compiled=recipe.compile,
                                 **({"processes": distributed.world_size()} if distributed.world_size() > 1 else {})),
    }
    if (folder / "meta.json").exists():  # a metrics-only record of the same run (e.g. a sweep's): this run supersedes it
        earlier = storage.load_json(folder / "meta.json")
        record = {k: earlier[k] for k in ("test", "history", "provenance", "init") if k in earlier}
        if (folder / "final.safetensors").exists():  # a retrain of a run with weights: were they reproduced?
            record["final_sha256"] = storage.sha256(folder / "final.safetensors")
            meta["final_reproduced"] = record["final_sha256"] == storage.sha256(staged / "final.safetensors")
        meta["superseded"] = [*earlier.pop("superseded", []), record]
    storage.save_json(meta, staged / "meta.json")
    if folder.exists():  # the old record leaves only once the new one is whole
        os.replace(folder, folder.with_name(folder.name + ".superseded"))
    os.replace(staged, folder)  # the checkpoint appears whole or not at all
    finish_supersede(folder)
    distributed.barrier()  # the other processes (under torchrun) may load it now


MONITOR_IMAGES = 2000


def _monitor_set(test_set, fraction: float):
    """The test images scored after every epoch: all of them, or for a small-data run a fixed,
    class-balanced 2,000 (there an epoch is so short that scoring 10,000 images would cost more
    than training). Final metrics always use the whole test set."""
    return test_set if fraction >= 1 else _balanced(test_set, MONITOR_IMAGES)


def add_init(role: str, profile: str = "cpu", *, seed: int = 0, fraction: float = 1.0, **overrides) -> Path:
    """Give a run trained before runs kept their starting point an ``init`` snapshot, rebuilt from its seed.

    The rebuild uses ATen's portable kernels (``ATEN_CPU_CAPABILITY=default``), so every machine
    writes the same bytes; the vectorised kernels the training machine used agree with them to
    float32 rounding, which half precision mostly absorbs (about 0.1 % of the stored values differ
    by one unit in the last place). ``meta.json`` records how the snapshot was made.
    """
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise RuntimeError("add_init must run with ATEN_CPU_CAPABILITY=default set before torch is imported; "
                           "use the command line: python -m lib.runs add-init ROLE ...")
    folder = run_dir(role, profile, seed=seed, fraction=fraction, **overrides)
    hint = f"train it first with: {train_command(role, profile, seed, fraction, overrides)}"
    meta = storage.load_json(folder / "meta.json", rebuild_hint=hint)
    if (folder / "init.safetensors").exists():
        return folder
    storage.save_weights(build(role, profile, seed=seed, **overrides).state_dict(), folder / "init.safetensors")
    meta["init"] = {"how": f"rebuilt from seed {seed} after training, with ATen's portable kernels (ATEN_CPU_CAPABILITY=default)",
                    "provenance": provenance(profiles.get(profile).dataset)}
    storage.save_json(meta, folder / "meta.json")
    return folder


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.runs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) runs one after another and write their checkpoints")
    t.add_argument("roles", nargs="+", metavar="role")
    t.add_argument("--profile", default="cpu", choices=sorted(profiles.PROFILES))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--fraction", type=float, default=1.0)
    t.add_argument("--device", default="auto")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe or model overrides")
    t.add_argument("--retrain", action="store_true",
                   help="train a committed run again (e.g. to add a snapshot it lacks); the old record stays under "
                        "'superseded', with its final weights' hash, and 'final_reproduced' says whether they came out the same")
    a = sub.add_parser("add-init", help="give runs trained before init snapshots were kept one, rebuilt from their seed")
    a.add_argument("roles", nargs="+", metavar="role")
    a.add_argument("--profile", default="cpu", choices=sorted(profiles.PROFILES))
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--fraction", type=float, default=1.0)
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe or model overrides")
    ls = sub.add_parser("list", help="list committed runs")
    ls.add_argument("--profile", default="cpu", choices=sorted(profiles.PROFILES))
    args = parser.parse_args(argv)
    if args.command == "add-init":
        if torch.backends.cpu.get_cpu_capability() != "DEFAULT":  # the portable kernels must be chosen before torch loads
            if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "default":
                raise SystemExit("this torch ignores ATEN_CPU_CAPABILITY=default; add-init needs its portable kernels")
            argv = sys.argv[1:] if argv is None else list(argv)
            env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
            raise SystemExit(subprocess.run([sys.executable, "-m", "lib.runs", *argv], env=env).returncode)
        for role in args.roles:
            folder = add_init(role, args.profile, seed=args.seed, fraction=args.fraction, **_parse_set(args.set))
            print(f"{role}: {folder / 'init.safetensors'}", flush=True)
    elif args.command == "train":
        os.environ["BOOK_TRAINING"] = "on"
        for role in args.roles:
            model = trained(role, args.profile, seed=args.seed, fraction=args.fraction, device=args.device,
                            retrain=args.retrain, **_parse_set(args.set))
            if distributed.is_main():
                run = model.book_run
                print(json.dumps({"role": role, "dir": run["dir"], "test": run["test"],
                                  **({"final_reproduced": run["final_reproduced"]} if "final_reproduced" in run else {})}, indent=1), flush=True)
    else:
        for run in committed(args.profile):
            t = run["test"]["final"]
            kept = ",".join(at for at in AT if (Path(run["dir"]) / f"{at}.safetensors").exists()) or "metrics only"
            print(f"{run['role']:10s} {run['spec']['model']:18s} seed {run['spec']['seed']} fraction {run['spec']['fraction']:<5} "
                  f"acc {t['accuracy']:.4f}  {kept:18s} {Path(run['dir']).name}")


if __name__ == "__main__":
    main()
