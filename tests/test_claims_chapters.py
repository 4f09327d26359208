"""The checks of Chapters 1–3 (``lib.chapters.flat_losses``, ``low_pass``, ``stages``) on hand-made inputs, known answers.

The helpers list each chapter's checks in their order; the id tests pin which id names which check.
"""

import functools
import json
import math

import pandas as pd
import pytest
import torch

from lib import verdict
from lib.chapters import flat_losses, low_pass
from lib.chapters import stages as stages_spec
from lib.analysis import fourier, stages
from lib.analysis.hessian import Spectrum

NAN = float("nan")

# ---------------------------------------------------------------------------------- Chapter 1

# Every batch of a spectrum alike: each bootstrap resample gives the same statistic, so the
# interval is the point. Pooled, SHARP has median positive 6 (the lower median of 20 values) and
# no negative value; FLAT has median positive 1.0 and negative mass 1/5.
SHARP = [[10.0, 8.0, 6.0, 4.0, 2.0]] * 4
FLAT = [[2.0, 1.5, 1.0, -0.5, 0.5]] * 4
NEG2 = [[2.0, 1.5, -1.0, -0.5, 0.5]] * 4  # negative mass 2/5
NEG3 = [[2.0, -1.5, -1.0, -0.5, 0.5]] * 4  # negative mass 3/5
CONVEX = [[2.0, 1.5, 1.0, 0.5, 0.25]] * 4  # negative mass 0

SPECTRA_OK = {"ResNet, warm-up": SHARP, "ResNet": SHARP, "ViT, warm-up": FLAT, "ViT": FLAT, "ViT, 2 % data": NEG2,
              "ViT, 10 % data": NEG3, "ViT, local 5×5": CONVEX, "ViT, local 3×3": CONVEX}
SPECTRA_BAD = {"ResNet, warm-up": FLAT, "ResNet": FLAT, "ViT, warm-up": SHARP, "ViT": SHARP, "ViT, 2 % data": SHARP,
               "ViT, 10 % data": SHARP, "ViT, local 5×5": FLAT, "ViT, local 3×3": FLAT}

CH1_CLAIMS = [
    "ViT is flatter than ResNet (end of warm-up)",
    "ViT is flatter than ResNet (end of training)",
    "ViT has more negative eigenvalues than ResNet (end of warm-up)",
    "ViT has more negative eigenvalues than ResNet (end of training)",
    "Less data, more non-convexity: ViT on 2 % vs 100 %",
    "Less data, more non-convexity: ViT on 10 % vs 100 %",
    "ViT with local 5×5 attention trains as well: test accuracy",
    "ViT with local 5×5 attention trains as well: training loss",
    "ViT with local 5×5 attention has less negative mass",
    "ViT with local 3×3 attention trains as well: test accuracy",
    "ViT with local 3×3 attention trains as well: training loss",
    "ViT with local 3×3 attention has less negative mass",
]


def _spectrum(per_batch, batch_size: int = 8) -> Spectrum:
    per_batch = torch.tensor(per_batch, dtype=torch.float64)
    b, k = per_batch.shape
    return Spectrum(values=per_batch.reshape(-1), per_batch=per_batch, residuals=torch.zeros(b, k),
                    converged=torch.ones(b, k, dtype=torch.bool), matvecs=0, k=k, batch_size=batch_size, batches=b,
                    method="lanczos", tol=1e-3, loss="train")


def _locality(d5=(0.0, 0.0), d3=(0.0, 0.0)) -> pd.DataFrame:
    """A ``lib.runs.compare_training``-shaped frame: global ViT, then (Δaccuracy, Δtrain loss) of 5×5 and 3×3."""
    rows = [("ViT", 80.0, 0.5, 0.0, 0.0), ("ViT, local 5×5", 80.0 + d5[0], 0.5 + d5[1], *d5),
            ("ViT, local 3×3", 80.0 + d3[0], 0.5 + d3[1], *d3)]
    return pd.DataFrame([{"model": m, "accuracy (%)": a, "test NLL": 1.0, "train loss": t, "Δaccuracy (points)": da,
                          "Δtrain loss": dt} for m, a, t, da, dt in rows])


def _flat(spectra=SPECTRA_OK, locality=None, **kwargs):
    return list(_flat_by_id(spectra, locality, **kwargs).values())


def _flat_by_id(spectra=SPECTRA_OK, locality=None, **kwargs):
    spectrum = {name: _spectrum(values) for name, values in spectra.items()}
    states = {name: torch.nn.Linear(1, 1) for name in spectra}
    return flat_losses.checks(spectrum, _locality() if locality is None else locality, states, **kwargs)


@functools.cache
def _flat_ok() -> tuple:
    """The default case, computed once (each call bootstraps nine contrasts)."""
    return tuple(_flat())


# ---------------------------------------------------------------------------------- Chapter 2

BANDS = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
LOW, HIGH = [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]  # correct (1) under low-band noise only / high-band noise only
# Per model and kind of unit, one character per unit: "-" lowers the statistic, "+" raises it,
# "0" its interval contains 0. Shares of the claimed direction: ViT MSA 2/3, AlterNet MSA 1,
# ResNet Conv 3/4, AlterNet Conv 2/3, ViT MLP 2/3.
UNITS_OK = {"ResNet": {"stem": "+", "conv": "+++-"}, "ViT": {"msa": "--+", "mlp": "++-"},
            "AlterNet": {"conv": "++0", "msa": "--"}}
BUDGET = {"profile": "cpu", "images": 100}

CH2_CLAIMS = [
    "ViT: MSA units lower ΔlogA(π)",
    "AlterNet: MSA units lower ΔlogA(π)",
    "ResNet: Conv units raise ΔlogA(π)",
    "AlterNet: Conv units raise ΔlogA(π)",
    "ViT: MLP units raise ΔlogA(π)",
    "ViT: MSA units lower feature-map variance",
    "AlterNet: MSA units lower feature-map variance",
    "ResNet: Conv units raise feature-map variance",
    "AlterNet: Conv units raise feature-map variance",
    "ViT: MLP units raise feature-map variance",
    "ResNet: variance builds up within every stage",
    "ViT is more robust than ResNet to high-frequency noise",
    "ResNet is hurt by high-frequency noise",
    "Low-frequency noise hurts ViT more than ResNet",
]


def _counts(units: dict) -> pd.DataFrame:
    """``fourier.direction_counts`` of per-unit changes spelled as in :data:`UNITS_OK`."""
    interval = {"-": (-1.0, -2.0, -0.5), "+": (1.0, 0.5, 2.0), "0": (0.0, -1.0, 1.0)}
    frames = {model: pd.DataFrame([{"kind": kind, "change": interval[s][0], "change_lo": interval[s][1],
                                    "change_hi": interval[s][2]} for kind, signs in kinds.items() for s in signs])
              for model, kinds in units.items()}
    return fourier.direction_counts(frames)


def _reversed(units: dict) -> dict:
    flip = str.maketrans("+-", "-+")
    return {model: {kind: signs.translate(flip) for kind, signs in kinds.items()} for model, kinds in units.items()}


def _growth(*grows) -> pd.DataFrame:
    """A ``lib.analysis.variance.stage_growth``-shaped frame of one model."""
    return pd.DataFrame([{"stage": s, "first": f"s{s}.0", "last": f"s{s}.1", "first_value": 1.0, "last_value": 2.0,
                          "ratio": 2.0, "grows": g} for s, g in enumerate(grows, start=1)],
                        columns=["stage", "first", "last", "first_value", "last_value", "ratio", "grows"])


def _noise(rows) -> dict:
    """A ``noise_outcomes``-shaped dict: every image correct when clean, ``rows[i][j]`` its outcome in band j."""
    return {"conditions": [[f, 0.7] for f in BANDS], "clean": torch.ones(len(rows), dtype=torch.uint8),
            "noisy": torch.tensor(rows, dtype=torch.uint8), "width": 0.2, "seed": 0, "dataset": "cifar10",
            "image_size": [32, 32]}


TREND_IDS = [key for key, *_ in low_pass.TREND_CHECKS]


def _trend(total=(4.0, 3.5, 4.5), within=(-1.5, -1.7, -1.3), down=(5.5, 5.0, 6.0), control=(2.0, 1.9, 2.1),
           beyond=(3.5, 3.0, 4.0)) -> pd.DataFrame:
    """A ``lib.analysis.trend.high_frequency_trend``-shaped frame: (value, lo, hi) per part."""
    rows = zip(("total", "within stages", "downsampling", "resolution alone (control)", "downsampling beyond resolution"),
               (total, within, down, control, beyond))
    return pd.DataFrame([{"part": part, "value": v, "lo": lo, "hi": hi} for part, (v, lo, hi) in rows])


def _low_pass_by_id(units=UNITS_OK, variance_units=UNITS_OK, growth=None, vit=(HIGH,) * 5, resnet=(LOW,) * 5, trend=None,
                    **kwargs):
    growth = _growth(True, True, True) if growth is None else growth
    outcomes = {"resnet": _noise(resnet), "vit": _noise(vit)}
    trends = {"resnet": _trend() if trend is None else trend}
    return low_pass.checks(_counts(units), _counts(variance_units), growth, outcomes, trends=trends, budget=BUDGET, **kwargs)


def _low_pass(*args, **kwargs):
    """Chapter 2's checks in order, without the ResNet trend's three (tested by id below)."""
    return [c for key, c in _low_pass_by_id(*args, **kwargs).items() if key not in TREND_IDS]


# ---------------------------------------------------------------------------------- Chapter 3

ROLES = ("resnet", "alternet", "vit")
TESTED = {"alternet": ("end_msa_vs_other_msa", "end_msa_vs_middle"), "resnet": ("start_vs_rest",),
          "vit": ("middle_msa_vs_other_msa",)}
BUDGETS = {kind: {role: {"profile": "cpu", "for": f"{kind}/{role}"} for role in ROLES}
           for kind in ("lesion", "cka", "variance")}

CH3_CLAIMS = [
    "AlterNet: removing an MSA at the end of a stage costs more than removing one of its other MSAs",
    "AlterNet: removing an MSA at the end of a stage costs more than removing a mid-stage unit",
    "ResNet: the unit at the start of a stage matters most",
    "ResNet: removing a stage's first unit costs more than removing one of its other units",
    "ViT (control, issue #41): in a single-stage ViT the middle MSAs matter most",
    "ResNet: unit outputs form one CKA block per stage",
    "AlterNet: unit outputs form one CKA block per stage",
    "ResNet: the CKA blocks remain at equal distance between units",
    "AlterNet: the CKA blocks remain at equal distance between units",
    "ResNet: feature-map variance builds up within every stage",
    "ResNet: feature-map variance falls back at the block that opens each stage",
    "ResNet: feature-map variance is still down at each stage's first shape-preserving unit",
    "AlterNet: feature-map variance builds up within every stage",
    "AlterNet: feature-map variance falls back at the block that opens each stage",
    "AlterNet: feature-map variance is still down at each stage's first shape-preserving unit",
]
CH3_IDS = ["lesion_end_msa_vs_msa_alternet", "lesion_end_msa_alternet", "start_costliest_resnet", "lesion_start_resnet", "lesion_middle_msa_vit",
           "cka_blocks_resnet", "cka_blocks_alternet", "cka_blocks_matched_resnet", "cka_blocks_matched_alternet",
           "variance_buildup_resnet", "variance_reset_downsampling_resnet", "variance_reset_resnet",
           "variance_buildup_alternet", "variance_reset_downsampling_alternet", "variance_reset_alternet"]
VARIANCE_IDS = CH3_IDS[9:]


def _contrasts(lesion=(-0.05, -0.08, -0.02), **per_role) -> pd.DataFrame:
    """``lesion_contrasts`` of every role (``role`` column), in accuracy fractions: each role's tested contrasts are
    ``per_role.get(role, lesion)`` = (value, lo, hi); its other contrasts are undefined, as for a real model."""
    rows = []
    for role in ROLES:
        for name, compares in stages.LESION_CONTRASTS.items():
            value, lo, hi = per_role.get(role, lesion) if name in TESTED[role] else (NAN, NAN, NAN)
            defined = not math.isnan(value)
            rows.append({"role": role, "contrast": name, "compares": compares, "value": value, "lo": lo, "hi": hi,
                         "units_a": 3 if defined else 0, "units_b": 4 if defined else 0})
    return pd.DataFrame(rows)


def _costliest(resnet=(1.0, 1.0, 1.0, 1.0), alternet=(0.0, 0.0, 0.0, 0.0)) -> pd.DataFrame:
    """``costliest_by_stage`` of two roles, reduced to the columns the check reads; ``"tie"`` marks a tied stage."""
    return pd.DataFrame([{"role": role, "stage": s, "tie": v == "tie", "start_costliest": NAN if v == "tie" else v}
                         for role, values in (("resnet", resnet), ("alternet", alternet))
                         for s, v in enumerate(values, start=1)])


def _blocks(cka=(0.2, 0.1, 0.3), **per_role) -> pd.DataFrame:
    """``block_contrasts`` of every role; ``per_role[role]`` = {form: (value, lo, hi)} overrides ``cka``."""
    rows = []
    for role in ROLES:
        for form in ("plain", "matched"):
            value, lo, hi = (NAN, NAN, NAN) if role == "vit" else per_role.get(role, {}).get(form, cka)
            rows.append({"role": role, "form": form, "value": value, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def _flags(column: str, resnet=(True, True, True), alternet=(True, True, True)) -> pd.DataFrame:
    """``stage_growth`` (``grows``) or ``variance_resets`` (``resets``) of ResNet and AlterNet, reduced."""
    return pd.DataFrame([{"role": role, "stage": s, column: v}
                         for role, values in (("resnet", resnet), ("alternet", alternet))
                         for s, v in enumerate(values, start=1)], columns=["role", "stage", column])


def _resets(resnet=(True, True, True), alternet=(True, True, True), *, preserving=None) -> pd.DataFrame:
    """``variance_resets`` of ResNet and AlterNet at both places a stage starts; ``preserving`` as (resnet, alternet)
    flags for the first shape-preserving unit (default: the same as at the downsampling block)."""
    later = _flags("resets", *(preserving or (resnet, alternet))).assign(at="preserving")
    return pd.concat([_flags("resets", resnet, alternet).assign(at="downsampling"), later], ignore_index=True)


def _stages(contrasts=None, costliest=None, blocks=None, growth=None, resets=None, **kwargs):
    return list(_stages_by_id(contrasts, costliest, blocks, growth, resets, **kwargs).values())


def _stages_by_id(contrasts=None, costliest=None, blocks=None, growth=None, resets=None, **kwargs):
    return stages_spec.checks(_contrasts() if contrasts is None else contrasts,
                              _costliest() if costliest is None else costliest,
                              _blocks() if blocks is None else blocks,
                              _flags("grows") if growth is None else growth,
                              _resets() if resets is None else resets, budgets=BUDGETS, **kwargs)


# ====================================================================================== tests
# ---------------------------------------------------------------------------- flat_losses


def test_flat_losses_returns_twelve_checks_with_the_chapters_claims():
    """Twelve checks in the chapter's order, with fixed rules."""
    checks = _flat_ok()
    assert [c.claim for c in checks] == CH1_CLAIMS
    assert [c.op for c in checks] == ["<", "<", ">", ">", ">", ">", ">=", "<=", "<", ">=", "<=", "<"]
    assert [c.threshold for c in checks] == [0.0] * 6 + [-1.0, 0.02, 0.0] * 2
    assert [c.interval is None for c in checks] == [False] * 6 + [True, True, False] * 2
    assert checks[0].statistic == "median positive eigenvalue: ViT − ResNet"
    assert checks[4].statistic == "negative mass: ViT(2 %) − ViT(100 %)"
    assert checks[8].statistic == "negative mass: local 5×5 − global"
    assert checks[6].statistic == "accuracy(local 5×5) − accuracy(global), points"
    assert {k: checks[0].budget[k] for k in ("images", "batches", "k")} == {"images": 32, "batches": 4, "k": 5}


def test_flat_losses_hold_when_vit_is_flatter_and_less_convex():
    """Known differences of pooled statistics; with identical batches each interval is its point."""
    checks = _flat_ok()
    assert [c.holds for c in checks] == [True] * 12
    expected = [1.0 - 6.0, 1.0 - 6.0, 0.2, 0.2, 0.4 - 0.2, 0.6 - 0.2, 0.0, 0.0, 0.0 - 0.2, 0.0, 0.0, 0.0 - 0.2]
    assert [c.value for c in checks] == pytest.approx(expected, abs=1e-12)
    for c in (*checks[:6], checks[8], checks[11]):
        assert c.interval == pytest.approx((c.value, c.value), abs=1e-12)


def test_flat_losses_do_not_hold_when_resnet_is_flatter_and_locality_hurts():
    """Reversed spectra and a local ViT 2 points behind with a higher loss: no check holds."""
    checks = _flat(SPECTRA_BAD, locality=_locality(d5=(-2.0, 0.1), d3=(-1.5, 0.05)))
    assert [c.holds for c in checks] == [False] * 12
    assert [c.value for c in checks[:6]] == pytest.approx([5.0, 5.0, -0.2, -0.2, 0.0, 0.0], abs=1e-12)
    assert checks[4].interval == (0.0, 0.0)  # no more negative mass on less data: 0 is not > 0
    assert checks[8].value == pytest.approx(0.2) and checks[6].value == -2.0 and checks[10].value == 0.05


def test_flat_losses_interval_end_on_zero_does_not_hold():
    """One of two ViT batches has a negative value: +0.1 negative mass, but resampling both clean batches gives 0.

    The bootstrap interval is (0, 0.2): its lower end equals the threshold, and the strict ``>`` does not hold.
    The local ViT (no negative value) against it: −0.1 with interval (−0.2, 0), upper end on 0 for ``<``: not held.
    """
    clean = [[3.0, 2.0, 1.0, 0.5, 0.25]] * 2
    spectra = {**SPECTRA_OK, "ResNet": clean, "ViT": [clean[0], [3.0, 2.0, 1.0, 0.5, -0.25]], "ViT, local 5×5": clean}
    checks = _flat(spectra)
    more_negative, local_less = checks[3], checks[8]
    assert more_negative.value == pytest.approx(0.1) and more_negative.interval == pytest.approx((0.0, 0.2))
    assert more_negative.interval[0] == 0.0 and not more_negative.holds
    assert local_less.value == pytest.approx(-0.1) and local_less.interval == pytest.approx((-0.2, 0.0))
    assert local_less.interval[1] == 0.0 and not local_less.holds


def test_flat_losses_locality_thresholds_include_equality():
    """Δaccuracy exactly −1 point and Δtrain loss exactly +0.02 hold (``>=`` / ``<=``); a hair beyond does not.

    The thresholds move with ``accuracy_drop`` and ``loss_rise``.
    """
    # NOTE: in the chapter Δtrain loss is a difference of two losses (lib.runs.compare_training), so a rise of
    # "exactly" 0.02 is decided by float rounding: 0.52 − 0.50 = 0.020000000000000018 > 0.02 does not hold.
    checks = _flat(locality=_locality(d5=(-1.0, 0.02), d3=(-1.0 - 1e-9, 0.52 - 0.50)))
    assert (checks[6].value, checks[7].value) == (-1.0, 0.02)
    assert checks[6].holds and checks[7].holds
    assert not checks[9].holds and not checks[10].holds
    moved = _flat(locality=_locality(d5=(-2.0, 0.05)), accuracy_drop=2.0, loss_rise=0.05)
    assert moved[6].threshold == -2.0 and moved[6].holds and moved[7].threshold == 0.05 and moved[7].holds


def test_flat_losses_nan_never_holds():
    """A ViT with no positive eigenvalue has no median: NaN value and interval. A NaN Δaccuracy does not hold."""
    spectra = {**SPECTRA_OK, "ViT": [[-1.0, -0.5, -0.25, -0.2, -0.1]] * 4}
    checks = _flat(spectra, locality=_locality(d5=(NAN, 0.0)))
    flatter = checks[1]
    assert math.isnan(flatter.value) and all(math.isnan(v) for v in flatter.interval) and not flatter.holds
    assert checks[3].value == pytest.approx(1.0) and checks[3].holds  # negative mass is still defined: 1 − 0
    assert math.isnan(checks[6].value) and not checks[6].holds


# ------------------------------------------------------------------------------- low_pass


def test_low_pass_returns_fourteen_checks_with_the_chapters_claims():
    """Ten direction shares, the ResNet build-up and three noise contrasts, in the chapter's order, with fixed rules."""
    checks = _low_pass()
    assert [c.claim for c in checks] == CH2_CLAIMS
    rules = [(">=", 0.5)] * 10 + [(">=", 1.0), (">", 0.0), ("<", 0.0), (">", 0.0)]
    assert [(c.op, c.threshold) for c in checks] == rules
    assert [c.interval is None for c in checks] == [True] * 11 + [False] * 3
    assert checks[0].statistic == "share of msa units whose change in ΔlogA(π) is < 0 (95 % CI) — 2 of 3"
    assert checks[7].statistic == "share of conv units whose change in feature-map variance is > 0 (95 % CI) — 3 of 4"
    assert checks[12].statistic == "Δacc(ResNet), points, mean over f ∈ [0.7, 0.8, 0.9]π, ε = 0.7"
    assert checks[0].budget == BUDGET and checks[11].budget == {**BUDGET, "images": 5, "eps": 0.7}


def test_low_pass_holds_when_msas_lower_and_convs_raise():
    """Known shares 2/3, 1, 3/4, 2/3, 2/3; ViT loses only to low-band noise and ResNet only to high-band noise."""
    checks = _low_pass()
    assert [c.holds for c in checks] == [True] * 14
    assert [c.value for c in checks[:5]] == pytest.approx([2 / 3, 1.0, 3 / 4, 2 / 3, 2 / 3], abs=1e-12)
    assert [c.value for c in checks[5:10]] == [c.value for c in checks[:5]]
    assert checks[10].value == 1.0 and checks[10].statistic.endswith("— 3 of 3")
    assert [(c.value, *c.interval) for c in checks[11:]] == [(100.0, 100.0, 100.0), (-100.0, -100.0, -100.0),
                                                              (100.0, 100.0, 100.0)]


def test_low_pass_does_not_hold_when_the_directions_are_reversed():
    """Reversed unit directions, a stage that does not build up, and the noise roles swapped: nothing holds."""
    checks = _low_pass(_reversed(UNITS_OK), _reversed(UNITS_OK), _growth(True, False, True), vit=(LOW,) * 5,
                       resnet=(HIGH,) * 5)
    assert [c.holds for c in checks] == [False] * 14
    assert [c.value for c in checks[:5]] == pytest.approx([1 / 3, 0.0, 1 / 4, 0.0, 1 / 3], abs=1e-12)
    assert checks[10].value == pytest.approx(2 / 3) and checks[10].statistic.endswith("— 2 of 3")
    assert [(c.value, *c.interval) for c in checks[11:]] == [(-100.0, -100.0, -100.0), (0.0, 0.0, 0.0),
                                                              (-100.0, -100.0, -100.0)]


def test_low_pass_half_share_holds():
    """Two of four MSAs lower ΔlogA(π), two raise it: share 0.5 meets ``>= 0.5`` and holds; 1 of 3 does not."""
    units = {**UNITS_OK, "ViT": {"msa": "--++", "mlp": "+00"}}
    checks = _low_pass(units)
    vit_msa, vit_mlp = checks[0], checks[4]
    # NOTE: a tie counts as a win: with as many MSAs raising ΔlogA(π) as lowering it, "MSA units lower ΔlogA(π)"
    # holds. That is the rule the chapter states ("at least half of its units move in the claimed direction"),
    # but the opposite claim would hold on the same data too.
    assert vit_msa.value == 0.5 and vit_msa.holds and vit_msa.statistic.endswith("— 2 of 4")
    assert vit_mlp.value == pytest.approx(1 / 3) and not vit_mlp.holds
    assert checks[10].holds  # the build-up needs every stage: 3 of 3 (share 1.0 meets >= 1)


def test_low_pass_noise_interval_end_on_zero_does_not_hold():
    """Two images, only the second hurt by high-band noise in ResNet: ViT − ResNet = +50 with interval (0, 100).

    The lower end equals 0 and ``>`` is strict: not held. ResNet's own change −50 has interval (−100, 0): not held
    for ``<``. Nothing changes under low-band noise: 0 with interval (0, 0), not held.
    """
    checks = _low_pass(vit=[[1] * 6, [1] * 6], resnet=[[1] * 6, LOW])
    more_robust, hurt, low = checks[11:]
    assert (more_robust.value, *more_robust.interval) == (50.0, 0.0, 100.0) and not more_robust.holds
    assert (hurt.value, *hurt.interval) == (-50.0, -100.0, 0.0) and not hurt.holds
    assert (low.value, *low.interval) == (0.0, 0.0, 0.0) and not low.holds


def test_low_pass_nan_build_up_and_a_missing_kind():
    """No stage with two shape-preserving units: NaN share, "0 of 0", not held. A NaN flag is counted as growing."""
    checks = _low_pass(growth=_growth())
    assert math.isnan(checks[10].value) and not checks[10].holds and checks[10].statistic.endswith("— 0 of 0")
    checks = _low_pass(growth=_growth(True, NAN))
    # NOTE: low_pass uses growth["grows"].astype(bool), which turns NaN into True, so an undecided stage counts as
    # building up (2 of 2, holds); stages_in_series drops NaN before counting (_share_true). stage_growth emits
    # only bools today, so this bites only if that changes.
    assert checks[10].value == 1.0 and checks[10].holds and checks[10].statistic.endswith("— 2 of 2")
    with pytest.raises(ValueError, match="no msa units of ViT"):
        _low_pass({**UNITS_OK, "ViT": {"mlp": "++"}})


def test_low_pass_reads_the_resnets_trend_as_the_paper_does_and_its_split_as_ours():
    """Total rise 4 (3.5 to 4.5) holds; within stages −1.5 (−1.7 to −1.3) is contradicted; the downsampling blocks'
    own part 3.5 (3 to 4) holds; an interval touching 0 is inconclusive. The ResNet's trend decides its part."""
    checks = _low_pass_by_id()
    assert [checks[k].outcome for k in TREND_IDS] == ["holds", "contradicted", "holds"]
    assert checks["dlogA_trend_resnet"].value == 4.0 and checks["dlogA_trend_resnet"].interval == (3.5, 4.5)
    assert checks["dlogA_trend_resnet"].rule == "> 0 (whole 95 % interval)"
    touching = _low_pass_by_id(trend=_trend(total=(0.5, 0.0, 1.0)))["dlogA_trend_resnet"]
    assert touching.outcome == "inconclusive"
    part = next(p for p in low_pass.PARTS if "Convs and MLPs raise the high" in p.text)
    assert part.decide == ("dlogA_trend_resnet", "dlogA_vit_mlp") and "dlogA_resnet_conv" in part.ours
    with pytest.raises(KeyError):
        low_pass.checks(_counts(UNITS_OK), _counts(UNITS_OK), _growth(True), {"resnet": _noise((LOW,)), "vit": _noise((HIGH,))},
                        trends={}, budget=BUDGET)



def test_the_fourier_checks_of_two_models_and_the_protocol_comparison_say_which_verdicts_move():
    """The Fourier checks of the BatchNorm models alone; a reading whose verdict differs between protocols is marked,
    one that keeps its verdict (whatever its value) is not; protocols with different checks are an error."""
    ours = low_pass.fourier_checks(_counts(UNITS_OK), {"resnet": _trend()}, BUDGET, roles=low_pass.BATCHNORM_ROLES)
    assert list(ours) == ["dlogA_alternet_msa", "dlogA_resnet_conv", "dlogA_alternet_conv", *TREND_IDS]
    theirs = low_pass.fourier_checks(_counts(UNITS_OK), {"resnet": _trend(total=(0.5, 0.0, 1.0), within=(-1.0, -1.2, -0.8))},
                                     BUDGET, roles=low_pass.BATCHNORM_ROLES)
    table = low_pass.protocol_comparison({"ours": ours, "theirs": theirs})
    assert list(table.index) == list(ours)
    assert table.loc["dlogA_trend_resnet", ["ours: verdict", "theirs: verdict"]].tolist() == ["holds", "inconclusive"]
    assert table["depends on the protocol"].to_dict() == {key: key == "dlogA_trend_resnet" for key in ours}
    assert table.loc["dlogA_within_stages_resnet", "theirs"] == -1.0  # moved, but contradicted both ways
    summary = low_pass.protocol_summary(table)
    assert list(summary.columns) == ["ours", "theirs", "verdict depends on the protocol"]
    assert summary.loc[ours["dlogA_trend_resnet"].claim].tolist() == ["4, holds", "0.5, inconclusive", "yes"]
    with pytest.raises(ValueError, match="protocol 'fewer' has checks"):
        low_pass.protocol_comparison({"ours": ours, "fewer": dict(list(theirs.items())[:2])})
    with pytest.raises(ValueError, match="no protocols"):
        low_pass.protocol_comparison({})

# ----------------------------------------------------------------------- stages_in_series


def test_stages_in_series_returns_fifteen_checks_with_the_chapters_claims():
    """Fifteen checks in the chapter's order, each with its role's budget of its kind; only the ViT is a control."""
    checks = _stages_by_id()
    assert list(checks) == CH3_IDS and [c.claim for c in checks.values()] == CH3_CLAIMS
    rules = [("<", 0.0), ("<", 0.0), (">=", 0.75), ("<", 0.0), ("<", 0.0)] + [(">", 0.0)] * 4 + [(">=", 1.0)] * 6
    assert [(c.op, c.threshold) for c in checks.values()] == rules
    assert [k for k, c in checks.items() if c.note] == ["lesion_middle_msa_vit"] and checks["lesion_middle_msa_vit"].note == "control"
    assert [c.budget["for"] for c in checks.values()] == [
        "lesion/alternet", "lesion/alternet", "lesion/resnet", "lesion/resnet", "lesion/vit", "cka/resnet", "cka/alternet", "cka/resnet",
        "cka/alternet"] + ["variance/resnet"] * 3 + ["variance/alternet"] * 3
    assert checks["lesion_end_msa_vs_msa_alternet"].statistic == "Δacc, points: stage-end MSAs − other MSAs (3 vs 4 units)"
    assert checks["lesion_end_msa_alternet"].statistic == "Δacc, points: stage-end MSAs − mid-stage units (3 vs 4 units)"
    assert checks["start_costliest_resnet"].statistic.endswith("— 4 of 4")
    assert checks["variance_reset_downsampling_resnet"].statistic == (
        "share of stage starts whose downsampling block's variance is below the previous stage's last unit's "
        "(95 % CIs apart) — 3 of 3")


def test_stages_in_series_holds_when_stages_work_in_series():
    """Lesion contrasts −5 points (−8 to −2), CKA blocks 0.2 (0.1 to 0.3), every stage builds up and resets."""
    checks = _stages_by_id()
    assert all(c.outcome == "holds" for c in checks.values())
    for key in ("lesion_end_msa_vs_msa_alternet", "lesion_end_msa_alternet", "lesion_start_resnet", "lesion_middle_msa_vit"):
        assert checks[key].value == pytest.approx(-5.0) and checks[key].interval == pytest.approx((-8.0, -2.0))
    assert checks["start_costliest_resnet"].value == 1.0  # the alternet rows (start never costliest) are not counted
    assert [(c.value, c.interval) for c in list(checks.values())[5:9]] == [(0.2, (0.1, 0.3))] * 4
    assert [checks[k].value for k in VARIANCE_IDS] == [1.0] * 6


def test_stages_in_series_is_contradicted_when_the_evidence_points_the_other_way():
    """Positive lesion contrasts, the start costliest in 2 of 4 stages, negative CKA blocks, one stage that fails."""
    checks = _stages_by_id(_contrasts((0.03, 0.01, 0.05)), _costliest(resnet=(1.0, 0.0, 1.0, 0.0)),
                           _blocks((-0.1, -0.2, -0.05)),
                           _flags("grows", resnet=(True, False, True), alternet=(False, False, False)),
                           _resets(resnet=(False, True, True), alternet=(True, True, False),
                                   preserving=((False, False, True), (True, True, True))))
    assert all(c.outcome == "contradicted" for k, c in checks.items() if k != "variance_reset_alternet")
    assert checks["variance_reset_alternet"].outcome == "holds"  # ours, at the first shape-preserving unit
    assert checks["lesion_end_msa_vs_msa_alternet"].value == pytest.approx(3.0)
    assert checks["lesion_end_msa_alternet"].value == pytest.approx(3.0)
    assert checks["lesion_end_msa_alternet"].interval == pytest.approx((1.0, 5.0))
    assert checks["start_costliest_resnet"].value == 0.5 and checks["start_costliest_resnet"].statistic.endswith("— 2 of 4")
    assert [checks[k].value for k in VARIANCE_IDS] == pytest.approx([2 / 3, 2 / 3, 1 / 3, 0.0, 2 / 3, 1.0])


def test_stages_in_series_interval_end_on_zero_is_inconclusive_but_a_share_on_the_threshold_holds():
    """A lesion interval ending at 0 fails ``< 0``, a CKA one starting at 0 fails ``> 0``; 3 of 4 meets ``>= 0.75``."""
    checks = _stages_by_id(_contrasts(alternet=(-0.05, -0.1, 0.0)), _costliest(resnet=(1.0, 1.0, 0.0, 1.0)),
                           _blocks(resnet={"matched": (0.1, 0.0, 0.2)}))
    assert checks["lesion_end_msa_alternet"].interval == (pytest.approx(-10.0), 0.0)
    assert checks["lesion_end_msa_alternet"].outcome == "inconclusive"
    assert checks["cka_blocks_matched_resnet"].interval == (0.0, 0.2)
    assert checks["cka_blocks_matched_resnet"].outcome == "inconclusive"
    assert checks["cka_blocks_resnet"].holds and checks["cka_blocks_matched_alternet"].holds  # the others are unaffected
    start = checks["start_costliest_resnet"]
    assert start.value == 0.75 and start.holds and start.statistic.endswith("— 3 of 4") and start.interval is None


def test_stages_in_series_a_tie_at_a_stage_start_leaves_the_share_inconclusive():
    """Through ``stages.costliest_by_stage``: a start tied with another unit for the largest cost is neither a win nor a loss.

    Stage 1: start −0.10 ties the third unit; stage 2: a later unit costs more; stage 3: the start costs most;
    stage 4 has one unit, so nothing to compare (NaN), and it is left out: 1 of 3 won, 1 tied, so the share is
    the interval [1/3, 2/3]. With the threshold at 2/3 the tie alone decides, so the check is inconclusive.
    """
    lesion = pd.DataFrame([
        {"name": name, "stage": stage, "index": i, "position": i, "kind": "conv", "delta_accuracy": delta}
        for i, (name, stage, delta) in enumerate([("s1.0", 1, -0.10), ("s1.1", 1, -0.02), ("s1.2", 1, -0.10),
                                                  ("s2.0", 2, -0.05), ("s2.1", 2, -0.20),
                                                  ("s3.0", 3, -0.30), ("s3.1", 3, -0.10), ("s4.0", 4, -0.30)])])
    costliest = stages.costliest_by_stage(lesion).assign(role="resnet")
    assert costliest["tie"].tolist() == [True, False, False, False]
    assert math.isnan(costliest["start_costliest"].iloc[0]) and costliest["start_costliest"].iloc[1:3].tolist() == [0.0, 1.0]
    assert math.isnan(costliest["start_costliest"].iloc[3]) and costliest["costliest"].iloc[0] == "s1.0"
    check = _stages_by_id(costliest=costliest, start_share=2 / 3)["start_costliest_resnet"]
    assert check.value == pytest.approx(1 / 3) and check.interval == pytest.approx((1 / 3, 2 / 3))
    assert check.statistic.endswith("— 1 of 3, 1 tied") and check.outcome == "inconclusive"
    clear = _stages_by_id(costliest=costliest, start_share=0.25)["start_costliest_resnet"]
    assert clear.outcome == "holds"  # a tie that cannot decide does not matter
    assert _stages_by_id(costliest=costliest, start_share=0.75)["start_costliest_resnet"].outcome == "contradicted"


def test_stages_in_series_nan_never_holds():
    """An undefined contrast (NaN value), no comparable stage, or no rows for a role: NaN value, inconclusive."""
    checks = _stages_by_id(_contrasts(vit=(NAN, NAN, NAN)), _costliest(resnet=(NAN, NAN)),
                           growth=_flags("grows", alternet=()))
    vit = checks["lesion_middle_msa_vit"]
    assert math.isnan(vit.value) and all(math.isnan(x) for x in vit.interval) and vit.outcome == "inconclusive"
    start = checks["start_costliest_resnet"]
    assert math.isnan(start.value) and start.statistic.endswith("— 0 of 0") and start.outcome == "inconclusive"
    buildup = checks["variance_buildup_alternet"]
    assert math.isnan(buildup.value) and buildup.outcome == "inconclusive" and buildup.statistic.endswith("— 0 of 0")
    assert checks["variance_buildup_resnet"].holds  # ResNet's own build-up is unaffected
    resets = _stages_by_id(resets=_flags("resets"))  # an old frame without ``at``: the shape-preserving unit's only
    assert resets["variance_reset_resnet"].holds and math.isnan(resets["variance_reset_downsampling_resnet"].value)


def test_stages_in_series_nan_interval_never_holds_even_with_a_value_on_the_claimed_side():
    """A finite contrast with NaN bounds (lesion_contrasts, bootstrap=0) keeps its undefined interval and does not hold."""
    checks = _stages(_contrasts(resnet=(-0.05, NAN, NAN)), blocks=_blocks(alternet={"plain": (0.2, NAN, NAN)}))
    start, block = checks[3], checks[6]
    # an interval-less value on the claimed side is not evidence: the rule still asks for the whole 95 % interval
    assert start.value == pytest.approx(-5.0) and not start.holds and start.rule == "< 0 (whole 95 % interval)"
    assert not block.holds


def test_stages_in_series_missing_or_duplicate_row_is_a_clear_error():
    """The tested contrast missing for a role, or a CKA form given twice, raises instead of picking one."""
    contrasts = _contrasts()
    with pytest.raises(ValueError, match="role 'alternet' and contrast 'end_msa_vs_middle', found 0"):
        _stages(contrasts[~((contrasts["role"] == "alternet") & (contrasts["contrast"] == "end_msa_vs_middle"))])
    blocks = _blocks()
    with pytest.raises(ValueError, match="found 2"):
        _stages(blocks=pd.concat([blocks, blocks.iloc[[0]]]))


# ------------------------------------------------------------------------------------- ids


def test_each_chapter_names_its_checks_by_stable_ids_in_order():
    """The ids the prose, the ledger and the verdict files use: which id names which claim."""
    assert dict(zip(_flat_by_id(), CH1_CLAIMS)) == dict(zip(
        ["flatter_warmup", "flatter_final", "negative_warmup", "negative_final", "small_data_2", "small_data_10",
         "local5_accuracy", "local5_loss", "local5_negative", "local3_accuracy", "local3_loss", "local3_negative"], CH1_CLAIMS))
    ch2 = _low_pass_by_id()
    kinds = ["vit_msa", "alternet_msa", "resnet_conv", "alternet_conv", "vit_mlp"]
    assert list(ch2) == [f"dlogA_{k}" for k in kinds] + TREND_IDS + [f"variance_{k}" for k in kinds] + [
        "variance_buildup_resnet", "noise_high_vit_vs_resnet", "noise_high_hurts_resnet", "noise_low_vit_vs_resnet"]
    assert [c.claim for k, c in ch2.items() if k not in TREND_IDS] == CH2_CLAIMS
    assert dict(zip(_stages_by_id(), CH3_CLAIMS)) == dict(zip(CH3_IDS, CH3_CLAIMS))


def test_chapter_one_findings_read_the_checks_by_id():
    checks = _flat_by_id()
    assert flat_losses.findings(checks) == {"small_data": "shows", "local_trains": "trains"}
    failing = _flat_by_id(SPECTRA_BAD, _locality(d5=(-2.0, 0.05), d3=(-2.0, 0.05)))
    assert flat_losses.findings(failing) == {"small_data": "does not show", "local_trains": "does not train"}


def test_a_local_run_without_a_window_size_is_a_clear_error():
    with pytest.raises(ValueError, match="local-attention"):
        flat_losses._local_id("ViT, global")


def test_chapter_one_on_a_replicate_seed_checks_only_the_cast_and_its_parts_of_the_rest_are_left_out(tmp_path, monkeypatch):
    """A replicate seed loads the cast only (the small-data and local runs are seed 0's): four checks, two parts."""
    cast_only = {name: v for name, v in SPECTRA_OK.items() if name in ("ResNet, warm-up", "ViT, warm-up", "ResNet", "ViT")}
    spectrum = {name: _spectrum(values) for name, values in cast_only.items()}
    checks = flat_losses.checks(spectrum, None, {name: torch.nn.Linear(1, 1) for name in cast_only})
    assert list(checks) == ["flatter_warmup", "flatter_final", "negative_warmup", "negative_final"]
    assert sorted(r.label for r in flat_losses.RUNS if r.replicated) == sorted(cast_only)
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    verdict.record(flat_losses.CHAPTER, "cpu", checks, parts=flat_losses.PARTS, seed=1)
    assert [p["decide"] for p in json.loads((tmp_path / "cpu" / "seed1" / f"{flat_losses.CHAPTER}.json").read_text())["parts"]] \
        == [["flatter_warmup"], ["negative_warmup"]]
