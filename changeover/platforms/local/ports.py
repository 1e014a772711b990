"""Loopback port allocation for local replicas.

``LocalPlatform`` owns one allocator. Ports come from a fixed range below Linux's ephemeral
range (32768-60999), so outgoing connections never hold one we are about to hand out; a port
is free if nothing we assigned has it and a bind succeeds. The bind probe can still race
with another program, which is why a replica that exits before becoming ready on a port
that is now busy is moved to a new port (see ``local.replica``).
"""

from __future__ import annotations

import random
import socket

from changeover import errors

DEFAULT_RANGE = (20000, 29999)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``host:port`` now.

    SO_REUSEADDR mirrors what servers set, so a port with only TIME_WAIT leftovers counts
    as free while one with a listener does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out distinct free ports from ``port_range`` (inclusive) and remembers them.

    >>> ports = PortAllocator((20000, 20001))
    >>> a = ports.allocate(); b = ports.allocate(); a != b
    True
    >>> ports.release(a); ports.allocate() == a
    True
    """

    def __init__(self, port_range: tuple[int, int] = DEFAULT_RANGE) -> None:
        low, high = port_range
        if not 0 < low <= high < 65536:
            raise ValueError(f"bad port range {port_range!r}")
        self._low = low
        self._high = high
        self._assigned: set[int] = set()

    def reserve(self, port: int) -> None:
        """Mark ``port`` as taken (an adopted replica keeps the port it already listens on)."""
        self._assigned.add(port)

    def release(self, port: int | None) -> None:
        if port is not None:
            self._assigned.discard(port)

    def allocate(self, *, prefer: int | None = None) -> int:
        """A free port, ``prefer`` if it is in range, unassigned and free."""
        if (
            prefer is not None
            and self._low <= prefer <= self._high
            and prefer not in self._assigned
            and port_is_free(prefer)
        ):
            self._assigned.add(prefer)
            return prefer
        size = self._high - self._low + 1
        # Start at a random offset so successive servers (and tests) do not all fight over
        # the bottom of the range.
        start = random.randrange(size)
        for i in range(size):
            port = self._low + (start + i) % size
            if port not in self._assigned and port_is_free(port):
                self._assigned.add(port)
                return port
        raise errors.TemporaryBackendError(
            f"no free loopback port in {self._low}-{self._high} "
            f"({len(self._assigned)} assigned by changeover)"
        )
