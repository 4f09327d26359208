"""Verdicts computed from measurements: each check is a statistic, a pre-stated threshold and a comparison.

A chapter states every statistic and threshold in its prose first, then builds one
:class:`Check` per claim from the measured numbers; whether it holds is decided here, by the
comparison, never by hand, and stated three ways: *holds* (the value and its whole 95 % interval
lie on the claimed side of the threshold), *contradicted* (all of it lies strictly on the other
side) or *inconclusive* (it straddles or touches the threshold, or a number is undefined); with
each interval goes its resolution, the smallest effect it could tell from the threshold. :func:`record` writes the chapter's checks to
``data/results/<profile>/<chapter>.json`` in the book's one schema (id, claim, statistic,
value, interval, threshold, outcome, resolution, budget, provenance), which the claims ledger renders, and returns
the rounded table the chapter's last cell shows (and nbval compares).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from torch import nn

from lib import paths, profiles, runs, storage

__all__ = ["OPS", "OUTCOMES", "HOLDS", "INCONCLUSIVE", "CONTRADICTED", "Check", "Part", "budget", "record", "results_path", "load",
           "load_parts", "tally", "glance", "badge"]

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
HOLDS, INCONCLUSIVE, CONTRADICTED = "holds", "inconclusive", "contradicted"
OUTCOMES = (HOLDS, INCONCLUSIVE, CONTRADICTED)
SCHEMA = 3  # 2: each check carries its chapter's stable id; 3: its three-way outcome and resolution, and the claim's parts


@dataclass(frozen=True)
class Check:
    """One claim tested against one pre-stated threshold.

    Attributes:
        claim: The paper's statement being tested, in a sentence.
        statistic: What was measured, precisely enough to recompute it.
        value: The measured statistic.
        op: How ``value`` must compare with ``threshold`` for the claim to hold
            (``"<"``, ``"<="``, ``">"``, ``">="``).
        threshold: The bound, fixed before measuring.
        interval: 95 % interval of ``value`` ``(lo, hi)``, or None; when given, both ends must
            satisfy the comparison (an undefined, NaN, interval never does).
        budget: What the number was measured on (profile, models, epochs, data fraction, seeds,
            images); see :func:`budget`.
        note: Optional qualifier shown in the table (e.g. "partly: across stages only").
        interval_kind: What ``interval`` is: a ``"95 % interval"`` (the default, over images or
            batches of one run), a ``"95 % interval over seeds"`` (:func:`lib.claims.over_seeds`), or,
            for a count that ties can move, the ``"range over ties"`` (ties counted against to for).
        replicates: ``(seed, value)`` of each training seed a value over seeds was computed from;
            empty for a check of one run.
    """

    claim: str
    statistic: str
    value: float
    op: str
    threshold: float
    interval: tuple[float, float] | None = None
    budget: dict = field(default_factory=dict)
    note: str = ""
    interval_kind: str = "95 % interval"
    replicates: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op={self.op!r} is not a comparison; valid: {sorted(OPS)}")
        if self.interval is not None:
            lo, hi = self.interval
            if not (math.isnan(lo) or math.isnan(hi)) and not lo <= hi:
                raise ValueError(f"interval={self.interval!r} must be (lo, hi) with lo ≤ hi")

    @property
    def outcome(self) -> str:
        """``"holds"``, ``"contradicted"`` or ``"inconclusive"``, from the value and its interval.

        *holds*: every point (the value and both ends of the interval, if any) satisfies the
        comparison. *contradicted*: every point lies strictly on the other side of the threshold.
        *inconclusive*: anything else: the interval straddles or touches the threshold, a point
        value ties with it under a strict comparison, or a number is undefined (NaN).
        """
        points = [self.value] if self.interval is None else [self.value, *self.interval]
        if any(math.isnan(p) for p in points):
            return INCONCLUSIVE
        if all(OPS[self.op](p, self.threshold) for p in points):
            return HOLDS
        other_side = operator.lt if self.op in (">", ">=") else operator.gt
        if all(other_side(p, self.threshold) for p in points):
            return CONTRADICTED
        return INCONCLUSIVE

    @property
    def holds(self) -> bool:
        """True when the value (and, if given, both ends of its interval) satisfy the comparison."""
        return self.outcome == HOLDS

    @property
    def resolution(self) -> float:
        """Half the interval's width: effects smaller than this cannot be told from the threshold (NaN without a
        95 % interval: a range over ties is not a sampling interval)."""
        if self.interval is None or not self.interval_kind.startswith("95 % interval"):
            return math.nan
        lo, hi = self.interval
        return (hi - lo) / 2

    @property
    def rule(self) -> str:
        """The threshold in words, e.g. ``"> 0 (whole 95 % interval)"``."""
        return f"{self.op} {_fmt(self.threshold)}" + (f" (whole {self.interval_kind})" if self.interval is not None else "")

    def row(self) -> dict:
        return {
            "claim": self.claim,
            "statistic": self.statistic,
            "value": float(self.value),
            "interval": None if self.interval is None else [float(v) for v in self.interval],
            "threshold": {"op": self.op, "value": float(self.threshold), "text": self.rule},
            "holds": self.holds,
            "outcome": self.outcome,
            "resolution": None if math.isnan(self.resolution) else float(self.resolution),
            "note": self.note,
            "budget": self.budget,
            **({"interval_kind": self.interval_kind} if self.interval_kind != "95 % interval" else {}),
            **({"replicates": [{"seed": seed, "value": float(v)} for seed, v in self.replicates]} if self.replicates else {}),
        }


@dataclass(frozen=True)
class Part:
    """One part of the paper's claim, as a chapter states it, and the checks that decide it.

    Attributes:
        text: The paper's statement, in a sentence.
        figure: Where the paper shows it (e.g. ``"Fig 4"``).
        decide: Ids of the checks that decide the part: the paper's measurement where we can make it.
        ours: Ids of our stricter or extra variants, shown beside it but not deciding it (an id a
            profile does not produce, e.g. a middle data fraction, is left out).
    """

    text: str
    figure: str
    decide: tuple[str, ...]
    ours: tuple[str, ...] = ()

    def outcome(self, checks: Mapping[str, Check]) -> str:
        """*holds* when every deciding check holds, *contradicted* when any is contradicted, else *inconclusive*."""
        missing = [key for key in self.decide if key not in checks]
        if missing or not self.decide:
            raise ValueError(f"part {self.text!r}: deciding checks {missing or '(none)'} not among {sorted(checks)}")
        outcomes = [checks[key].outcome for key in self.decide]
        if all(o == HOLDS for o in outcomes):
            return HOLDS
        return CONTRADICTED if CONTRADICTED in outcomes else INCONCLUSIVE

    def measured(self, checks: Mapping[str, Check]) -> bool:
        """Whether any of the part's deciding checks was made: a replicate seed that does not measure a part's runs
        leaves the part out (one that makes only some of them is an error, in :meth:`outcome`)."""
        return any(key in checks for key in self.decide)

    def row(self, checks: Mapping[str, Check]) -> dict:
        return {"text": self.text, "figure": self.figure, "outcome": self.outcome(checks), "decide": list(self.decide),
                "ours": [key for key in self.ours if key in checks]}


def budget(*models: nn.Module, images: int | None = None, **extra) -> dict:
    """What a result was measured on, from the models' training records.

    Returns:
        ``profile``, ``models`` (registered names), ``roles``, ``epochs``, ``fractions``,
        ``seeds``, ``at`` (final / warmup), ``train_images``, plus ``images`` (analysed) and
        any ``extra`` keys. Untrained models (no record) appear as ``"<name> at init"``.
    """
    out: dict = {"profile": None, "models": [], "roles": [], "epochs": [], "fractions": [], "seeds": [], "at": [],
                 "train_images": []}
    for m in models:
        run = getattr(m, "book_run", None)
        if run is None:
            out["models"].append(f"{type(m).__name__} at init")
            continue
        spec = run["spec"]
        out["profile"] = run["profile"]
        for key, value in (("models", spec["model"]), ("roles", run["role"]), ("epochs", spec["recipe"]["epochs"]),
                           ("fractions", spec["fraction"]), ("seeds", spec["seed"]), ("at", run["at"]),
                           ("train_images", run["train_images"])):
            if value not in out[key]:
                out[key].append(value)
    if images is not None:
        out["images"] = int(images)
    out.update(extra)
    return out


def results_path(chapter: str, profile: str, seed: int = 0, at: str = "final") -> Path:
    """``data/results/<profile>/<chapter>.json`` (a temporary folder for ``smoke``); a replicate seed's under ``seed<N>/``,
    an earlier snapshot's under ``at-<snapshot>/`` (:func:`lib.paths.results_root`)."""
    return paths.results_root(profile, seed, at) / f"{chapter}.json"


def load_checks(chapter: str, profile: str, seed: int = 0, at: str = "final") -> dict[str, Check]:
    """The checks ``chapter`` recorded for one training seed and snapshot, by id, as :class:`Check` values again.

    Raises:
        FileNotFoundError: the verdict file is missing, with the command that writes it.
    """
    path = results_path(chapter, profile, seed, at)
    command = (f"python -m lib.book run --profile {profile} --chapters {chapter} --seed {seed}"
               + (f" --at {at}" if at != "final" else "") + " --no-build")
    if not path.exists():
        raise FileNotFoundError(f"no verdict of {chapter} for training seed {seed} under {profile} ({path}); write it with:\n  {command}")
    doc = storage.load_json(path, rebuild_hint=f"Rewrite it with: {command}")
    out = {}
    for row in doc["checks"]:
        out[row["id"]] = Check(
            claim=row["claim"], statistic=row["statistic"], value=float(row["value"]), op=row["threshold"]["op"],
            threshold=float(row["threshold"]["value"]), interval=None if row["interval"] is None else tuple(row["interval"]),
            budget=row["budget"] or {}, note=row.get("note", ""), interval_kind=row.get("interval_kind", "95 % interval"),
            replicates=tuple((r["seed"], float(r["value"])) for r in row.get("replicates", [])))
    return out


def record(chapter: str, profile: str, checks: Mapping[str, Check], *, parts: Sequence[Part] = (), digits: int = 3,
           seed: int = 0, at: str = "final", **provenance) -> pd.DataFrame:
    """Write the chapter's verdict file and return its table for display.

    Args:
        chapter: The chapter's stem.
        profile: The profile it ran under.
        checks: Stable id → check, in the order the chapter tests them (its spec's ``checks``).
        parts: The parts of the paper's claim (its spec's ``PARTS``), each decided by some checks;
            every check must belong to one part, as deciding or as ours.
        digits: Significant digits shown (the JSON keeps full precision).
        seed: The training seed the chapter ran on: a replicate seed (≠ 0) writes its own file
            (:func:`results_path`), which the ledger does not read; seed 0's file holds the
            book's verdict (over seeds, where the chapter replicates it).
        at: The snapshot of the runs the chapter measured: an earlier one (``"init"``,
            ``"warmup"``) writes its own file too, for the direction of travel.
        provenance: Extra provenance (e.g. ``analysis_seconds``).

    Returns:
        One row per check: claim, statistic, value, 95 % interval, threshold, verdict
        (holds / inconclusive / contradicted), rounded, free of timings (nbval compares it).
    """
    if not isinstance(checks, Mapping):
        raise TypeError(f"checks must map each check's id to it (a chapter spec's checks()), got {type(checks).__name__}")
    if not checks:
        raise ValueError("a verdict needs at least one check")
    if parts:
        claimed = [key for p in parts for key in (*p.decide, *p.ours) if key in checks]
        stray, twice = set(checks) - set(claimed), {key for key in claimed if claimed.count(key) > 1}
        if stray or twice:
            raise ValueError(f"each check belongs to exactly one part: not in any {sorted(stray)}, in several {sorted(twice)}")
    dataset = profiles.get(profile).dataset  # the data the profile trains and measures on (paper: CIFAR-100)
    document = {
        "schema": SCHEMA,
        "chapter": chapter,
        "profile": profile,
        **({"seed": seed} if seed else {}),
        **({"at": at} if at != "final" else {}),
        "checks": [{"id": key, **c.row()} for key, c in checks.items()],
        "parts": [p.row(checks) for p in parts if p.measured(checks)],
        "provenance": runs.provenance(dataset, **provenance),
    }
    storage.save_json(document, results_path(chapter, profile, seed, at))
    return table(checks, digits=digits)


def table(checks: Mapping[str, Check] | Iterable[Check], *, digits: int = 3) -> pd.DataFrame:
    """The rounded display table of ``checks`` (a mapping's values, in order)."""
    rows = []
    for c in (checks.values() if isinstance(checks, Mapping) else checks):
        rows.append({
            "claim": c.claim,
            "statistic": c.statistic,
            "value": _fmt(c.value, digits),
            "95 % interval": "" if c.interval is None else f"[{_fmt(c.interval[0], digits)}, {_fmt(c.interval[1], digits)}]",
            "threshold": c.rule,
            "verdict": c.outcome + (f" ({c.note})" if c.note else ""),
        })
    return pd.DataFrame(rows)


def load(profile: str = "cpu", folder: Path | None = None) -> pd.DataFrame:
    """Every recorded check of ``profile``, one row each (for the ledger); ``folder``: read the verdict files there
    instead (e.g. those committed at a git ref, :func:`lib.ledger.compare`)."""
    folder = results_path("x", profile).parent if folder is None else Path(folder)
    rows = []
    for path in sorted(folder.glob("*.json")):
        doc = storage.load_json(path, rebuild_hint=f"Re-execute chapter {path.stem} to rewrite it.")
        for c in doc["checks"]:
            rows.append({"chapter": doc["chapter"], **c})
    return pd.DataFrame(rows)


def load_parts(profile: str = "cpu", folder: Path | None = None) -> list[dict]:
    """Every recorded part of a paper's claim under ``profile``, with its chapter, in the chapters' order (``folder``:
    as in :func:`load`)."""
    folder = results_path("x", profile).parent if folder is None else Path(folder)
    out = []
    for path in sorted(folder.glob("*.json")):
        doc = storage.load_json(path, rebuild_hint=f"Re-execute chapter {path.stem} to rewrite it.")
        out += [{"chapter": doc["chapter"], **part} for part in doc.get("parts", [])]
    return out


def _fmt(x: float, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    return text.replace("e-0", "e-").replace("e+0", "e")


def tally(outcomes) -> dict[str, int]:
    """How many of ``outcomes`` hold, are inconclusive and are contradicted, in :data:`OUTCOMES` order."""
    outcomes = list(outcomes)
    return {o: outcomes.count(o) for o in OUTCOMES}


COLOURS = {HOLDS: "#1a7f37", INCONCLUSIVE: "#9a6700", CONTRADICTED: "#cf222e"}  # green, amber, red: readable on white


def badge(outcome: str) -> str:
    """The outcome as a coloured word (HTML): the word itself carries the meaning, the colour only helps."""
    return (f'<span class="verdict-{outcome}" style="background:{COLOURS[outcome]};color:#fff;padding:0.05em 0.45em;'
            f'border-radius:0.25em;font-weight:600;white-space:nowrap">{outcome}</span>')


def glance(checks: Mapping[str, Check], parts: Sequence[Part], *, claim: str, scope: str, digits: int = 3) -> str:
    """The verdict box a chapter opens with (HTML): the paper's claim, each part's verdict with its deciding
    numbers, and one sentence on what the budget can and cannot show."""
    import html

    rows = []
    parts = [p for p in parts if p.measured(checks)]
    for part in parts:
        numbers = "; ".join(
            _fmt(checks[k].value, digits) + ("" if checks[k].interval is None else
                                              f" [{_fmt(checks[k].interval[0], digits)}, {_fmt(checks[k].interval[1], digits)}]")
            for k in part.decide)
        beside = len([k for k in part.ours if k in checks])
        extra = f"; {beside} more of ours beside it" if beside else ""
        rows.append(f'<tr><td style="padding:0.2em 0.6em 0.2em 0;vertical-align:top;width:7.5em">{badge(part.outcome(checks))}</td>'
                    f'<td style="padding:0.2em 0">{html.escape(part.text)} <span style="color:#555">({html.escape(part.figure)}; '
                    f'measured: {html.escape(numbers)}{extra})</span></td></tr>')
    counts = ", ".join(f"{n} {o}" for o, n in tally(p.outcome(checks) for p in parts).items())
    return (f'<div class="verdict-glance" style="border:1px solid #bbb;border-radius:0.4em;padding:0.6em 1em;margin:0.6em 0 1em 0">'
            f'<p style="margin:0 0 0.3em 0"><strong>The paper\'s claim:</strong> {html.escape(claim)}</p>'
            f'<p style="margin:0 0 0.3em 0"><strong>Our verdict, part by part</strong> ({counts}):</p>'
            f'<table style="border-collapse:collapse;margin:0 0 0.4em 0;width:100%">{"".join(rows)}</table>'
            f'<p style="margin:0;color:#333"><strong>What this budget can show:</strong> {html.escape(scope)}</p></div>')
