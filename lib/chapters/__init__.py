"""The chapters' specs: one module per chapter holds its runs, fixed statistics, thresholds and checks.

A chapter's notebook tells the story and calls its spec (``lib.chapters.flat_losses`` for
``01_flat_losses``, …); the ledger, the differences table, ``make plan``, the sweeps and the cast
test read the same specs. Adding a chapter means one spec module, one entry in :data:`SPECS` and
one notebook.

A spec module defines ``CHAPTER`` (the notebook's stem), ``TITLE`` (its short name in the
ledger) and ``RUNS`` (:class:`~lib.chapters.base.Request` values); a chapter with verdicts adds
``methods(profile)`` (its settings beside the paper's) and ``checks(...)``, which returns its
:class:`lib.verdict.Check` values keyed by a stable id; a chapter with a sweep adds ``SWEEP``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from lib.chapters import alternet, cast, flat_losses, low_pass, stages
from lib.chapters.base import (CAST, REPLICATES, SEEDS, Request, Sweep, drawn_seeds, full_page, load_runs,
                               replicate_seeds)

__all__ = ["CAST", "SEEDS", "REPLICATES", "replicate_seeds", "drawn_seeds", "full_page", "SEED_RUNS", "Request", "Sweep", "SPECS", "CHAPTER_RUNS", "spec", "load_runs", "loaded_folders"]

SPECS: dict[str, ModuleType] = {m.CHAPTER: m for m in (cast, flat_losses, low_pass, stages, alternet)}


def spec(chapter: str) -> ModuleType:
    """The spec module of ``chapter`` (its notebook's stem)."""
    if chapter not in SPECS:
        raise ValueError(f"no spec for chapter {chapter!r}; chapters with a spec: {sorted(SPECS)}")
    return SPECS[chapter]


# The trained runs each chapter loads through ``lib.runs.trained`` (role and keyword arguments).
# Under ``cpu`` every one must be committed; tests/test_cast.py checks that they are.
CHAPTER_RUNS: dict[str, list[dict]] = {
    name: [{"role": r.role, **({"at": r.at} if r.at != "final" else {}), **r.kwargs()} for r in m.RUNS]
    for name, m in SPECS.items()
}

# The cast's replicate seeds (whole training set, every snapshot), trained one at a time with
# ``python -m lib.runs train ROLE --profile cpu --seed S``; tests/test_cast.py scores each one committed.
SEED_RUNS: list[dict] = [{"role": role, "seed": seed} for seed in SEEDS[1:] for role in CAST]


def loaded_folders(profile: str) -> set[Path]:
    """The committed run folders some chapter loads under ``profile`` (seed 0, as the chapters run)."""
    from lib import runs

    return {runs.run_dir(r.role, profile, **r.kwargs()) for m in SPECS.values() for r in m.RUNS}
