from __future__ import annotations

import pytest

from streams.redis.observation_store import InMemoryObservationStore
from tests.observation_store_contract import POLICY, ObservationStoreContract


class TestInMemoryObservationStore(ObservationStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObservationStore:
        return InMemoryObservationStore(POLICY)
