"""Each chapter's checks: measured frames in, :class:`lib.verdict.Check` rows out.

The statistics and thresholds are the ones each chapter states in its prose before computing
them; they are arguments with those values as defaults, so a reader can see (and vary) them,
and the verdict is never typed by hand.
"""

from __future__ import annotations

import math

import pandas as pd

from lib.analysis import robustness, spectra
from lib.verdict import Check, budget

__all__ = ["flat_losses", "low_pass", "stages_in_series", "alternet", "paired_gaps", "gap_outcome", "shortfalls", "t_interval"]

KIND_NAMES = {"stem": "stem", "conv": "Conv", "msa": "MSA", "mlp": "MLP"}
# Which kinds of unit the paper says lower (−) or raise (+) a statistic, per model of the cast.
LOW_PASS_DIRECTIONS = [("ViT", "msa", "lower"), ("AlterNet", "msa", "lower"), ("ResNet", "conv", "raise"),
                       ("AlterNet", "conv", "raise"), ("ViT", "mlp", "raise")]


def _share(counts: pd.DataFrame, model: str, kind: str, direction: str) -> tuple[float, int, int]:
    row = counts[(counts["model"] == model) & (counts["kind"] == kind)]
    if row.empty:
        raise ValueError(f"no {kind} units of {model} in the counts; models: {sorted(counts['model'].unique())}")
    row = row.iloc[0]
    return float(row[f"{direction}_share"]), int(row[direction]), int(row["units"])


def flat_losses(
    spectrum: dict,
    locality: pd.DataFrame,
    states: dict,
    *,
    seed: int = 0,
    accuracy_drop: float = 1.0,
    loss_rise: float = 0.02,
) -> list[Check]:
    """Chapter 1's checks: flatter, non-convex, more so on small data, and locality does not hurt.

    Args:
        spectrum: label → ``Spectrum`` with keys ``"ResNet, warm-up"``, ``"ViT, warm-up"``,
            ``"ResNet"``, ``"ViT"``, ``"ViT, 2 % data"``, ``"ViT, 10 % data"``,
            ``"ViT, local 3×3"``, ``"ViT, local 5×5"``.
        locality: ``lib.runs.compare_training`` of the global ViT (first row) and the local ones.
        states: label → model, as ``spectrum``.
        accuracy_drop: Largest test-accuracy drop (points) that still counts as "as well".
        loss_rise: Largest rise of the last-epoch training loss that still counts as "as well".
    """
    def per_batch(name):
        return spectrum[name].per_batch

    def contrast(claim, a, b, statistic, op, words):
        value, lo, hi = spectra.compare(per_batch(a), per_batch(b), statistic, seed=seed)
        images = spectrum[b].batch_size * spectrum[b].batches
        return Check(claim=claim, statistic=f"{statistic}: {words}", value=value, op=op, threshold=0.0, interval=(lo, hi),
                     budget=budget(states[a], states[b], images=images, batches=spectrum[b].batches, k=spectrum[b].k))

    checks = []
    for when, suffix in (("end of warm-up", ", warm-up"), ("end of training", "")):
        checks.append(contrast(f"ViT is flatter than ResNet ({when})", "ResNet" + suffix, "ViT" + suffix,
                               "median positive eigenvalue", "<", "ViT − ResNet"))
    for when, suffix in (("end of warm-up", ", warm-up"), ("end of training", "")):
        checks.append(contrast(f"ViT has more negative eigenvalues than ResNet ({when})", "ResNet" + suffix,
                               "ViT" + suffix, "negative mass", ">", "ViT − ResNet"))
    for share in ("2 %", "10 %"):
        checks.append(contrast(f"Less data, more non-convexity: ViT on {share} vs 100 %", "ViT", f"ViT, {share} data",
                               "negative mass", ">", f"ViT({share}) − ViT(100 %)"))
    rows = locality.set_index("model")
    for name in locality["model"].iloc[1:]:
        local = name.removeprefix("ViT, ")
        pair = budget(states["ViT"], states[name])
        checks.append(Check(claim=f"ViT with {local} attention trains as well: test accuracy",
                            statistic=f"accuracy({local}) − accuracy(global), points", value=float(rows.loc[name, "Δaccuracy (points)"]),
                            op=">=", threshold=-accuracy_drop, budget=pair))
        checks.append(Check(claim=f"ViT with {local} attention trains as well: training loss",
                            statistic=f"last-epoch training loss({local}) − (global)", value=float(rows.loc[name, "Δtrain loss"]),
                            op="<=", threshold=loss_rise, budget=pair))
        checks.append(contrast(f"ViT with {local} attention has less negative mass", "ViT", name, "negative mass", "<",
                               f"{local} − global"))
    return checks


def low_pass(
    high_counts: pd.DataFrame,
    variance_counts: pd.DataFrame,
    growth: pd.DataFrame,
    outcomes: dict[str, dict],
    *,
    budget: dict,
    share: float = 0.5,
    eps: float = 0.7,
    high_bands=(0.7, 0.8, 0.9),
    low_bands=(0.1, 0.2, 0.3),
    seed: int = 0,
) -> list[Check]:
    """Chapter 2's checks: MSAs are low-pass, Convs and MLPs high-pass, and what that means for noise.

    Args:
        high_counts, variance_counts: ``lib.analysis.fourier.direction_counts`` of ΔlogA(π)
            and of feature-map variance, keyed by model label (``ResNet``, ``ViT``, ``AlterNet``).
        growth: ``lib.analysis.variance.stage_growth`` of the ResNet.
        outcomes: role → ``lib.analysis.robustness.noise_outcomes`` (``resnet``, ``vit``).
        budget: ``lib.verdict.budget`` of the measurement.
        share: Least share of a kind's units that must move in the claimed direction.
        eps: The noise amplitude the robustness checks use.
        high_bands, low_bands: Band centres (π) averaged for "high" and "low" frequency noise.
    """
    checks = []
    for statistic, counts in (("ΔlogA(π)", high_counts), ("feature-map variance", variance_counts)):
        for model, kind, direction in LOW_PASS_DIRECTIONS:
            value, n, units = _share(counts, model, kind, direction)
            verb = "lower" if direction == "lower" else "raise"
            checks.append(Check(
                claim=f"{model}: {KIND_NAMES[kind]} units {verb} {statistic}",
                statistic=f"share of {kind} units whose change in {statistic} is {'< 0' if verb == 'lower' else '> 0'} "
                          f"(95 % CI) — {n} of {units}",
                value=value, op=">=", threshold=share, budget=budget,
            ))
    grows = growth["grows"].astype(bool)
    checks.append(Check(
        claim="ResNet: variance builds up within every stage",
        statistic=f"share of stages whose last unit's variance exceeds the first shape-preserving unit's (95 % CIs apart) "
                  f"— {int(grows.sum())} of {len(grows)}",
        value=float(grows.mean()) if len(grows) else float("nan"), op=">=", threshold=1.0, budget=budget,
    ))
    noise_budget = {**budget, "images": len(outcomes["resnet"]["clean"]), "eps": eps}
    value, lo, hi = robustness.band_contrast(outcomes["vit"], outcomes["resnet"], list(high_bands), eps, seed=seed)
    checks.append(Check(
        claim="ViT is more robust than ResNet to high-frequency noise",
        statistic=f"Δacc(ViT) − Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    value, lo, hi = robustness.band_delta(outcomes["resnet"], list(high_bands), eps, seed=seed)
    checks.append(Check(
        claim="ResNet is hurt by high-frequency noise",
        statistic=f"Δacc(ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op="<", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    value, lo, hi = robustness.band_contrast(outcomes["resnet"], outcomes["vit"], list(low_bands), eps, seed=seed)
    checks.append(Check(
        claim="Low-frequency noise hurts ViT more than ResNet",
        statistic=f"Δacc(ResNet) − Δacc(ViT), points, mean over f ∈ {list(low_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi), budget=noise_budget,
    ))
    return checks



def _interval(lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)``, kept even when undefined: a check whose interval is NaN never holds (a value alone is not enough)."""
    return (float(lo), float(hi))


def _row(frame: pd.DataFrame, role: str, column: str, key: str) -> pd.Series:
    rows = frame[(frame["role"] == role) & (frame[column] == key)]
    if len(rows) != 1:
        raise ValueError(f"expected one row for role {role!r} and {column} {key!r}, found {len(rows)}")
    return rows.iloc[0]


def _share_true(values: pd.Series) -> tuple[float, int, int]:
    """Share of true values, how many are true, of how many (NaN share for none)."""
    values = values.dropna().astype(bool)
    return (float(values.mean()) if len(values) else math.nan), int(values.sum()), len(values)


def stages_in_series(
    contrasts: pd.DataFrame,
    costliest: pd.DataFrame,
    blocks: pd.DataFrame,
    growth: pd.DataFrame,
    resets: pd.DataFrame,
    *,
    budgets: dict[str, dict],
    start_share: float = 0.75,
    every: float = 1.0,
) -> list:
    """Chapter 3's checks, with the statistics and thresholds its prose fixes before computing them.

    Args:
        contrasts: ``lib.analysis.stages.lesion_contrasts`` of each model, with a ``role`` column.
        costliest: ``lib.analysis.stages.costliest_by_stage`` of each model, with a ``role`` column.
        blocks: ``lib.analysis.stages.block_contrasts`` of each model, with a ``role`` column.
        growth: ``lib.analysis.variance.stage_growth`` of each model, with a ``role`` column.
        resets: ``lib.analysis.stages.variance_resets`` of each model, with a ``role`` column.
        budgets: ``"lesion"``, ``"cka"`` and ``"variance"`` → role → ``lib.verdict.budget``.
        start_share: Least share of ResNet stages whose start unit costs most when removed.
        every: Least share of stages (boundaries) where the variance builds up (resets): all.
    """
    checks = []
    lesion_rules = [
        ("alternet", "end_msa_vs_middle", "AlterNet: removing an MSA at the end of a stage costs more than removing a "
                                          "mid-stage unit"),
        ("resnet", "start_vs_rest", "ResNet: removing a stage's first unit costs more than removing one of its "
                                    "other units"),
        ("vit", "middle_msa_vs_other_msa", "ViT (control, issue #41): in a single-stage ViT the middle MSAs matter most"),
    ]
    for role, name, claim in lesion_rules:
        if name == "start_vs_rest":
            value, n, total = _share_true(costliest.loc[costliest["role"] == role, "start_costliest"])
            checks.append(Check(
                claim="ResNet: the unit at the start of a stage matters most",
                statistic=f"share of stages in which no unit's removal costs more accuracy than the first "
                          f"shape-preserving unit's — {n} of {total}",
                value=value, op=">=", threshold=start_share, budget=budgets["lesion"][role]))
        row = _row(contrasts, role, "contrast", name)
        checks.append(Check(
            claim=claim,
            statistic=f"Δacc, points: {row['compares']} ({row['units_a']} vs {row['units_b']} units)",
            value=100 * row["value"], op="<", threshold=0.0, interval=_interval(100 * row["lo"], 100 * row["hi"]),
            budget=budgets["lesion"][role], note="control" if role == "vit" else ""))
    for form, words in (("plain", "within-stage CKA − between-stage CKA, all pairs of units (stem left out)"),
                        ("matched", "within-stage CKA − between-stage CKA at equal distance between units, mean over "
                                    "distances")):
        for role in ("resnet", "alternet"):
            row = _row(blocks, role, "form", form)
            label = {"resnet": "ResNet", "alternet": "AlterNet"}[role]
            claim = (f"{label}: unit outputs form one CKA block per stage" if form == "plain"
                     else f"{label}: the CKA blocks remain at equal distance between units")
            checks.append(Check(claim=claim, statistic=words, value=row["value"], op=">", threshold=0.0,
                                interval=_interval(row["lo"], row["hi"]), budget=budgets["cka"][role]))
    variance_rules = [
        (growth, "grows", "feature-map variance builds up within every stage",
         "share of stages whose last unit's variance exceeds the first shape-preserving unit's"),
        (resets, "resets", "feature-map variance falls back at the start of every stage",
         "share of stage starts whose variance is below the previous stage's last unit's"),
    ]
    for role in ("resnet", "alternet"):
        label = {"resnet": "ResNet", "alternet": "AlterNet"}[role]
        for frame, column, claim, words in variance_rules:
            value, n, total = _share_true(frame.loc[frame["role"] == role, column])
            checks.append(Check(claim=f"{label}: {claim}", statistic=f"{words} (95 % CIs apart) — {n} of {total}",
                                value=value, op=">=", threshold=every, budget=budgets["variance"][role]))
    return checks


# ---------------------------------------------------------------------------------- Chapter 4

T_LEVEL = 0.95  # coverage of the t-intervals over seeds


def t_interval(values, *, level: float = T_LEVEL) -> tuple[float, float, float]:
    """Mean of ``values`` with its two-sided t-interval: ``(mean, lo, hi)``; NaN bounds for fewer than 2 values."""
    from scipy import stats

    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sem = stats.sem(values)
    if sem == 0:  # identical values: scipy answers NaN, but the interval is the point itself
        return mean, mean, mean
    lo, hi = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def paired_gaps(frame: pd.DataFrame, a: str = "alternet", b: str = "preresnet", *, level: float = T_LEVEL) -> pd.DataFrame:
    """Accuracy of role ``a`` minus role ``b`` per data fraction, paired by seed (same subset), in points.

    Args:
        frame: ``lib.sweeps.results``; only its ``"data"`` rows are used.
        a, b: Roles compared.
        level: Coverage of the t-interval over seeds.

    Returns:
        One row per fraction (ascending): ``fraction``, ``train images``, ``seeds`` (paired),
        ``mean``, ``std`` (over seeds, n − 1), ``lo``, ``hi`` (t-interval; NaN for one seed).
    """
    data = frame[frame["group"] == "data"]
    rows = []
    for fraction, part in data.groupby("fraction", sort=True):
        acc = part.pivot_table(index="seed", columns="role", values="accuracy (%)", aggfunc="first")
        if a not in acc or b not in acc:
            raise ValueError(f"fraction {fraction}: need runs of {a!r} and {b!r}, found roles {sorted(acc.columns)}")
        gaps = (acc[a] - acc[b]).dropna()
        mean, lo, hi = t_interval(gaps, level=level)
        rows.append({"fraction": float(fraction), "train images": int(part["train images"].iloc[0]), "seeds": len(gaps),
                     "mean": mean, "std": float(gaps.std()) if len(gaps) > 1 else math.nan, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def gap_outcome(gaps: pd.DataFrame, better: str = "AlterNet", worse: str = "its pre-activation CNN") -> str:
    """One sentence on :func:`paired_gaps`' intervals: shown at least as accurate, shown less accurate, or neither.

    A failed "≥ 0" check alone does not mean worse: only an interval wholly below 0 does.
    """
    def at(rows) -> str:
        return ", ".join(_percent(f) for f in rows["fraction"])

    below, above = gaps[gaps["hi"] < 0], gaps[gaps["lo"] >= 0]
    if len(above) == len(gaps):
        return f"{better} is at least as accurate as {worse} at every data fraction tested ({at(gaps)})."
    if not below.empty:
        return f"{better} is less accurate than {worse} at {at(below)}: the whole interval lies below 0."
    parts = [f"at {_percent(g['fraction'])} the interval includes 0" for _, g in gaps[gaps["lo"] < 0].iterrows()]
    for _, g in gaps[gaps["lo"].isna()].iterrows():
        n = int(g["seeds"])
        parts.append(f"at {_percent(g['fraction'])} there is no interval ({n} seed{'' if n == 1 else 's'})")
    parts += [f"at {at(above)} it is at least as accurate"] if not above.empty else []
    return (f"{better} is not shown to be at least as accurate as {worse} at every fraction, nor less accurate at "
            f"any: {'; '.join(parts)}.")


def shortfalls(frame: pd.DataFrame, role: str = "vit", reference: str = "alternet") -> pd.DataFrame:
    """How far ``role`` falls behind ``reference`` at each data fraction: 1 − mean acc(role) / mean acc(reference).

    Means are over seeds (``"data"`` rows of ``lib.sweeps.results``); one row per fraction, ascending,
    with both means and the shortfall.
    """
    data = frame[frame["group"] == "data"]
    means = data.groupby(["fraction", "role"])["accuracy (%)"].mean().unstack("role").sort_index()
    if role not in means or reference not in means:
        raise ValueError(f"need runs of {role!r} and {reference!r}, found roles {sorted(means.columns)}")
    out = pd.DataFrame({"fraction": means.index.astype(float), f"{role} (%)": means[role].to_numpy(),
                        f"{reference} (%)": means[reference].to_numpy()})
    out["shortfall"] = 1 - out[f"{role} (%)"] / out[f"{reference} (%)"]
    return out


def _percent(fraction: float) -> str:
    return f"{100 * float(fraction):g} %"


def _sweep_budget(rows: pd.DataFrame) -> dict:
    """``lib.verdict.budget``'s keys for runs known only by their rows of ``lib.sweeps.results``."""
    def unique(column):
        return [v.item() if hasattr(v, "item") else v for v in dict.fromkeys(rows[column])]

    return {"profile": None, "models": unique("model"), "roles": unique("role"), "epochs": unique("epochs"),
            "fractions": unique("fraction"), "seeds": sorted(unique("seed")), "at": ["final"],
            "train_images": unique("train images")}


def alternet(
    frame: pd.DataFrame,
    spectrum: dict,
    outcomes: dict[str, dict],
    states: dict,
    *,
    profile: str,
    eps: float = 0.7,
    high_bands=(0.7, 0.8, 0.9),
    seed: int = 0,
    level: float = T_LEVEL,
) -> list[Check]:
    """Chapter 4's checks: AlterNet matches or beats its CNN at every data size, and why.

    Args:
        frame: ``lib.sweeps.results`` of the chapter: ``"data"`` rows (AlterNet, its pre-activation
            baseline and ViT at each fraction and seed) and ``"build-up"`` rows (seed 0, in the
            sweep's order: the no-MSA baseline first, the full AlterNet last).
        spectrum: label → ``Spectrum`` with keys ``"AlterNet, warm-up"``, ``"Pre-act ResNet, warm-up"``,
            ``"AlterNet"`` and ``"Pre-act ResNet"`` (end of training).
        outcomes: role → ``lib.analysis.robustness.noise_outcomes`` (``alternet``, ``preresnet``), same
            images and noise seed.
        states: label → model, as ``spectrum`` (for the budgets).
        profile: The profile the sweep ran under (recorded in the budgets of the sweep's checks).
        eps: The noise amplitude of the robustness check (Chapter 2's).
        high_bands: Band centres (π) averaged for "high-frequency" noise (Chapter 2's).
        seed: Seed of the bootstrap resampling.
        level: Coverage of the t-intervals over seeds.

    Returns:
        One check per data fraction (AlterNet ≥ baseline), then ViT's shortfall on the smallest data,
        the build-up, flatness at the end of warm-up and of training, and high-frequency robustness.
    """
    checks = []
    data = frame[frame["group"] == "data"]
    for _, g in paired_gaps(frame, level=level).iterrows():
        rows = data[(data["fraction"] == g["fraction"]) & data["role"].isin(["alternet", "preresnet"])]
        checks.append(Check(
            claim=f"AlterNet is at least as accurate as its pre-activation CNN on {_percent(g['fraction'])} of the "
                  "training data",
            statistic=f"accuracy(AlterNet) − accuracy(Pre-act ResNet), points, mean over {int(g['seeds'])} seeds, "
                      f"paired by seed (same {int(g['train images']):,} images), {100 * level:g} % t-interval",
            value=g["mean"], op=">=", threshold=0.0, interval=(g["lo"], g["hi"]),
            budget={**_sweep_budget(rows), "profile": profile}))
    short = shortfalls(frame)
    smallest, others = short.iloc[0], short.iloc[1:]
    if others.empty:
        raise ValueError("the ViT check needs at least two data fractions")
    checks.append(Check(
        claim="ViT falls behind most on the smallest data",
        statistic=f"ViT's shortfall 1 − acc(ViT)/acc(AlterNet) on {_percent(smallest['fraction'])} minus its largest on "
                  f"{', '.join(_percent(f) for f in others['fraction'])} (accuracies: means over seeds)",
        value=float(smallest["shortfall"] - others["shortfall"].max()), op=">", threshold=0.0,
        budget={**_sweep_budget(data[data["role"].isin(["vit", "alternet"])]), "profile": profile}))
    build = frame[frame["group"] == "build-up"]
    base, full = build[build["role"] == "preresnet"], build[build["role"] == "alternet"]
    if len(base) != 1 or full.empty:
        raise ValueError("the build-up needs one no-MSA baseline run and at least one AlterNet run")
    base, full = base.iloc[0], full.iloc[-1]
    checks.append(Check(
        claim="Adding MSAs at the ends of stages helps: the full AlterNet beats its no-MSA baseline",
        statistic=f"accuracy({full['label']}) − accuracy(no MSA), points, build-up runs at equal epochs "
                  f"({int(full['epochs'])}), seed {int(full['seed'])}",
        value=float(full["accuracy (%)"] - base["accuracy (%)"]), op=">", threshold=0.0,
        budget={**_sweep_budget(build.loc[[base.name, full.name]]), "profile": profile}))
    for when, suffix in (("end of warm-up", ", warm-up"), ("end of training", "")):
        a, b = "Pre-act ResNet" + suffix, "AlterNet" + suffix
        value, lo, hi = spectra.compare(spectrum[a].per_batch, spectrum[b].per_batch, "median positive eigenvalue", seed=seed)
        checks.append(Check(
            claim=f"AlterNet is flatter than its pre-activation CNN ({when})",
            statistic="median positive eigenvalue: AlterNet − Pre-act ResNet (pooled top-5 per batch, batch bootstrap)",
            value=value, op="<", threshold=0.0, interval=(lo, hi),
            budget=budget(states[a], states[b], images=spectrum[b].batch_size * spectrum[b].batches,
                          batches=spectrum[b].batches, k=spectrum[b].k)))
    value, lo, hi = robustness.band_contrast(outcomes["alternet"], outcomes["preresnet"], list(high_bands), eps, seed=seed)
    checks.append(Check(
        claim="AlterNet is more robust than its pre-activation CNN to high-frequency noise",
        statistic=f"Δacc(AlterNet) − Δacc(Pre-act ResNet), points, mean over f ∈ {list(high_bands)}π, ε = {eps:g}",
        value=value, op=">", threshold=0.0, interval=(lo, hi),
        budget=budget(states["AlterNet"], states["Pre-act ResNet"], images=len(outcomes["alternet"]["clean"]), eps=eps)))
    return checks
