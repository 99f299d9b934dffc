"""``churnpulse services up|down|status --secure``: Kafka with only a SASL_SSL listener and a
redis-server with TLS and ACL users only, on their own ports (the plain services keep running).

Everything lives under ``<services.state_dir>/secure``::

    credentials.json   random passwords of each user (Kafka SCRAM and Redis ACL), mode 0600
    tls/               local CA and broker certificate (:mod:`streams.services.secure_tls`)
    kafka/             server.properties, data (SCRAM users added when it is formatted), log
    redis/             users.acl (password hashes), log
    env/<user>.env     the CHURN_* variables of each process (worker, learner, alerter,
                       dispatch, dashboard, retention, admin), mode 0600

Run a process as its user with e.g. ``set -a; . .churnpulse/secure/env/worker.env; set +a;
churnpulse worker`` (see docs/security.md).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from streams.services import kafka as plain_kafka
from streams.services.common import (
    ServiceError,
    ServiceStatus,
    abandon,
    exited,
    file_lock,
    log_tail,
    our_pid,
    port_open,
    spawn,
    stop_pid,
    wait_for,
)
from streams.services.kafka_config import KafkaPaths, load_cluster_id, render_log4j
from streams.services.kafka_jars import ensure_jars
from streams.services.redis_server import RedisPaths, ensure_binary
from streams.services.secure_acls import acl_plan
from streams.services.secure_config import (
    SCRAM,
    USERS,
    Credentials,
    client_env,
    render_acl_file,
    render_env_file,
    render_secure_server_properties,
)
from streams.services.secure_tls import TlsFiles, ensure_tls
from streams.settings import Settings
from streams.settings_kafka import KafkaSettings

BIND_HOST = "127.0.0.1"


@dataclass(frozen=True)
class SecurePaths:
    root: Path

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.root / "tls")

    @property
    def kafka(self) -> KafkaPaths:
        return KafkaPaths(self.root / "kafka")

    @property
    def redis(self) -> RedisPaths:
        return RedisPaths(self.root / "redis")

    @property
    def acl(self) -> Path:
        return self.root / "redis" / "users.acl"

    def env_file(self, user: str) -> Path:
        return self.root / "env" / f"{user}.env"


def paths(settings: Settings) -> SecurePaths:
    return SecurePaths(settings.services.state_dir.expanduser().resolve() / "secure")


def credentials(settings: Settings) -> Credentials:
    return Credentials.load_or_create(paths(settings).credentials)


def env_for(settings: Settings, user: str) -> dict[str, str]:
    """The CHURN_* variables of ``user`` on the secure services of ``settings``."""
    loc = settings.security.local
    return client_env(user, credentials(settings), loc.kafka_port, loc.redis_port,
                      paths(settings).tls.ca_crt, settings.redis.key_prefix)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


# -- Kafka -------------------------------------------------------------------------------------

def kafka_probe(settings: Settings, user: str = "admin", password: str | None = None,
                timeout_s: float = 5.0) -> str | None:
    """The cluster id when the secure broker lets ``user`` in over SASL_SSL, else None."""
    loc = settings.security.local
    if not port_open(BIND_HOST, loc.kafka_port):
        return None
    from kafka import KafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

    from streams.kafka.clients import kafka_python_options

    secret = password or credentials(settings).kafka.get(user, "")
    cfg = admin_kafka(settings).model_copy(
        update={"sasl_username": user, "sasl_password": SecretStr(secret)})
    ms = int(timeout_s * 1000)
    with plain_kafka.quiet_kafka_client():
        try:
            admin = KafkaAdminClient(**kafka_python_options(cfg),
                                     client_id="churnpulse-secure-probe",
                                     bootstrap_timeout_ms=ms, request_timeout_ms=ms)
            try:
                info = admin.describe_cluster()
            finally:
                admin.close()
        except Exception:  # any failure: not a broker that lets us in
            return None
    return str(info.get("cluster_id") or "?") if isinstance(info, dict) else "?"


def _format(java: str, libs: Path, p: KafkaPaths, cid: str, creds: Credentials) -> str:
    meta = p.data / "meta.properties"
    if meta.is_file():
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.partition("=")[2].strip()
    scram = [arg for user in USERS
             for arg in ("--add-scram", f"{SCRAM}=[name={user},password={creds.kafka[user]}]")]
    cmd = [java, "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
           "-t", cid, "-c", str(p.props), "--ignore-formatted", *scram]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                         cwd=p.root)
    if res.returncode != 0:
        raise ServiceError(f"secure Kafka storage format failed (exit {res.returncode})",
                           "\n".join((res.stdout + res.stderr).splitlines()[-20:]))
    return cid


def kafka_up(settings: Settings) -> ServiceStatus:
    sp, loc, timeout = paths(settings), settings.security.local, settings.services.start_timeout_s
    p, address = sp.kafka, f"localhost:{loc.kafka_port}"
    name = "kafka-secure"
    pid = our_pid(p.pid, p.marker)
    if pid is not None:
        if not wait_for(lambda: kafka_probe(settings) is not None, timeout, 0.5):
            raise ServiceError(f"our secure Kafka (pid {pid}) does not answer on {address}",
                               log_tail(p.log))
        return ServiceStatus(name, address, "running-ours", pid, p.log, "already running")
    for port in (loc.kafka_port, loc.kafka_controller_port):
        if port_open(BIND_HOST, port):
            raise ServiceError(f"port {port} (secure Kafka) is taken by another process")
    creds = credentials(settings)
    tls = ensure_tls(sp.tls.root)
    java = plain_kafka.find_java()
    svc = settings.services
    libs, _ = ensure_jars(svc.cache_dir, svc.kafka_scala_version, svc.kafka_version)
    p.root.mkdir(parents=True, exist_ok=True)
    _write_private(p.props, render_secure_server_properties(
        loc.kafka_port, loc.kafka_controller_port, p.data, tls.keystore, tls.ca_crt,
        creds.kafka["admin"]))
    p.log4j.write_text(render_log4j(p.log))
    ours = _format(java, libs, p, load_cluster_id(p.cluster_id), creds)
    cmd = [java, f"-Xmx{loc.kafka_heap}", f"-Xms{loc.kafka_heap}", "-XX:+UseG1GC",
           "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{p.log4j}",
           f"-Dkafka.logs.dir={p.root}", "-cp", f"{libs}/*", "kafka.Kafka", str(p.props)]
    started = time.monotonic()
    proc = spawn(cmd, p.out, p.pid, p.root)
    try:
        ready = wait_for(lambda: kafka_probe(settings) == ours, timeout, 0.5,
                         exited(proc, "secure Kafka"))
    except BaseException:
        abandon(proc, p.pid)
        raise
    if not ready:
        abandon(proc, p.pid)
        raise ServiceError(f"secure Kafka did not answer on {address} within {timeout:g}s",
                           log_tail(p.log))
    return ServiceStatus(name, address, "started", proc.pid, p.log,
                         f"SASL_SSL {SCRAM}, ready in {time.monotonic() - started:.1f}s")


# -- Redis -------------------------------------------------------------------------------------

def redis_probe(settings: Settings, user: str = "admin", password: str | None = None,
                timeout_s: float = 1.0) -> int | None:
    """The server's pid when ``user`` may log in to the secure Redis, else None."""
    loc = settings.security.local
    if not port_open(BIND_HOST, loc.redis_port):
        return None
    secret = password or credentials(settings).redis[user]
    client = redis.Redis(host=BIND_HOST, port=loc.redis_port, username=user, password=secret,
                         socket_timeout=timeout_s, socket_connect_timeout=timeout_s, ssl=True,
                         ssl_ca_certs=str(paths(settings).tls.ca_crt))
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, TypeError, ValueError):
        return None
    finally:
        client.close()


def _acl_load(settings: Settings) -> None:
    """As admin: reload ``users.acl`` into the running secure Redis."""
    client = redis.Redis(host=BIND_HOST, port=settings.security.local.redis_port,
                         username="admin", password=credentials(settings).redis["admin"],
                         socket_timeout=5, ssl=True, ssl_ca_certs=str(paths(settings).tls.ca_crt))
    try:
        client.acl_load()
    finally:
        client.close()


def redis_up(settings: Settings) -> ServiceStatus:
    sp, loc, timeout = paths(settings), settings.security.local, settings.services.start_timeout_s
    p, address, name = sp.redis, f"{BIND_HOST}:{loc.redis_port}", "redis-secure"
    creds = credentials(settings)
    tls = ensure_tls(sp.tls.root)
    _write_private(sp.acl, render_acl_file(creds, settings.redis.key_prefix))
    pid = our_pid(p.pid, "redis-server")
    if pid is not None:
        if redis_probe(settings) != pid:
            raise ServiceError(f"our secure Redis (pid {pid}) does not let admin in",
                               log_tail(p.log))
        _acl_load(settings)  # users.acl may have gained a user (retention) since it started
        return ServiceStatus(name, address, "running-ours", pid, p.log, "already running")
    if port_open(BIND_HOST, loc.redis_port):
        raise ServiceError(f"port {loc.redis_port} (secure Redis) is taken by another process")
    binary = ensure_binary()
    p.data.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", "0", "--tls-port", str(loc.redis_port), "--tls-cert-file",
           str(tls.broker_crt), "--tls-key-file", str(tls.broker_key), "--tls-ca-cert-file",
           str(tls.ca_crt), "--tls-auth-clients", "no", "--bind", BIND_HOST, "--daemonize", "no",
           "--dir", str(p.data), "--logfile", str(p.log), "--save", "", "--appendonly", "no",
           "--protected-mode", "yes", "--aclfile", str(sp.acl),
           "--enable-debug-command", "no", "--enable-module-command", "no"]
    proc = spawn(cmd, p.out, p.pid, p.root)
    try:
        ready = wait_for(lambda: redis_probe(settings) == proc.pid, timeout, 0.05,
                         exited(proc, "secure redis-server"))
    except BaseException:
        abandon(proc, p.pid)
        raise
    if not ready:
        abandon(proc, p.pid)
        raise ServiceError(f"secure Redis did not answer on {address}", log_tail(p.log))
    return ServiceStatus(name, address, "started", proc.pid, p.log,
                         f"TLS only; ACL users: {', '.join(USERS)}; default user off")


def admin_kafka(settings: Settings) -> KafkaSettings:
    """Kafka settings of the ``admin`` user on the secure broker."""
    env = env_for(settings, "admin")
    return KafkaSettings(bootstrap_servers=env["CHURN_KAFKA__BOOTSTRAP_SERVERS"],
                         security_protocol="SASL_SSL", sasl_mechanism=SCRAM,
                         sasl_username="admin",
                         sasl_password=SecretStr(env["CHURN_KAFKA__SASL_PASSWORD"]),
                         ssl_cafile=Path(env["CHURN_KAFKA__SSL_CAFILE"]))


def grant_acls(settings: Settings) -> int:
    """As admin: create the pipeline's topics of ``settings`` and grant each process's user
    what it needs on them (:func:`streams.services.secure_acls.acl_plan`); returns the count."""
    from kafka.admin import (  # type: ignore[import-untyped,unused-ignore]
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourceType,
    )

    from streams.kafka.clients import kafka_python_options
    from streams.kafka.topics import ensure_topics

    kafka = admin_kafka(settings)
    ensure_topics(kafka, settings.topics)
    acls = [ACL(principal=f"User:{g.user}", host="*", operation=ACLOperation[g.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType[g.resource], g.name,
                                                 ACLResourcePatternType[g.pattern]))
            for g in acl_plan(settings)]
    admin = KafkaAdminClient(**kafka_python_options(kafka), client_id="churnpulse-acls")
    try:
        add_missing_users(admin, credentials(settings))
        result = admin.create_acls(acls)
    finally:
        admin.close()
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        raise ServiceError(f"{len(failed)} Kafka ACLs could not be created: {failed[:3]}")
    return len(acls)


def add_missing_users(admin: Any, creds: Credentials) -> list[str]:
    """Add the SCRAM users a broker formatted before they existed lacks (``retention``);
    returns their names. ``admin`` is a kafka-python admin client of the admin user."""
    from kafka.admin import (  # type: ignore[import-untyped,unused-ignore]
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    known = admin.describe_user_scram_credentials()
    missing = [u for u in USERS if u not in known]
    if missing:
        failed = {u: e for u, e in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(u, ScramMechanism.SCRAM_SHA_512, creds.kafka[u])
            for u in missing]).items() if e}
        if failed:
            raise ServiceError(f"SCRAM users could not be added: {failed}")
    return missing


# -- all ---------------------------------------------------------------------------------------

def write_env_files(settings: Settings) -> Path:
    for user in USERS:
        _write_private(paths(settings).env_file(user), render_env_file(env_for(settings, user)))
    return paths(settings).env_file("worker").parent


def up(settings: Settings) -> list[ServiceStatus]:
    """Start the secure Redis and Kafka (each unless ours already runs); write env files."""
    sp = paths(settings)
    with file_lock(sp.root / ".services.lock"):
        rows = [redis_up(settings), kafka_up(settings)]
        grants = grant_acls(settings)
        rows[1] = dataclasses.replace(rows[1], detail=f"{rows[1].detail}; {grants} ACLs")
        write_env_files(settings)
    return rows


def status(settings: Settings) -> list[ServiceStatus]:
    sp, loc = paths(settings), settings.security.local
    rows = []
    kpid = our_pid(sp.kafka.pid, sp.kafka.marker)
    kaddr = f"localhost:{loc.kafka_port}"
    if kpid is not None:
        cid = kafka_probe(settings)
        rows.append(ServiceStatus("kafka-secure", kaddr, "running-ours", kpid, sp.kafka.log,
                                  f"cluster {cid}" if cid else "not answering (yet)"))
    else:
        rows.append(ServiceStatus("kafka-secure", kaddr, "stopped"))
    rpid = our_pid(sp.redis.pid, "redis-server")
    raddr = f"{BIND_HOST}:{loc.redis_port}"
    rows.append(ServiceStatus("redis-secure", raddr, "running-ours", rpid, sp.redis.log)
                if rpid is not None else ServiceStatus("redis-secure", raddr, "stopped"))
    return rows


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the secure services we started (never the plain ones)."""
    sp, loc = paths(settings), settings.security.local
    with file_lock(sp.root / ".services.lock"):
        kpid, kdetail = stop_pid(sp.kafka.pid, sp.kafka.marker, 30.0)
        rpid, rdetail = stop_pid(sp.redis.pid, "redis-server", 15.0)
    return [ServiceStatus("kafka-secure", f"localhost:{loc.kafka_port}", "stopped", kpid,
                          sp.kafka.log, kdetail),
            ServiceStatus("redis-secure", f"{BIND_HOST}:{loc.redis_port}", "stopped", rpid,
                          sp.redis.log, rdetail)]
