"""Which guest holds a tap: the proof the agent uses when a tap's MAC is no mark.

libvirt gives a guest's tap the guest MAC with the first byte 0xfe, but
udev may give a new tap an address of its own after that (MACAddressPolicy
in 99-default.link: udev reads the tap's address type before libvirt set
the MAC). The agent then cannot tell the tap of a hot-plugged NIC from a
tap whose name another guest reuses. The kernel can: the guest's QEMU
process holds the tap's file, and /proc/PID/fdinfo of a tun file names its
device ("iff:", tun_chr_show_fdinfo). Reading another user's fdinfo takes
CAP_SYS_PTRACE, which the packaged agent does not have (it would let it
read guests' memory): then the answer is None, and the agent's
reconcile.py decides without it.
"""

import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

# libvirt's qemu driver writes <stateDir>/<domain name>.pid (qemu:///system).
QEMU_RUN_DIR = "/run/libvirt/qemu"
TUN = "/dev/net/tun"


def qemu_pid(domain: str, run_dir: str = QEMU_RUN_DIR) -> Optional[int]:
    """The pid of running domain `domain`'s QEMU from libvirt's pid file;
    None when there is none (not running, another driver, unreadable)."""
    if not domain or "/" in domain or domain in (".", ".."):
        return None  # libvirt refuses such names; never a path outside run_dir
    try:
        with open(os.path.join(run_dir, domain + ".pid"), encoding="ascii") as f:
            text = f.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def holds_tap(pid: int, tap: str) -> Optional[bool]:
    """Process `pid` has a tun file attached to the device `tap` open; None
    when that cannot be told: the process is gone, or its files are not
    ours to read (another user's QEMU needs CAP_SYS_PTRACE, which the
    packaged agent unit does not have)."""
    base = "/proc/%d" % pid
    try:
        fds = os.listdir(base + "/fd")
    except OSError:
        return None
    want = "iff:\t%s\n" % tap
    for fd in fds:
        try:
            if os.readlink("%s/fd/%s" % (base, fd)) != TUN:
                continue
            with open("%s/fdinfo/%s" % (base, fd), encoding="utf-8",
                      errors="surrogateescape") as f:
                if want in f.read():
                    return True
        except FileNotFoundError:  # closed meanwhile
            continue
        except OSError:
            return None
    return False


def guest_holds_tap(domain: str, tap: str, run_dir: str = QEMU_RUN_DIR) -> Optional[bool]:
    """Running domain `domain`'s QEMU holds the tap `tap` (True), does not
    (False), or that cannot be told (None: no pid file, files not readable)."""
    pid = qemu_pid(domain, run_dir)
    found = None if pid is None else holds_tap(pid, tap)
    log.debug("tap %s held by domain %s's QEMU (pid %s): %s", tap, domain, pid, found)
    return found
