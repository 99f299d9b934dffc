"""The fast path of event times (:class:`streams.timefmt.CanonicalTimes`) answers only for valid
strings, with :func:`parse_ts`'s value to the last bit; anything else still meets the full
check and its error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts import RFC3339, decode_event
from streams.errors import InvalidMessage
from streams.timefmt import CanonicalTimes, format_ms, parse_ts

MS = st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000)  # 2000-2100


@settings(max_examples=500, deadline=None)
@given(MS, st.booleans())
def test_a_known_hour_gives_parse_ts_to_the_last_bit(ms: int, zulu: bool) -> None:
    raw = format_ms(ms)
    if zulu:
        raw = raw.removesuffix("+00:00") + "Z"
    times = CanonicalTimes()
    assert times.parse(raw) is None
    times.learn(raw)
    got = times.parse(raw)
    assert got is not None and got.hex() == parse_ts(raw).hex()
    other = format_ms(ms - ms % 3_600_000 + (ms * 7919) % 3_600_000)  # same hour
    fast = times.parse(other)
    assert fast is not None and fast.hex() == parse_ts(other).hex()


ALPHABET = "0123456789-:.+TZz ٣\n"


@settings(max_examples=1000, deadline=None)
@given(MS, st.lists(st.tuples(st.integers(0, 28), st.sampled_from(list(ALPHABET))),
                    min_size=1, max_size=3))
def test_the_fast_path_answers_only_for_valid_strings(
        ms: int, edits: list[tuple[int, str]]) -> None:
    raw = format_ms(ms)
    times = CanonicalTimes()
    times.learn(raw)
    chars = list(raw)
    for at, c in edits:
        chars[at] = c
    mutated = "".join(chars)
    fast = times.parse(mutated)
    if fast is not None:
        assert RFC3339.fullmatch(mutated) is not None
        assert fast.hex() == parse_ts(mutated).hex()


@pytest.mark.parametrize("ts", ["2026-01-01T05:06:60.000+00:00", "2026-01-01T05:06:07.000+24:00",
                                "2026-01-01T05:06:07.000+00:00\n", "2026-02-30T05:06:07.000Z",
                                "2026-01-01T05:6:07.000+00:00", "2026-01-01T05:06:07.000"])
def test_invalid_times_fail_as_before_once_their_hour_is_known(ts: str) -> None:
    known = b'{"event_id":"e0","customer_id":"c1","event_type":"login","ts":"%s"}'
    decode_event(known % b"2026-01-01T05:00:00.000+00:00", now=4e9)  # hour learnt
    with pytest.raises(InvalidMessage) as err:
        decode_event(known % ts.encode().replace(b"\n", b"\\n"), now=4e9)
    assert err.value.code == "bad_timestamp"


def test_another_offset_in_a_known_hour_takes_the_full_parse() -> None:
    known = b'{"event_id":"e0","customer_id":"c1","event_type":"login","ts":"%s"}'
    utc = decode_event(known % b"2026-01-01T05:06:07.000+00:00", now=4e9).ts
    assert decode_event(known % b"2026-01-01T05:06:07.000+01:00", now=4e9).ts == utc - 3600.0
