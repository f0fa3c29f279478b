"""host/tapowner.py against a real kernel: a process that holds a tap (as a
guest's QEMU does) is found through /proc/PID/fdinfo; any other process,
tap name or pid file is not. The oracle is the process we made hold it."""

import os
import subprocess
import sys
from pathlib import Path

from virtvlan.host.tapowner import guest_holds_tap, holds_tap, qemu_pid

# A stand-in for QEMU: creates tap `argv[1]` (TUNSETIFF, IFF_TAP|IFF_NO_PI),
# says "ready", and holds it until its stdin closes.
HOLDER = r"""
import fcntl, struct, sys
fd = open("/dev/net/tun", "r+b", buffering=0)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))
print("ready", flush=True)
sys.stdin.read()
"""


def test_the_process_holding_a_tap_is_found_and_no_other(netns, tmp_path: Path):
    holder = subprocess.Popen(["ip", "netns", "exec", netns.name, sys.executable, "-c", HOLDER,
                               "vvtap0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        # `ip netns exec` execs the interpreter: the pid is the holder's.
        (tmp_path / "guest1.pid").write_text("%d\n" % holder.pid)
        (tmp_path / "guest2.pid").write_text("%d" % os.getpid())
        (tmp_path / "junk.pid").write_text("not a pid")
        assert qemu_pid("guest1", str(tmp_path)) == holder.pid
        assert holds_tap(holder.pid, "vvtap0")
        assert guest_holds_tap("guest1", "vvtap0", str(tmp_path))
        assert guest_holds_tap("guest1", "vvtap1", str(tmp_path)) is False  # another tap
        assert guest_holds_tap("guest2", "vvtap0", str(tmp_path)) is False  # another process
        for name in ("junk", "absent", "../guest1", ""):  # no pid to ask: cannot tell
            assert guest_holds_tap(name, "vvtap0", str(tmp_path)) is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # Gone: its files cannot be read, so it cannot tell.
    assert holds_tap(holder.pid, "vvtap0") is None
