"""The claims ledger is generated from the verdict files, and the committed copies are current."""

import json
import os
import re
from pathlib import Path

import pytest

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


def test_the_parts_gain_an_over_training_column_once_a_chapter_is_measured_at_an_earlier_snapshot(tmp_path, monkeypatch):
    from lib import chapters

    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    monkeypatch.setitem(chapters.base.REPLICATES, "cpu", (0, 1))
    parts = [verdict.Part("Part A", "Fig 1", decide=("a", "b"))]
    checks = lambda a, b: {"a": verdict.Check("A", "s", a, ">", 0.0), "b": verdict.Check("B", "s", b, "<", 0.0)}
    for seed in (0, 1):
        verdict.record("98_a", "cpu", checks(1.0, -1.0), parts=parts, seed=seed)
    assert ledger.travel(verdict.load_parts("cpu"), "cpu") is None
    assert "over training" not in ledger.render("cpu")  # nothing measured early: the table is as before
    verdict.record("98_a", "cpu", checks(-1.0, -1.0), parts=parts, at="init")  # seed 0: a rises, b stays
    verdict.record("98_a", "cpu", checks(2.0, -2.0), parts=parts, seed=1, at="init")  # seed 1: a falls, b rises (away from < 0)
    moving = ledger.travel(verdict.load_parts("cpu"), "cpu")
    assert moving == {("98_a", "Part A"): "1 of 2 seeds towards, 1 of 2 seeds away; 1 of 2 seeds away, 1 of 2 seeds flat"}
    row = next(line for line in ledger.render("cpu").splitlines() if line.startswith("| [") and "Part A" in line)
    assert row.endswith("| 1 of 2 seeds towards, 1 of 2 seeds away; 1 of 2 seeds away, 1 of 2 seeds flat |")


def test_the_ledger_says_how_many_holds_chance_could_give():
    rows = [{"value": "1 [0.5, 1.5]", "threshold": "> 0 (whole 95 % interval)"},
            {"value": "2 [1, 3]", "threshold": "> 0 (whole 95 % interval)"}, {"value": "0.75", "threshold": ">= 0.75"},
            {"value": "-1 [-2, -0.5]", "threshold": "< 0 (whole 95 % interval)"},
            {"value": "0.5 [0.5, 0.75]", "threshold": ">= 0.75 (whole range over ties)"}]  # not a sampling interval
    text = ledger.chance(rows)
    assert "makes 5 checks. 3 are decided by a 95 % interval" in text and "about 0.1 of them" in text


# ---------------------------------------------------------------- against a git ref: before/after tables


def _check(key, value, interval=None):
    return {"id": key, **verdict.Check(f"claim {key}", "s", value, ">", 0.0, interval=interval).row()}


def _part(text, *decide, outcome="holds"):
    return {"text": text, "figure": "Fig 1", "outcome": outcome, "decide": list(decide), "ours": []}


def _verdicts(folder, chapter, checks, parts):
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema": 3, "chapter": chapter, "profile": "cpu", "checks": checks, "parts": parts, "provenance": {}}
    (folder / f"{chapter}.json").write_text(json.dumps(doc, indent=1))


@pytest.fixture
def two_commits(tmp_path, monkeypatch, git):
    """A git repository whose second commit moves one check of each kind (and one part of each kind) from the first."""
    repo = tmp_path / "repo"
    folder = repo / "data" / "results" / "cpu"
    folder.mkdir(parents=True)
    git(repo, "init", "-q")
    _verdicts(folder, "01_a", [_check("same", 1.0, (0.5, 1.5)), _check("value", 2.0, (1.0, 3.0)),
                               _check("verdict", 1.0, (-0.5, 2.0)), _check("tiny", 1.0), _check("gone", 3.0)],
              [_part("P same", "same"), _part("P value", "value"), _part("P verdict", "verdict", outcome="inconclusive"),
               _part("P tiny", "tiny"), _part("P gone", "gone")])
    _verdicts(folder, "02_b", [_check("b_old", 1.0)], [_part("P b", "b_old")])  # a chapter only at the first commit
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    _verdicts(folder, "01_a", [_check("same", 1.0, (0.5, 1.5)), _check("value", 2.5, (1.5, 3.5)),
                               _check("verdict", 1.0, (0.5, 2.0)), _check("tiny", 1.0000001), _check("new", 4.0)],
              [_part("P same", "same"), _part("P value", "value"), _part("P verdict", "verdict"), _part("P tiny", "tiny"),
               _part("P new", "new")])
    (folder / "02_b.json").unlink()
    _verdicts(folder, "03_c", [_check("c_new", 1.0)], [_part("P c", "c_new")])  # a chapter only now
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(repo / "data" / "results"))
    return repo


def _moved_cell(text, label):
    """The ``moved`` cell of the one row whose second cell (a check's claim, a part's text) is ``label``."""
    hits = [line for line in text.splitlines() if line.startswith("| ") and line.split(" | ")[1] == label]
    assert len(hits) == 1, (label, hits)
    return hits[0].rstrip(" |").rsplit("| ", 1)[1].strip("*"), hits[0]


def test_against_a_ref_each_check_and_part_says_how_it_moved(two_commits):
    text = ledger.compare("HEAD~1", "cpu", root=two_commits)
    checks = {"same": "same", "value": "value", "verdict": "verdict", "tiny": "value", "gone": "gone", "b_old": "gone",
              "new": "new", "c_new": "new"}
    parts = {"P same": "same", "P value": "value", "P verdict": "verdict", "P tiny": "value", "P gone": "gone", "P b": "gone",
             "P new": "new", "P c": "new"}
    assert {key: _moved_cell(text, f"claim {key}")[0] for key in checks} == checks
    assert {label: _moved_cell(text, label)[0] for label in parts} == parts
    assert "| 1 [0.5, 1.5] | 1 [0.5, 1.5] | holds | holds | same |" in _moved_cell(text, "claim same")[1]
    assert "| 2 [1, 3] | 2.5 [1.5, 3.5] | holds | holds | **value** |" in _moved_cell(text, "claim value")[1]
    assert "| inconclusive | holds | **verdict** |" in _moved_cell(text, "claim verdict")[1]
    assert "| 1 | 1.0000001 |" in _moved_cell(text, "claim tiny")[1]  # digits enough to show the move
    assert "| – | 4 | – | holds | **new** |" in _moved_cell(text, "claim new")[1]
    assert "| 1 | – | holds | – | **gone** |" in _moved_cell(text, "claim b_old")[1]
    assert text.count("every check") == 3  # 01_a, 02_b (gone) and 03_c (new)
    assert text.rstrip("\n").splitlines()[-1] == ("8 checks: 1 same, 2 value, 1 verdict, 2 new, 2 gone; "
                                                  "8 parts: 1 same, 2 value, 1 verdict, 2 new, 2 gone")
    assert os.environ["BOOK_RESULTS_DIR"] == str(two_commits / "data" / "results")  # restored after reading the ref


def test_against_the_checked_out_commit_nothing_moved(two_commits):
    last = ledger.compare("HEAD", "cpu", root=two_commits).rstrip("\n").splitlines()[-1]
    assert last == "6 checks: 6 same, 0 value, 0 verdict, 0 new, 0 gone; 6 parts: 6 same, 0 value, 0 verdict, 0 new, 0 gone"


def test_a_mistyped_ref_is_an_error_naming_it(two_commits, capsys):
    with pytest.raises(ValueError, match=r"git ref 'HEAD~7' names no commit"):
        ledger.compare("HEAD~7", "cpu", root=two_commits)
    with pytest.raises(ValueError, match="'--help' names no commit"):
        ledger.compare("--help", "cpu", root=two_commits)
    with pytest.raises(SystemExit) as stop:
        ledger.main(["--against", "no-such-ref-xyz"])
    assert stop.value.code == 2 and "'no-such-ref-xyz' names no commit" in capsys.readouterr().err


def test_results_outside_the_repository_have_no_committed_version(two_commits, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="outside the repository"):
        ledger.compare("HEAD", "cpu", root=two_commits)


def test_without_against_the_command_rewrites_the_ledger_as_before(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(ledger, "write", lambda profile: calls.append(profile) or [Path("ledger.md")])
    monkeypatch.setattr(ledger, "compare", lambda *a, **k: pytest.fail("compare must not run without --against"))
    assert ledger.main([]) == 0 and ledger.main(["--profile", "paper"]) == 0
    assert calls == ["cpu", "paper"] and capsys.readouterr().out == "updated ledger.md\nupdated ledger.md\n"


def test_the_command_against_head_prints_the_tables_and_writes_nothing(monkeypatch, capsys):
    monkeypatch.delenv("BOOK_RESULTS_DIR", raising=False)
    monkeypatch.setattr(ledger, "write", lambda *a, **k: pytest.fail("--against must write nothing"))
    assert ledger.main(["--against", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## The ledger at `cpu`: `HEAD` (")
    assert re.fullmatch(r"\d+ checks: \d+ same, \d+ value, \d+ verdict, \d+ new, \d+ gone; "
                        r"\d+ parts: \d+ same, \d+ value, \d+ verdict, \d+ new, \d+ gone", out.rstrip("\n").splitlines()[-1])
