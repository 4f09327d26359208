"""What a chapter spec is made of: the runs it loads and, for a chapter with a sweep, the sweep's size.

Each chapter's spec (``lib.chapters.<name>``) declares its runs as :class:`Request` values; the
registry (``lib.chapters``) collects them for the cast test, ``make plan`` and the sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CAST", "SEEDS", "REPLICATES", "Request", "Sweep", "drawn_seeds", "full_page", "load_runs", "replicate_seeds"]

CAST = ("resnet", "vit", "alternet")  # the three models every chapter compares
SEEDS = (0, 1, 2)  # training seeds of the cast: the chapters' runs are seed 0; 1 and 2 replicate them
# The seeds each profile's Chapter 1–3 verdicts are computed over (lib.claims.with_replicates), fixed before
# computing: a seed joins once its runs are committed and the chapters have been executed on it
# (python -m lib.book run --profile P --chapters … --seed S); until then a verdict is seed 0's alone.
REPLICATES = {"smoke": (0,), "cpu": (0,), "paper": (0,)}


def full_page(seed: int = 0, at: str = "final") -> bool:
    """Whether a chapter run is the page readers read (seed 0 at the end of training), which shows every analysis.

    A replicate seed or an earlier snapshot feeds seed 0's verdicts only, so it measures what its checks need
    and skips the figures and side analyses (the authors' protocol, sweeps, controls, landscapes) that no check reads.
    """
    return seed == 0 and at == "final"


def replicate_seeds(profile: str) -> tuple[int, ...]:
    """The training seeds ``profile``'s verdicts are computed over (seed 0 first)."""
    if profile not in REPLICATES:
        raise ValueError(f"profile={profile!r} has no replicate seeds; valid: {sorted(REPLICATES)}")
    return REPLICATES[profile]


def drawn_seeds(profile: str, seed: int = 0, at: str = "final") -> tuple[int, ...]:
    """The replicate seeds a page's figures draw beside its own: the profile's other seeds on seed 0's final page, none
    on a replicate seed's or an earlier snapshot's run (which draws no figure readers see)."""
    return tuple(s for s in replicate_seeds(profile) if s != 0) if full_page(seed, at) else ()


@dataclass(frozen=True)
class Request:
    """One trained run a chapter loads through :func:`lib.runs.trained`, under the label it uses for it.

    Attributes:
        label: The chapter's name for the loaded model (a key of its dictionaries and tables).
        role: ``"resnet"``, ``"vit"``, ``"alternet"`` or ``"preresnet"``.
        at: ``"final"``, ``"warmup"`` or ``"init"``: which snapshot of the run.
        fraction: Share of the training set the run trained on.
        local: Window size of a local-attention ViT (``None``: global attention).
        replicated: Whether the run is trained and measured on the replicate seeds too; a run that is not
            (``False``) is loaded on seed 0 only, and the checks it alone feeds are seed 0's (said so in
            their verdict). Fixed in the spec before computing.
    """

    label: str
    role: str
    at: str = "final"
    fraction: float = 1.0
    local: int | None = None
    replicated: bool = True

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`lib.runs.trained` besides role, profile, seed and snapshot (defaults left out)."""
        out = {}
        if self.fraction != 1.0:
            out["fraction"] = self.fraction
        if self.local is not None:
            out["local"] = self.local
        return out


@dataclass(frozen=True)
class Sweep:
    """A chapter's sweep of training runs under one profile (how many, of what), read by :mod:`lib.sweeps`.

    Attributes:
        fractions: Nested class-balanced shares of the training set, ascending.
        seeds: Fraction → number of seeds (0 … n − 1) of each role.
        roles: The models trained at every fraction and seed.
        build_up: MSAs per stage of each build-up configuration, in order (the no-MSA baseline
            first, the full AlterNet last).
        build_up_recipe: Recipe overrides of the build-up runs; none on ``cpu``, whose build-up
            trains for the cast's epochs, so its two ends are the seed-0 full-data runs.
        keep: ``(role, seed, fraction)`` of the runs whose weights are analysed further.
    """

    fractions: tuple[float, ...]
    seeds: dict[float, int]
    roles: tuple[str, ...] = ("alternet", "preresnet", "vit")
    build_up: tuple[tuple[int, ...], ...] = ((0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2), (0, 0, 1, 2), (0, 1, 1, 2))
    build_up_recipe: dict = field(default_factory=dict)
    keep: tuple[tuple[str, int, float], ...] = ()


def load_runs(requests, profile: str, *, seed: int = 0, device: str = "auto", at: str | None = None,
              snapshot: str | None = None) -> dict:
    """Label → trained model of each request (those of snapshot ``at`` only, if given), in the spec's order.

    ``snapshot`` loads the chosen runs at that moment instead of the one each request names
    (a chapter measured at the end of warm-up, or at initialisation, for the direction of travel).
    A replicate seed (``seed`` ≠ 0) loads only the requests that are ``replicated``.
    """
    from lib import runs

    chosen = [r for r in requests if (at is None or r.at == at) and (seed == 0 or r.replicated)]
    labels = [r.label for r in chosen]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels repeat among the requested runs: {labels}; pass at= to load one snapshot kind")
    return {r.label: runs.trained(r.role, profile, seed=seed, at=snapshot or r.at, device=device, **r.kwargs())
            for r in chosen}
