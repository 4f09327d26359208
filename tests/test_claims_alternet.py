"""lib.chapters.alternet.checks and lib.claims' statistics over seeds: Chapter 4's checks on hand-made measurements with known answers."""

import math

import pandas as pd
import pytest
import torch

from lib import claims
from lib.chapters import alternet
from lib.analysis.hessian import Spectrum

T2, T1 = 4.302652729749464, 12.706204736174705  # 97.5 % quantiles of Student's t with 2 and 1 df


def _runs(data: dict, build: dict) -> pd.DataFrame:
    """A ``lib.sweeps.results``-shaped frame: data[fraction] = per-seed (alternet, preresnet, vit); build[label] = accuracy."""
    rows = []
    for fraction, seeds in data.items():
        for seed, accuracies in enumerate(seeds):
            for role, acc in zip(("alternet", "preresnet", "vit"), accuracies):
                rows.append({"group": "data", "label": f"{100 * fraction:g} % data", "role": role, "model": f"{role}_x",
                             "seed": seed, "fraction": fraction, "train images": int(50_000 * fraction), "epochs": 12,
                             "parameters": 1, "accuracy (%)": acc, "NLL": 1.0, "train loss": 1.0, "minutes": 1.0})
    for label, acc in build.items():
        role = "preresnet" if label.startswith("no MSA") else "alternet"
        rows.append({"group": "build-up", "label": label, "role": role, "model": f"{role}_x", "seed": 0, "fraction": 1.0,
                     "train images": 50_000, "epochs": 6, "parameters": 1, "accuracy (%)": acc, "NLL": 1.0,
                     "train loss": 1.0, "minutes": 1.0})
    return pd.DataFrame(rows)


def _spectrum(per_batch) -> Spectrum:
    per_batch = torch.tensor(per_batch, dtype=torch.float64)
    b, k = per_batch.shape
    return Spectrum(values=per_batch.reshape(-1), per_batch=per_batch, residuals=torch.zeros(b, k),
                    converged=torch.ones(b, k, dtype=torch.bool), matvecs=0, k=k, batch_size=4, batches=b,
                    method="lanczos", tol=1e-3, loss="test")


def _outcomes(high_correct: bool, n: int = 40) -> dict:
    """Every image correct when clean and under low-band noise; under the high bands all correct or all wrong."""
    bands = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    noisy = torch.ones(n, len(bands), dtype=torch.uint8)
    if not high_correct:
        noisy[:, 3:] = 0
    return {"conditions": [[f, 0.7] for f in bands], "clean": torch.ones(n, dtype=torch.uint8), "noisy": noisy,
            "width": 0.2, "seed": 0, "dataset": "cifar10", "image_size": [32, 32]}


FLAT = [[2.0, 1.5, 1.0, -0.5, 0.5]] * 4
SHARP = [[20.0, 15.0, 10.0, -0.5, 5.0]] * 4
STATES = {name: torch.nn.Linear(1, 1) for name in ("AlterNet, warm-up", "Pre-act ResNet, warm-up", "AlterNet", "Pre-act ResNet")}
BUILD = {"no MSA (pre-activation ResNet)": 70.0, "MSAs (0, 0, 0, 1)": 71.0, "MSAs (0, 1, 1, 2)": 73.0}


def _checks(data, build=BUILD, alternet_flat=True, alternet_robust=True):
    return list(_checks_by_id(data, build, alternet_flat, alternet_robust).values())


def _checks_by_id(data, build=BUILD, alternet_flat=True, alternet_robust=True):
    flat, sharp = (FLAT, SHARP) if alternet_flat else (SHARP, FLAT)
    spectrum = {"AlterNet, warm-up": _spectrum(flat), "AlterNet": _spectrum(flat),
                "Pre-act ResNet, warm-up": _spectrum(sharp), "Pre-act ResNet": _spectrum(sharp)}
    outcomes = {"alternet": _outcomes(alternet_robust), "preresnet": _outcomes(not alternet_robust)}
    return alternet.checks(_runs(data, build), spectrum, outcomes, STATES, profile="cpu")


def test_t_interval_matches_the_t_table():
    mean, lo, hi = claims.t_interval([2.0, 3.0, 4.0])
    assert mean == 3.0
    assert (lo, hi) == pytest.approx((3 - T2 / math.sqrt(3), 3 + T2 / math.sqrt(3)), abs=1e-6)
    mean, lo, hi = claims.t_interval([1.0, 2.0])  # one degree of freedom: the t quantile is 12.706
    assert (hi - mean) == pytest.approx(T1 * math.sqrt(0.5) / math.sqrt(2), abs=1e-6)
    mean, lo, hi = claims.t_interval([5.0])
    assert mean == 5.0 and math.isnan(lo) and math.isnan(hi)


def test_every_check_holds_when_alternet_wins_everywhere():
    data = {0.1: [(61, 59, 40), (62, 59, 40), (63, 59, 40)], 1.0: [(86, 80, 80), (86.2, 80, 80)]}
    checks = _checks(data)
    assert [c.holds for c in checks] == [True] * len(checks)
    small, full, vit, build, flat_warm, flat_final, noise = checks
    assert small.value == pytest.approx(3.0) and small.interval == pytest.approx((3 - T2 / math.sqrt(3), 3 + T2 / math.sqrt(3)))
    assert full.value == pytest.approx(6.1) and full.interval[0] == pytest.approx(6.1 - T1 * 0.1, abs=1e-6)
    assert "0.1" not in small.claim and "10 %" in small.claim and "100 %" in full.claim
    assert vit.value == pytest.approx((1 - 40 / 62) - (1 - 80 / 86.1))
    assert build.value == pytest.approx(3.0) and "MSAs (0, 1, 1, 2)" in build.statistic
    assert flat_warm.value == pytest.approx(1.0 - 10.0)  # lower medians of the positive values and flat_final.interval[1] < 0
    assert noise.value == pytest.approx(100.0) and noise.budget["images"] == 40
    assert small.budget["fractions"] == [0.1] and small.budget["seeds"] == [0, 1, 2] and small.budget["profile"] == "cpu"


def test_checks_fail_when_alternet_loses_or_the_evidence_is_too_thin():
    data = {0.1: [(59, 61, 50), (58, 61, 50), (57, 61, 50)],  # AlterNet behind on small data
            1.0: [(81, 80, 60), (90, 80, 60)]}  # ahead on average, but two seeds disagree too much
    checks = _checks(data, build={**BUILD, "MSAs (0, 1, 1, 2)": 69.5}, alternet_flat=False, alternet_robust=False)
    assert [c.holds for c in checks] == [False] * len(checks)
    small, full, vit, build, *_ = checks
    assert small.value == pytest.approx(-3.0)
    assert full.value == pytest.approx(5.5) and full.interval[0] < 0  # t with 1 df: 12.7 · 6.36 / √2 ≈ 57
    assert vit.value == pytest.approx((1 - 50 / 58) - (1 - 60 / 85.5))  # ViT falls behind more on the full set
    assert build.value == pytest.approx(-0.5)


def test_one_seed_gives_no_interval_so_the_data_check_cannot_hold():
    checks = _checks({0.1: [(70, 60, 30)], 1.0: [(90, 80, 85)]})
    small, full = checks[:2]
    assert small.value == pytest.approx(10.0) and math.isnan(small.interval[0]) and not small.holds
    assert not full.holds


def test_seeds_are_paired_whatever_the_row_order():
    data = {0.1: [(61, 59, 40), (72, 70, 40), (63, 59, 40)], 1.0: [(86, 80, 80), (86.2, 80, 80)]}
    frame = _runs(data, BUILD)
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert claims.paired_gaps(shuffled).equals(claims.paired_gaps(frame))
    gaps = claims.paired_gaps(frame)
    assert list(gaps["seeds"]) == [3, 2]
    assert gaps["std"].iloc[0] == pytest.approx(math.sqrt(((2 - 8 / 3) ** 2 * 2 + (4 - 8 / 3) ** 2) / 2))  # gaps 2, 2, 4


def test_missing_role_or_single_fraction_is_a_clear_error():
    frame = _runs({1.0: [(86, 80, 80)]}, BUILD)
    with pytest.raises(ValueError, match="need runs of"):
        claims.paired_gaps(frame[frame["role"] != "preresnet"])
    with pytest.raises(ValueError, match="at least two data fractions"):
        _checks({1.0: [(86, 80, 80), (86, 80, 80)]})


def test_gap_outcome_separates_shown_better_shown_worse_and_undecided():
    def gaps(*rows):
        return pd.DataFrame([{"fraction": f, "seeds": n, "lo": lo, "hi": hi} for f, n, lo, hi in rows])

    assert claims.gap_outcome(gaps((0.02, 3, 0.1, 2.0), (1.0, 2, 0.0, 1.0))).startswith("AlterNet is at least as accurate")
    worse = claims.gap_outcome(gaps((0.02, 3, -1.0, 2.0), (1.0, 2, -3.0, -0.5)))
    assert worse.startswith("AlterNet is less accurate") and "100 %" in worse and "2 %" not in worse
    open_ = claims.gap_outcome(gaps((0.02, 3, -1.0, 2.0), (0.1, 3, 0.5, 1.0), (1.0, 1, float("nan"), float("nan"))))
    assert open_.startswith("AlterNet is not shown") and "at 2 % the interval reaches below 0" in open_
    assert "at 100 % there is no interval (1 seed)" in open_ and "at 10 % it is at least as accurate" in open_


def test_gap_outcome_with_a_non_inferiority_margin():
    def gaps(*rows):
        return pd.DataFrame([{"fraction": f, "seeds": n, "lo": lo, "hi": hi} for f, n, lo, hi in rows])

    within = claims.gap_outcome(gaps((0.02, 3, -0.9, 2.0), (1.0, 2, -1.0, 0.3)), margin=1.0)
    assert within.startswith("AlterNet is at least as accurate as its pre-activation CNN (within 1 point)")
    worse = claims.gap_outcome(gaps((0.02, 3, -1.0, 2.0), (1.0, 2, -3.0, -1.2)), margin=1.0)
    assert worse.startswith("AlterNet is less accurate") and "below −1 points" in worse and "2 %" not in worse
    undecided = claims.gap_outcome(gaps((0.02, 3, -1.4, 2.5), (1.0, 2, -0.5, -0.1)), margin=1.0)
    assert "at 2 % the interval reaches below −1 points" in undecided and "at 100 % it is at least as accurate" in undecided


def test_t_interval_of_identical_values_is_the_point_not_nan():
    assert claims.t_interval([0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = claims.t_interval([0.0, 1.0, 2.0])
    assert mean == 1.0 and lo < 0 < 2 < hi


def test_the_checks_have_stable_ids_smallest_fraction_first():
    data = {0.02: [(40, 38, 30)] * 3, 0.1: [(61, 59, 40)] * 3, 1.0: [(86, 80, 80)] * 2}
    assert list(_checks_by_id(data)) == ["as_accurate_smallest", "as_accurate_mid1", "as_accurate_largest", "vit_shortfall",
                                         "build_up", "flatter_warmup", "flatter_final", "noise_high"]
