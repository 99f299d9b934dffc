"""Kafka authorization of the secure local broker: what each process's user may do.

The broker runs ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a user
may only do what is granted here (``admin`` is a super user). Every user may DESCRIBE the
pipeline's topics (``ensure_topics`` lists them at start; ``admin`` creates them beforehand);
beyond that:

=========  ============================================================================
user       grants
=========  ============================================================================
worker     read events; write scores, dead letters; groups and Faust's own topics
           named ``<worker.app_id>*``
learner    read labels (no group: it assigns partitions); write model events, dead letters
alerter    read scores; group ``<alerts app id>.alerts``; write alerts, retention actions,
           dead letters; transactional ids ``<alerts app id>.alerts*``
dispatch   read alerts; its group; write dead letters
dashboard  read alerts, scores, alert outcomes; write alert outcomes; groups ``churnpulse*``
retention  read retention actions, labels and the offer events (``retention.offers_topic``,
           default the events); write and create its outcomes topic; write dead letters.
           No group: it assigns every partition itself and keeps offsets in its checkpoint
=========  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.settings import Settings

Resource = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
Pattern = Literal["LITERAL", "PREFIXED"]


@dataclass(frozen=True)
class Grant:
    user: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, ALL
    resource: Resource
    name: str
    pattern: Pattern = "LITERAL"


def acl_plan(settings: Settings) -> list[Grant]:
    """Every ALLOW grant of the pipeline's users for the topic names in ``settings``.

    >>> plan = acl_plan(__import__("streams.settings").settings.load_settings())
    >>> Grant("worker", "WRITE", "TOPIC", "churn-model-events") in plan
    False
    >>> Grant("learner", "WRITE", "TOPIC", "churn-model-events") in plan
    True
    """
    t, app = settings.topics, settings.worker.app_id
    alerts_app = f"{settings.alerts.app_id or app}.alerts"
    r = settings.retention
    offers = r.offers_topic or t.events
    every = [t.events, t.labels, t.scores, t.alerts, t.dead_letter, t.model_events,
             t.retention_actions, t.alert_outcomes]
    plan = [Grant(u, "DESCRIBE", "TOPIC", name)
            for u in ("worker", "learner", "alerter", "dispatch", "dashboard", "retention")
            for name in every]

    def topics(user: str, op: str, *names: str) -> None:
        plan.extend(Grant(user, op, "TOPIC", n) for n in names)

    topics("worker", "READ", t.events)
    topics("worker", "WRITE", t.scores, t.dead_letter)
    plan += [Grant("worker", "READ", "GROUP", app, "PREFIXED"),
             Grant("worker", "ALL", "TOPIC", f"{app}-", "PREFIXED")]  # Faust's own topics
    topics("learner", "READ", t.labels)
    topics("learner", "WRITE", t.model_events, t.dead_letter)
    topics("alerter", "READ", t.scores)
    topics("alerter", "WRITE", t.alerts, t.retention_actions, t.dead_letter)
    plan += [Grant("alerter", "READ", "GROUP", alerts_app),
             Grant("alerter", "WRITE", "TRANSACTIONAL_ID", alerts_app, "PREFIXED"),
             Grant("alerter", "DESCRIBE", "TRANSACTIONAL_ID", alerts_app, "PREFIXED")]
    topics("dispatch", "READ", t.alerts)
    topics("dispatch", "WRITE", t.dead_letter)
    plan.append(Grant("dispatch", "READ", "GROUP", settings.webhook.consumer_group))
    topics("dashboard", "READ", t.alerts, t.scores, t.alert_outcomes)
    topics("dashboard", "WRITE", t.alert_outcomes)
    plan.append(Grant("dashboard", "READ", "GROUP", "churnpulse", "PREFIXED"))
    topics("retention", "READ", *dict.fromkeys((t.retention_actions, t.labels, offers)))
    topics("retention", "WRITE", r.outcomes_topic, t.dead_letter)
    # its outcomes topic is not one of settings.topics: it creates it at start
    topics("retention", "DESCRIBE", *dict.fromkeys(n for n in (r.outcomes_topic, offers)
                                                   if n not in every))
    topics("retention", "CREATE", r.outcomes_topic)
    return plan
