"""Issue 16: offer events in the wire contract and its JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from streams.contracts import decode_event, offer_of
from streams.errors import InvalidMessage

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "offer_event.json")
                    .read_text())


def test_offer_schema_and_decoder_agree_on_offer_events() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    v = Draft202012Validator(SCHEMA)
    good = {"event_id": "o-1", "customer_id": "c-1", "event_type": "offer_declined",
            "ts": "2026-03-01T00:00:00Z", "properties": {"offer": "discount_20"}}
    assert v.is_valid(good)
    assert offer_of(decode_event(orjson.dumps(good))) == ("discount_20", "declined")
    for bad in ({**good, "properties": {}}, {**good, "properties": {"offer": ""}}):
        assert not v.is_valid(bad)
        with pytest.raises(InvalidMessage, match="bad_field"):
            offer_of(decode_event(orjson.dumps(bad)))
    assert not v.is_valid({**good, "event_type": "session"})
    session = {**good, "event_type": "session"}
    assert offer_of(decode_event(orjson.dumps(session))) is None


def test_simulated_offer_events_validate() -> None:
    from alerts.enrich import AlertConfig
    from streams.simulator.config import SimulationConfig
    from streams.simulator.treatment import TreatmentConfig, run_treated
    from streams.simulator.treatment_effects import Heterogeneity

    run = run_treated(SimulationConfig(seed=2, n_customers=200, days=20),
                      TreatmentConfig(alerts=AlertConfig(), hetero=Heterogeneity()))
    v = Draft202012Validator(SCHEMA)
    assert run.offers
    for rec in run.offers:
        assert v.is_valid(rec), rec
        assert offer_of(decode_event(orjson.dumps(rec))) is not None
