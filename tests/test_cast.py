"""The committed ``cpu`` cast: every run a chapter loads is committed and reproduces its recorded metrics."""

import pytest
import torch

from lib import book, data, runs

_BY_RUN: dict[tuple, list[str]] = {}  # each distinct checkpoint once, with the chapters that load it
for _chapter, _wanted in book.CHAPTER_RUNS.items():
    for _run in _wanted:
        _key = tuple(sorted(item for item in _run.items() if item != ("at", "final")))  # "final" is the default
        _BY_RUN.setdefault(_key, []).append(_chapter)
RUNS = [("+".join(chapters), dict(items)) for items, chapters in _BY_RUN.items()]


@pytest.fixture(scope="module")
def test_set():
    return data.load("cifar10", "test")


@pytest.mark.slow
@pytest.mark.parametrize("chapter, run", RUNS, ids=['-'.join(map(str, r.values())) for _, r in RUNS])
def test_run_is_committed_and_reproduces_its_accuracy(chapter, run, test_set, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    run = dict(run)
    model = runs.trained(run.pop("role"), "cpu", **run)
    if run.get("at") == "init":  # the starting point: no metrics recorded; say how it was made
        assert model.book_run["init"]["how"]
        return
    recorded = model.book_run["test"][run.get("at", "final")]
    assert model.book_run["test_images"] == len(test_set[0])
    # channels_last convolutions score 10,000 images about 1.4x faster on a CPU; they round differently
    # from the contiguous ones the metrics were recorded with, well within the tolerances below
    measured = runs.evaluate(model.to(memory_format=torch.channels_last), *test_set)
    assert measured["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-3)
    assert measured["nll"] == pytest.approx(recorded["nll"], rel=1e-3)
