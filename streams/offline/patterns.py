"""Churn patterns: event-type sets and sequences before churn vs among stayers (offline).

Each customer gives one *window* of ``window_days`` (30): a churner's ends at their first
churn, a stayer's at their last event. A window's *basket* is the set of event types in it; its
*sequences* are the ordered first occurrences of two or three types (``a → b``: the first
``a`` came before the first ``b``). Frequent sets among churners' windows are mined with
Apriori (``mlxtend``, the ``patterns`` extra); sequences are counted directly (at most 3 types
of a vocabulary, so all of them fit). For each pattern:

* ``support_churn`` / ``support_stay``: share of churners' / stayers' windows holding it;
* ``confidence``: share of the windows holding it that end in churn;
* ``lift``: confidence over the base rate (share of all windows that end in churn).

``churnpulse report patterns --events FILE --labels FILE [--svg chart.svg]`` prints the table.
"""

from __future__ import annotations

import html
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Pattern:
    items: tuple[str, ...]
    kind: str  # "set" or "sequence"
    support_churn: float
    support_stay: float
    confidence: float
    lift: float

    @property
    def text(self) -> str:
        return (" → " if self.kind == "sequence" else " + ").join(self.items)


def windows(events: Iterable[tuple[str, float, str]], churns: Iterable[tuple[str, float]],
            window_days: float = 30.0) -> tuple[list[list[tuple[float, str]]],
                                                list[list[tuple[float, str]]]]:
    """Churners' and stayers' windows: the ``(ts, event type)`` in each, in time order."""
    first_churn: dict[str, float] = {}
    for cid, ts in churns:
        first_churn[cid] = min(ts, first_churn.get(cid, ts))
    per: dict[str, list[tuple[float, str]]] = {}
    for cid, ts, etype in events:
        per.setdefault(cid, []).append((ts, etype))
    churned, stayed = [], []
    w = window_days * DAY_S
    for cid, evs in per.items():
        evs.sort()
        end = first_churn.get(cid)
        if end is None:
            last = evs[-1][0]
            stayed.append([e for e in evs if last - w < e[0] <= last])
        else:
            churned.append([e for e in evs if end - w < e[0] <= end])
    return [x for x in churned if x], [x for x in stayed if x]


def _sequences(window: list[tuple[float, str]], length: int) -> set[tuple[str, ...]]:
    first: dict[str, float] = {}
    for ts, etype in window:
        first.setdefault(etype, ts)
    order = sorted(first, key=lambda t: (first[t], t))
    return set(itertools.combinations(order, length))


def mine(churned: list[list[tuple[float, str]]], stayed: list[list[tuple[float, str]]],
         min_support: float = 0.05, max_len: int = 3, min_len: int = 2,
         common: float = 0.9) -> list[Pattern]:
    """Sets (Apriori) and sequences frequent among churners, with lift against stayers.

    Event types found in at least ``common`` of both churners' and stayers' windows (sessions,
    say) are left out: they pad every pattern without telling anything."""
    import pandas as pd
    from mlxtend.frequent_patterns import apriori  # type: ignore[import-untyped]

    if not churned or not stayed:
        return []
    everywhere = {t for t in {e for w in churned + stayed for _, e in w}
                  if min(sum(1 for w in churned if any(e == t for _, e in w)) / len(churned),
                         sum(1 for w in stayed if any(e == t for _, e in w)) / len(stayed))
                  >= common}
    churned = [[x for x in w if x[1] not in everywhere] for w in churned]
    stayed = [[x for x in w if x[1] not in everywhere] for w in stayed]
    baskets_c = [{e for _, e in w} for w in churned]
    baskets_s = [{e for _, e in w} for w in stayed]
    vocab = sorted(set().union(*baskets_c, *baskets_s))
    frame = pd.DataFrame([[t in b for t in vocab] for b in baskets_c], columns=vocab)
    frequent = apriori(frame, min_support=min_support, use_colnames=True, max_len=max_len)
    sets = [tuple(sorted(s)) for s in frequent["itemsets"] if len(s) >= min_len]
    nc, ns = len(churned), len(stayed)
    base = nc / (nc + ns)
    out = []
    for items in sets:
        hc = sum(1 for b in baskets_c if b.issuperset(items))
        hs = sum(1 for b in baskets_s if b.issuperset(items))
        out.append(_pattern(items, "set", hc, hs, nc, ns, base))
    for length in range(2, max_len + 1):
        count_c = Counter(s for w in churned for s in _sequences(w, length))
        count_s = Counter(s for w in stayed for s in _sequences(w, length))
        for seq, hc in count_c.items():
            if hc / nc >= min_support:
                out.append(_pattern(seq, "sequence", hc, count_s.get(seq, 0), nc, ns, base))
    out.sort(key=lambda p: (-p.lift, -p.support_churn, p.kind, p.items))
    return out


def _pattern(items: tuple[str, ...], kind: str, hc: int, hs: int, nc: int, ns: int,
             base: float) -> Pattern:
    conf = hc / (hc + hs) if hc + hs else 0.0
    return Pattern(items, kind, hc / nc, hs / ns, conf, conf / base if base else 0.0)


def svg_chart(patterns: list[Pattern], top: int = 15, title: str = "Churn patterns") -> str:
    """A horizontal bar chart of the top patterns' lift (sets blue, sequences orange)."""
    rows = patterns[:top]
    width, left, bar_h, gap, head = 900, 430, 18, 6, 40
    height = head + len(rows) * (bar_h + gap) + 30
    peak = max((p.lift for p in rows), default=1.0) or 1.0
    scale = (width - left - 120) / peak
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)} '
             f'(lift = P(churn | pattern) / P(churn))</text>']
    x1 = left + scale
    parts.append(f'<line x1="{x1:.1f}" y1="{head - 6}" x2="{x1:.1f}" y2="{height - 24}" '
                 'stroke="#888" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x1 + 3:.1f}" y="{height - 10}" fill="#555">lift 1</text>')
    for i, p in enumerate(rows):
        y = head + i * (bar_h + gap)
        colour = "#1f77b4" if p.kind == "set" else "#ff7f0e"
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">'
                     f'{html.escape(p.text)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(p.lift * scale, 1):.1f}" '
                     f'height="{bar_h}" fill="{colour}"/>')
        parts.append(f'<text x="{left + p.lift * scale + 5:.1f}" y="{y + 13}">'
                     f'{p.lift:.1f}× · {p.support_churn * 100:.0f}% of churners, '
                     f'{p.support_stay * 100:.1f}% of stayers</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def png_chart(patterns: list[Pattern], path: str, top: int = 15,
              title: str = "Churn patterns") -> None:
    """The same chart as :func:`svg_chart`, as a PNG (needs matplotlib, which mlxtend brings)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = patterns[:top][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.2))
    ax.barh([p.text for p in rows], [p.lift for p in rows],
            color=["#1f77b4" if p.kind == "set" else "#ff7f0e" for p in rows])
    for i, p in enumerate(rows):
        ax.text(p.lift, i, f" {p.lift:.1f}× · {p.support_churn * 100:.0f}% churners, "
                           f"{p.support_stay * 100:.1f}% stayers", va="center", fontsize=8)
    ax.axvline(1.0, color="#888", linestyle="--", linewidth=1)
    ax.set_xlabel("lift = P(churn | pattern) / P(churn)   (blue: set, orange: sequence)")
    ax.set_title(title)
    ax.set_xlim(0, max((p.lift for p in rows), default=1.0) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
