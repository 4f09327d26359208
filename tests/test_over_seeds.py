"""A check replicated over training seeds: mean of the seeds' values, t-interval over seeds, three-way outcome."""

import math

import pytest

from lib import claims, verdict

NAN = float("nan")


def _check(value, *, statistic="share of stages — 3 of 4", op=">", threshold=0.0, claim="c"):
    return verdict.Check(claim, statistic, value, op, threshold, interval=(value - 0.01, value + 0.01), budget={"profile": "cpu"})


def _over(*values, **kw):
    return claims.over_seeds({seed: {"a": _check(v, **kw)} for seed, v in enumerate(values)})["a"]


def test_the_value_is_the_mean_and_the_interval_a_t_interval_over_seeds():
    check = _over(1.0, 2.0, 1.5)
    half = 4.302652729911275 * 0.5 / math.sqrt(3)  # t(0.975, 2 df) × the standard error of (1, 2, 1.5)
    assert check.value == pytest.approx(1.5) and check.interval == pytest.approx((1.5 - half, 1.5 + half))
    assert check.outcome == "holds" and check.rule == "> 0 (whole 95 % interval over seeds)"
    assert check.replicates == ((0, 1.0), (1, 2.0), (2, 1.5)) and check.budget["seeds"] == [0, 1, 2]
    assert check.resolution == pytest.approx(half)
    assert check.row()["replicates"] == [{"seed": 0, "value": 1.0}, {"seed": 1, "value": 2.0}, {"seed": 2, "value": 1.5}]


def test_seeds_that_disagree_are_inconclusive_and_seeds_on_the_other_side_contradict():
    assert _over(1.0, -1.0, 0.5).outcome == "inconclusive"  # the interval over seeds straddles 0
    assert _over(-1.0, -1.2, -0.9).outcome == "contradicted"
    assert _over(1.0, 1.0, 1.0, op=">=", threshold=1.0).outcome == "holds"  # every seed on the threshold of ">="
    assert _over(0.0, 0.0, 0.0).outcome == "inconclusive"  # a tie under a strict comparison


def test_a_nan_seed_or_too_few_seeds_cannot_decide():
    nan = _over(1.0, NAN, 2.0)
    assert math.isnan(nan.value) and nan.outcome == "inconclusive"
    single = claims.over_seeds({0: {"a": _check(1.0)}})["a"]
    assert single == _check(1.0)  # one seed: nothing to replicate, the check of that run
    two = _over(1.0, 1.1)
    assert two.outcome == "holds" and two.interval[1] - two.interval[0] > 1.0  # 12.7 × the standard error at 1 df


def test_per_seed_counts_are_dropped_from_the_statistic_when_they_differ():
    per_seed = {0: {"a": _check(0.75, statistic="share of stages — 3 of 4")},
                1: {"a": _check(0.5, statistic="share of stages — 2 of 4")}}
    assert claims.over_seeds(per_seed)["a"].statistic == "share of stages; mean over seeds (0: 0.75, 1: 0.5)"
    same = _over(1.0, 2.0, statistic="median difference")
    assert same.statistic == "median difference; mean over seeds (0: 1, 1: 2)"


def test_seeds_must_test_the_same_checks_the_same_way():
    with pytest.raises(ValueError, match="at least one seed"):
        claims.over_seeds({})
    with pytest.raises(ValueError, match=r"seed 1 has checks \['b'\]"):
        claims.over_seeds({0: {"a": _check(1.0)}, 1: {"b": _check(1.0)}})
    with pytest.raises(ValueError, match="differs between seeds 0 and 1"):
        claims.over_seeds({0: {"a": _check(1.0)}, 1: {"a": _check(1.0, threshold=0.5)}})
