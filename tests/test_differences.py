"""The differences tables are generated from the profiles, so they follow what the chapters compute."""

import dataclasses

import pytest

from lib import book, differences, profiles


def test_chapter_table_has_the_shared_rows_then_the_chapters_methods():
    table = differences.table("02_low_pass_msa", "cpu")
    assert list(table.columns) == ["paper", "ours"]
    assert {"data", "epochs", "noise amplitude ε", "noise band mask"} <= set(table.index)
    assert "0.05, 0.1, 0.2, 0.7" in table.loc["noise amplitude ε", "ours"]
    assert "cifar100" in table.loc["data", "paper"]


def test_rows_read_the_profiles_analysis_sizes(monkeypatch):
    cpu = profiles.get("cpu")
    changed = dataclasses.replace(cpu, analysis=dataclasses.replace(cpu.analysis, hessian_batches=13))
    monkeypatch.setitem(profiles.PROFILES, "cpu", changed)
    rows = dict((what, ours) for what, _, ours in differences.methods("01_flat_losses", "cpu"))
    assert "13 batches" in rows["Hessian spectra"]


def test_every_chapter_for_the_ledger_and_a_clear_error_for_an_unknown_one():
    every = differences.table(None, "cpu")
    assert {"Hessian spectra", "Fourier data", "CKA"} <= set(every.index)
    with pytest.raises(ValueError, match="chapters:"):
        differences.methods("07_nope")


def test_alternet_rows_read_the_sweep_and_the_paper_ladder_matches_its_labels():
    rows = dict((what, ours) for what, _, ours in differences.methods("04_alternet", "cpu"))
    assert "2 %, 10 %, 100 %" in rows["small and large data"] and "3 at 2 %" in rows["small and large data"]
    assert "12 epochs (cast: 12)" in rows["build-up"] and "4 configurations" in rows["build-up"]
    assert "8 batches of 128" in rows["Hessian spectra"]
    from lib import sweeps

    paper = differences.paper_build_up()
    ours = {r.label for r in sweeps.plan("04_alternet", "cpu") if r.group == "build-up"}
    assert ours <= set(paper["label"])  # every configuration we train has the paper's number beside it
    assert paper.loc[paper["accuracy (%)"].idxmax(), "MSAs per stage"] == (0, 1, 1, 2)
    dropped = {msa for msa, on_path in zip(paper["MSAs per stage"], paper["on path"]) if not on_path}
    assert dropped == {(0, 0, 2, 2), (1, 1, 1, 2), (0, 2, 1, 2)}  # the steps the paper tried and did not keep


def test_the_ledger_lists_the_methods_of_the_chapters_in_the_book_only():
    assert all(differences.methods(chapter) for chapter in differences.method_chapters())
    in_book = {p.stem for p in book.chapter_paths()}
    rows = set(differences.table(None).index)
    assert ("landscape grid" in rows) == ("01_flat_losses" in in_book)
    assert ("build-up" in rows) == ("04_alternet" in in_book)  # a draft's rows wait until it is in the book
