"""The ``paper`` profile end to end at toy size: every code path it takes runs here, except CUDA itself.

A few hundred random images are written as CIFAR-100 in torchvision's own files (pickled
``train``, ``test`` and ``meta`` under ``cifar-100-python/``, accepted by torchvision's own md5
check) in a temporary data folder (``BOOK_DATA_DIR``), and the ``paper`` profile trains its cast
on them through :func:`lib.runs.trained`. It keeps its data set and recipe: RandAugment m9-n2 in
DataLoader worker processes, Mixup 1.0 / CutMix 0.8 over the batch, label smoothing 0.1, gradient
clipping at 5, AdamW with linear warm-up then cosine. Only sizes shrink (:data:`TOY`): the smoke
models, 2 epochs (1 of warm-up), batches of 50, two workers, the smoke analysis sizes. One run is
interrupted mid-epoch and resumed, and Chapter 2's analyses run on the cast as its notebook runs
them, through to the chapter's verdict file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from lib import data, profiles, runs, storage, train, verdict
from lib.analysis import fourier, robustness, trend, variance
from lib.chapters import load_runs, low_pass as spec

pytestmark = pytest.mark.slow  # the module's fixture trains four toy runs (about 25 s here)

CLASSES = 100
TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 2  # 400 training images (8 steps of 50 an epoch), 200 test images


def _toy(paper: profiles.Profile, smoke: profiles.Profile) -> profiles.Profile:
    """The paper profile with the smoke profile's sizes; data set, recipe and everything else unchanged."""
    recipe = dataclasses.replace(paper.recipe, epochs=2, warmup_epochs=1, batch_size=50, num_workers=2, save_every=3)
    return dataclasses.replace(paper, roles=dict(smoke.roles), recipe=recipe, analysis=smoke.analysis)


TOY = _toy(profiles.PROFILES["paper"], profiles.PROFILES["smoke"])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar100(root: Path, *, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Random images as torchvision's CIFAR-100 files under ``root/cifar-100-python``; returns what was written.

    The layout is the one ``torchvision.datasets.CIFAR100`` reads: each split a pickled dict with
    ``data`` (uint8 [N, 3·32·32], channel-major rows) and ``fine_labels``; ``meta`` a pickled dict
    with ``fine_label_names``.
    """
    folder = root / torchvision.datasets.CIFAR100.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        labels = rng.permutation(np.repeat(np.arange(CLASSES), per_class)).tolist()
        images = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
        entry = {"batch_label": f"{split} toy", "filenames": [f"toy_{i:05d}.png" for i in range(len(labels))],
                 "fine_labels": labels, "coarse_labels": [label // 5 for label in labels], "data": images}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
        written[split] = (images, labels)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i:02d}" for i in range(CLASSES)],
                     "coarse_label_names": [f"super_{i:02d}" for i in range(CLASSES // 5)]}, f)
    return written


def toy_images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


class Interrupted(Exception):
    """Stands in for a run stopped from outside after its last save."""


@pytest.fixture(scope="module")
def toy_paper(tmp_path_factory):
    """The toy paper profile trained once for the module: data written, cast trained, one run interrupted and resumed."""
    tmp = tmp_path_factory.mktemp("paper")
    with pytest.MonkeyPatch.context() as patch:  # undone even if training fails
        written = write_cifar100(tmp / "data")
        folder = tmp / "data" / torchvision.datasets.CIFAR100.base_folder
        cls = torchvision.datasets.CIFAR100  # torchvision checks its files against these md5s: give it ours
        patch.setattr(cls, "train_list", [["train", _md5(folder / "train")]])
        patch.setattr(cls, "test_list", [["test", _md5(folder / "test")]])
        patch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / "meta")})
        patch.setitem(profiles.PROFILES, "paper", TOY)
        for name, sub in (("BOOK_DATA_DIR", "data"), ("BOOK_CHECKPOINT_DIR", "checkpoints"), ("BOOK_RUNS_DIR", "runs"),
                          ("BOOK_RESULTS_DIR", "results")):
            patch.setenv(name, str(tmp / sub))
        patch.setenv("BOOK_TRAINING", "on")  # the paper profile trains only when allowed
        pids = tmp / "augmenting-pids.txt"
        round_trip = data._pil_round_trip

        def logged_round_trip(image, transform):  # RandAugment's PIL round trip, logging which process runs it
            with open(pids, "a") as f:
                f.write(f"{os.getpid()}\n")
            return round_trip(image, transform)

        patch.setattr(data, "_pil_round_trip", logged_round_trip)

        # the reference: AlterNet trained without a break, in folders of its own
        patch.setenv("BOOK_CHECKPOINT_DIR", str(tmp / "reference" / "checkpoints"))
        patch.setenv("BOOK_RUNS_DIR", str(tmp / "reference" / "runs"))
        reference = runs.trained("alternet", "paper")
        patch.setenv("BOOK_CHECKPOINT_DIR", str(tmp / "checkpoints"))
        patch.setenv("BOOK_RUNS_DIR", str(tmp / "runs"))

        fit = train.fit

        def fit_then_interrupt(*args, **kwargs):
            fit(*args, **kwargs, stop_after=train.Position(1, 2))  # saves at epoch 2, step 2, then stops
            raise Interrupted

        patch.setattr(train, "fit", fit_then_interrupt)
        with pytest.raises(Interrupted):
            runs.trained("alternet", "paper")
        state = runs.runs_root("paper") / runs.run_dir("alternet", "paper").name / "state.pt"
        saved_at = tuple(storage.load_torch(state)["position"])
        patch.setattr(train, "fit", fit)
        cast = load_runs(spec.RUNS, "paper", at="final")  # trains ResNet and ViT, resumes AlterNet
        yield {"tmp": tmp, "written": written, "cast": cast, "reference": reference, "saved_at": saved_at, "pids": pids}


def test_torchvision_files_are_read_as_the_paper_data_set(toy_paper):
    src = data.source("cifar100")
    assert src["kind"] == "torchvision-local" and "CIFAR-100" in src["description"]
    for split in ("train", "test"):
        images, labels = data.load("cifar100", split)
        written_images, written_labels = toy_paper["written"][split]
        assert torch.equal(images, torch.from_numpy(written_images).view(-1, 3, 32, 32))
        assert labels.tolist() == written_labels
    assert data.classes("cifar100")[:2] == ["class_00", "class_01"]


def test_the_cast_trained_two_epochs_with_the_paper_recipe(toy_paper):
    for role, model in toy_paper["cast"].items():
        run = model.book_run
        assert run["spec"]["dataset"] == "cifar100" and run["spec"]["model"] == TOY.roles[role]
        assert run["spec"]["recipe"] == TOY.recipe.key_dict()  # augment paper, RandAugment, Mixup/CutMix, clipping…
        assert run["train_images"] == CLASSES * TRAIN_PER_CLASS and run["test_images"] == CLASSES * TEST_PER_CLASS
        history = run["history"]
        assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in history)
        steps = CLASSES * TRAIN_PER_CLASS // TOY.recipe.batch_size
        assert history[0]["lr"] == pytest.approx(TOY.recipe.lr)  # the end of the linear warm-up: the peak
        assert history[1]["lr"] == pytest.approx(train.learning_rate(TOY.recipe, 2 * steps - 1, steps))  # cosine tail
        assert 0 < history[1]["lr"] < 0.1 * TOY.recipe.lr  # the last of 8 cosine steps: 4 % of the peak
        with torch.no_grad():
            assert model(data.normalize(toy_images(2), "cifar100")).shape == (2, CLASSES)
        for at in ("init", "warmup", "final"):
            assert (Path(run["dir"]) / f"{at}.safetensors").is_file()


def test_randaugment_ran_in_dataloader_worker_processes(toy_paper):
    pids = set(toy_paper["pids"].read_text().split())
    assert str(os.getpid()) not in pids, "RandAugment must run in the DataLoader's workers, not the training process"
    assert len(pids) >= TOY.recipe.num_workers


def test_an_interrupted_run_resumes_to_the_weights_of_an_unbroken_one(toy_paper):
    assert toy_paper["saved_at"] == (1, 2)  # interrupted in epoch 2, after its second step
    resumed, reference = toy_paper["cast"]["alternet"].book_run, toy_paper["reference"].book_run
    for at in ("final", "warmup", "init"):
        assert (Path(resumed["dir"]) / f"{at}.safetensors").read_bytes() == (Path(reference["dir"]) / f"{at}.safetensors").read_bytes(), at

    def without_timings(history):
        return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")} for h in history]

    assert without_timings(resumed["history"]) == without_timings(reference["history"])
    assert resumed["test"] == reference["test"]


def test_chapter_2_analyses_run_on_the_toy_paper_cast_to_a_verdict_file(toy_paper):
    from lib import cache

    cast = toy_paper["cast"]
    images, _ = runs.test_set("paper")
    sweep_images, sweep_labels = runs.test_set("paper", limit=TOY.analysis.sweep_images)
    store = cache.Cache(spec.CHAPTER, "paper")
    budget = verdict.budget(*cast.values(), images=len(images))
    assert budget["profile"] == "paper" and budget["epochs"] == [2]
    curves = {role: store.apply(f"fourier-{role}", fourier.relative_log_amplitude_curves, m, images, progress=False)
              for role, m in cast.items()}
    high_counts = spec.direction_counts({role: fourier.high_frequency(c) for role, c in curves.items()})
    variances = {role: store.apply(f"variance-{role}", variance.variance_by_depth, m, images, progress=False)
                 for role, m in cast.items()}
    variance_counts, growth = spec.direction_counts(variances), variance.stage_growth(variances["resnet"])
    outcomes = {role: store.apply(f"noise-{role}", robustness.noise_outcomes, m, sweep_images, sweep_labels,
                                  list(spec.FREQUENCIES), list(spec.NOISE_EPS), seed=0, progress=False)
                for role, m in cast.items()}
    initial = load_runs(spec.RUNS, "paper", at="init")
    assert set(initial) == set(cast)
    trends = {"resnet": trend.high_frequency_trend(cast["resnet"], images, bootstrap=20, progress=False)}
    checks = spec.checks(high_counts, variance_counts, growth, outcomes, trends=trends, budget=budget)
    table = verdict.record(spec.CHAPTER, "paper", checks, parts=spec.PARTS)
    assert len(table) == len(checks) > 0
    written = json.loads((toy_paper["tmp"] / "results" / "paper" / f"{spec.CHAPTER}.json").read_text())
    assert {c["id"] for c in written["checks"]} == set(checks)
    assert all(c["budget"]["profile"] == "paper" and c["budget"]["epochs"] == [2] for c in written["checks"])
    assert written["provenance"]["data_source"] == data.source("cifar100")  # the profile's data, not CIFAR-10's
    assert sorted(p.name for p in (toy_paper["tmp"] / "results" / "paper" / "cache" / spec.CHAPTER).glob("*.json"))
