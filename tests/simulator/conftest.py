"""Shared, session-scoped simulations (each is generated once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.simulator import Simulation, SimulationConfig, simulate, write_files

#: Small but eventful: high churn and many returns, so every code path shows up.
SMALL = SimulationConfig(seed=7, n_customers=1_500, days=60, churn_base_rate=0.10, return_share=0.4)
#: Large enough for rates and AUCs to be estimated within a few percent.
LARGE = SimulationConfig(seed=11, n_customers=20_000, days=120)


@pytest.fixture(scope="session")
def small_sim() -> Simulation:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def small_jsonl(small_sim: Simulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small-jsonl")
    write_files(small_sim, out, "jsonl")
    return out


@pytest.fixture(scope="session")
def large_config() -> SimulationConfig:
    return LARGE


@pytest.fixture(scope="session")
def large_sim(large_config: SimulationConfig) -> Simulation:
    return simulate(large_config)
