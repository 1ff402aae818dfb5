"""systemd's notify protocol over the datagram socket named by NOTIFY_SOCKET.

Without NOTIFY_SOCKET (not run by systemd) every call is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    """Send READY=1, RELOADING=1, STOPPING=1, STATUS=..., WATCHDOG=1 to systemd."""

    def __init__(self, env: dict[str, str] | None = None):
        e = os.environ if env is None else env
        addr = e.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@'.
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = e.get("WATCHDOG_USEC", "")
        pid = e.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval = int(usec) / 2e6 if enabled else None
        """Seconds between watchdog pings (half of WatchdogSec), or None when disabled."""

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):  # systemd went away: nothing to tell
            self._sock.sendto("\n".join(fields).encode(), self.address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
