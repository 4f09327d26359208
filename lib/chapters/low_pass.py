"""Chapter 2, "MSAs are low-pass filters": its runs, statistics and thresholds, methods beside the paper's, and checks.

Everything the chapter fixes before computing lives here (which units should lower or raise
which statistic, the share that counts, the noise amplitudes and bands); the notebook, the
ledger and the differences table read it.
"""

from __future__ import annotations

import pandas as pd

from lib import profiles
from lib.analysis import fourier, protocol, robustness
from lib.chapters.base import CAST, Request
from lib.profiles import ROLE_LABELS as LABELS
from lib.verdict import Check, Part

CHAPTER = "02_low_pass_msa"
TITLE = "2 · low-pass MSAs"

# each run of the cast, trained and at its own starting point (the control)
RUNS = tuple(Request(role, role) for role in CAST) + tuple(Request(role, role, at="init") for role in CAST)

KIND_NAMES = {"stem": "stem", "conv": "Conv", "msa": "MSA", "mlp": "MLP"}
# which kind of unit the paper says lowers or raises a statistic, per model of the cast (role, kind, direction)
DIRECTIONS = (("vit", "msa", "lower"), ("alternet", "msa", "lower"), ("resnet", "conv", "raise"),
              ("alternet", "conv", "raise"), ("vit", "mlp", "raise"))
SHARE = 0.5  # least share of a kind's units that must move in the claimed direction
# the models of the cast with BatchNorm, whose Fourier values depend on how it normalises (the authors' protocol)
BATCHNORM_ROLES = ("resnet", "alternet")
ONE_IMAGE = 0  # the test image the authors' one-image protocol measures: the first, fixed before computing

FREQUENCIES = tuple(round(0.1 * i, 1) for i in range(1, 10))  # band centres of the noise sweep, × π
NOISE_EPS = (0.05, 0.1, 0.2, 0.7)  # band-noise amplitudes, normalised units, fixed in advance
VERDICT_EPS = 0.7  # the one the checks use: the authors' pseudo-code default (methods appendix §8)
HIGH_BANDS = (0.7, 0.8, 0.9)  # band centres (π) averaged for "high-frequency" noise
LOW_BANDS = (0.1, 0.2, 0.3)  # and for "low-frequency" noise

# the moments of its runs the chapter can be measured at (python -m lib.book run --at …): the direction of travel
SNAPSHOTS = ("init", "warmup", "final")

CLAIM = "MSAs are low-pass filters and Convs are high-pass filters."
SCOPE = ("The cast trains for 12 epochs on CIFAR-10, one seed each; every unit's effect is measured on the whole "
         "test set in eval mode (the paper: one image, train mode; both are shown), and so are the noise checks.")
PARTS = (
    Part("MSAs lower the high-frequency amplitude of feature maps", "Figs 2a, 8",
         decide=("dlogA_vit_msa", "dlogA_alternet_msa")),
    # the paper reads Fig 8 as a trend over the ResNet's depth and unit by unit in the ViT (MLPs); the ResNet's
    # per-unit count and the trend's split at the downsampling blocks are ours
    Part("Convs and MLPs raise the high-frequency amplitude", "Figs 2a, 8",
         decide=("dlogA_trend_resnet", "dlogA_vit_mlp"),
         ours=("dlogA_resnet_conv", "dlogA_alternet_conv", "dlogA_within_stages_resnet",
               "dlogA_downsampling_beyond_resolution_resnet")),
    Part("MSAs reduce the variance of feature maps", "Fig 9", decide=("variance_vit_msa", "variance_alternet_msa")),
    # the ResNet's build-up is decided in Chapter 3, where the paper makes it; shown here as ours
    Part("Convs and MLPs raise the variance of feature maps", "Fig 9",
         decide=("variance_resnet_conv", "variance_alternet_conv", "variance_vit_mlp"), ours=("variance_buildup_resnet",)),
    Part("ViT is robust to high-frequency noise, which hurts ResNet", "Fig 2b",
         decide=("noise_high_vit_vs_resnet",), ours=("noise_high_hurts_resnet",)),
    Part("Low-frequency noise hurts ViT more than ResNet", "Fig 2b", decide=("noise_low_vit_vs_resnet",)),
)


def methods(profile: str = "cpu") -> list[tuple[str, str, str]]:
    """``(what, paper, ours)`` rows of the chapter's methods under ``profile``."""
    a = profiles.get(profile).analysis
    return [
        ("Fourier data", "one ImageNet image, model left in train mode",
         "whole test set, eval mode; the authors' way beside it (BatchNorm on each image's own statistics)"),
        ("variance data", "first 256 CIFAR-100 test images", "whole test set, eval mode"),
        ("per-unit effect", "read from the figure by eye", "paired change from the unit's input, 95 % bootstrap"),
        ("noise data", "ImageNet-1K validation set",
         f"whole test set at ε = {VERDICT_EPS} (the checks); {a.sweep_images:,} class-balanced test images for every ε"),
        ("noise amplitude ε", "unknown (helper 0.007, pseudo-code 0.7)",
         f"{', '.join(map(str, NOISE_EPS))} normalised; checks at {VERDICT_EPS}"),
        ("noise band mask", "centred squares after fftshift (not Hermitian; 0.1π includes DC on 32×32)",
         "|kx|, |ky| ring on exact bin frequencies, DC excluded, real noise"),
    ]


def direction_counts(by_role: dict) -> pd.DataFrame:
    """``lib.analysis.fourier.direction_counts`` of per-unit frames keyed by role, rows named by the models' labels."""
    return fourier.direction_counts({LABELS[role]: frame for role, frame in by_role.items()})


def _share(counts: pd.DataFrame, role: str, kind: str, direction: str) -> tuple[float, int, int]:
    row = counts[(counts["model"] == LABELS[role]) & (counts["kind"] == kind)]
    if row.empty:
        raise ValueError(f"no {kind} units of {LABELS[role]} in the counts; models: {sorted(counts['model'].unique())}")
    row = row.iloc[0]
    return float(row[f"{direction}_share"]), int(row[direction]), int(row["units"])


# the trend of ΔlogA(π) over the ResNet's depth and its parts (lib.analysis.trend): (id, part, claim, statistic)
TREND_CHECKS = (
    ("dlogA_trend_resnet", "total", "ResNet: ΔlogA(π) rises from the stem to the last unit (the paper's reading of Fig 8)",
     "ΔlogA(π) of the last unit − of the stem, mean over images"),
    ("dlogA_within_stages_resnet", "within stages", "ResNet: its shape-preserving Conv blocks, together, raise ΔlogA(π)",
     "summed change of ΔlogA(π) at the shape-preserving blocks, mean over images"),
    ("dlogA_downsampling_beyond_resolution_resnet", "downsampling beyond resolution",
     "ResNet: the blocks that open a stage raise ΔlogA(π) more than halving the resolution alone does",
     "summed change at the blocks that open a stage − summed change from average-pooling their inputs alone, mean over images"),
)


# short names of lib.analysis.trend's parts, for the chapter's glue keys
TREND_SLUGS = {"total": "total", "within stages": "within", "downsampling": "downsampling",
               "resolution alone (control)": "resolution", "downsampling beyond resolution": "beyond"}


def _trend_checks(trend: pd.DataFrame, budget: dict) -> dict[str, Check]:
    """The checks of :data:`TREND_CHECKS` from one model's ``high_frequency_trend``, each > 0 with its whole interval."""
    parts = trend.set_index("part")
    return {key: Check(claim=claim, statistic=statistic, value=float(parts.loc[part, "value"]), op=">", threshold=0.0,
                       interval=(float(parts.loc[part, "lo"]), float(parts.loc[part, "hi"])), budget=budget)
            for key, part, claim, statistic in TREND_CHECKS}


def _direction_check(counts: pd.DataFrame, statistic: str, role: str, kind: str, direction: str, share: float,
                     budget: dict) -> Check:
    value, n, units = _share(counts, role, kind, direction)
    return Check(claim=f"{LABELS[role]}: {KIND_NAMES[kind]} units {direction} {statistic}",
                 statistic=f"share of {kind} units whose change in {statistic} is {'< 0' if direction == 'lower' else '> 0'} "
                           f"(95 % CI) — {n} of {units}",
                 value=value, op=">=", threshold=share, budget=budget)


def fourier_checks(high_counts: pd.DataFrame, trends: dict[str, pd.DataFrame], budget: dict, *,
                   roles=CAST, share: float = SHARE) -> dict[str, Check]:
    """The checks of the Fourier section by id: per-unit shares of :data:`DIRECTIONS` for ``roles``, then the ResNet's trend.

    Args:
        high_counts: :func:`direction_counts` of ΔlogA(π) (at least the rows of ``roles``).
        trends: role → ``lib.analysis.trend.high_frequency_trend``; ``"resnet"`` is required when it is in ``roles``.
        budget: ``lib.verdict.budget`` of the measurement.
        roles: The models whose per-unit shares are checked.
        share: Least share of a kind's units that must move in the claimed direction.
    """
    out = {f"dlogA_{role}_{kind}": _direction_check(high_counts, "ΔlogA(π)", role, kind, direction, share, budget)
           for role, kind, direction in DIRECTIONS if role in roles}
    if "resnet" in roles:  # the ResNet's trend, read as the paper reads Fig 8, and its parts
        out.update(_trend_checks(trends["resnet"], budget))
    return out


def protocol_comparison(by_protocol: dict[str, dict[str, Check]]) -> pd.DataFrame:
    """The same checks measured under several protocols, side by side, and whether the verdict depends on the protocol.

    Args:
        by_protocol: protocol name → checks by id (the ids of the first are the rows; every
            protocol must have them all).

    Returns:
        One row per check id: ``claim``, then ``<protocol>`` (value) and ``<protocol>: verdict``
        (*holds*, *inconclusive* or *contradicted*) per protocol, and ``depends on the protocol``
        (the verdicts differ).
    """
    if not by_protocol:
        raise ValueError("no protocols to compare")
    first = next(iter(by_protocol.values()))
    for name, found in by_protocol.items():
        if set(found) != set(first):
            raise ValueError(f"protocol {name!r} has checks {sorted(found)}, expected {sorted(first)}")
    rows = []
    for key, check in first.items():
        row = {"check": key, "claim": check.claim}
        for name, found in by_protocol.items():
            row[name] = found[key].value
            row[f"{name}: verdict"] = found[key].outcome
        row["depends on the protocol"] = len({found[key].outcome for found in by_protocol.values()}) > 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("check")


PROTOCOLS = ("ours", "authors', whole test set", "authors', one image")  # the columns of the side-by-side table


def protocol_readings(store, cast: dict, images, ours: tuple[dict, dict], budget: dict) -> pd.DataFrame:
    """The Fourier checks of the BatchNorm models under our protocol and the authors', side by side.

    Args:
        store: The chapter's ``lib.cache.Cache``; the authors' measurements are cached in it as
            ``fourier-own-stats[-one]-<role>`` and ``trend-own-stats[-one]-<role>``.
        cast: role → trained model.
        images: The test images; the one-image protocol measures ``images[ONE_IMAGE]``.
        ours: ``(high, trends)``, our per-unit ΔlogA(π) frames and trends by role.
        budget: ``lib.verdict.budget`` of the measurement.

    Returns:
        :func:`protocol_comparison` of :data:`PROTOCOLS`.
    """
    measured = {"ours": ours}
    for label, subset, slug in ((PROTOCOLS[1], images, "own-stats"),
                                (PROTOCOLS[2], images[ONE_IMAGE : ONE_IMAGE + 1], "own-stats-one")):
        measured[label] = (
            {r: store.apply(f"fourier-{slug}-{r}", protocol.high_frequency_by_depth, cast[r], subset, progress=False)
             for r in BATCHNORM_ROLES},
            {"resnet": store.apply(f"trend-{slug}-resnet", protocol.high_frequency_trend, cast["resnet"], subset,
                                   progress=False)})
    return protocol_comparison({label: fourier_checks(direction_counts({r: high[r] for r in BATCHNORM_ROLES}), trends,
                                                      budget, roles=BATCHNORM_ROLES)
                                for label, (high, trends) in measured.items()})


def protocol_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`protocol_comparison` for reading: one row per claim, one ``value, verdict`` column per protocol."""
    protocols = [c for c in table.columns if c not in ("claim", "depends on the protocol") and not c.endswith(": verdict")]
    out = pd.DataFrame({p: [f"{v:.3g}, {w}" for v, w in zip(table[p], table[f"{p}: verdict"])] for p in protocols},
                       index=pd.Index(table["claim"], name="reading"))
    out["verdict depends on the protocol"] = ["yes" if d else "no" for d in table["depends on the protocol"]]
    return out


def checks(
    high_counts: pd.DataFrame,
    variance_counts: pd.DataFrame,
    growth: pd.DataFrame,
    outcomes: dict[str, dict],
    *,
    trends: dict[str, pd.DataFrame],
    budget: dict,
    share: float = SHARE,
    eps: float = VERDICT_EPS,
    high_bands=HIGH_BANDS,
    low_bands=LOW_BANDS,
    seed: int = 0,
) -> dict[str, Check]:
    """The chapter's checks by id: MSAs are low-pass, Convs and MLPs high-pass, and what that means for noise.

    Args:
        high_counts, variance_counts: :func:`direction_counts` of ΔlogA(π) and of feature-map variance.
        growth: ``lib.analysis.variance.stage_growth`` of the ResNet.
        outcomes: role → ``lib.analysis.robustness.noise_outcomes`` (``resnet``, ``vit``).
        trends: role → ``lib.analysis.trend.high_frequency_trend`` (``resnet``).
        budget: ``lib.verdict.budget`` of the measurement.
        share: Least share of a kind's units that must move in the claimed direction.
        eps: The noise amplitude the robustness checks use.
        high_bands, low_bands: Band centres (π) averaged for "high" and "low" frequency noise.
        seed: Seed of the image bootstrap.
    """
    out = fourier_checks(high_counts, trends, budget, share=share)
    for role, kind, direction in DIRECTIONS:
        out[f"variance_{role}_{kind}"] = _direction_check(variance_counts, "feature-map variance", role, kind, direction,
                                                          share, budget)
    grows = growth["grows"].astype(bool)
    out["variance_buildup_resnet"] = Check(
        claim="ResNet: variance builds up within every stage",
        statistic=f"share of stages whose last unit's variance exceeds the first shape-preserving unit's (95 % CIs apart) "
                  f"— {int(grows.sum())} of {len(grows)}",
        value=float(grows.mean()) if len(grows) else float("nan"), op=">=", threshold=1.0, budget=budget)
    noise_budget = {**budget, "images": len(outcomes["resnet"]["clean"]), "eps": eps}
    value, lo, hi = robustness.band_contrast(outcomes["vit"], outcomes["resnet"], list(high_bands), eps, seed=seed)
    out["noise_high_vit_vs_resnet"] = Check(
        claim="ViT is more robust than ResNet to high-frequency noise",
        statistic=f"Δacc(ViT) − Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget)
    value, lo, hi = robustness.band_delta(outcomes["resnet"], list(high_bands), eps, seed=seed)
    out["noise_high_hurts_resnet"] = Check(
        claim="ResNet is hurt by high-frequency noise",
        statistic=f"Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op="<", threshold=0.0, interval=(lo, hi), budget=noise_budget)
    value, lo, hi = robustness.band_contrast(outcomes["resnet"], outcomes["vit"], list(low_bands), eps, seed=seed)
    out["noise_low_vit_vs_resnet"] = Check(
        claim="Low-frequency noise hurts ViT more than ResNet",
        statistic=f"Δacc(ResNet) − Δacc(ViT), points, mean over f ∈ {list(low_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget)
    return out
