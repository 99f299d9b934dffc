"""Kafka's runtime jars, fetched once from Maven Central with the machine's ``mvn``."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from streams.services.common import ServiceError, file_lock, log_tail

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
MVN_TIMEOUT_S = 1800.0
_COMPLETE = ".complete"


def kafka_home(cache_dir: Path, scala: str, version: str) -> Path:
    """``<cache>/kafka-<scala>-<version>``: pom, mvn log, marker and ``libs/``."""
    return cache_dir.expanduser().resolve() / f"kafka-{scala}-{version}"


def core_jar_name(scala: str, version: str) -> str:
    return f"kafka_{scala}-{version}.jar"


def _logging_deps(version: str) -> list[tuple[str, str, str]]:
    """Kafka 3.x's core POM brings no logging backend; the tarball ships reload4j."""
    if int(version.split(".")[0]) >= 4:
        return []  # 4.x depends on log4j2 itself
    return [("org.slf4j", "slf4j-reload4j", "1.7.36"), ("ch.qos.reload4j", "reload4j", "1.2.25")]


def render_pom(scala: str, version: str) -> str:
    """A throw-away pom whose runtime closure is exactly a Kafka broker."""
    deps = [("org.apache.kafka", f"kafka_{scala}", version), *_logging_deps(version)]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>churnpulse.local</groupId>
  <artifactId>kafka-runtime-{scala}-{version}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def jars_ready(home: Path, scala: str, version: str) -> bool:
    core = home / "libs" / core_jar_name(scala, version)
    return (home / _COMPLETE).is_file() and core.is_file()


def ensure_jars(cache_dir: Path, scala: str, version: str) -> tuple[Path, float]:
    """The ``libs`` dir of Kafka ``version``, downloading it first when needed.

    The marker file is written only after a complete download, so an interrupted one is
    redone from scratch. Returns (libs dir, seconds spent downloading; 0 when cached).
    """
    home = kafka_home(cache_dir, scala, version)
    libs = home / "libs"
    if jars_ready(home, scala, version):
        return libs, 0.0
    with file_lock(home / ".lock"):
        if jars_ready(home, scala, version):  # another process finished it meanwhile
            return libs, 0.0
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                "Maven ('mvn') is not on PATH: it fetches Kafka's jars once "
                "(install it with 'apt-get install -y maven')"
            )
        shutil.rmtree(libs, ignore_errors=True)
        (home / "pom.xml").write_text(render_pom(scala, version))
        mvn_log = home / "mvn.log"
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(home / "pom.xml"),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
        ]
        started = time.monotonic()
        with mvn_log.open("wb") as out:
            try:
                rc = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=home, timeout=MVN_TIMEOUT_S, check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                raise ServiceError(
                    f"Maven did not fetch Kafka {version} within {MVN_TIMEOUT_S:g}s",
                    log_tail(mvn_log),
                ) from None
        if rc != 0 or not (libs / core_jar_name(scala, version)).is_file():
            raise ServiceError(
                f"Maven could not fetch Kafka {scala}/{version} (exit {rc}, see {mvn_log})",
                log_tail(mvn_log),
            )
        jars = sorted(p.name for p in libs.glob("*.jar"))
        (home / _COMPLETE).write_text("\n".join(jars) + "\n")
        return libs, time.monotonic() - started
