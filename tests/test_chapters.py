"""A smoke run of every chapter: papermill executes it with ``profile="smoke"`` into a temp folder."""

from pathlib import Path

import pytest

from lib import book

# chapters waiting for their cpu caches live in drafts/ (outside the book and nbval); smoke-test them too
CHAPTERS = book.chapter_paths() + sorted((book.REPO / "drafts").glob("*.ipynb"))


def test_there_are_chapters():
    assert book.chapter_paths(), "no chapters found"


@pytest.mark.chapters
@pytest.mark.parametrize("notebook", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_in_smoke_profile(notebook: Path, tmp_path, smoke_cache, monkeypatch):
    monkeypatch.setenv("BOOK_TRAINING", "off")  # smoke trains regardless; nothing else may
    monkeypatch.setenv("BOOK_SMOKE_CACHE", str(smoke_cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / notebook.name
    # execute beside the real chapters so relative paths behave as in the book, writing elsewhere
    import papermill

    papermill.execute_notebook(str(notebook), str(out), parameters={"profile": "smoke", "device": "cpu", "seed": 0},
                               cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    assert out.exists()


REPLICATE_RUNS = [("01_flat_losses", {"seed": 1}), ("02_low_pass_msa", {"seed": 1}), ("03_stages_in_series", {"seed": 1}),
                  ("02_low_pass_msa", {"snapshot": "init"})]


@pytest.mark.chapters
@pytest.mark.parametrize("stem, parameters", REPLICATE_RUNS, ids=[f"{s}-{'-'.join(map(str, p.values()))}" for s, p in REPLICATE_RUNS])
def test_a_replicate_seed_or_an_earlier_snapshot_runs_the_chapter_on_what_its_checks_need(stem, parameters, tmp_path,
                                                                                         smoke_cache, monkeypatch):
    """The path ``python -m lib.book run --seed N`` / ``--at init`` takes: the page skips what no check reads and
    writes its own verdict file, which seed 0's final page combines."""
    import json

    import papermill

    from lib import paths

    monkeypatch.setenv("BOOK_TRAINING", "off")
    monkeypatch.setenv("BOOK_SMOKE_CACHE", str(smoke_cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = book.CHAPTERS / f"{stem}.ipynb"
    papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name),
                               parameters={"profile": "smoke", "device": "cpu", **parameters},
                               cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    written = paths.results_root("smoke", parameters.get("seed", 0), parameters.get("snapshot", "final")) / f"{stem}.json"
    checks = [c["id"] for c in json.loads(written.read_text())["checks"]]
    if stem == "01_flat_losses":  # the small-data and local-attention runs are seed 0's only
        assert checks == ["flatter_warmup", "flatter_final", "negative_warmup", "negative_final"]
    else:
        assert checks
