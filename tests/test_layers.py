"""The import graph of ``lib``: no circle, and the science never imports the book layer.

The science modules (data, models, analyses, metrics, training) must run on their own, in a
reader's project without the book; the book layer (runs, caches, verdicts, claims, ledger,
runner) sits above them. Imports inside functions count too.
"""

from pathlib import Path

from lib import cache

LIB = Path(__file__).resolve().parents[1] / "lib"
SCIENCE = ("lib.data", "lib.models", "lib.analysis", "lib.metrics", "lib.train", "lib.distributed", "lib.storage", "lib.paths")
BOOK_LAYER = ("lib.runs", "lib.run_store", "lib.run_reports", "lib.cache", "lib.verdict", "lib.claims", "lib.ledger", "lib.differences", "lib.book",
              "lib.sweeps", "lib.yours", "lib.plots", "lib.cost")


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each ``lib`` module → the ``lib`` modules it imports anywhere in its source."""
    graph = {_module_name(p): set() for p in LIB.rglob("*.py")}
    for name in graph:
        graph[name] = {m for m in cache.imports_of(name) if m in graph and m != "lib"}
    return graph


def _cycles(graph):
    done, stack, out = set(), [], []

    def visit(node):
        if node in stack:
            out.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    return out


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_import_graph_has_no_circle():
    cycles = _cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_known_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_science_imports_nothing_from_the_book_layer():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if _within(d, BOOK_LAYER)) for m, deps in graph.items() if _within(m, SCIENCE)}
    assert not {m: d for m, d in bad.items() if d}, f"science modules importing the book layer: {bad}"
