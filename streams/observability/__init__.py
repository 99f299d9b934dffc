"""Operability: Prometheus metrics (:mod:`.metrics`, :mod:`.sources`), the ``/metrics``,
``/healthz`` and ``/readyz`` server of each process (:mod:`.server`, :mod:`.checks`) and the
log format (:mod:`.logs`). Imports no process and no Kafka or Redis client: processes call in.
"""
