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
