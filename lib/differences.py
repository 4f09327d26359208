"""How the book's measurements differ from the paper's: generated tables for each chapter and the ledger.

:func:`lib.profiles.differences` covers what every chapter shares (data, models, recipe); each
chapter's spec (``lib.chapters.<name>.methods``) adds the rows of its own methods, with the
paper's settings (the book's Methods appendix) beside ours, read from the profile
(:class:`lib.profiles.Analysis`) so the table cannot drift from what the chapter computes.
"""

from __future__ import annotations

import pandas as pd

from lib import chapters, profiles

__all__ = ["method_chapters", "methods", "paper_build_up", "table"]


def method_chapters() -> list[str]:
    """The chapters whose spec has method rows, in the book's order."""
    return [name for name, m in chapters.SPECS.items() if hasattr(m, "methods")]


def methods(chapter: str, profile: str = "cpu") -> list[tuple[str, str, str]]:
    """``(what, paper, ours)`` rows of one chapter's methods under ``profile``."""
    if chapter not in method_chapters():
        raise ValueError(f"no method differences for chapter {chapter!r}; chapters: {method_chapters()}")
    return chapters.spec(chapter).methods(profile)


def paper_build_up() -> pd.DataFrame:
    """The paper's CIFAR-100 build-up (``lib.chapters.alternet.PAPER_BUILD_UP``), labelled as ``lib.sweeps`` labels its runs.

    ``on path``: the configuration leads to the final AlterNet (no stage holds more MSAs than it does);
    the others are the steps the paper tried and dropped.
    """
    from lib import sweeps

    rows = chapters.alternet.PAPER_BUILD_UP
    final = max(rows, key=lambda row: row[2])[0]
    return pd.DataFrame([{"label": sweeps.msa_label(msa), "MSAs per stage": msa, "added": added, "accuracy (%)": acc,
                          "on path": all(m <= f for m, f in zip(msa, final))} for msa, added, acc in rows])


def table(chapter: str | None = None, profile: str = "cpu") -> pd.DataFrame:
    """The paper's settings beside ours: shared rows (data, models, recipe), then ``chapter``'s methods.

    With ``chapter=None``, the method rows of every chapter in the book, not drafts (for the ledger).
    """
    shared = profiles.differences(profile if profile != "paper" else "cpu")
    shared.columns = ["paper", "ours"]
    if chapter:
        names = [chapter]
    else:  # the chapters in the book (not drafts) that have method rows
        from lib.paths import chapter_paths

        names = [p.stem for p in chapter_paths() if p.stem in method_chapters()]
    extra = [(what, paper, ours) for c in names for what, paper, ours in methods(c, profile)]
    more = pd.DataFrame(extra, columns=["", "paper", "ours"]).set_index("")
    return pd.concat([shared, more])
