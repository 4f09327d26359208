"""The claims ledger is generated from the verdict files, and the committed copies are current."""

import json

from lib import ledger, verdict


def test_committed_ledger_page_and_readme_match_the_verdict_files():
    assert (ledger.REPO / "ledger.md").read_text() == ledger.page("cpu"), (
        "ledger.md is stale or hand-edited: regenerate it with `python -m lib.ledger`")
    readme = ledger.README.read_text()
    assert ledger.render("cpu", links=False) in readme, "README's ledger block is stale: run `python -m lib.ledger`"


def test_one_row_per_recorded_check(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("98_a", "cpu", {"a": verdict.Check("A holds", "s", 1.0, ">", 0.0, interval=(0.5, 1.5),
                                                      budget={"models": ["m"], "epochs": [12], "fractions": [0.1]})})
    verdict.record("99_b", "cpu", {"b": verdict.Check("B", "s", -1.0, ">", 0.0), "c": verdict.Check("C | pipe", "s", 2.0, "<", 3.0)})
    text = ledger.render("cpu")
    table = [line for line in text.splitlines() if line.startswith("| [")]
    assert len(table) == 3
    assert "**holds**" in table[0] and "1 [0.5, 1.5]" in table[0] and "m; 12 ep; data 10 %" in table[0]
    assert "**contradicted**" in table[1] and "C \\| pipe" in table[2]
    assert "2 of 3 checks hold, 0 are inconclusive and 1 are contradicted" in text
    written = ledger.write("cpu", root=tmp_path)
    assert written == [tmp_path / "ledger.md"] and ledger.write("cpu", root=tmp_path) == []
    json.loads((tmp_path / "cpu" / "98_a.json").read_text())
