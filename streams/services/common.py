"""Shared pieces of the local services: status record, pid files, processes, polling."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Literal

State = Literal["running-ours", "running-external", "stopped", "started"]


class ServiceError(RuntimeError):
    """A local service could not be started, stopped or inspected.

    ``message`` is one human line; ``log`` is the tail of the service's log when there is
    one. ``str()`` gives the line, followed by the log tail (indented) when present.
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log = log

    def __str__(self) -> str:
        if not self.log:
            return self.message
        tail = "\n".join("    " + line for line in self.log.splitlines())
        return f"{self.message}\n  last log lines:\n{tail}"


@dataclass(frozen=True)
class ServiceStatus:
    """What one service looks like after ``up``/``down``/``status``."""

    name: str
    address: str
    state: State
    pid: int | None = None
    log: Path | None = None
    detail: str = ""


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"127.0.0.1:9092"`` -> ``("127.0.0.1", 9092)``; first entry of a comma-separated list."""
    first = address.split(",")[0].strip()
    if first.startswith("["):  # [::1]:9092
        host, _, rest = first[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = first.rpartition(":")
        if not sep:
            host, port = first, ""
    if not host:
        raise ServiceError(f"no host in address {address!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ServiceError(f"bad port in address {address!r}") from None


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for(
    check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2,
    abort: Callable[[], str | None] | None = None,
    progress: Callable[[], object] | None = None, limit_s: float | None = None,
) -> bool:
    """Poll ``check`` until it is true (True) or the deadline passes (False).

    ``abort`` returns a message when waiting is pointless (e.g. the process died): it is
    raised as :class:`ServiceError`. ``progress`` returns something that changes while the
    awaited process is still working (e.g. its log's size): each change moves the deadline to
    ``timeout_s`` from then, up to ``limit_s`` in all (a broker loading thousands of old
    partition logs is slow, not stuck).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    cap = started + max(limit_s or timeout_s, timeout_s)
    seen = progress() if progress is not None else None
    while True:
        if check():
            return True
        if abort is not None and (why := abort()) is not None:
            raise ServiceError(why)
        now = time.monotonic()
        if progress is not None and (mark := progress()) != seen:
            seen, deadline = mark, min(now + timeout_s, cap)
        if now >= deadline:
            return False
        time.sleep(min(interval_s, max(0.0, deadline - now)))


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _reap(pid: int) -> None:
    """Collect a child of this very process that has exited (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards pid reuse)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return False
    return marker in _cmdline(pid)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def our_pid(pid_file: Path, marker: str) -> int | None:
    """The pid we recorded, when that process is still the one we started."""
    pid = read_pid(pid_file)
    return pid if pid is not None and pid_alive(pid, marker) else None


def spawn(cmd: Sequence[str], out_file: Path, pid_file: Path, cwd: Path) -> Popen[bytes]:
    """Start ``cmd`` detached (own session), output to ``out_file`` (truncated); record its pid."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("wb") as out:
        try:
            proc = subprocess.Popen(
                list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=cwd, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {cmd[0]}: {exc}") from exc
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def exited(proc: Popen[bytes], what: str) -> Callable[[], str | None]:
    """An ``abort`` for :func:`wait_for`: a message once ``proc`` has exited."""

    def check() -> str | None:
        code = proc.poll()
        return None if code is None else f"{what} exited during start-up (exit code {code})"

    return check


def abandon(proc: Popen[bytes], pid_file: Path, timeout_s: float = 10.0) -> None:
    """Stop a process we just started that did not come up, and drop its pid file."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10.0)
    pid_file.unlink(missing_ok=True)


def stop_pid(pid_file: Path, marker: str, timeout_s: float) -> tuple[int | None, str]:
    """Stop the process recorded in ``pid_file`` (SIGTERM, then SIGKILL at the deadline).

    Only a live process whose command line still has ``marker`` is signalled. The pid file
    is removed in every case. Returns (pid that was stopped or None, detail).
    """
    pid = read_pid(pid_file)
    if pid is None or not pid_alive(pid, marker):
        pid_file.unlink(missing_ok=True)
        return None, "stale pid file removed" if pid is not None else "nothing of ours to stop"
    detail = "stopped (SIGTERM)"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_for(lambda: not pid_alive(pid, marker), timeout_s):
        detail = f"killed (SIGKILL after {timeout_s:g}s)"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_for(lambda: not pid_alive(pid, marker), 10.0):
            raise ServiceError(f"pid {pid} survived SIGKILL")
    pid_file.unlink(missing_ok=True)
    return pid, detail


def log_tail(path: Path, lines: int = 20) -> str:
    """Last lines of a log file, for error messages ('' when there is none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (two ``up`` runs at once do not race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def format_table(rows: Sequence[ServiceStatus]) -> str:
    """A plain fixed-width table of statuses."""
    header = ("SERVICE", "ADDRESS", "STATE", "PID", "DETAIL", "LOG")
    cells = [header] + [
        (s.name, s.address, s.state, str(s.pid or "-"), s.detail or "-", str(s.log or "-"))
        for s in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in cells
    ]
    return "\n".join(lines)
