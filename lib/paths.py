"""Where the book reads and writes, and the environment variables that move it: one place.

Every folder the book uses is a function of the repository root and one ``BOOK_*`` variable,
so tests and users can point any of them elsewhere. This module imports nothing from the book,
so the science modules (``data``, ``models``, ``analysis``, ``train``) and the book layer can
both use it.

=====================  ====================================================  ===========================
variable               what it moves                                         default
=====================  ====================================================  ===========================
``BOOK_DATA_DIR``      data sets and their decoded caches                    ``data/``
``BOOK_CHECKPOINT_DIR`` committed run checkpoints (per profile)              ``data/checkpoints/``
``BOOK_RUNS_DIR``      resume states of trainings (git-ignored)              ``data/runs/``
``BOOK_RESULTS_DIR``   verdict files and cached analyses (per profile)       ``data/results/``
``BOOK_SMOKE_CACHE``   everything of the ``smoke`` profile                   a temporary folder
``BOOK_TRAINING``      ``off``: never train, never rebuild a cache (tests)   ``on``
``BOOK_CIFAR10_ARCHIVE`` a CIFAR-10 archive in the shared JPEG layout        (see ``lib.data``)
``BOOK_PRECISION``     ``bf16``/``fp32`` training (see ``lib.train``)        ``auto``
=====================  ====================================================  ===========================
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["REPO", "CHAPTERS", "SHARED", "chapter_paths", "data_dir", "checkpoint_root", "runs_root", "results_root", "smoke_root",
           "training_enabled", "verify_ref"]

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = REPO / "chapters"
SHARED = REPO.parent / "shared"  # the project's shared folder beside the checkout (the offline CIFAR-10 archive)


def chapter_paths(names: list[str] | None = None) -> list[Path]:
    """The chapter notebooks in reading order, or those named (by stem or prefix, e.g. ``00``)."""
    every = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        hits = [p for p in every if p.stem == name or p.stem.startswith(name)]
        if not hits:
            raise SystemExit(f"no chapter matches {name!r}; chapters: {[p.stem for p in every]}")
        chosen += hits
    return chosen


def verify_ref(ref: str, root: Path = REPO) -> str:
    """The full SHA of the commit git ref ``ref`` names in the repository at ``root``, so a mistyped ref fails early, by name.

    Raises:
        ValueError: ``ref`` names no commit there (``git rev-parse --verify REF^{commit}`` finds none).
    """
    done = None
    if ref and not ref.startswith("-"):  # a leading dash would read as an option of git
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                              capture_output=True, text=True, timeout=30)
    if done is None or done.returncode != 0 or not done.stdout.strip():
        raise ValueError(f"git ref {ref!r} names no commit of the repository at {root} "
                         f"(`git rev-parse --verify {ref}^{{commit}}` finds none): a branch, a tag, a SHA or e.g. HEAD~1")
    return done.stdout.strip()


def _folder(variable: str, default: Path) -> Path:
    """The folder a variable names (a relative one is taken from the checkout, as every process sees it), or the default."""
    value = os.environ.get(variable)
    return REPO / Path(value).expanduser() if value else default


def training_enabled() -> bool:
    """False under ``BOOK_TRAINING=off`` (tests, CI): nothing of ``cpu``/``paper`` is trained or recomputed."""
    return os.environ.get("BOOK_TRAINING", "on").lower() not in ("off", "0", "false", "no")


_smoke_dir: Path | None = None


def smoke_root() -> Path:
    """Where ``smoke`` runs live: ``BOOK_SMOKE_CACHE`` if set, else a temporary folder of this process.

    Per process by default, so a smoke run never picks up a checkpoint made by older code.
    """
    global _smoke_dir
    if os.environ.get("BOOK_SMOKE_CACHE"):
        return Path(os.environ["BOOK_SMOKE_CACHE"])
    if _smoke_dir is None:
        _smoke_dir = Path(tempfile.mkdtemp(prefix="book-smoke-"))
        atexit.register(shutil.rmtree, _smoke_dir, ignore_errors=True)
    return _smoke_dir


def data_dir() -> Path:
    """The data folder: ``$BOOK_DATA_DIR`` if set, else the repository's ``data/``."""
    return _folder("BOOK_DATA_DIR", REPO / "data")


def checkpoint_root(profile: str) -> Path:
    """Committed checkpoints of ``profile``; ``smoke`` runs live in a temporary folder instead."""
    if profile == "smoke":
        return smoke_root() / "checkpoints"
    return _folder("BOOK_CHECKPOINT_DIR", REPO / "data" / "checkpoints") / profile


def runs_root(profile: str) -> Path:
    """Resume states of ``profile``'s trainings (git-ignored)."""
    if profile == "smoke":
        return smoke_root() / "runs"
    return _folder("BOOK_RUNS_DIR", REPO / "data" / "runs") / profile


SNAPSHOTS = ("init", "warmup", "final")  # the moments of a run a chapter can be measured at


def results_root(profile: str, seed: int = 0, at: str = "final") -> Path:
    """Verdict files and cached analyses of ``profile``; for ``smoke``, the temporary folder.

    A replicate training seed's (``seed`` ≠ 0) live in ``seed<N>/`` under it, and a chapter
    measured at an earlier snapshot of its runs (``at`` = ``"init"`` or ``"warmup"``) in
    ``at-<snapshot>/`` under that, in the same layout.
    """
    if profile == "smoke":
        root = smoke_root() / "results"
    else:
        root = _folder("BOOK_RESULTS_DIR", REPO / "data" / "results") / profile
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if at not in SNAPSHOTS:
        raise ValueError(f"at={at!r} is not a snapshot of a run; valid: {list(SNAPSHOTS)}")
    root = root if seed == 0 else root / f"seed{seed}"
    return root if at == "final" else root / f"at-{at}"
