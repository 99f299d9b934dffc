"""Serialisation of simulated events, labels and ground truth (v1 wire format).

Lines are built from pre-validated pieces (ids, type names, interned property JSON) rather
than through a generic JSON encoder; that is what makes writing fast, and the output is
still plain compact JSON that any parser reads (the tests parse every line).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from streams.simulator.columns import EventColumns, LabelColumns
from streams.simulator.schema import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    PropertyTable,
    format_ts,
    iso_ms,
    to_epoch_ms,
)

CSV_EVENT_COLUMNS = ("event_id", "customer_id", "event_type", "ts", "value", "properties")
CSV_LABEL_COLUMNS = ("label_id", "customer_id", "ts", "churned")
TS_COLUMNS = ("join_ts", "churn_ts", "return_ts")


class WireFormatter:
    """Turns column batches into wire records, JSON lines or CSV rows.

    Parameters
    ----------
    seed : int
        Seed of the run; event ids are ``e-<seed>-<n>``, label ids ``l-<seed>-<n>``, with
        ``n`` the 0-based position in the time-ordered output.
    customer_ids : list of str
    properties : PropertyTable
    event_types : tuple of str
        Wire name of each event type code (default :data:`EVENT_TYPES`).
    """

    def __init__(self, seed: int, customer_ids: list[str], properties: PropertyTable,
                 event_types: tuple[str, ...] = EVENT_TYPES) -> None:
        self.seed = seed
        self.event_types = event_types
        self.customer_ids = customer_ids
        self.properties = properties
        self._event_prefix = f'{{"schema_version":{SCHEMA_VERSION},"event_id":"e-{seed}-'
        self._label_prefix = f'{{"schema_version":{SCHEMA_VERSION},"label_id":"l-{seed}-'
        self._prop_json = [f',"properties":{j}' for j in properties.json]
        self._prop_csv = ['"' + j.replace('"', '""') + '"' for j in properties.json]

    # -- events ------------------------------------------------------------------------
    def event_records(self, cols: EventColumns, first: int) -> list[dict[str, Any]]:
        """Wire-format dicts (``value``/``properties`` only when present; fresh objects)."""
        ids, types, objs = self.customer_ids, self.event_types, self.properties.objects
        out: list[dict[str, Any]] = []
        rows = zip(
            range(first, first + len(cols)),
            cols.customer.tolist(),
            cols.etype.tolist(),
            iso_ms(cols.ts_ms),
            cols.value.tolist(),
            cols.prop.tolist(),
            strict=True,
        )
        for i, c, t, ts, v, p in rows:
            rec: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "event_id": f"e-{self.seed}-{i}",
                "customer_id": ids[c],
                "event_type": types[t],
                "ts": ts + "+00:00",
            }
            if v == v:  # not NaN
                rec["value"] = v
            if p >= 0:
                rec["properties"] = dict(objs[p])
            out.append(rec)
        return out

    def jsonl_events(self, cols: EventColumns, first: int) -> bytes:
        """One compact JSON object per line, keys in contract order."""
        tails = [""] * len(cols)
        for i, v in self._present_values(cols):
            tails[i] = f',"value":{v!r}'
        pj = self._prop_json
        for i, p in self._present_props(cols):
            tails[i] += pj[p]
        ids, types, pre = self.customer_ids, self.event_types, self._event_prefix
        rows = zip(
            range(first, first + len(cols)),
            cols.customer.tolist(),
            cols.etype.tolist(),
            iso_ms(cols.ts_ms),
            tails,
            strict=True,
        )
        return "".join(
            [
                f'{pre}{i}","customer_id":"{ids[c]}","event_type":"{types[t]}",'
                f'"ts":"{ts}+00:00"{tail}}}\n'
                for i, c, t, ts, tail in rows
            ]
        ).encode()

    def csv_events(self, cols: EventColumns, first: int) -> bytes:
        """CSV rows (no header): event_id, customer_id, event_type, ts, value, properties."""
        values = [""] * len(cols)
        for i, v in self._present_values(cols):
            values[i] = repr(v)
        props = [""] * len(cols)
        pc = self._prop_csv
        for i, p in self._present_props(cols):
            props[i] = pc[p]
        ids, types, seed = self.customer_ids, self.event_types, self.seed
        rows = zip(
            range(first, first + len(cols)),
            cols.customer.tolist(),
            cols.etype.tolist(),
            iso_ms(cols.ts_ms),
            values,
            props,
            strict=True,
        )
        return "".join(
            [f"e-{seed}-{i},{ids[c]},{types[t]},{ts}+00:00,{v},{p}\n" for i, c, t, ts, v, p in rows]
        ).encode()

    def events_frame(self, cols: EventColumns, first: int) -> pd.DataFrame:
        """Events as a DataFrame (CSV columns; ``ts`` as UTC datetimes, properties as JSON)."""
        pj = self.properties.json
        return pd.DataFrame(
            {
                "event_id": [f"e-{self.seed}-{i}" for i in range(first, first + len(cols))],
                "customer_id": [self.customer_ids[c] for c in cols.customer.tolist()],
                "event_type": [self.event_types[t] for t in cols.etype.tolist()],
                "ts": pd.to_datetime(cols.ts_ms, unit="ms", utc=True),
                "value": cols.value,
                "properties": [pj[p] if p >= 0 else None for p in cols.prop.tolist()],
            }
        )

    @staticmethod
    def _present_values(cols: EventColumns) -> zip[tuple[int, float]]:
        idx = np.flatnonzero(~np.isnan(cols.value))
        return zip(idx.tolist(), cols.value[idx].tolist(), strict=True)

    @staticmethod
    def _present_props(cols: EventColumns) -> zip[tuple[int, int]]:
        idx = np.flatnonzero(cols.prop >= 0)
        return zip(idx.tolist(), cols.prop[idx].tolist(), strict=True)

    # -- labels ------------------------------------------------------------------------
    def label_records(self, labels: LabelColumns, first: int = 0) -> list[dict[str, Any]]:
        """Wire-format churn-label dicts."""
        return [
            {
                "schema_version": SCHEMA_VERSION,
                "label_id": f"l-{self.seed}-{i}",
                "customer_id": self.customer_ids[c],
                "ts": ts + "+00:00",
                "churned": True,
            }
            for i, c, ts in zip(
                range(first, first + len(labels)),
                labels.customer.tolist(),
                iso_ms(labels.ts_ms),
                strict=True,
            )
        ]

    def jsonl_labels(self, labels: LabelColumns) -> bytes:
        """Churn labels as JSON lines."""
        return b"".join(orjson.dumps(r) + b"\n" for r in self.label_records(labels))

    def csv_labels(self, labels: LabelColumns) -> bytes:
        """Churn labels as CSV, with header."""
        lines = [",".join(CSV_LABEL_COLUMNS) + "\n"]
        lines += [
            f"{r['label_id']},{r['customer_id']},{r['ts']},true\n"
            for r in self.label_records(labels)
        ]
        return "".join(lines).encode()


# -- ground truth ------------------------------------------------------------------------
def _ts_strings(col: pd.Series) -> list[str | None]:
    ms = to_epoch_ms(col)
    text = format_ts(ms)
    return [None if m < 0 else t for m, t in zip(ms.tolist(), text, strict=True)]


def truth_records(truth: pd.DataFrame) -> list[dict[str, Any]]:
    """Ground truth as JSON-ready dicts (timestamps RFC 3339, missing values ``None``)."""
    columns: dict[str, list[Any]] = {}
    for name in truth.columns:
        col = truth[name]
        if name in TS_COLUMNS:
            columns[name] = _ts_strings(col)
        elif col.dtype.kind == "f":
            columns[name] = [None if v != v else v for v in col.tolist()]
        else:
            columns[name] = col.tolist()
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def truth_jsonl(truth: pd.DataFrame) -> bytes:
    """Ground truth as JSON lines."""
    return b"".join(orjson.dumps(r) + b"\n" for r in truth_records(truth))


def truth_csv(truth: pd.DataFrame) -> bytes:
    """Ground truth as CSV (timestamps RFC 3339, missing values empty)."""
    frame = truth.copy()
    for name in TS_COLUMNS:
        frame[name] = _ts_strings(truth[name])
    return frame.to_csv(index=False, lineterminator="\n").encode()
