"""churnpulse's I/O side and wiring: everything that touches Kafka, Redis, files or the network.

One folder per process and per adapter; the pure logic lives in :mod:`online_models` and
:mod:`alerts`. Layers, top to bottom (a layer imports only from layers below it; the
import-linter contracts in ``pyproject.toml`` check it in CI)::

    cli                                  the command line
    offline, dev                         history/replay/backtest/train; demo
    worker, learner, alerter, delivery   the processes (independent of each other)
    kafka, redis, records, clients       the adapters and the shared record kit
    settings, contracts, errors, ...     the base
    simulator, services                  the simulator and the local services (tools)

``docs/architecture.md`` draws the map, generated from the code.
"""
