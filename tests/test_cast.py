"""The committed ``cpu`` cast: every run a chapter loads is committed and reproduces its recorded metrics."""

import pytest

from lib import book, data, runs

RUNS = [(chapter, run) for chapter, wanted in book.CHAPTER_RUNS.items() for run in wanted]


@pytest.fixture(scope="module")
def test_set():
    return data.load("cifar10", "test")


@pytest.mark.slow
@pytest.mark.parametrize("chapter, run", RUNS, ids=[f"{c}-{'-'.join(map(str, r.values()))}" for c, r in RUNS])
def test_run_is_committed_and_reproduces_its_accuracy(chapter, run, test_set, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")
    run = dict(run)
    model = runs.trained(run.pop("role"), "cpu", **run)
    recorded = model.book_run["test"]["final"]
    assert model.book_run["test_images"] == len(test_set[0])
    measured = runs.evaluate(model, *test_set)
    assert measured["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-3)
    assert measured["nll"] == pytest.approx(recorded["nll"], rel=1e-3)
