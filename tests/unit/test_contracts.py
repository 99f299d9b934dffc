from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.contracts import (
    ChurnLabel,
    CustomerEvent,
    decode_event,
    decode_label,
    encode,
)

ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)
# between the decoder's floor (2000-01-01) and 2026-01-01 (never in the future of the clock)
times = st.floats(min_value=946_684_800, max_value=1_767_225_600).map(lambda t: round(t, 3))


@given(ids, ids, ids, times, st.one_of(st.none(), st.floats(-1e9, 1e9)))
def test_event_round_trips_through_the_wire(event_id: str, cid: str, kind: str, ts: float,
                                            value: float | None) -> None:
    event = CustomerEvent(event_id, cid, kind[:64], ts, value)
    back = decode_event(encode(event.to_wire()))
    assert (back.event_id, back.customer_id, back.event_type) == (event_id, cid, kind[:64])
    assert abs(back.ts - ts) < 1e-3
    assert back.value == value


@given(ids, ids, times, st.booleans())
def test_label_round_trips(label_id: str, cid: str, ts: float, churned: bool) -> None:
    back = decode_label(encode(ChurnLabel(label_id, cid, ts, churned).to_wire()))
    assert (back.label_id, back.customer_id, back.churned) == (label_id, cid, churned)


def test_any_event_type_vocabulary_and_integer_ids_are_accepted() -> None:
    raw = ('{"event_id": 17, "customer_id": 42, "event_type": "néw-týpe",'
           ' "ts": "2026-03-01T10:00:00.5-05:00"}')
    event = decode_event(raw.encode())
    assert (event.event_id, event.customer_id, event.event_type) == ("17", "42", "néw-týpe")
    assert event.ts == 1772377200.5
