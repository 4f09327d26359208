"""The committed ``cpu`` cast: every run a chapter loads is committed and reproduces its recorded scores.

Each checkpoint is scored on a fixed, class-balanced 1,000 of the test images (channels_last,
the fast layout on a CPU) against the scores recorded for it in ``tests/data/cast_scores.json``;
one checkpoint, the cast's ResNet, is also scored on the whole test set against its ``meta.json``,
end to end. Scoring all 10,000 images for every checkpoint took 955 s of the unit-test stage on a
2-core AVX2 CPU.

The cast's replicate seeds (``lib.chapters.SEED_RUNS``) are scored the same way once committed.
Record a new or retrained run (the file names each run's full-test accuracy, so a stale entry
is caught): ``python tests/test_cast.py --record`` (``--all`` re-scores every run).
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from lib import chapters, runs

SCORES = Path(__file__).with_name("data") / "cast_scores.json"
SUBSET = 1000  # class-balanced test images per checkpoint
# Another CPU rounds the logits differently: an image near the decision boundary may flip.
ACCURACY_TOLERANCE = 2 / SUBSET  # two images
NLL_TOLERANCE = 1e-3  # relative

_BY_RUN: dict[tuple, list[str]] = {}  # each distinct checkpoint once, with the chapters that load it
for _chapter, _wanted in chapters.CHAPTER_RUNS.items():
    for _run in _wanted:
        _key = tuple(sorted(item for item in _run.items() if item != ("at", "final")))  # "final" is the default
        _BY_RUN.setdefault(_key, []).append(_chapter)
RUNS = [("+".join(names), dict(items)) for items, names in _BY_RUN.items()]
# the cast's replicate seeds, once committed (until then ``python -m lib.runs list`` shows what is missing)
RUNS += [("seeds", run) for run in chapters.SEED_RUNS
         if (runs.run_dir(run["role"], "cpu", seed=run["seed"]) / "final.safetensors").exists()]


def _id(run: dict) -> str:
    return "-".join(map(str, run.values()))


def _score(model, images, labels) -> dict:
    return runs.evaluate(model.to(memory_format=torch.channels_last), images, labels)


@pytest.fixture(scope="module")
def subset():
    return runs.test_set("cpu", limit=SUBSET)


@pytest.fixture(scope="module")
def recorded():
    if not SCORES.exists():
        pytest.fail(f"{SCORES} is missing; record it with: python tests/test_cast.py --record")
    return json.loads(SCORES.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("chapter, run", RUNS, ids=[_id(r) for _, r in RUNS])
def test_run_is_committed_and_reproduces_its_scores(chapter, run, subset, recorded, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    name, run = _id(run), dict(run)
    model = runs.trained(run.pop("role"), "cpu", **run)
    if run.get("at") == "init":  # the starting point: no metrics recorded; say how it was made
        assert model.book_run["init"]["how"]
        return
    at = run.get("at", "final")
    entry = recorded.get(name)
    assert entry, f"no recorded scores for {chapter}'s run {run}; record them with: python tests/test_cast.py --record"
    assert model.book_run["test"][at]["accuracy"] == entry["full_test_accuracy"], (
        "the committed run changed since its scores were recorded; re-record with: python tests/test_cast.py --record")
    measured = _score(model, *subset)
    assert len(subset[0]) == entry["images"]
    assert measured["accuracy"] == pytest.approx(entry["accuracy"], abs=ACCURACY_TOLERANCE)
    assert measured["nll"] == pytest.approx(entry["nll"], rel=NLL_TOLERANCE)


@pytest.mark.slow
def test_the_cast_resnet_reproduces_its_recorded_whole_test_set_metrics(monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    model = runs.trained("resnet", "cpu")
    images, labels = runs.test_set("cpu")
    assert model.book_run["test_images"] == len(images)
    # channels_last rounds differently from the layout the metrics were recorded with, well within these
    measured = _score(model, images, labels)
    assert measured["accuracy"] == pytest.approx(model.book_run["test"]["final"]["accuracy"], abs=1e-3)
    assert measured["nll"] == pytest.approx(model.book_run["test"]["final"]["nll"], rel=1e-3)


def _record(everything: bool = False) -> None:
    """Score the checkpoints with no (or a stale) entry on the subset, or ``everything``, into ``tests/data/cast_scores.json``."""
    images, labels = runs.test_set("cpu", limit=SUBSET)
    out = {} if everything or not SCORES.exists() else json.loads(SCORES.read_text())
    for _, run in RUNS:
        if run.get("at") == "init":
            continue
        kwargs = dict(run)
        model = runs.trained(kwargs.pop("role"), "cpu", **kwargs)
        entry = out.get(_id(run))
        if entry and entry["full_test_accuracy"] == model.book_run["test"][run.get("at", "final")]["accuracy"]:
            continue
        scores = _score(model, images, labels)
        out[_id(run)] = {"accuracy": scores["accuracy"], "nll": scores["nll"], "images": len(images),
                         "full_test_accuracy": model.book_run["test"][run.get("at", "final")]["accuracy"]}
        print(_id(run), out[_id(run)], flush=True)
    SCORES.parent.mkdir(exist_ok=True)
    SCORES.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] not in (["--record"], ["--record", "--all"]):
        raise SystemExit("usage: python tests/test_cast.py --record [--all]  (new or retrained runs; --all: every run)")
    _record(everything=sys.argv[2:] == ["--all"])
