"""The alert section of the backtest report page: the alert policy over the served scores, per
week, against its budget, and the batch baseline at the same alert volume (data:
:mod:`streams.offline.backtest_alerts`)."""

from __future__ import annotations

from typing import Any

from streams.offline.report_html import (
    BASELINE,
    ONLINE,
    SERVED,
    _esc,
    _figure,
    _num,
    line_chart,
    nice_top,
)


def _days(w: dict[str, Any]) -> str:
    if w.get("median") is None:
        return "-"
    return f"{_num(w['median'], 1)} ({_num(w['p25'], 1)}–{_num(w['p75'], 1)})"


def _row(name: str, t: dict[str, Any]) -> str:
    return (f"<tr><td>{_esc(name)}</td><td>{t['alerts']:,}</td><td>"
            f"{_num(t.get('per_1000_active'), 1)}</td><td>{_num(t['precision'], pct=True)}</td>"
            f"<td>{_num(t['base_rate'], pct=True)}</td><td>{_num(t['recall'], pct=True)}</td>"
            f"<td>{_days(t['warning_days'])}</td><td>{_days(t['warned_churner_days'])}</td>"
            "</tr>")


def alerts_html(section: dict[str, Any], horizon_days: float) -> str:
    """The ``<h2>Alerts</h2>`` part of the page."""
    online = section["online"]
    weeks = online["weeks"]
    later = section["after_first_month"]
    if section["mode"] == "budget":
        parts = []
        for b in section["budgets"]:
            cap = (f"{b['per_day']:g} alerts per day" if b.get("per_day") else
                   f"{100 * b['share_per_week']:g}% of active customers per week")
            parts.append(f"{_esc(b['team'])}: {cap}")
        policy = "budget — " + "; ".join(parts)
    else:
        t = section["thresholds"]
        policy = (f"absolute thresholds — enter {t['enter']:g}, exit {t['exit']:g}, high "
                  f"{t['high']:g}, critical {t['critical']:g}")
    volume = [("alerts sent", SERVED, [(w["start"], float(w["alerts"])) for w in weeks])]
    if any("budget" in w for w in weeks):
        volume.append(("budget", BASELINE, [(w["start"], w.get("budget")) for w in weeks]))
    top = max([float(w["alerts"]) for w in weeks] + [float(w.get("budget") or 0)
                                                      for w in weeks] + [1.0])
    chart = line_chart(volume, 0.0, nice_top(top * 1.1)[0], "alerts per week", "alerts",
                       y_fmt=".0f")
    vol_fig = _figure(
        "Alerts per week", chart,
        "Alert records sent per week (escalations included) and the week's budget.",
        [(name, color) for name, color, _ in volume])
    prec = line_chart(
        [("precision", ONLINE, [(w["start"], w["precision"]) for w in weeks]),
         ("base churn rate", BASELINE, [(w["start"], w["base_rate"]) for w in weeks]),
         ("recall of churners", SERVED, [(w["start"], w["recall"]) for w in weeks])],
        0.0, 1.0, "precision per week", "share")
    prec_fig = _figure(
        "Precision, base rate and recall per week", prec,
        f"Precision: alerted customers of the week who churned within {horizon_days:g} days "
        "of their alert. Base rate: the same for every active customer of the week (alerting "
        "at random). Recall: churns of the week whose customer had an alert in the "
        f"{horizon_days:g} days before.",
        [("precision", ONLINE), ("base rate", BASELINE), ("recall", SERVED)])
    rows = _row("online policy, whole history", online["total"])
    if "baseline" in section:
        rows += _row("online policy, from the baseline's first date",
                     section["online_from_baseline_start"]["total"])
        rows += _row("batch baseline, same alert volume", section["baseline"]["total"])
    table = ("<table><tr><th></th><th>alerts</th><th>alerted customers per 1,000 active per "
             "week</th><th>precision</th><th>base rate</th><th>recall</th><th>days of warning, "
             "right alerts: median (quartiles)</th><th>days of warning per warned churner"
             f"</th></tr>{rows}</table>")
    checks = (f"<p class='note'>After the first month ({later['weeks']} weeks): weekly volume "
              f"{_num(later['volume_ratio_min'], 2)}–{_num(later['volume_ratio_max'], 2)} × "
              f"budget, {_num(later['weeks_within_15pct'], pct=True)} of weeks within ±15 %; "
              f"precision {_num(later['precision'], pct=True)} = "
              f"{_num(later['precision_over_base'], 2)} × the base rate "
              f"{_num(later['base_rate'], pct=True)}.</p>")
    weekly = "".join(
        f"<tr><td>{w['week']}</td><td>{w['alerts']:,}</td><td>{_num(w.get('budget'), 1)}</td>"
        f"<td>{w['customers']:,}</td><td>{w['active']:,}</td>"
        f"<td>{_num(w['precision'], pct=True)}</td><td>{_num(w['base_rate'], pct=True)}</td>"
        f"<td>{_num(w['recall'], pct=True)}</td><td>{_days(w['warning_days'])}</td></tr>"
        for w in weeks)
    weekly_table = ("<details><summary>every week</summary><table><tr><th>week</th>"
                    "<th>alerts</th><th>budget</th><th>alerted customers</th><th>active</th>"
                    "<th>precision</th><th>base rate</th><th>recall</th><th>days of warning"
                    f"</th></tr>{weekly}</table></details>")
    sev = ", ".join(f"{k} {v:,}" for k, v in sorted(section["by_severity"].items()))
    return (f"<h2>Alerts</h2><p class='note'>The alerter's policy ({policy}) run over the "
            f"served scores, as live (severities: {sev or 'none'}). The batch baseline alerts "
            "the customers it ranks highest at each monthly date, as many as the online "
            f"policy alerted until the next date.</p>{table}{checks}"
            f"<div class='grid'>{vol_fig}{prec_fig}</div>{weekly_table}")
