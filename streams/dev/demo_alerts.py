"""The demo's alert figures: alerted customers per 1,000 active per week, precision so far."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

DAY_S = 86400.0


@dataclass
class AlertTally:
    """Alerted customers (first alert, event time) and churn labels seen by the demo.

    >>> t = AlertTally()
    >>> t.add_alert({"customer_id": "a", "ts": "2026-01-01T00:00:00+00:00"})
    >>> t.add_alert({"customer_id": "b", "ts": "2026-01-01T00:00:00+00:00"})
    >>> t.add_label(b'{"label_id":"l","customer_id":"a","ts":"2026-01-02T00:00:00Z",'
    ...             b'"churned":true}')
    >>> t.add_label(b'{"label_id":"m","customer_id":"z","ts":"2026-02-10T00:00:00Z",'
    ...             b'"churned":false}')
    >>> t.line(active=500, days=14, horizon_days=30.0)
    '2.0 alerted customers per 1,000 active per week · precision 1 of 2 resolved (50%)'
    """

    alerted: dict[str, float] = field(default_factory=dict)
    churned: dict[str, float] = field(default_factory=dict)
    clock: float = float("-inf")  # newest label time seen

    def add_alert(self, alert: dict[str, object]) -> None:
        from alerts.contracts import BadScore, parse_ts

        cid = alert.get("customer_id")
        if isinstance(cid, str) and cid not in self.alerted:
            with contextlib.suppress(BadScore):
                self.alerted[cid] = parse_ts(alert.get("ts"))

    def add_label(self, raw: bytes | None) -> None:
        from streams.contracts import decode_label
        from streams.errors import InvalidMessage

        try:
            label = decode_label(raw or b"")
        except InvalidMessage:
            return
        self.clock = max(self.clock, label.ts)
        if label.churned:
            self.churned.setdefault(label.customer_id, label.ts)

    def line(self, active: int, days: int, horizon_days: float) -> str:
        """Alert load and precision so far (alerted customers who churned within the horizon
        of their first alert, of those whose outcome is known)."""
        if not self.alerted or days <= 0 or active <= 0:
            return "-"
        rate = 1000 * len(self.alerted) / active / (days / 7)
        horizon = horizon_days * DAY_S
        right = resolved = 0
        for cid, t in self.alerted.items():
            churn = self.churned.get(cid)
            if churn is not None and t < churn <= t + horizon:
                right += 1
                resolved += 1
            elif t + horizon <= self.clock:
                resolved += 1
        share = f" ({100 * right / resolved:.0f}%)" if resolved else ""
        return (f"{rate:.1f} alerted customers per 1,000 active per week · precision {right} "
                f"of {resolved} resolved{share}")
