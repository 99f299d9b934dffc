"""A local Prometheus (Debian's ``prometheus`` package, which ships ``promtool``), optional.

``churnpulse services up prometheus`` installs the package when ``prometheus`` is missing (as
``redis-server`` is installed), writes ``<state_dir>/prometheus/prometheus.yml`` scraping every
churnpulse process on 127.0.0.1 at its metrics port (``CHURN_METRICS__*_PORT``) with the
alerting rules of ``deploy/prometheus/rules.yml``, and runs it on ``metrics.prometheus_port``
under our pid file. ``up`` without names does not start it; ``down`` stops it when we did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streams.services.common import (
    ServiceError,
    ServiceStatus,
    abandon,
    exited,
    log_tail,
    our_pid,
    port_open,
    spawn,
    stop_pid,
    wait_for,
)
from streams.settings import Settings
from streams.settings_ops import PROCESSES

NAME = "prometheus"
BIND_HOST = "127.0.0.1"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


@dataclass(frozen=True)
class PrometheusPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.root / "rules.yml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def out(self) -> Path:
        return self.root / "prometheus.out"

    @property
    def pid(self) -> Path:
        return self.root / "prometheus.pid"


def paths(settings: Settings) -> PrometheusPaths:
    return PrometheusPaths(settings.services.state_dir.expanduser().resolve() / "prometheus")


def config_text(targets: dict[str, str], interval_s: float, rules: Path | None) -> str:
    """A prometheus.yml scraping ``targets`` (job -> host:port) every ``interval_s``.

    >>> print(config_text({"churnpulse-worker": "127.0.0.1:9410"}, 1.0, None).strip())
    global:
      scrape_interval: 1s
      evaluation_interval: 1s
    scrape_configs:
      - job_name: churnpulse-worker
        static_configs: [{targets: ["127.0.0.1:9410"]}]
    """
    interval = f"{interval_s:g}s"
    lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}"]
    if rules is not None:
        lines += ["rule_files:", f'  - "{rules}"']
    lines.append("scrape_configs:")
    for job, target in targets.items():
        lines += [f"  - job_name: {job}", f'    static_configs: [{{targets: ["{target}"]}}]']
    return "\n".join(lines) + "\n"


def local_targets(settings: Settings) -> dict[str, str]:
    """``churnpulse-<process>`` -> ``127.0.0.1:<port>`` for every process with a port."""
    m = settings.metrics
    return {f"churnpulse-{p}": f"127.0.0.1:{getattr(m, f'{p}_port')}" for p in PROCESSES
            if getattr(m, f"{p}_port")}


def server_args(binary: str, config: Path, data: Path, port: int) -> list[str]:
    """argv of a Prometheus on 127.0.0.1:``port`` (lifecycle API on, for reloads in tests)."""
    return [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={BIND_HOST}:{port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d"]


def probe(port: int, timeout_s: float = 1.0) -> bool:
    """True when a Prometheus on 127.0.0.1:``port`` says it is ready."""
    if not port_open(BIND_HOST, port):
        return False
    try:
        with urllib.request.urlopen(f"http://{BIND_HOST}:{port}/-/ready",
                                    timeout=timeout_s) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=900, check=False)


def ensure_binary(name: str = "prometheus") -> str:
    """Path of ``prometheus`` (or ``promtool``), installing Debian's package when missing."""
    if (found := shutil.which(name)) is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise ServiceError(f"{name} is not installed and there is no apt-get to install it")
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") is not None:
        prefix = ["sudo", "-n"]
    else:
        raise ServiceError(f"{name} is missing: run 'apt-get install -y prometheus' as root")
    install = [*prefix, apt, "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    res = _run(install)
    if res.returncode != 0:
        _run([*prefix, apt, "update", "-q"])
        res = _run(install)
    found = shutil.which(name)
    if res.returncode != 0 or found is None:
        raise ServiceError(
            f"could not install prometheus ('{' '.join(install)}' exited {res.returncode})",
            "\n".join((res.stdout + res.stderr).splitlines()[-10:]))
    return found


def _marker(p: PrometheusPaths) -> str:
    return f"--config.file={p.config}"


def status(settings: Settings) -> ServiceStatus:
    p, port = paths(settings), settings.metrics.prometheus_port
    address = f"{BIND_HOST}:{port}"
    pid = our_pid(p.pid, _marker(p))
    if pid is not None:
        return ServiceStatus(NAME, address, "running-ours", pid, p.out,
                             "ready" if probe(port) else "process alive, not ready (yet)")
    if probe(port):
        return ServiceStatus(NAME, address, "running-external", None, None, "ready")
    detail = "port taken by something else" if port_open(BIND_HOST, port) else ""
    return ServiceStatus(NAME, address, "stopped", None, None, detail)


def write_config(settings: Settings, p: PrometheusPaths) -> None:
    p.root.mkdir(parents=True, exist_ok=True)
    rules = None
    if RULES.exists():
        shutil.copyfile(RULES, p.rules)
        rules = p.rules
    p.config.write_text(config_text(local_targets(settings), settings.metrics.scrape_interval_s,
                                    rules))


def up(settings: Settings) -> ServiceStatus:
    """Start our Prometheus unless one answers on the port; wait until it is ready."""
    p, port = paths(settings), settings.metrics.prometheus_port
    timeout, address = settings.services.start_timeout_s, f"{BIND_HOST}:{port}"
    pid = our_pid(p.pid, _marker(p))
    if pid is not None:
        if not wait_for(lambda: probe(port), timeout):
            raise ServiceError(f"our Prometheus (pid {pid}) is not ready on {address}",
                               log_tail(p.out))
        return ServiceStatus(NAME, address, "running-ours", pid, p.out, "already running")
    if probe(port):
        return ServiceStatus(NAME, address, "running-external", None, None, "ready")
    if port_open(BIND_HOST, port):
        raise ServiceError(f"port {port} is taken by something that is not Prometheus")
    binary = ensure_binary()
    write_config(settings, p)
    p.data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = spawn(server_args(binary, p.config, p.data, port), p.out, p.pid, p.root)
    try:
        ready = wait_for(lambda: probe(port), timeout, 0.1, exited(proc, "prometheus"))
    except ServiceError as exc:
        abandon(proc, p.pid)
        raise ServiceError(f"{exc.message}; see {p.out}", log_tail(p.out)) from None
    except BaseException:
        abandon(proc, p.pid)
        raise
    if not ready:
        abandon(proc, p.pid)
        raise ServiceError(f"Prometheus was not ready on {address} within {timeout:g}s "
                           "(stopped it)", log_tail(p.out))
    detail = f"ready in {time.monotonic() - started:.2f}s; config {p.config}"
    return ServiceStatus(NAME, address, "started", proc.pid, p.out, detail)


def down(settings: Settings, timeout_s: float = 15.0) -> ServiceStatus:
    """Stop the Prometheus we started (never another one)."""
    p, port = paths(settings), settings.metrics.prometheus_port
    pid, detail = stop_pid(p.pid, _marker(p), timeout_s)
    if pid is None and probe(port):
        return ServiceStatus(NAME, f"{BIND_HOST}:{port}", "running-external", None, None,
                             "not started by us: left running")
    return ServiceStatus(NAME, f"{BIND_HOST}:{port}", "stopped", pid, p.out, detail)
