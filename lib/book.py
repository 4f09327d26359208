"""Run the book: execute every chapter with papermill under a profile, then build the website.

``python -m lib.book run --profile cpu`` executes the chapters in place (their outputs are what
``pytest --nbval chapters/`` checks); any other profile executes a copy of the book under
``_build/<profile>/`` and builds that, leaving the committed chapters untouched. ``--profile
paper`` on a machine without a GPU prints the estimated time and stops unless given ``--yes``.
What training costs (``python -m lib.cost``) is :mod:`lib.cost`.
``python -m lib.book stage NAME -- CMD…`` runs one stage of ``make test`` and prints its wall time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lib import verdict
from lib.chapters import CHAPTER_RUNS
from lib.cost import estimate_training_seconds  # noqa: F401  (called by run; tests replace it here)
from lib.paths import CHAPTERS, REPO, chapter_paths  # noqa: F401  (chapter_paths: part of this module's interface)
BOOK_FILES = ("intro.md", "ledger.md", "bibliography.md", "references.bib", "_config.yml", "_toc.yml")
def glue_values(prefix: str, values: dict) -> None:
    """``glue`` each value as ``<prefix>_<key>`` (display off), for numbers quoted in a chapter's prose."""
    from myst_nb import glue

    for key, value in values.items():
        value = value.item() if hasattr(value, "item") else value  # numpy scalars: glue formats their repr
        glue(f"{prefix}_{key}", value, display=False)


def glue_checks(prefix: str, checks) -> None:
    """``glue`` each check's numbers as ``<prefix>_<id>_value|lo|hi|verdict`` (``checks``: id → check), and the
    counts ``<prefix>_checks``, ``_holding``, ``_inconclusive`` and ``_contradicted``, for prose."""
    for key, check in checks.items():
        lo, hi = check.interval if check.interval is not None else (float("nan"), float("nan"))
        glue_values(f"{prefix}_{key}", {"value": float(check.value), "lo": float(lo), "hi": float(hi),
                                        "verdict": check.outcome})
    count = verdict.tally(c.outcome for c in checks.values())
    glue_values(prefix, {"checks": len(checks), "holding": count["holds"], "inconclusive": count["inconclusive"],
                         "contradicted": count["contradicted"]})


def glue_glance(prefix: str, spec, checks) -> None:
    """``glue`` the chapter's verdict box as ``<prefix>_glance`` (HTML), for the top of its page."""
    from IPython.display import HTML
    from myst_nb import glue

    glue(f"{prefix}_glance", HTML(verdict.glance(checks, spec.PARTS, claim=spec.CLAIM, scope=spec.SCOPE)), display=False)


def execute(notebook: Path, output: Path, *, profile: str, device: str = "auto", seed: int = 0,
            recompute: bool = False, at: str = "final") -> float:
    """Execute one chapter with papermill; return its wall time in seconds.

    ``recompute`` rebuilds the chapter's cached analyses (``lib.cache``) instead of loading them.
    """
    import papermill

    tic = time.perf_counter()
    parameters = {"profile": profile, "device": device, "seed": seed}
    if recompute:  # only chapters with caches declare it; others would warn about an unknown parameter
        parameters["recompute"] = True
    if at != "final":  # likewise: only the chapters measured at every snapshot declare it
        parameters["snapshot"] = at
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters,
        cwd=str(output.parent), kernel_name="python3", progress_bar=False, log_output=False,
    )
    tidy_executed(output)
    return time.perf_counter() - tic


def tidy_executed(notebook: Path) -> None:
    """On the website, fold the chapter's parameters cell and leave out papermill's injected copy of it;
    papermill's record of the notebook's paths is kept relative to the checkout (no machine's folders)."""
    import os

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if record.get(key) and os.path.isabs(record[key]):
            record[key] = os.path.relpath(record[key], REPO)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        for marker, tag in (("injected-parameters", "remove-cell"), ("parameters", "hide-cell")):
            if marker in tags and tag not in tags:
                tags.append(tag)
                break
    nbformat.write(nb, str(notebook))


def _human(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _training_minutes(role: str, profile: str) -> float | None:
    """Minutes a committed full-data run of ``role`` took to train here before (the median), if any."""
    from lib import runs

    took = sorted(m["provenance"]["wall_seconds"] / 60 for m in runs.committed(profile)
                  if m["role"] == role and m["spec"]["fraction"] == 1.0 and m.get("provenance", {}).get("wall_seconds"))
    return took[len(took) // 2] if took else None


def plan(profile: str, chapters: list[str] | None = None, *, seed: int = 0, recompute: bool = False) -> list[str]:
    """What executing ``chapters`` under ``profile`` will do, as lines to print before starting.

    Per chapter: its runs (committed, or to train with an estimate from committed runs of the
    same role; a committed checkpoint is never retrained), its committed cached analyses (valid
    on this machine, or stale and why, with the time they took to build), and how long the
    chapter took the last time it was executed.
    """
    import json

    from lib import cache, runs, sweeps

    if profile == "smoke":
        return ["profile smoke: tiny models trained on the fly into a temporary folder, every analysis computed; "
                "about a minute a chapter; nothing committed is read or written."]
    lines, total = [f"plan for profile {profile!r} (seed {seed}){', recomputing every cached analysis' if recompute else ''}:"], 0.0
    for notebook in chapter_paths(chapters):
        name = notebook.stem
        duration = json.loads(notebook.read_text()).get("metadata", {}).get("papermill", {}).get("duration")
        lines.append(f"{name}: last executed in {duration / 60:.1f} min" if duration else f"{name}:")
        total += duration or 0.0
        wanted = CHAPTER_RUNS.get(name, [])
        committed, to_train = 0, []
        for request in wanted:
            request = dict(request)
            role, at = request.pop("role"), request.pop("at", "final")
            request.setdefault("seed", seed)
            folder = runs.run_dir(role, profile, **request)
            if (folder / f"{at}.safetensors").exists():
                committed += 1
            elif at == "init" and (folder / "final.safetensors").exists():
                to_train.append(f"    ✗ {folder.name} has no init snapshot: add it with python -m lib.runs add-init {role} "
                                f"--profile {profile} --seed {request['seed']} (the chapter fails until then)")
            else:
                minutes = _training_minutes(role, profile)
                fraction = request.get("fraction", 1.0)
                estimate = f"≈ {minutes * fraction:.0f} min" if minutes else "time unknown"
                total += 60 * (minutes or 0) * fraction
                how = "retrain (its committed record keeps only metrics; the new run supersedes it)" \
                    if (folder / "meta.json").exists() else "train"
                to_train.append(f"    will {how} {role} {request} ({estimate})")
        if wanted:
            lines.append(f"  runs: {committed} committed" + (f", {len(to_train)} not:" if to_train else ""))
        lines += to_train
        if sweeps.has_sweep(name, profile) and sweeps.pending(name, profile):
            lines.append(f"  ✗ {len(sweeps.pending(name, profile))} runs of its sweep are not trained; make book does not train "
                         f"sweeps (the chapter fails until then): python -m lib.sweeps run {name} --profile {profile}")
        findings = cache.audit(profile, [name])
        stale = [f for f in findings if recompute or not f.ok]
        if findings:
            lines.append(f"  cached analyses: {len(findings) - len(stale)} of {len(findings)} valid here"
                         + (f"; will recompute {len(stale)} (≈ {sum(f.seconds for f in stale) / 60:.0f} min):" if stale else ""))
            lines += [f"    {f.name}: {f.reason}" for f in stale if not recompute]
            total += sum(f.seconds for f in stale)
    lines.append(f"estimated total: about {_human(total)} on a machine like the ones that built these results"
                 " (analyses missing from the cache are computed as the chapters ask for them, and are not counted)")
    return lines


def run(profile: str, chapters: list[str] | None = None, *, device: str = "auto", seed: int = 0, yes: bool = False,
        build: bool = True, recompute: bool = False, plan_only: bool = False, at: str = "final") -> int:
    """Execute the chapters under ``profile`` and build the site; 0 on success, 1 on a failing chapter.

    Prints :func:`plan` first; ``plan_only`` stops there.
    """
    from lib import profiles

    prof = profiles.get(profile)
    if prof.name == "paper":
        if plan_only:
            print("profile paper: every run is trained from scratch on a GPU and every analysis computed; "
                  "`python -m lib.book run --profile paper` without a GPU prints the estimated training time and stops.")
            return 0
    else:
        print("\n".join(plan(prof.name, chapters, seed=seed, recompute=recompute)), flush=True)
        if plan_only:
            return 0
    if prof.device == "cuda":
        import torch

        if not torch.cuda.is_available() and not yes:
            est = estimate_training_seconds(prof.name)
            print(f"The {prof.name} profile trains the paper's models ({prof.recipe.epochs} epochs each) and needs a GPU.")
            for role, sec in est.items():
                print(f"  {role:9s} {prof.model_name(role):12s} ≈ {_human(sec)} on this machine")
            print(f"  total ≥ {_human(sum(est.values()))} for the cast alone. Not started: pass --yes to run it here anyway.")
            return 0
    replicate = seed != 0 or at != "final"  # a replicate seed or an earlier snapshot: verdicts for seed 0's chapters
    if at != "final":
        from lib.chapters import SPECS

        fixed = [n.stem for n in chapter_paths(chapters) if at not in getattr(SPECS.get(n.stem), "SNAPSHOTS", ("final",))]
        if fixed:
            raise ValueError(f"--at {at}: chapters {fixed} measure their runs at fixed snapshots; chapters measured at "
                             f"any: {sorted(k for k, m in SPECS.items() if len(getattr(m, 'SNAPSHOTS', ())) > 1)}")
    if prof.name == "cpu" and not replicate:
        root = REPO
    else:  # another profile, a replicate seed or a snapshot: a copy (verdicts under data/results/<profile>/seed<N>/at-<X>/)
        root = REPO / "_build" / prof.name if not replicate else REPO / "_build" / "replicates" / f"seed{seed}-{at}" / prof.name
        if root.exists():
            shutil.rmtree(root)
        (root / "chapters").mkdir(parents=True)
        for name in BOOK_FILES:
            shutil.copy(REPO / name, root / name)
        for path in CHAPTERS.iterdir():
            if path.is_file():
                shutil.copy(path, root / "chapters" / path.name)
    from papermill.exceptions import PapermillExecutionError

    for notebook in chapter_paths(chapters):
        target = root / "chapters" / notebook.name
        try:
            seconds = execute(target if root != REPO else notebook, target, profile=prof.name, device=device, seed=seed,
                              recompute=recompute, at=at)
        except PapermillExecutionError as err:
            print(f"✗ {notebook.stem}: failed in cell {err.exec_count}: {err.ename}: {err.evalue}", flush=True)
            print(f"  the executed notebook with the error is {target}", flush=True)
            return 1
        print(f"✓ {notebook.stem}: {seconds:.0f} s", flush=True)
    if replicate:  # a replicate seed's or snapshot's verdicts feed seed 0's chapters; the ledger and the site are seed 0's
        from lib import paths

        print(f"seed {seed}, {at}: verdicts under {paths.results_root(prof.name, seed, at)}; seed 0's final chapters "
              f"combine the seeds of lib.chapters.REPLICATES[{prof.name!r}]", flush=True)
        return 0
    from lib import ledger

    for path in ledger.write(prof.name, root=root):
        print(f"claims ledger: updated {path}", flush=True)
    if build:
        cmd = ["jupyter-book", "build", str(root), "-W", "-n", "--keep-going", "-q"]
        print("building the site:", " ".join(cmd), flush=True)
        done = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), *cmd[1:]])
        if done.returncode:
            return done.returncode
        print(f"site: {root / '_build' / 'html' / 'index.html'}")
    return 0


def stage(name: str, command: list[str]) -> int:
    """Run one stage of ``make test``, printing its wall time whether it passes or fails."""
    print(f"== stage '{name}'", flush=True)
    tic = time.perf_counter()
    code = subprocess.run(command).returncode
    print(f"== stage '{name}': {'ok' if code == 0 else f'FAILED ({code})'} in {time.perf_counter() - tic:.0f} s", flush=True)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the chapters and build the site")
    r.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    r.add_argument("--chapters", nargs="*", help="chapter stems or prefixes (default: all)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--at", default="final", choices=["init", "warmup", "final"],
                   help="measure the chapters' runs at this snapshot (chapters 2 and 3; their verdicts go apart)")
    r.add_argument("--yes", action="store_true", help="run the paper profile even without a GPU")
    r.add_argument("--no-build", action="store_true", help="execute only; skip the site build")
    r.add_argument("--recompute", action="store_true", help="rebuild the chapters' cached analyses (slow)")
    r.add_argument("--plan", action="store_true", help="only say what would be trained, recomputed and how long it takes")
    s = sub.add_parser("stage", help="run a command as a named stage, printing its wall time")
    s.add_argument("name")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "stage":
        cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
        return stage(args.name, cmd)
    return run(args.profile, args.chapters, device=args.device, seed=args.seed, yes=args.yes, build=not args.no_build,
               recompute=args.recompute, plan_only=args.plan, at=args.at)


if __name__ == "__main__":
    sys.exit(main())
