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
