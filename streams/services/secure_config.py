"""Pure configuration of the secure local services: users, secrets, broker and Redis ACL files.

One user per process, in Kafka (SCRAM-SHA-512) and in Redis (ACL), each with its own random
password, kept in ``credentials.json`` (mode 0600) next to the services' data:

=========  ==================================================================================
user       Redis: keys (``%R~`` = read only) and commands
=========  ==================================================================================
worker     features ``{c:*}:f``, due indexes, snapshots ``{c:*}:obs``, ``obs:*``,
           ``churned``, ``watermarks``; models read only; read/write/scripting
learner    ``learner:*``, ``model:*``, snapshots, ``obs:*``, ``churned``; watermarks read
alerter    alert state ``{c:*}:alert``, ``alerts:*``, ``churned`` (read by a script: EVAL
           keys count as writes); features and the retention advice read only
dispatch   ``delivered:*``; no scripting
dashboard  features read only; read commands only
retention  its checkpoint, published advice and lock ``retention:*`` (``{retention}:*`` on a
           cluster); read/write/scripting (the lock is renewed and released by a script)
admin      everything (operator tools: forget, sign-state, train, produce)
=========  ==================================================================================

Every user but admin: no ``@dangerous`` or ``@admin`` command (FLUSHALL, KEYS, CONFIG, DEBUG,
MIGRATE, ...). The ``default`` user is off: a client without credentials gets nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from streams.services.kafka_config import SINGLE_NODE, render_properties

USERS = ("worker", "learner", "alerter", "dispatch", "dashboard", "retention", "admin")
SCRAM = "SCRAM-SHA-512"

_RW = "+@read +@write +@connection +@transaction"
_NO = "-@dangerous -@admin"


def redis_permissions(prefix: str) -> dict[str, str]:
    """ACL rules (keys and commands) of each user for the key ``prefix``."""
    p = prefix
    c = f"{p}:{{c:*}}"
    return {
        "worker": f"~{c}:f ~{p}:due:* ~{c}:obs ~{p}:obs:due ~{p}:obs:due:n ~{p}:obs:schema "
                  f"~{p}:churned ~{p}:watermarks %R~{p}:model:* {_RW} +@scripting {_NO}",
        "learner": f"~{p}:learner:* ~{p}:model:* ~{c}:obs ~{p}:obs:due ~{p}:obs:due:n "
                   f"~{p}:obs:schema ~{p}:churned %R~{p}:watermarks {_RW} +@scripting {_NO}",
        # churned is read by a script, and EVAL declares its keys read-write for ACLs
        "alerter": f"~{c}:alert ~{p}:alerts:* ~{p}:churned %R~{c}:f %R~{p}:retention:* "
                   f"%R~{p}:{{retention}}:* {_RW} +@scripting {_NO}",
        "dispatch": f"~{p}:delivered:* {_RW} {_NO}",
        "dashboard": f"%R~{c}:f +@read +@connection {_NO}",
        "retention": f"~{p}:retention:* ~{p}:{{retention}}:* {_RW} +@scripting {_NO}",
        "admin": "~* &* +@all",
    }


@dataclass(frozen=True)
class Credentials:
    """Random passwords of every user, for Kafka and for Redis."""

    kafka: dict[str, str]
    redis: dict[str, str]

    @classmethod
    def generate(cls) -> Credentials:
        return cls({u: secrets.token_hex(16) for u in USERS},
                   {u: secrets.token_hex(16) for u in USERS})

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """The credentials stored at ``path`` (mode 0600), created there on first use; a file
        from before a user existed (``retention``) gains that user's passwords, kept in it."""
        if path.is_file():
            data = json.loads(path.read_text())
            creds = cls(dict(data["kafka"]), dict(data["redis"]))
            missing = [u for u in USERS if u not in creds.kafka or u not in creds.redis]
            if not missing:
                return creds
            new = cls.generate()
            creds = cls({**new.kafka, **creds.kafka}, {**new.redis, **creds.redis})
            tmp = path.with_name(path.name + ".new")
            tmp.unlink(missing_ok=True)
            _write_new(tmp, creds)
            os.replace(tmp, path)
            return creds
        creds = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new(path, creds)
        return creds


def _write_new(path: Path, creds: Credentials) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"kafka": creds.kafka, "redis": creds.redis}, fh, indent=2)


def render_acl_file(creds: Credentials, prefix: str) -> str:
    """``users.acl`` of the secure redis-server (passwords stored as SHA-256, ``#``).

    >>> text = render_acl_file(Credentials({}, {u: "pw" for u in USERS}), "cp")
    >>> text.splitlines()[0]
    'user default off nopass resetkeys -@all'
    >>> "pw" in text
    False
    """
    import hashlib

    lines = ["user default off nopass resetkeys -@all"]
    for user, rules in redis_permissions(prefix).items():
        digest = hashlib.sha256(creds.redis[user].encode()).hexdigest()
        lines.append(f"user {user} on #{digest} resetchannels {rules}")
    return "\n".join(lines) + "\n"


def render_secure_server_properties(port: int, controller_port: int, data_dir: Path,
                                    keystore: Path, truststore: Path, admin_password: str) -> str:
    """server.properties of a single-node KRaft broker whose only client listener is SASL_SSL
    (SCRAM-SHA-512, TLS with our CA); the controller listener stays on 127.0.0.1."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="admin" password="{admin_password}";')
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://localhost:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": truststore,
        "ssl.client.auth": "none",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        # authorization (streams.services.secure_acls); ANONYMOUS is the principal of the
        # controller listener only (PLAINTEXT, 127.0.0.1), which the broker half must pass
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin;User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": data_dir,
        **SINGLE_NODE,
    }
    return render_properties(props, "streams.services.secure")


def client_env(user: str, creds: Credentials, kafka_port: int, redis_port: int, cafile: Path,
               prefix: str) -> dict[str, str]:
    """The ``CHURN_*`` variables a process runs with as ``user`` on the secure services."""
    return {
        "CHURN_KAFKA__BOOTSTRAP_SERVERS": f"localhost:{kafka_port}",
        "CHURN_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "CHURN_KAFKA__SASL_MECHANISM": SCRAM,
        "CHURN_KAFKA__SASL_USERNAME": user,
        "CHURN_KAFKA__SASL_PASSWORD": creds.kafka[user],
        "CHURN_KAFKA__SSL_CAFILE": str(cafile),
        "CHURN_REDIS__URL": f"rediss://127.0.0.1:{redis_port}/0?ssl_ca_certs={cafile}",
        "CHURN_REDIS__USERNAME": user,
        "CHURN_REDIS__PASSWORD": creds.redis[user],
        "CHURN_REDIS__KEY_PREFIX": prefix,
    }


def render_env_file(env: dict[str, str]) -> str:
    """``KEY=value`` lines (``set -a; . file; set +a`` in a shell, or ``--env-file``)."""
    return "".join(f"{k}={v}\n" for k, v in env.items())
