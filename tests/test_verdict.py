"""Verdicts are decided by the comparison and the interval, and written in the fixed schema."""

import json
import math

import pytest

from lib import verdict


def test_holds_needs_the_value_and_the_whole_interval_on_the_claimed_side():
    assert verdict.Check("c", "s", 0.3, ">", 0.0).holds
    assert verdict.Check("c", "s", 0.3, ">", 0.0, interval=(0.1, 0.5)).holds
    assert not verdict.Check("c", "s", 0.3, ">", 0.0, interval=(-0.1, 0.5)).holds
    assert not verdict.Check("c", "s", -0.3, ">", 0.0).holds
    assert verdict.Check("c", "s", 0.5, ">=", 0.5).holds and not verdict.Check("c", "s", 0.5, ">", 0.5).holds
    assert not verdict.Check("c", "s", float("nan"), "<", 1.0).holds


def test_bad_comparisons_and_intervals_are_rejected():
    with pytest.raises(ValueError, match="valid:"):
        verdict.Check("c", "s", 1.0, "==", 0.0)
    with pytest.raises(ValueError, match="lo ≤ hi"):
        verdict.Check("c", "s", 1.0, ">", 0.0, interval=(2.0, 1.0))


def test_record_writes_the_schema_and_returns_a_rounded_table(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    checks = {
        "low_pass": verdict.Check("MSAs are low-pass", "share of MSA units lowering ΔlogA", 0.833333, ">=", 0.5,
                                  budget={"profile": "cpu"}),
        "flatter": verdict.Check("flatter", "median difference", -0.123456, "<", 0.0, interval=(-0.2, 0.01)),
    }
    shown = verdict.record("99_test", "cpu", checks)
    assert shown["value"].tolist() == ["0.833", "-0.123"]
    assert shown["verdict"].tolist() == ["holds", "inconclusive"]
    assert shown["95 % interval"].tolist() == ["", "[-0.2, 0.01]"]
    doc = json.loads((tmp_path / "cpu" / "99_test.json").read_text())
    assert [c["id"] for c in doc["checks"]] == ["low_pass", "flatter"] and doc["schema"] == 3
    assert set(doc["checks"][0]) == {"id", "claim", "statistic", "value", "interval", "threshold", "holds", "outcome",
                                     "resolution", "note", "budget"}
    assert doc["checks"][1]["outcome"] == "inconclusive" and doc["checks"][1]["resolution"] == pytest.approx(0.105)
    assert doc["checks"][1]["interval"] == [-0.2, 0.01] and doc["checks"][1]["holds"] is False
    assert {"git_sha", "data_source", "versions", "cpu"} <= set(doc["provenance"])
    ledger = verdict.load("cpu")
    assert ledger["chapter"].tolist() == ["99_test", "99_test"]


def test_record_needs_checks_keyed_by_id(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    with pytest.raises(TypeError, match="map each check's id"):
        verdict.record("99_test", "cpu", [verdict.Check("a", "s", 1.0, ">", 0.0)])
    with pytest.raises(ValueError, match="at least one check"):
        verdict.record("99_test", "cpu", {})


def test_an_undefined_interval_never_holds():
    assert not verdict.Check("c", "s", 0.3, ">", 0.0, interval=(float("nan"), float("nan"))).holds


@pytest.mark.parametrize("op, threshold, value, interval, expected", [
    # an interval wholly on the claimed side, wholly on the other, straddling
    (">", 0.0, 1.0, (0.5, 1.5), "holds"),
    (">", 0.0, -1.0, (-1.5, -0.5), "contradicted"),
    (">", 0.0, 0.2, (-0.5, 0.9), "inconclusive"),
    ("<", 0.0, -1.0, (-1.5, -0.5), "holds"),
    ("<", 0.0, 1.0, (0.5, 1.5), "contradicted"),
    # an interval touching the threshold: a strict claim is not shown, nor contradicted
    (">", 0.0, 0.5, (0.0, 1.0), "inconclusive"),
    (">", 0.0, -0.5, (-1.0, 0.0), "inconclusive"),
    (">=", 0.0, 0.5, (0.0, 1.0), "holds"),
    ("<=", 0.02, 0.0, (-0.1, 0.02), "holds"),
    # a non-inferiority margin: the interval may include 0 but not reach below −margin
    (">=", -1.0, -0.25, (-0.76, 0.26), "holds"),
    (">=", -1.0, 0.5, (-1.45, 2.5), "inconclusive"),
    (">=", -1.0, -2.0, (-3.0, -1.2), "contradicted"),
    # point values: a tie under a strict comparison is reported as inconclusive, not as either side
    (">", 0.0, 0.0, None, "inconclusive"),
    (">=", 0.75, 0.75, None, "holds"),
    (">=", 0.75, 0.5, None, "contradicted"),
    ("<", 0.0, -3.63, None, "holds"),
    # undefined numbers decide nothing
    (">", 0.0, float("nan"), None, "inconclusive"),
    (">", 0.0, 1.0, (float("nan"), float("nan")), "inconclusive"),
    ("<", 0.0, -1.0, (-2.0, float("nan")), "inconclusive"),
])
def test_three_way_outcome_on_ties_borderline_intervals_each_side_and_nan(op, threshold, value, interval, expected):
    check = verdict.Check("c", "s", value, op, threshold, interval=interval)
    assert check.outcome == expected
    assert check.holds == (expected == "holds")


def test_a_range_over_ties_decides_like_an_interval_but_is_not_one():
    """A count that ties can move: (ties against, ties for) decides the outcome, but has no resolution and says what it is."""
    tied = verdict.Check(claim="c", statistic="s", value=0.5, op=">=", threshold=0.75, interval=(0.5, 0.75),
                 interval_kind="range over ties")
    assert tied.outcome == verdict.INCONCLUSIVE and tied.rule == ">= 0.75 (whole range over ties)"
    assert math.isnan(tied.resolution) and tied.row()["resolution"] is None
    assert verdict.Check(claim="c", statistic="s", value=0.5, op=">=", threshold=0.75, interval=(0.5, 0.5),
                 interval_kind="range over ties").outcome == verdict.CONTRADICTED


def test_resolution_is_half_the_interval():
    assert verdict.Check("c", "s", 0.0, ">", 0.0, interval=(-1.0, 3.0)).resolution == 2.0
    assert math.isnan(verdict.Check("c", "s", 0.0, ">", 0.0).resolution)


def _checks(*outcomes):
    """Checks with the given outcomes, ids a, b, c … (a point value above, below or tied with 0)."""
    value = {"holds": 1.0, "contradicted": -1.0, "inconclusive": 0.0}
    return {chr(97 + i): verdict.Check("c", "s", value[o], ">", 0.0) for i, o in enumerate(outcomes)}


@pytest.mark.parametrize("outcomes, expected", [
    (("holds", "holds"), "holds"),
    (("holds", "inconclusive"), "inconclusive"),
    (("holds", "contradicted"), "contradicted"),
    (("inconclusive", "contradicted"), "contradicted"),
    (("inconclusive",), "inconclusive"),
])
def test_a_part_holds_only_when_every_deciding_check_holds(outcomes, expected):
    checks = _checks(*outcomes)
    assert verdict.Part("p", "Fig 1", decide=tuple(checks)).outcome(checks) == expected


def test_checks_of_ours_do_not_decide_a_part():
    checks = _checks("holds", "contradicted")
    assert verdict.Part("p", "Fig 1", decide=("a",), ours=("b", "z")).outcome(checks) == "holds"
    assert verdict.Part("p", "Fig 1", decide=("a",), ours=("b", "z")).row(checks)["ours"] == ["b"]  # z: not produced
    with pytest.raises(ValueError, match="deciding checks"):
        verdict.Part("p", "Fig 1", decide=("z",)).outcome(checks)


def test_record_needs_every_check_in_exactly_one_part(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    checks = _checks("holds", "holds")
    with pytest.raises(ValueError, match=r"not in any \['b'\]"):
        verdict.record("99_test", "cpu", checks, parts=[verdict.Part("p", "Fig 1", decide=("a",))])
    with pytest.raises(ValueError, match=r"in several \['a'\]"):
        verdict.record("99_test", "cpu", checks, parts=[verdict.Part("p", "F", decide=("a", "b")), verdict.Part("q", "F", decide=("a",))])
    verdict.record("99_test", "cpu", checks, parts=[verdict.Part("p", "Fig 1", decide=("a",), ours=("b",))])
    assert verdict.load_parts("cpu") == [{"chapter": "99_test", "text": "p", "figure": "Fig 1", "outcome": "holds",
                                          "decide": ["a"], "ours": ["b"]}]


def test_the_glance_box_names_each_part_and_its_verdict_in_words():
    checks = _checks("holds", "contradicted")
    box = verdict.glance(checks, [verdict.Part("Part one", "Fig 1", decide=("a",)), verdict.Part("Part two", "Fig 2", decide=("b",))],
                         claim="The claim.", scope="One seed.")
    assert "The claim." in box and "One seed." in box and "1 holds, 0 inconclusive, 1 contradicted" in box
    assert box.index("Part one") < box.index("Part two") and ">holds</span>" in box and ">contradicted</span>" in box


def test_a_part_none_of_whose_deciding_checks_was_made_is_left_out_and_one_made_in_part_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    checks = _checks("holds")  # a replicate seed that measures part p only
    parts = [verdict.Part("p", "Fig 1", decide=("a",)), verdict.Part("q", "Fig 2", decide=("y", "z"))]
    assert [p.measured(checks) for p in parts] == [True, False]
    verdict.record("99_test", "cpu", checks, parts=parts)
    assert [p["text"] for p in verdict.load_parts("cpu")] == ["p"]
    box = verdict.glance(checks, parts, claim="C.", scope="S.")
    assert "(Fig 2" not in box and "(Fig 1" in box
    assert "1 holds, 0 inconclusive, 0 contradicted" in box
    with pytest.raises(ValueError, match="deciding checks"):
        verdict.Part("r", "Fig 3", decide=("a", "z")).outcome(checks)
