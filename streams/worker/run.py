"""Running the Faust worker (``churnpulse worker``).

Start as many as you like: they join one consumer group (``CHURN_WORKER__APP_ID``) and share the
partitions of the events topic. ``faust -A streams.worker.faust_app worker`` works as well
(add ``--loop uvloop`` there for the event loop ``churnpulse worker`` uses).
"""

from __future__ import annotations

import faust

from streams.kafka.topics import ensure_topics
from streams.observability.logs import dict_config
from streams.observability.runtime import use_uvloop
from streams.redis.client import check_cluster_replicas
from streams.settings import Settings
from streams.worker.app import create_app


def run_worker(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    use_uvloop()
    ensure_topics(settings.kafka, settings.topics)
    check_cluster_replicas(settings.redis)  # a cluster without replicas: say so, do not stall
    app = create_app(settings)
    logging_config = (dict_config(settings.log_level, "json")  # CHURN_LOG__FORMAT=json
                      if settings.log.format == "json" else None)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(),
                          logging_config=logging_config)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
