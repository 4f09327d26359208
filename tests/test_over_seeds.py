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


# --- replicate seeds' verdict files, read back and combined by seed 0's run ---------------------------------


def _checks(value, tie=False):
    return {"a": _check(value), "b": verdict.Check("b", "share — 2 of 4", 0.5, ">=", 0.75, interval=(0.5, 0.75),
                                                   interval_kind="range over ties" if tie else "95 % interval")}


def test_a_replicate_seed_writes_its_own_verdict_file_which_the_ledger_does_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("99_test", "cpu", _checks(1.0), seed=0)
    verdict.record("99_test", "cpu", _checks(2.0, tie=True), seed=1)
    assert (tmp_path / "cpu" / "seed1" / "99_test.json").exists()
    assert verdict.load("cpu")["value"].tolist() == [1.0, 0.5]  # seed 0's file only
    back = verdict.load_checks("99_test", "cpu", seed=1)
    assert back == _checks(2.0, tie=True)  # every field survives the file, the kind of interval included
    with pytest.raises(FileNotFoundError, match="--chapters 99_test --seed 2"):
        verdict.load_checks("99_test", "cpu", seed=2)


def test_seed_zero_combines_the_recorded_seeds_and_a_replicate_seed_keeps_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("99_test", "cpu", _checks(2.0), seed=1)
    verdict.record("99_test", "cpu", _checks(1.5), seed=2)
    combined = claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(0, 1, 2))
    assert combined["a"].value == pytest.approx(1.5) and combined["a"].replicates == ((0, 1.0), (1, 2.0), (2, 1.5))
    assert combined["a"].budget["seeds"] == [0, 1, 2] and combined["a"].interval_kind == "95 % interval over seeds"
    assert claims.with_replicates("99_test", "cpu", _checks(2.0), seed=1, seeds=(0, 1, 2)) == _checks(2.0)
    assert claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(0,)) == _checks(1.0)
    with pytest.raises(FileNotFoundError, match="--seed 3"):
        claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(0, 3))
    with pytest.raises(ValueError, match="must include seed 0"):
        claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(1, 2))


def test_a_check_only_seed_zero_measured_keeps_its_value_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("99_test", "cpu", {"a": _check(2.0)}, seed=1)  # seed 1 measures "a" only (its runs for "b" are not replicated)
    verdict.record("99_test", "cpu", {"a": _check(1.5)}, seed=2)
    combined = claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(0, 1, 2))
    assert list(combined) == ["a", "b"]  # seed 0's order
    assert combined["a"].value == pytest.approx(1.5) and combined["a"].interval_kind == "95 % interval over seeds"
    b = _checks(1.0)["b"]
    assert (combined["b"].value, combined["b"].interval, combined["b"].outcome) == (b.value, b.interval, b.outcome)
    assert combined["b"].note == "seed 0 only: not measured on seeds 1, 2" and not combined["b"].replicates
    verdict.record("99_test", "cpu", {"a": _check(2.0), "z": _check(1.0)}, seed=1)
    with pytest.raises(ValueError, match=r"seed 1 of 99_test has checks seed 0 lacks: \['z'\]"):
        claims.with_replicates("99_test", "cpu", _checks(1.0), seed=0, seeds=(0, 1, 2))


def test_a_replicate_seed_loads_only_the_replicated_runs(monkeypatch):
    from lib import runs
    from lib.chapters import Request, full_page, load_runs

    monkeypatch.setattr(runs, "trained", lambda role, profile, **kw: (role, kw.get("fraction", 1.0), kw["seed"]))
    requests = (Request("ViT", "vit"), Request("ViT, 2 % data", "vit", fraction=0.02, replicated=False))
    assert load_runs(requests, "cpu") == {"ViT": ("vit", 1.0, 0), "ViT, 2 % data": ("vit", 0.02, 0)}
    assert load_runs(requests, "cpu", seed=1) == {"ViT": ("vit", 1.0, 1)}
    assert full_page() and not full_page(1) and not full_page(0, "init")


def test_a_replicate_seeds_caches_and_results_live_apart(tmp_path, monkeypatch):
    from lib import cache, paths
    from lib.chapters import replicate_seeds

    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    assert paths.results_root("cpu", 2) == tmp_path / "cpu" / "seed2"
    assert cache.Cache("99_test", "cpu", seed=2).folder == tmp_path / "cpu" / "seed2" / "cache" / "99_test"
    assert cache.Cache("99_test", "cpu").folder == tmp_path / "cpu" / "cache" / "99_test"
    with pytest.raises(ValueError, match="seed=-1"):
        paths.results_root("cpu", -1)
    assert replicate_seeds("cpu")[0] == 0
    with pytest.raises(ValueError, match="valid: \\['cpu', 'paper', 'smoke'\\]"):
        replicate_seeds("laptop")


def test_an_earlier_snapshots_verdicts_live_apart_and_only_chapters_measured_at_any_take_one(tmp_path, monkeypatch):
    from lib import book, paths

    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    assert paths.results_root("cpu", 1, "warmup") == tmp_path / "cpu" / "seed1" / "at-warmup"
    assert paths.results_root("cpu", 0, "init") == tmp_path / "cpu" / "at-init"
    with pytest.raises(ValueError, match=r"at='middle' .*valid: \['init', 'warmup', 'final'\]"):
        paths.results_root("cpu", 0, "middle")
    verdict.record("99_test", "cpu", _checks(0.2), at="init")
    assert verdict.load_checks("99_test", "cpu", at="init") == _checks(0.2)
    assert verdict.load("cpu").empty  # the ledger reads the final verdicts only
    assert claims.with_replicates("99_test", "cpu", _checks(0.2), seeds=(0, 1), at="init") == _checks(0.2)
    with pytest.raises(ValueError, match=r"--at warmup: chapters \['01_flat_losses'\] measure their runs at fixed"):
        book.run("smoke", ["01"], at="warmup", build=False)


def test_the_direction_of_travel_compares_the_earliest_recorded_snapshot_with_the_final_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no final verdict for seed 0"):
        claims.travel("99_test", "cpu")
    verdict.record("99_test", "cpu", _checks(1.0))  # final: a = 1.0 (claimed > 0), b = 0.5 (claimed >= 0.75)
    alone = claims.travel("99_test", "cpu").set_index("id")
    assert alone.loc["a", "direction"] == "" and math.isnan(alone.loc["a", "init"])  # one snapshot: no direction
    verdict.record("99_test", "cpu", {"a": _check(-1.0), "b": verdict.Check("b", "share", 0.9, ">=", 0.75)}, at="init")
    verdict.record("99_test", "cpu", {"a": _check(1.0), "b": verdict.Check("b", "share", 0.5, ">=", 0.75)}, at="warmup")
    frame = claims.travel("99_test", "cpu").set_index("id")
    assert frame.loc["a", ["init", "warmup", "final"]].tolist() == [-1.0, 1.0, 1.0]
    assert frame.loc["a", "direction"] == "towards"  # up, and the claim is "> 0"
    assert frame.loc["b", "direction"] == "away"  # from 0.9 down to 0.5, and the claim is ">= 0.75"
    assert frame["seed"].tolist() == [0, 0] and frame.loc["b", "threshold"] == 0.75


def test_the_travel_summary_names_the_commands_until_an_earlier_snapshot_is_measured_then_each_direction(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record("99_test", "cpu", _checks(1.0))
    before = claims.travel_summary(claims.travel("99_test", "cpu"), "99_test", "cpu")
    assert before.startswith("Not measured yet") and "--chapters 99 --at init" in before
    verdict.record("99_test", "cpu", {"a": _check(-1.0), "b": verdict.Check("b", "share", 0.5, ">=", 0.75)}, at="init")
    after = claims.travel_summary(claims.travel("99_test", "cpu"), "99_test", "cpu")
    assert after == "From initialisation to the end of training (seeds 0), 1 move towards the claimed side: c. 1 do not move: b."


def test_the_travel_of_seed_zero_reads_its_own_value_beside_the_mean_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    mean = verdict.Check("a", "s", 1.5, ">", 0.0, interval=(0.5, 2.5), interval_kind="95 % interval over seeds",
                         replicates=((0, 1.0), (1, 2.0)))
    verdict.record("99_test", "cpu", {"a": mean})
    verdict.record("99_test", "cpu", {"a": _check(2.0)}, seed=1)
    verdict.record("99_test", "cpu", {"a": _check(0.5)}, at="init")
    verdict.record("99_test", "cpu", {"a": _check(3.0)}, seed=1, at="init")
    frame = claims.travel("99_test", "cpu", seeds=(0, 1)).set_index("seed")
    assert frame.loc[0, ["init", "final"]].tolist() == [0.5, 1.0] and frame.loc[0, "direction"] == "towards"
    assert frame.loc[1, ["init", "final"]].tolist() == [3.0, 2.0] and frame.loc[1, "direction"] == "away"
    summary = claims.travel_summary(claims.travel("99_test", "cpu", seeds=(0, 1)), "99_test", "cpu")
    assert "1 move towards the claimed side: a (1 of 2 seeds). 1 move away from it: a (1 of 2 seeds)" in summary
