"""The host-wide lock that serializes every virt-vlan run.

Two guests starting at once run two hooks at once; each reads the host,
plans and applies. Without a lock both could plan "create br05" from the
same snapshot. flock(2) is used because the kernel drops it when the holder
dies, whatever the cause: a killed hook never leaves a stale lock.
"""

import errno
import fcntl
import logging
import os
import stat
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from virtvlan.errors import LockTimeout, VirtVlanError

log = logging.getLogger(__name__)

DEFAULT_PATH = "/run/virt-vlan/lock"
PATH_ENV = "VIRT_VLAN_LOCK"
_POLL_START = 0.01  # seconds; doubled up to _POLL_MAX while waiting
_POLL_MAX = 0.1
# Root's alone: flock(2) works on a descriptor opened read-only, so a lock
# file others can read is one any local user can hold forever (and with it
# every tagged guest start). The run dir itself stays world-readable: `check`
# run by a monitoring user reads the reservations there.
MODE = 0o600


@contextmanager
def host_lock(timeout: float, path: str = DEFAULT_PATH) -> Iterator[None]:
    """Hold the exclusive host-wide lock for the duration of the block.

    Waits (polling) up to `timeout` seconds, then raises LockTimeout naming
    the holding process and the fix. While held, the file contains the
    holder's pid and command (argv[0..3]), for that message and for humans.
    VIRT_VLAN_LOCK in the environment replaces the default path (tests); an
    explicit `path` argument wins over it.
    """
    if path == DEFAULT_PATH:
        path = os.environ.get(PATH_ENV) or DEFAULT_PATH
    fd = _open(path)
    try:
        _acquire(fd, path, timeout)
        try:
            os.ftruncate(fd, 0)
            line = "%d %s\n" % (os.getpid(), _one_line(" ".join(sys.argv[:4])))
            os.pwrite(fd, line.encode("utf-8", "replace"), 0)
            log.debug("acquired %s", path)
            yield
        finally:
            # Empty the file before unlocking so that a waiter never blames a
            # process that has let go. LOCK_UN releases the lock for every
            # descriptor sharing this open file, including ones a forked child
            # inherited, which a mere close() would not.
            try:
                os.ftruncate(fd, 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open(path: str) -> int:
    """The lock file's descriptor, the file made root-only (MODE) if it was not.

    A run dir or lock that cannot be used (a directory named `lock`, a
    read-only file system) is one VirtVlanError naming the path to fix.
    """
    directory = os.path.dirname(path)
    try:
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        # No O_TRUNC: the current holder's pid must survive our open().
        # O_CLOEXEC: programs we exec must not inherit (and so keep) the lock.
        # O_NOFOLLOW: a symlink planted in the run dir does not redirect us.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, MODE)
    except OSError as err:
        raise VirtVlanError("cannot open the virt-vlan lock file %s: %s (%s); it must be a "
                            "regular file in a writable directory: fix or remove %s"
                            % (path, err.strerror or err, err.filename or path,
                               err.filename or path)) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VirtVlanError("the virt-vlan lock file %s is not a regular file; remove it"
                                % path)
        if info.st_uid != os.geteuid():
            os.fchown(fd, os.geteuid(), -1)  # root's: made by someone else, take it back
        if stat.S_IMODE(info.st_mode) != MODE:
            # Created by an older version (0644) or by hand: others could
            # flock it. Descriptors they already hold keep working until
            # closed; new opens are refused.
            os.fchmod(fd, MODE)
            log.warning("lock file %s had mode %o; made it %o (root's alone)", path,
                        stat.S_IMODE(info.st_mode), MODE)
    except OSError as err:
        os.close(fd)
        raise VirtVlanError("cannot make the virt-vlan lock file %s root's alone (%s); remove "
                            "it" % (path, err.strerror or err)) from err
    except BaseException:
        os.close(fd)
        raise
    return fd


def _acquire(fd: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = _POLL_START
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                raise
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(_timeout_message(fd, path, timeout))
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _POLL_MAX)


def _timeout_message(fd: int, path: str, timeout: float) -> str:
    try:
        content = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        content = ""
    pid_text, _, recorded = content.partition(" ")
    pid: Optional[int] = (int(pid_text) if pid_text.isascii() and pid_text.isdigit()
                           and len(pid_text) <= 10 else None)
    head = "another virt-vlan run has held the lock %s for more than %g s" % (path, timeout)
    if pid is None:
        return ("%s (its holder has not written its pid yet); wait and retry, or find it "
                "with `fuser -v %s`" % (head, path))
    running = _cmdline(pid)
    if running is None:
        return ("%s: pid %d (%s) has exited but the lock is still held, by a process it "
                "forked? find it with `fuser -v %s` and kill it if it is stuck"
                % (head, pid, recorded or "command unknown", path))
    return ("%s: pid %d (%s); wait for it to finish, or `kill %d` if it is stuck"
            % (head, pid, running or recorded, pid))


def _cmdline(pid: int) -> Optional[str]:
    """The running command of `pid`, "" for a kernel thread/zombie, None if gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as proc:
            return _one_line(proc.read().replace(b"\0", b" ").decode("utf-8", "replace"))
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _one_line(command: str, limit: int = 200) -> str:
    """Error messages are one line: fold whitespace, cap the length."""
    text = " ".join(command.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
