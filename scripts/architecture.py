"""Draw the package map of churnpulse from the code: docs/architecture.svg and docs/architecture.md.

The picture and the package paragraphs are generated, so they cannot go stale: the import graph
comes from grimp (the library import-linter runs on), each package's paragraph from its
docstring. ``tests/unit/test_architecture.py`` fails when the committed files differ from what
this script writes.

Usage::

    .venv/bin/python scripts/architecture.py           # rewrite docs/architecture.{md,svg}
    .venv/bin/python scripts/architecture.py --check   # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path
from xml.sax.saxutils import escape

import grimp

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TOP = ("streams", "online_models", "alerts")
BASE = "streams (base)"


def node_of(module: str) -> str:
    """The box a module belongs to: a subpackage of streams, a pure package, or streams' base."""
    parts = module.split(".")
    if parts[0] != "streams":
        return parts[0]
    if len(parts) >= 2 and (ROOT / "streams" / parts[1]).is_dir():
        return f"streams.{parts[1]}"
    return BASE


def package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*TOP, cache_dir=None)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        src = node_of(module)
        edges.setdefault(src, set())
        for imported in graph.find_modules_directly_imported_by(module):
            dst = node_of(imported)
            if dst != src:
                edges[src].add(dst)
    return dict(edges)


def levels(edges: dict[str, set[str]]) -> dict[str, int]:
    """Longest path to a leaf: importers sit above what they import."""
    memo: dict[str, int] = {}

    def depth(n: str, seen: frozenset[str] = frozenset()) -> int:
        if n in memo:
            return memo[n]
        if n in seen:  # a cycle would be a bug the import-linter contracts report
            return 0
        d = 1 + max((depth(m, seen | {n}) for m in edges.get(n, ())), default=-1)
        memo[n] = d
        return d

    return {n: depth(n) for n in edges}


def reduced(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Transitive reduction: drop an arrow that a longer path already implies (less clutter)."""

    def reach(n: str, skip: str) -> set[str]:
        seen: set[str] = set()
        todo = [m for m in edges.get(n, ()) if m != skip]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(edges.get(m, ()))
        return seen

    return {n: {d for d in ds if d not in reach(n, d)} for n, ds in edges.items()}


def svg(edges: dict[str, set[str]]) -> str:
    lv = levels(edges)
    edges = reduced(edges)
    rows: dict[int, list[str]] = defaultdict(list)
    for n, d in lv.items():
        rows[d].append(n)
    top = max(rows)
    box_h, gap_y, pad, char_w = 30, 56, 14, 7.4
    width = {n: int(len(n) * char_w + 2 * pad) for n in lv}
    row_w = {d: sum(width[n] for n in ns) + 24 * (len(ns) - 1) for d, ns in rows.items()}
    total_w = max(row_w.values()) + 40
    pos: dict[str, tuple[float, float]] = {}
    for d, ns in rows.items():
        ns.sort()
        x = (total_w - row_w[d]) / 2
        y = 20 + (top - d) * (box_h + gap_y)
        for n in ns:
            pos[n] = (x, y)
            x += width[n] + 24
    height = 40 + (top + 1) * (box_h + gap_y) - gap_y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{height}" '
           'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7a869a"/>'
           '</marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>']
    for src in sorted(edges):
        for dst in sorted(edges[src]):
            sx, sy = pos[src]
            dx, dy = pos[dst]
            x1, y1 = sx + width[src] / 2, sy + box_h
            x2, y2 = dx + width[dst] / 2, dy
            out.append(f'<line x1="{x1:.1f}" y1="{y1}" x2="{x2:.1f}" y2="{y2}" stroke="#7a869a" '
                       'stroke-opacity="0.55" marker-end="url(#a)"/>')
    for n, (x, y) in sorted(pos.items()):
        pure = not n.startswith("streams")
        fill = "#e3f2e1" if pure else ("#fdf3dc" if n == BASE else "#e4ecf7")
        out.append(f'<rect x="{x:.1f}" y="{y}" width="{width[n]}" height="{box_h}" rx="5" '
                   f'fill="{fill}" stroke="#51607a"/>')
        out.append(f'<text x="{x + width[n] / 2:.1f}" y="{y + 19}" text-anchor="middle">'
                   f'{escape(n)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def docstring(node: str) -> str:
    if node == BASE:
        names = sorted(p.stem for p in (ROOT / "streams").glob("*.py") if p.stem != "__init__")
        return ("Modules at the root of `streams`, below every subpackage: "
                + ", ".join(f"`{n}`" for n in names) + ".")
    path = ROOT / Path(*node.split(".")) / "__init__.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) if path.exists() else None
    return " ".join((doc or "(no docstring)").split())


FLOW = """```
producers ─► customer-events ─► worker (streams.worker): validate ─► dead-letter
                                  features (Redis Lua) ─► snapshot ─► score ─► churn-scores
billing/CRM ─► churn-labels ─► learner (streams.learner) ─► model versions (Redis) ─► worker
churn-scores ─► alerter (streams.alerter) ─► churn-alerts + retention-actions
churn-alerts ─► delivery (streams.delivery): signed webhooks, log sink, support dashboard
history files ─► offline (replay to Kafka; backtest and train in-process, the same code path)
```"""


def markdown(edges: dict[str, set[str]]) -> str:
    lv = levels(edges)
    order = sorted(lv, key=lambda n: (-lv[n], n))
    lines = [
        "# Architecture: the package map",
        "",
        "<!-- generated by scripts/architecture.py from the code; do not edit by hand -->",
        "",
        "![package map](architecture.svg)",
        "",
        "Each box is a package; an arrow means \"imports\" (an arrow that a longer path already",
        "implies is left out; the full lists are below). Boxes higher up import boxes lower",
        "down, never the other way; the processes (worker, learner, alerter, delivery) do not",
        "import each other. `lint-imports` checks these rules in CI (contracts in",
        "`pyproject.toml`); `tests/unit/test_architecture.py` checks that this page and the",
        "picture match the code.",
        "",
        "## Data flow",
        "",
        FLOW,
        "",
        "## Packages, top to bottom",
        "",
    ]
    for n in order:
        deps = ", ".join(f"`{d}`" for d in sorted(edges[n])) or "nothing of ours"
        lines += [f"### `{n}`", "", docstring(n), "", f"Imports: {deps}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the docs are stale")
    args = parser.parse_args(argv)
    edges = package_graph()
    wanted = {DOCS / "architecture.svg": svg(edges), DOCS / "architecture.md": markdown(edges)}
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run scripts/architecture.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
