"""The chapters' registry: which trained runs each chapter loads.

The one list the cast test, ``make plan`` and the sweeps read (a sweep never moves the weights
of a run that a chapter loads out of the committed checkpoints).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CAST", "CHAPTER_RUNS", "loaded_folders"]

CAST = ("resnet", "vit", "alternet")

# The trained runs each chapter loads through ``lib.runs.trained`` (role and keyword arguments).
# Under ``cpu`` every one must be committed; tests/test_cast.py checks that they are.
CHAPTER_RUNS: dict[str, list[dict]] = {
    "00_cast": [{"role": role} for role in CAST],
    "01_flat_losses": [{"role": "resnet"}, {"role": "vit"}, {"role": "resnet", "at": "warmup"}, {"role": "vit", "at": "warmup"},
                       {"role": "vit", "fraction": 0.02}, {"role": "vit", "fraction": 0.1},
                       {"role": "vit", "local": 3}, {"role": "vit", "local": 5}],
    "02_low_pass_msa": [{"role": role, "at": at} for role in CAST for at in ("final", "init")],
    "03_stages_in_series": [{"role": role} for role in CAST],
    # the AlterNet and its baseline at seed 0 on the whole training set, the runs Chapter 4 analyses
    "04_alternet": [{"role": role, "at": at} for role in ("alternet", "preresnet") for at in ("final", "warmup")],
}


def loaded_folders(profile: str) -> set[Path]:
    """The committed run folders some chapter loads under ``profile`` (seed 0, as the chapters run)."""
    from lib import runs

    out = set()
    for wanted in CHAPTER_RUNS.values():
        for request in wanted:
            request = {k: v for k, v in request.items() if k != "at"}
            out.add(runs.run_dir(request.pop("role"), profile, **request))
    return out
