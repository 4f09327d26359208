"""What moved against a git ref: the committed files of a profile's results at a commit, beside the working tree's.

:func:`compare_cache` tells, for every cached analysis, whether it is the same, changed (its key, its result,
with the largest difference), new or gone (``python -m lib.cache compare --against REF``); the git helpers
here also let :func:`lib.ledger.compare` read the verdict files committed at a ref.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

from lib import paths

__all__ = ["Move", "blob_sha", "cache_markdown", "cache_tally", "committed_folder", "compare_cache", "compare_entry",
           "git_blob", "git_files", "is_entry", "largest_difference"]




def committed_folder(profile: str, root: Path = paths.REPO) -> str:
    """Where ``profile``'s results live inside the repository at ``root`` (``data/results/<profile>``), as git names it."""
    folder = paths.results_root(profile).resolve()
    try:
        return folder.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"the results of profile {profile!r} live at {folder}, outside the repository at {root}, so git "
                         "holds no committed version of them (smoke results are never committed; unset BOOK_RESULTS_DIR)") from None


def git_files(ref: str, folder: str, root: Path = paths.REPO) -> dict[str, str]:
    """``{path under folder: blob SHA}`` of every file under ``folder`` at commit ``ref``: what was committed there."""
    import subprocess

    done = subprocess.run(["git", "ls-tree", "-r", "-z", "--full-tree", ref, "--", f"{folder}/"], cwd=root,
                          capture_output=True, check=True, timeout=60)
    out = {}
    for line in done.stdout.decode().split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            _, kind, sha = meta.split()
            if kind == "blob":
                out[path.removeprefix(f"{folder}/")] = sha
    return out


def git_blob(sha: str, root: Path = paths.REPO) -> bytes:
    """The bytes of one committed file, by its blob SHA (:func:`git_files`)."""
    import subprocess

    return subprocess.run(["git", "cat-file", "blob", sha], cwd=root, capture_output=True, check=True, timeout=60).stdout


def blob_sha(data: bytes) -> str:
    """The SHA git gives a file of these bytes: a working-tree file whose SHA is the committed one is the same, unread."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_entry(path: str) -> bool:
    """Whether a path under a profile's results (``[seedN/][at-X/]cache/<chapter>/<name>.json``) is a cache entry."""
    parts = path.split("/")
    return len(parts) >= 3 and parts[-3] == "cache" and parts[-1].endswith(".json")


def largest_difference(a, b) -> float | None:
    """The largest absolute difference between the numbers of two stored results, None where they are not comparable
    (another shape, other keys, or a string, flag or None that differs)."""
    if _is_number(a) and _is_number(b):
        x, y = float(a), float(b)
        if x == y or (math.isnan(x) and math.isnan(y)):
            return 0.0
        return math.inf if math.isnan(x) or math.isnan(y) else abs(x - y)
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        pairs = [(a[k], b[k]) for k in a]
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        pairs = list(zip(a, b))
    else:
        return 0.0 if type(a) is type(b) and a == b else None
    worst = 0.0
    for x, y in pairs:
        gap = largest_difference(x, y)
        if gap is None:
            return None
        worst = max(worst, gap)
    return worst


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Move:
    """How one cache entry differs between a git ref and the working tree: ``same``, ``changed``, ``new`` or ``gone``."""

    entry: str  # its path under the profile's results, without ``.json``
    status: str
    what: str = ""  # for ``changed``: ``key``, ``result`` or ``key, result``
    largest: float | None = None  # for a changed result: the largest absolute difference, None if not comparable


def compare_entry(entry: str, before: bytes | None, after: bytes | None) -> Move:
    """How one cache entry moved, from its committed and its current bytes (None where absent)."""
    if before is None or after is None:
        return Move(entry, "new" if before is None else "gone")
    old, new = json.loads(before), json.loads(after)
    what = [part for part, field in (("key", "key"), ("result", "value")) if old.get(field) != new.get(field)]
    if not what:
        return Move(entry, "same")  # rebuilt to the same key and value (its provenance may differ)
    largest = largest_difference(old.get("value"), new.get("value")) if "result" in what else None
    return Move(entry, "changed", ", ".join(what), largest)


def compare_cache(ref: str, profile: str = "cpu", root: Path = paths.REPO) -> list[Move]:
    """Every cache entry of ``profile`` (every seed and snapshot) as committed at git ref ``ref`` beside the working tree's."""
    sha = paths.verify_ref(ref, root)
    folder = committed_folder(profile, root)
    committed = {path: blob for path, blob in git_files(sha, folder, root).items() if is_entry(path)}
    here = paths.results_root(profile)
    current = {path: here / path for path in sorted(p.relative_to(here).as_posix() for p in here.rglob("*.json")) if is_entry(path)}
    moves = []
    for path in sorted(set(committed) | set(current)):
        after = current[path].read_bytes() if path in current else None
        if after is not None and committed.get(path) == blob_sha(after):
            moves.append(Move(path.removesuffix(".json"), "same"))
            continue
        before = git_blob(committed[path], root) if path in committed else None
        moves.append(compare_entry(path.removesuffix(".json"), before, after))
    return moves


def cache_markdown(moves: list[Move], ref: str, profile: str) -> str:
    """The comparison as a Markdown table, one row per entry, ending with a one-line tally."""
    lines = [f"Cache entries of profile `{profile}`: at `{ref}` → the working tree", "",
             "| entry | at the ref | what changed | largest absolute difference |", "| --- | --- | --- | --- |"]
    lines += [f"| {m.entry} | {m.status} | {m.what} | {_gap_text(m)} |" for m in moves]
    return "\n".join(lines + ["", cache_tally(moves)]) + "\n"


def _gap_text(move: Move) -> str:
    """A changed result's largest absolute difference as text (``not comparable`` where its shape changed), else nothing."""
    if "result" not in move.what.split(", "):
        return ""
    return "not comparable" if move.largest is None else f"{move.largest:.3g}"


def cache_tally(moves: list[Move]) -> str:
    """One line: how many entries are the same, changed (by key, by result), new and gone."""
    count = {s: sum(m.status == s for m in moves) for s in ("same", "changed", "new", "gone")}
    keys, results = (sum(part in m.what.split(", ") for m in moves) for part in ("key", "result"))
    return (f"{len(moves)} cache entries: {count['same']} same, {count['changed']} changed ({keys} key, {results} result), "
            f"{count['new']} new, {count['gone']} gone")
