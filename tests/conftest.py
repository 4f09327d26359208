"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    """One ``smoke`` folder per test module, so its tiny models train once, not per test.

    Sets ``BOOK_SMOKE_CACHE`` to it and ``BOOK_TRAINING=off`` (``smoke`` trains regardless;
    nothing of ``cpu``/``paper`` may) for the module's tests, and yields the folder.
    """
    folder = tmp_path_factory.mktemp("smoke")
    patch = pytest.MonkeyPatch()
    patch.setenv("BOOK_SMOKE_CACHE", str(folder))
    patch.setenv("BOOK_TRAINING", "off")
    yield folder
    patch.undo()


@pytest.fixture
def git():
    """``git(repo, *args)``: run git in ``repo`` as a test author (no signing, no global config), failing loudly."""
    import subprocess

    def run(repo, *args):
        subprocess.run(["git", "-c", "user.name=Book test", "-c", "user.email=test@example.invalid", "-c",
                        "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True)

    return run
