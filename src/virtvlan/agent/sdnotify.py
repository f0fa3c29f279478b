"""systemd's notify protocol without libsystemd (sd_notify(3)).

One datagram "KEY=VALUE\\n..." to the AF_UNIX socket named by $NOTIFY_SOCKET;
a leading '@' names an abstract socket. Outside systemd (no variable) every
call is a no-op, so the agent runs the same in a terminal or a test.
Only the main process may notify (NotifyAccess=main, the default).
"""

import logging
import os
import socket
from typing import Optional

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1");
    False when not under systemd or the send failed (logged)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError as err:
        log.warning("sd_notify %s: %s", state.split("=", 1)[0], err)
        return False
    return True


def watchdog_interval() -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when
    the unit sets no watchdog or it is meant for another process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:  # "¹" passes isdigit()
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6
