"""The backtest report as one self-contained HTML page: inline SVG charts, inline CSS, no
scripts, no fonts or files from anywhere (it opens offline, and mails as one attachment).

:func:`render_html` takes the data of :func:`streams.offline.backtest_report.build_report`.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import Any

ONLINE, BASELINE, SERVED = "#1f6feb", "#d4731c", "#2e8540"
W, H = 640, 280
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 16, 44

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
color:#1b1f24;background:#f6f8fa}
main{max-width:1380px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px}
p.lead{color:#57606a;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;min-width:170px}
.card b{display:block;font-size:24px} .card span{color:#57606a;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));gap:16px}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:0;padding:12px}
figcaption{font-weight:600;margin-bottom:4px} figure p{color:#57606a;font-size:13px;margin:4px 0}
table{border-collapse:collapse;background:#fff;font-size:14px}
th,td{border:1px solid #d0d7de;padding:5px 10px;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#eef1f4}
.key{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px 0 12px;
vertical-align:-1px}
svg text{font-size:12px;fill:#3a424a} .note{color:#57606a;font-size:13px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 3, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if pct:
        return f"{100 * float(value):.1f} %"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def _legend(series: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<span class="key" style="background:{c}"></span>{_esc(n)}'
                   for n, c in series)


def _axes(y_lo: float, y_hi: float, y_ticks: Sequence[float], y_fmt: str, x_label: str,
          y_label: str) -> list[str]:
    parts = []
    for v in y_ticks:
        y = _sy(v, y_lo, y_hi)
        parts.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
                     'stroke="#e6e9ed"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{format(v, y_fmt)}</text>')
    parts.append(f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" '
                 'stroke="#8c959f"/>')
    parts.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 6}" text-anchor="middle">'
                 f'{_esc(x_label)}</text>')
    parts.append(f'<text x="14" y="{(PAD_T + H - PAD_B) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(PAD_T + H - PAD_B) / 2})">{_esc(y_label)}</text>')
    return parts


def _sy(v: float, lo: float, hi: float) -> float:
    return PAD_T + (1 - (v - lo) / (hi - lo)) * (H - PAD_T - PAD_B)


def _sx(v: float, lo: float, hi: float) -> float:
    return PAD_L + ((v - lo) / (hi - lo) if hi > lo else 0.5) * (W - PAD_L - PAD_R)


def _svg(parts: list[str], label: str) -> str:
    return (f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{_esc(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>")


def line_chart(series: Sequence[tuple[str, str, Sequence[tuple[float, float | None]]]],
               y_lo: float, y_hi: float, label: str, y_label: str,
               x_dates: bool = True, reference: float | None = None,
               y_fmt: str = ".2f") -> str:
    """Lines (with dots) over time or any x; ``None`` values leave a gap."""
    xs = [x for _, _, pts in series for x, y in pts if y is not None]
    if not xs:
        return '<p class="note">no data</p>'
    x_lo, x_hi = min(xs), max(xs)
    _, step_y = nice_top(y_hi - y_lo)
    ticks = [y_lo + step_y * k for k in range(round((y_hi - y_lo) / step_y) + 1)]
    parts = _axes(y_lo, y_hi, ticks, y_fmt, "start of the 30-day period" if x_dates else "",
                  y_label)
    if reference is not None:
        y = _sy(reference, y_lo, y_hi)
        parts.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
                     'stroke="#8c959f" stroke-dasharray="4 4"/>')
    last_right = float("-inf")
    for x in sorted(set(xs)):  # a label where it fits: no two labels overlap
        text = _date(x) if x_dates else format(x, ".1f")
        cx = _sx(x, x_lo, x_hi)
        half = 3.4 * len(text)
        anchor, left = "middle", cx - half
        if cx + half > W - PAD_R:
            anchor, left = "end", cx - 2 * half
        elif left < PAD_L - 10:
            anchor, left = "start", cx
        if left < last_right + 12:
            continue
        last_right = left + 2 * half
        parts.append(f'<text x="{cx:.1f}" y="{H - PAD_B + 16}" '
                     f'text-anchor="{anchor}">{text}</text>')
    for name, color, pts in series:
        path, pen = [], "M"
        for x, maybe in pts:
            if maybe is None:
                pen = "M"
                continue
            y = float(maybe)
            cx, cy = _sx(x, x_lo, x_hi), _sy(min(max(y, y_lo), y_hi), y_lo, y_hi)
            path.append(f"{pen}{cx:.1f},{cy:.1f}")
            pen = "L"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}">'
                         f'<title>{_esc(name)}: {y:.3f}</title></circle>')
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" '
                     'stroke-width="2"/>')
    return _svg(parts, label)


def nice_top(value: float) -> tuple[float, float]:
    """An axis top at or above ``value`` and a round tick step (1, 2 or 5 × 10^k).

    >>> nice_top(4.3), nice_top(13.0), nice_top(0.0)
    ((5.0, 1.0), (15.0, 5.0), (1.0, 0.2))
    """
    if value <= 0:
        return 1.0, 0.2
    raw = value / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return float(math.ceil(value / step) * step), float(step)


def bar_chart(categories: Sequence[str],
              series: Sequence[tuple[str, str, Sequence[float | None]]], label: str,
              y_label: str, x_label: str, y_fmt: str = ".1f",
              reference: float | None = None) -> str:
    """Grouped bars, one group per category."""
    values = [v for _, _, vs in series for v in vs if v is not None]
    if not values or not categories:
        return '<p class="note">no data</p>'
    y_hi, step = nice_top(max(values))
    ticks = [step * k for k in range(round(y_hi / step) + 1)]
    parts = _axes(0.0, y_hi, ticks, y_fmt, x_label, y_label)
    group_w = (W - PAD_L - PAD_R) / len(categories)
    bar_w = group_w * 0.8 / max(1, len(series))
    for c, cat in enumerate(categories):
        x0 = PAD_L + c * group_w + group_w * 0.1
        parts.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{H - PAD_B + 16}" '
                     f'text-anchor="middle">{_esc(cat)}</text>')
        for s, (name, color, vs) in enumerate(series):
            v = vs[c] if c < len(vs) else None
            if v is None:
                continue
            y = _sy(v, 0.0, y_hi)
            parts.append(f'<rect x="{x0 + s * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{H - PAD_B - y:.1f}" fill="{color}"><title>{_esc(name)} '
                         f'{_esc(cat)}: {v:.3f}</title></rect>')
    if reference is not None:
        y = _sy(reference, 0.0, y_hi)
        parts.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" '
                     'stroke="#57606a" stroke-dasharray="4 4"/>')
    return _svg(parts, label)


def calibration_chart(series: Sequence[tuple[str, str, Sequence[dict[str, Any]]]],
                      label: str) -> str:
    parts = _axes(0.0, 1.0, [k / 5 for k in range(6)], ".1f", "mean predicted probability",
                  "observed churn rate")
    for k in range(6):
        parts.append(f'<text x="{_sx(k / 5, 0, 1):.1f}" y="{H - PAD_B + 16}" '
                     f'text-anchor="middle">{k / 5:.1f}</text>')
    parts.append(f'<line x1="{_sx(0, 0, 1)}" y1="{_sy(0, 0, 1)}" x2="{_sx(1, 0, 1)}" '
                 f'y2="{_sy(1, 0, 1)}" stroke="#8c959f" stroke-dasharray="4 4"/>')
    for name, color, bins in series:
        pts = [(_sx(b["mean_predicted"], 0, 1), _sy(b["observed_rate"], 0, 1), b)
               for b in bins]
        if pts:
            d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}"
                         for i, (x, y, _) in enumerate(pts))
            parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, b in pts:
            r = 2.5 + min(5.0, math.log10(max(1, b["n"])))
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{color}" '
                         f'fill-opacity="0.8"><title>{_esc(name)}: predicted '
                         f'{b["mean_predicted"]:.3f}, observed {b["observed_rate"]:.3f}, '
                         f'n={b["n"]:,}</title></circle>')
    return _svg(parts, label)


def _figure(title: str, body: str, note: str = "",
            legend: Sequence[tuple[str, str]] = ()) -> str:
    return (f"<figure><figcaption>{_esc(title)}{_legend(legend)}</figcaption>{body}"
            + (f"<p>{note}</p>" if note else "") + "</figure>")


def _card(value: str, text: str) -> str:
    return f'<div class="card"><b>{value}</b><span>{_esc(text)}</span></div>'


def _auc_points(summary: dict[str, Any]) -> list[tuple[float, float | None]]:
    return [(r["start"], r["auc"]) for r in summary.get("auc_over_time", [])]


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    s, c, online = report["settings"], report["counts"], report["online"]
    same = report["same_rows"]
    sb, so = same["baseline"], same["online"]
    warn = report["warning"]
    thr = s["threshold"]
    head = (f"<h1>{_esc(report['title'])}</h1><p class='lead'>{_esc(report['period']['first'])}"
            f" → {_esc(report['period']['last'])} · {c['events']:,} events · "
            f"{c['churns']:,} churns · {c['customers']:,} customers · horizon "
            f"{s['horizon_days']:g} days · alert threshold {thr:g} · champion "
            f"{_esc(s['champion'])}</p>")
    cards = "".join([
        _card(_num(online["roc_auc"]), "online AUC (every resolved snapshot, as served)"),
        _card(_num(so["roc_auc"]), "online AUC at the monthly dates"),
        _card(_num(sb["roc_auc"]), "batch baseline AUC at the monthly dates"),
        _card(_num(warn["online"]["warned_share"], pct=True),
              f"churners warned in time (online, median {_num(warn['online']['median_days'], 1)}"
              " days ahead)"),
        _card(_num(warn["baseline"]["warned_share"], pct=True),
              f"churners warned in time (baseline, median "
              f"{_num(warn['baseline']['median_days'], 1)} days ahead)"),
        _card(f"{report['speed']['events_per_second']:,.0f}/s",
              f"backtest speed ({report['speed']['seconds']:.0f} s)"),
    ])
    auc = line_chart([("online, served scores", SERVED, _auc_points(online)),
                      ("online, monthly dates", ONLINE, _auc_points(so)),
                      ("batch baseline, monthly dates", BASELINE, _auc_points(sb))],
                     0.4, 1.0, "ROC AUC over time", "ROC AUC", reference=0.5)
    auc_fig = _figure(
        "Delayed ROC AUC over time", auc,
        "Each point: the predictions made in one 30-day period, scored against their outcome "
        "once it was known (churn within the horizon). 0.5 (dashed) is chance. The baseline "
        "only starts once a month of outcomes has closed.",
        [("online served", SERVED), ("online, monthly dates", ONLINE),
         ("baseline", BASELINE)])
    lift = bar_chart([str(r["decile"]) for r in so["lift_by_decile"]],
                     [("online", ONLINE, [r["lift"] for r in so["lift_by_decile"]]),
                      ("baseline", BASELINE, [r["lift"] for r in sb["lift_by_decile"]])],
                     "lift by decile", "lift (× base rate)", "decile of risk (1 = riskiest)",
                     reference=1.0)
    lift_fig = _figure(
        "Lift by decile (monthly dates, same rows)", lift,
        "Churn rate in each tenth of the customers ranked by score, over the overall rate. "
        f"Top decile catches {_num(_top_capture(so), pct=True)} of churners online, "
        f"{_num(_top_capture(sb), pct=True)} with the baseline.",
        [("online", ONLINE), ("baseline", BASELINE)])
    cal = calibration_chart([("online served", SERVED, online["calibration"]),
                             ("online, monthly dates", ONLINE, so["calibration"]),
                             ("baseline", BASELINE, sb["calibration"])], "calibration")
    ece = report.get("calibration", {})
    cal_fig = _figure(
        "Calibration (reliability diagram)", cal,
        "Mean predicted probability against the observed churn rate per probability bin (dot "
        "size ∝ log rows); on the diagonal a score is the churn probability. Expected "
        f"calibration error (count-weighted mean gap over 10 bins): served "
        f"{_num(ece.get('ece_served'))}, online at the monthly dates "
        f"{_num(ece.get('ece_monthly_online'))}, baseline {_num(ece.get('ece_baseline'))}.",
        [("online served", SERVED), ("online monthly", ONLINE),
                                 ("baseline", BASELINE)])
    wo, wb = warn["online_same_churns"], warn["baseline"]
    edges = [f"{h['from_days']:g}–{h['to_days']:g}" for h in wo["histogram"]]
    never_o = wo["churners"] - wo["warned"]
    never_b = wb["churners"] - wb["warned"]
    warn_chart = bar_chart(
        [*edges, "never"],
        [("online", ONLINE, [h["churners"] for h in wo["histogram"]] + [never_o]),
         ("baseline", BASELINE, [h["churners"] for h in wb["histogram"]] + [never_b])],
        "days of warning", "churners", "days between the first alert and the churn",
        y_fmt=".0f")
    warn_fig = _figure(
        "Days of warning before churn", warn_chart,
        f"For each of the {wb['churners']:,} churns the baseline could have seen: the first "
        f"score ≥ {thr:g} within the {s['horizon_days']:g} days before the churn. Online "
        "scores come with every event and every quiet-customer re-score; the baseline scores "
        "once a month. Read it with the precision above: a model that flags many customers "
        "warns early, and often wrongly.", [("online", ONLINE), ("baseline", BASELINE)])
    table = _metrics_table(online, so, sb, warn)
    fits = "".join(f"<tr><td>{_date(f['t'])}</td><td>{int(f['train_rows']):,}</td>"
                   f"<td>{int(f['train_positives']):,}</td><td>{int(f['iterations'])}</td></tr>"
                   for f in same["fits"])
    method = (
        "<h2>How this was computed</h2><p class='note'>The history went through the live "
        "code path in-process: the worker's batch processor (features, scoring, snapshots, "
        "churned customers skipped), the quiet-customer sweeper, and the learner's step "
        "(labels resolve snapshots, the watermark expires them, a new model version after "
        "every step that learned). <b>Online served</b> = the score each snapshot got when it "
        "was taken, against its outcome (snapshots scored before the first model version, by "
        "the untrained model's 0.5, are left out, here and in the warnings). "
        "<b>Monthly dates</b> = every active customer at each "
        "UTC month start; the <b>baseline</b> is logistic regression refit at each date on "
        "rows whose outcome window had closed, and <b>online</b> there is the online model "
        "version current at that instant on the same features.</p>"
        f"<table><tr><th>baseline fit at</th><th>training rows</th><th>churners</th>"
        f"<th>Newton iterations</th></tr>{fits}</table>")
    counts = "".join(f"<tr><td>{_esc(k)}</td><td>{_num(v)}</td></tr>"
                     for k, v in c.items() if not isinstance(v, dict))
    alerts = ""
    if report.get("alerts"):
        from streams.offline.report_alerts_html import alerts_html
        alerts = alerts_html(report["alerts"], s["horizon_days"])
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(report['title'])}</title><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
            f"<main>{head}<div class='cards'>{cards}</div>"
            f"<h2>Side by side</h2>{table}{alerts}"
            f"<h2>Charts</h2><div class='grid'>{auc_fig}{warn_fig}{lift_fig}{cal_fig}</div>"
            f"{method}<h2>Counts</h2><table>{counts}</table>"
            f"<p class='note'>generated {_esc(report['generated_at'])} · data in "
            "report.json</p></main></body></html>")


def _top_capture(summary: dict[str, Any]) -> float | None:
    rows = summary.get("lift_by_decile") or []
    return rows[0]["cumulative_capture"] if rows else None


def _metrics_table(online: dict[str, Any], so: dict[str, Any], sb: dict[str, Any],
                   warn: dict[str, Any]) -> str:
    def at(summary: dict[str, Any], key: str) -> Any:
        return summary["at_threshold"][key]

    def lift1(summary: dict[str, Any]) -> Any:
        rows = summary.get("lift_by_decile") or []
        return rows[0]["lift"] if rows else None

    rows = [
        ("predictions evaluated", online["n"], so["n"], sb["n"], None),
        ("churners among them", online["positives"], so["positives"], sb["positives"], None),
        ("ROC AUC", online["roc_auc"], so["roc_auc"], sb["roc_auc"], None),
        ("precision at threshold", at(online, "precision"), at(so, "precision"),
         at(sb, "precision"), None),
        ("recall at threshold", at(online, "recall"), at(so, "recall"), at(sb, "recall"),
         None),
        ("share flagged", at(online, "flagged_share"), at(so, "flagged_share"),
         at(sb, "flagged_share"), "pct"),
        ("top-decile lift", lift1(online), lift1(so), lift1(sb), None),
        ("Brier score", online["brier"], so["brier"], sb["brier"], None),
        ("churners warned in time", warn["online"]["warned_share"],
         warn["online_same_churns"]["warned_share"], warn["baseline"]["warned_share"], "pct"),
        ("median days of warning", warn["online"]["median_days"],
         warn["online_same_churns"]["median_days"], warn["baseline"]["median_days"], None),
    ]
    body = "".join(
        f"<tr><td>{_esc(name)}</td>" + "".join(f"<td>{_num(v, pct=fmt == 'pct')}</td>"
                                               for v in (a, b, d)) + "</tr>"
        for name, a, b, d, fmt in rows)
    return ("<table><tr><th></th><th>online, served snapshots</th><th>online, monthly dates"
            "</th><th>batch baseline, monthly dates</th></tr>" + body + "</table>"
            "<p class='note'>Warnings: the first two columns use every online score; the "
            "middle one counts only the churns the baseline could also have warned about.</p>")
