"""Statistics over training runs that the chapters' checks share: t-intervals over seeds, checks replicated over
seeds, paired gaps, shortfalls.

Each chapter's checks themselves live in its spec, ``lib.chapters.<name>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import pandas as pd

from lib.verdict import Check, load_checks, results_path

__all__ = ["T_LEVEL", "t_interval", "over_seeds", "with_replicates", "TRAVEL", "travel", "travel_summary", "paired_gaps", "gap_outcome", "shortfalls", "percent", "sweep_budget"]

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


SEED_INTERVAL = "95 % interval over seeds"


def over_seeds(per_seed: Mapping[int, Mapping[str, Check]], *, level: float = T_LEVEL) -> dict[str, Check]:
    """Each check replicated over training seeds: the mean of its per-seed values, with a t-interval over seeds.

    The claims are about architectures, so the variation that matters is from one training run
    to the next; each seed's own interval (over images or batches) is left out of the verdict,
    and its value kept as a replicate. One seed gives its checks back unchanged: there is
    nothing to replicate. A seed whose value is NaN makes the mean NaN (the check is then
    inconclusive), and so does a t-interval of fewer than two seeds.

    Args:
        per_seed: Seed → that seed's checks by id (a chapter spec's ``checks``), the same ids,
            claims and rules for every seed.
        level: Coverage of the t-interval.

    Raises:
        ValueError: no seeds, or seeds whose checks differ in ids, claims or rules.
    """
    if not per_seed:
        raise ValueError("over_seeds needs the checks of at least one seed")
    seeds = sorted(per_seed)
    if len(seeds) == 1:
        return dict(per_seed[seeds[0]])
    first = per_seed[seeds[0]]
    for seed in seeds[1:]:
        other = per_seed[seed]
        if list(other) != list(first):
            raise ValueError(f"seed {seed} has checks {list(other)}, seed {seeds[0]} has {list(first)}")
        for key, check in other.items():
            ref = first[key]
            if (check.claim, check.op, check.threshold) != (ref.claim, ref.op, ref.threshold):
                raise ValueError(f"check {key!r} differs between seeds {seeds[0]} and {seed}: "
                                 f"{ref.claim!r} {ref.op} {ref.threshold} against {check.claim!r} {check.op} {check.threshold}")
    out = {}
    for key, ref in first.items():
        values = [float(per_seed[seed][key].value) for seed in seeds]
        if any(math.isnan(v) for v in values):
            mean, lo, hi = math.nan, math.nan, math.nan
        else:
            mean, lo, hi = t_interval(values, level=level)
        shown = ", ".join(f"{seed}: {v:.3g}" for seed, v in zip(seeds, values))
        texts = {per_seed[seed][key].statistic for seed in seeds}  # per-seed counts ("— 3 of 4") differ: drop them
        words = ref.statistic if len(texts) == 1 else ref.statistic.rsplit(" — ", 1)[0]
        budget = {**ref.budget, "seeds": seeds}
        out[key] = Check(claim=ref.claim, statistic=f"{words}; mean over seeds ({shown})", value=mean, op=ref.op,
                         threshold=ref.threshold, interval=(lo, hi), budget=budget, note=ref.note,
                         interval_kind=SEED_INTERVAL, replicates=tuple(zip(seeds, values)))
    return out


def with_replicates(chapter: str, profile: str, checks: Mapping[str, Check], *, seed: int = 0,
                    seeds: tuple[int, ...] = (0,), at: str = "final") -> dict[str, Check]:
    """The chapter's checks of ``seed`` over the replicate ``seeds``: seed 0's run combines the recorded verdicts of the others.

    A run on a replicate seed (``seed`` ≠ 0) or on an earlier snapshot (``at`` ≠ ``"final"``), or a
    book replicated over seed 0 alone, gets its own checks back. Seed 0's run reads every other seed's verdict file
    (:func:`lib.verdict.load_checks`, written by running the chapter with ``--seed``) and gives
    :func:`over_seeds` of the checks every seed measured; a check only seed 0 measured (its runs are not
    replicated, :class:`lib.chapters.base.Request`) keeps seed 0's value and interval, and says so in its note.
    """
    if seed != 0 or at != "final" or tuple(seeds) == (0,):
        return dict(checks)
    if 0 not in seeds:
        raise ValueError(f"seeds={tuple(seeds)!r} must include seed 0, whose run combines them")
    others = {s: load_checks(chapter, profile, s) for s in seeds if s != 0}
    for s, theirs in others.items():
        if set(theirs) - set(checks):
            raise ValueError(f"seed {s} of {chapter} has checks seed 0 lacks: {sorted(set(theirs) - set(checks))}")
    common = [key for key in checks if all(key in theirs for theirs in others.values())]
    combined = over_seeds({0: {key: checks[key] for key in common},
                           **{s: {key: theirs[key] for key in common} for s, theirs in others.items()}})
    alone = ", ".join(str(s) for s in sorted(others))
    return {key: combined[key] if key in combined else replace(
                checks[key], note="; ".join(filter(None, (checks[key].note, f"seed 0 only: not measured on seed{'s' if len(others) > 1 else ''} {alone}"))))
            for key in checks}


TRAVEL = ("init", "warmup", "final")  # the snapshots a direction of travel runs through, in order


def travel(chapter: str, profile: str, *, seeds: tuple[int, ...] = (0,)) -> pd.DataFrame:
    """Each check of ``chapter`` at every recorded snapshot of its runs, per seed, and where it is heading.

    A claim whose statistic moves towards its claimed side from initialisation to the end of
    training is likely to grow with a longer budget; one that moves away is not a budget effect.

    Returns:
        One row per check and seed: ``id``, ``claim``, ``seed``, the value at each snapshot of
        :data:`TRAVEL` recorded (NaN where the chapter was not run at it), ``threshold``, and
        ``direction``: ``"towards"`` (from the earliest recorded snapshot to the final one the
        value moves to the claimed side of the threshold, e.g. up for ``>``), ``"away"``,
        ``"flat"`` (no change), or ``""`` with fewer than two snapshots recorded.
    """
    rows = []
    for seed in seeds:
        recorded = {at: load_checks(chapter, profile, seed, at) for at in TRAVEL if results_path(chapter, profile, seed, at).exists()}
        if "final" not in recorded:
            raise FileNotFoundError(f"{chapter} has no final verdict for seed {seed} under {profile}: run the chapter first")
        for key, final in recorded["final"].items():
            values = {at: (_own_value(recorded[at][key], seed) if at in recorded and key in recorded[at] else math.nan)
                      for at in TRAVEL}
            known = [values[at] for at in TRAVEL if not math.isnan(values[at])]
            direction = ""
            if len(known) >= 2:
                change = known[-1] - known[0]
                up = final.op in (">", ">=")
                direction = "flat" if change == 0 else "towards" if (change > 0) == up else "away"
            rows.append({"id": key, "claim": final.claim, "seed": seed, **values, "threshold": final.threshold,
                         "direction": direction})
    return pd.DataFrame(rows, columns=["id", "claim", "seed", *TRAVEL, "threshold", "direction"])


def _own_value(check: Check, seed: int) -> float:
    """The value ``seed``'s own runs gave: seed 0's final verdict holds the mean over seeds, and each seed's value beside it."""
    return float(dict(check.replicates).get(seed, check.value))


def travel_summary(frame: pd.DataFrame, chapter: str, profile: str) -> str:
    """One sentence on where each check of :func:`travel` is heading, or, before any earlier snapshot is measured,
    the commands that measure them."""
    known = frame[frame["direction"] != ""]
    if known.empty:
        number = chapter.split("_", 1)[0]
        return (f"Not measured yet: only the end of training is recorded. Measure the runs at initialisation and at "
                f"the end of warm-up with `python -m lib.book run --profile {profile} --chapters {number} --at init "
                f"--no-build` and `--at warmup` (add `--seed N` for each replicate seed).")
    said = []
    for direction, words in (("towards", "move towards the claimed side"), ("away", "move away from it"),
                             ("flat", "do not move")):
        claims_here = []
        for key, rows in known.groupby("id", sort=False):
            n = int((rows["direction"] == direction).sum())
            if n:
                claims_here.append(rows["claim"].iloc[0] + ("" if n == len(rows) else f" ({n} of {len(rows)} seeds)"))
        if claims_here:
            said.append(f"{len(claims_here)} {words}: " + "; ".join(claims_here))
    seeds = sorted(set(known["seed"]))
    return (f"From initialisation to the end of training (seeds {', '.join(map(str, seeds))}), " + ". ".join(said) + ".")


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


def gap_outcome(gaps: pd.DataFrame, better: str = "AlterNet", worse: str = "its pre-activation CNN", *,
                margin: float = 0.0) -> str:
    """One sentence on :func:`paired_gaps`' intervals: shown at least as accurate, shown less accurate, or neither.

    "At least as accurate" allows ``better`` to trail by less than ``margin`` points (a
    non-inferiority margin, 0 for superiority-or-equal): it is shown where the whole interval lies
    at or above −margin, and "less accurate" only where the whole interval lies below −margin.
    """
    def at(rows) -> str:
        return ", ".join(percent(f) for f in rows["fraction"])

    bound = f"−{margin:g} points" if margin else "0"
    within = f" (within {margin:g} point{'' if margin == 1 else 's'})" if margin else ""
    below, above = gaps[gaps["hi"] < -margin], gaps[gaps["lo"] >= -margin]
    if len(above) == len(gaps):
        return f"{better} is at least as accurate as {worse}{within} at every data fraction tested ({at(gaps)})."
    if not below.empty:
        return f"{better} is less accurate than {worse} at {at(below)}: the whole interval lies below {bound}."
    parts = [f"at {percent(g['fraction'])} the interval reaches below {bound}" for _, g in gaps[gaps["lo"] < -margin].iterrows()]
    for _, g in gaps[gaps["lo"].isna()].iterrows():
        n = int(g["seeds"])
        parts.append(f"at {percent(g['fraction'])} there is no interval ({n} seed{'' if n == 1 else 's'})")
    parts += [f"at {at(above)} it is at least as accurate{within}"] if not above.empty else []
    return (f"{better} is not shown to be at least as accurate as {worse}{within} at every fraction, nor less accurate "
            f"at any: {'; '.join(parts)}.")


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


def percent(fraction: float) -> str:
    return f"{100 * float(fraction):g} %"


def sweep_budget(rows: pd.DataFrame) -> dict:
    """``lib.verdict.budget``'s keys for runs known only by their rows of ``lib.sweeps.results``."""
    def unique(column):
        return [v.item() if hasattr(v, "item") else v for v in dict.fromkeys(rows[column])]

    return {"profile": None, "models": unique("model"), "roles": unique("role"), "epochs": unique("epochs"),
            "fractions": unique("fraction"), "seeds": sorted(unique("seed")), "at": ["final"],
            "train_images": unique("train images")}
