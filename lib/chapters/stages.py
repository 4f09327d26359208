"""Chapter 3, "MSAs and Convs work in series, stage by stage": its runs, thresholds, methods beside the paper's, and checks.

Everything the chapter fixes before computing lives here; the notebook, the ledger and the
differences table read it.
"""

from __future__ import annotations

import math

import pandas as pd

from lib import profiles
from lib.chapters.base import CAST, Request
from lib.profiles import ROLE_LABELS
from lib.verdict import Check, Part

CHAPTER = "03_stages_in_series"
TITLE = "3 · stages in series"

RUNS = tuple(Request(role, role) for role in CAST)

START_SHARE = 0.75  # least share of ResNet stages whose start unit costs most when removed
EVERY = 1.0  # least share of stages (boundaries) where the variance builds up (falls back): all

# the moments of its runs the chapter can be measured at (python -m lib.book run --at …): the direction of travel
SNAPSHOTS = ("init", "warmup", "final")

CLAIM = "Multi-stage networks behave like a series of small models, and MSAs at the end of a stage matter most."
SCOPE = ("The cast trains for 12 epochs on CIFAR-10, one seed each; lesions and variances on the whole test set, "
         "CKA on 2,000 test images; the paper's lesion figure is a Swin on CIFAR-100.")
PARTS = (
    Part("In a CNN, the unit at the start of a stage matters most", "Fig 10",
         decide=("lesion_start_resnet",), ours=("start_costliest_resnet",)),
    Part("With MSAs at the ends of stages, those MSAs matter most", "Fig 10",
         decide=("lesion_end_msa_vs_msa_alternet",), ours=("lesion_end_msa_alternet", "lesion_middle_msa_vit")),
    Part("Unit outputs form one similarity (CKA) block per stage", "Fig 10",
         decide=("cka_blocks_resnet", "cka_blocks_alternet"), ours=("cka_blocks_matched_resnet", "cka_blocks_matched_alternet")),
    Part("Feature-map variance builds up within a stage and falls back at the start of the next", "Fig 9",
         decide=("variance_buildup_resnet", "variance_reset_downsampling_resnet", "variance_buildup_alternet",
                 "variance_reset_downsampling_alternet"),
         ours=("variance_reset_resnet", "variance_reset_alternet")),
)

# the lesion contrasts the chapter tests: (id, role, contrast of lib.analysis.stages.lesion_contrasts, claim)
LESION_CONTRASTS = (
    ("lesion_end_msa_vs_msa_alternet", "alternet", "end_msa_vs_other_msa",
     "AlterNet: removing an MSA at the end of a stage costs more than removing one of its other MSAs"),
    ("lesion_end_msa_alternet", "alternet", "end_msa_vs_middle",
     "AlterNet: removing an MSA at the end of a stage costs more than removing a mid-stage unit"),
    ("lesion_start_resnet", "resnet", "start_vs_rest",
     "ResNet: removing a stage's first unit costs more than removing one of its other units"),
    ("lesion_middle_msa_vit", "vit", "middle_msa_vs_other_msa",
     "ViT (control, issue #41): in a single-stage ViT the middle MSAs matter most"),
)


def methods(profile: str = "cpu") -> list[tuple[str, str, str]]:
    """``(what, paper, ours)`` rows of the chapter's methods under ``profile``."""
    a = profiles.get(profile).analysis
    return [
        ("lesion models", "Swin on CIFAR-100 (poster)", "ResNet, AlterNet and ViT of the cast"),
        ("lesion data", "test set", "whole test set, paired 95 % bootstrap"),
        ("stage-end MSAs compared with", "the other MSAs (read from the Swin's figure)",
         "the other MSAs; ours also: the mid-stage units of any kind"),
        ("CKA", "mini-batch CKA (no code released)", f"mini-batch linear CKA, {a.sweep_images:,} test images"),
    ]


def _interval(lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)``, kept even when undefined: a check whose interval is NaN never holds (a value alone is not enough)."""
    return (float(lo), float(hi))


def _row(frame: pd.DataFrame, role: str, column: str, key: str) -> pd.Series:
    rows = frame[(frame["role"] == role) & (frame[column] == key)]
    if len(rows) != 1:
        raise ValueError(f"expected one row for role {role!r} and {column} {key!r}, found {len(rows)}")
    return rows.iloc[0]


def _share_true(values: pd.Series) -> tuple[float, int, int]:
    """Share of true values, how many are true, of how many (NaN share for none)."""
    values = values.dropna().astype(bool)
    return (float(values.mean()) if len(values) else math.nan), int(values.sum()), len(values)


def _share_with_ties(table: pd.DataFrame) -> tuple[float, tuple[float, float] | None, str]:
    """Share of stages whose start costs most, ties counted against; with ties, the interval from against to for.

    A tie is neither a win nor a loss, so a check that a tie could decide must come out
    inconclusive: the interval (ties against, ties for) straddles the threshold exactly then.
    """
    compared = table[table["start_costliest"].notna() | table["tie"].astype(bool)]
    wins, ties, total = int((compared["start_costliest"] == 1.0).sum()), int(compared["tie"].sum()), len(compared)
    if not total:
        return math.nan, None, "0 of 0"
    words = f"{wins} of {total}" + (f", {ties} tied" if ties else "")
    return wins / total, ((wins / total, (wins + ties) / total) if ties else None), words


def checks(
    contrasts: pd.DataFrame,
    costliest: pd.DataFrame,
    blocks: pd.DataFrame,
    growth: pd.DataFrame,
    resets: pd.DataFrame,
    *,
    budgets: dict[str, dict],
    start_share: float = START_SHARE,
    every: float = EVERY,
) -> dict[str, Check]:
    """The chapter's checks by id, with the statistics and thresholds its prose fixes before computing them.

    Args:
        contrasts: ``lib.analysis.stages.lesion_contrasts`` of each model, with a ``role`` column.
        costliest: ``lib.analysis.stages.costliest_by_stage`` of each model, with a ``role`` column.
        blocks: ``lib.analysis.stages.block_contrasts`` of each model, with a ``role`` column.
        growth: ``lib.analysis.variance.stage_growth`` of each model, with a ``role`` column.
        resets: ``lib.analysis.stages.variance_resets`` of each model at both places a stage can
            start, with ``role`` and ``at`` columns (a frame without ``at`` is the ``"preserving"`` one).
        budgets: ``"lesion"``, ``"cka"`` and ``"variance"`` → role → ``lib.verdict.budget``.
        start_share: Least share of ResNet stages whose start unit costs most when removed.
        every: Least share of stages (boundaries) where the variance builds up (resets): all.
    """
    out = {}
    for key, role, name, claim in LESION_CONTRASTS:
        if name == "start_vs_rest":
            value, interval, words = _share_with_ties(costliest[costliest["role"] == role])
            out["start_costliest_resnet"] = Check(
                claim="ResNet: the unit at the start of a stage matters most",
                statistic=f"share of stages in which the first shape-preserving unit's removal costs strictly more "
                          f"accuracy than any other unit's (a tie gives a range: counted against to counted for) — {words}",
                value=value, op=">=", threshold=start_share, interval=interval, interval_kind="range over ties",
                budget=budgets["lesion"][role])
        row = _row(contrasts, role, "contrast", name)
        out[key] = Check(
            claim=claim,
            statistic=f"Δacc, points: {row['compares']} ({row['units_a']} vs {row['units_b']} units)",
            value=100 * row["value"], op="<", threshold=0.0, interval=_interval(100 * row["lo"], 100 * row["hi"]),
            budget=budgets["lesion"][role], note="control" if role == "vit" else "")
    for form, words in (("plain", "within-stage CKA − between-stage CKA, all pairs of units (stem left out)"),
                        ("matched", "within-stage CKA − between-stage CKA at equal distance between units, mean over "
                                    "distances")):
        for role in ("resnet", "alternet"):
            row = _row(blocks, role, "form", form)
            label = ROLE_LABELS[role]
            claim = (f"{label}: unit outputs form one CKA block per stage" if form == "plain"
                     else f"{label}: the CKA blocks remain at equal distance between units")
            key = f"cka_blocks_{role}" if form == "plain" else f"cka_blocks_matched_{role}"
            out[key] = Check(claim=claim, statistic=words, value=row["value"], op=">", threshold=0.0,
                             interval=_interval(row["lo"], row["hi"]), budget=budgets["cka"][role])
    at = resets["at"] if "at" in resets else pd.Series("preserving", index=resets.index)
    variance_rules = [
        ("variance_buildup", growth, "grows", "feature-map variance builds up within every stage",
         "share of stages whose last unit's variance exceeds the first shape-preserving unit's"),
        ("variance_reset_downsampling", resets[at == "downsampling"], "resets",
         "feature-map variance falls back at the block that opens each stage",
         "share of stage starts whose downsampling block's variance is below the previous stage's last unit's"),
        ("variance_reset", resets[at == "preserving"], "resets",
         "feature-map variance is still down at each stage's first shape-preserving unit",
         "share of stage starts whose first shape-preserving unit's variance is below the previous stage's last unit's"),
    ]
    for role in ("resnet", "alternet"):
        for tag, frame, column, claim, words in variance_rules:
            value, n, total = _share_true(frame.loc[frame["role"] == role, column])
            out[f"{tag}_{role}"] = Check(claim=f"{ROLE_LABELS[role]}: {claim}", statistic=f"{words} (95 % CIs apart) — {n} of {total}",
                                         value=value, op=">=", threshold=every, budget=budgets["variance"][role])
    return out
