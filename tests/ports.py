"""Free local ports for the tests that start servers of their own."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on right now (the kernel's pick, not a guess)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One port nobody listens on right now."""
    return free_ports(1)[0]


def free_cluster_ports(n: int) -> list[int]:
    """n ports nobody listens on whose cluster bus port (port + 10000) is free as well: the
    kernel's pick can be above 55535, where the bus port does not exist."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1]) % 40000 + 5000  # bus port below 55536
        if port in found or port + 10000 in found or port - 10000 in found:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        found.append(port)
    return found
