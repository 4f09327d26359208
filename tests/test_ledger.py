"""The claims ledger is generated from the verdict files, and the committed copies are current."""

import json

from lib import ledger, verdict


def test_committed_ledger_page_and_readme_match_the_verdict_files():
    assert (ledger.REPO / "ledger.md").read_text() == ledger.page("cpu"), (
        "ledger.md is stale or hand-edited: regenerate it with `python -m lib.ledger`")
    readme = ledger.README.read_text()
    assert ledger.render("cpu", links=False) in readme, "README's ledger block is stale: run `python -m lib.ledger`"
    headline = ledger.headline(verdict.load_parts("cpu"), ledger.rows("cpu"), "cpu")
    assert headline in ledger.INTRO_PAGE.read_text(), "intro.md's headline is stale: run `python -m lib.ledger`"


def test_one_row_per_part_and_every_check_folded_under_its_chapter(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("98_a", "cpu", {"a": verdict.Check("A holds", "s", 1.0, ">", 0.0, interval=(0.5, 1.5),
                                                      budget={"models": ["m"], "epochs": [12], "fractions": [0.1]})},
                   parts=[verdict.Part("Part A", "Fig 1", decide=("a",))])
    verdict.record("99_b", "cpu", {"b": verdict.Check("B", "s", -1.0, ">", 0.0), "c": verdict.Check("C | pipe", "s", 2.0, "<", 3.0)},
                   parts=[verdict.Part("Part B", "Fig 2", decide=("b", "c"))])
    text = ledger.render("cpu")
    part_rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert len(part_rows) == 2
    assert "Part A" in part_rows[0] and "**holds**" in part_rows[0] and "1 [0.5, 1.5]" in part_rows[0]
    assert "Part B" in part_rows[1] and "**contradicted**" in part_rows[1]  # one deciding check contradicted
    checks = [line for line in text.splitlines() if line.startswith("| ") and "decides" in line]
    assert len(checks) == 3 and "m; 12 ep; data 10 %" in checks[0] and "C \\| pipe" in checks[2]
    assert text.count("<details>") == 2
    assert "of the 2 parts of the paper's four claims, 1 hold, 0 are inconclusive and 1 are contradicted" in text
    assert "(from 3 checks: 2 hold, 0 are inconclusive and 1 are contradicted)" in text
    written = ledger.write("cpu", root=tmp_path)
    assert written == [tmp_path / "ledger.md"] and ledger.write("cpu", root=tmp_path) == []
    json.loads((tmp_path / "cpu" / "98_a.json").read_text())


def test_the_ledger_says_how_many_holds_chance_could_give():
    rows = [{"value": "1 [0.5, 1.5]", "threshold": "> 0 (whole 95 % interval)"},
            {"value": "2 [1, 3]", "threshold": "> 0 (whole 95 % interval)"}, {"value": "0.75", "threshold": ">= 0.75"},
            {"value": "-1 [-2, -0.5]", "threshold": "< 0 (whole 95 % interval)"},
            {"value": "0.5 [0.5, 0.75]", "threshold": ">= 0.75 (whole range over ties)"}]  # not a sampling interval
    text = ledger.chance(rows)
    assert "makes 5 checks. 3 are decided by a 95 % interval" in text and "about 0.1 of them" in text
