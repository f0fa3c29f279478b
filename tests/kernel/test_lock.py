"""The host lock against another user (root acts as `nobody`): moved here
from tests/unit so that it runs as root in the VM, never skipped."""

import os
import shutil
import tempfile

from virtvlan.host.lock import host_lock


def test_another_user_cannot_open_the_lock_file_to_hold_it():
    # Every directory on the way must let `nobody` through, or the test
    # would pass for the wrong reason: tmp_path's parents are root's alone.
    run = tempfile.mkdtemp(prefix="virt-vlan-lock-")
    try:
        os.chmod(run, 0o755)
        path = os.path.join(run, "lock")
        with open(path, "w"):
            pass
        os.chmod(path, 0o644)
        assert _opens_as_nobody(path)  # the test can fail: 0644 is open to all
        with host_lock(5, path):
            pass
        # What `runuser -u nobody -- flock -x lock sleep infinity` needs first.
        assert not _opens_as_nobody(path)
    finally:
        shutil.rmtree(run)


def _opens_as_nobody(path: str) -> bool:
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.close(os.open(path, os.O_RDONLY))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
