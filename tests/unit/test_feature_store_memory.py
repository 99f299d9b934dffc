from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streams.redis.feature_store import FeatureStore, InMemoryFeatureStore
from streams.settings import FeatureSettings
from tests.feature_store_contract import FeatureStoreContract


class TestInMemoryFeatureStore(FeatureStoreContract):
    @pytest.fixture
    def make_store(self) -> Callable[..., Awaitable[FeatureStore]]:
        async def make(**overrides: Any) -> FeatureStore:
            return InMemoryFeatureStore(FeatureSettings(**overrides))

        return make
