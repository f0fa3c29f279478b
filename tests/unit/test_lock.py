"""The host lock's file: root's alone, and a broken one named in one line."""

import os
import stat

import pytest

from virtvlan.errors import VirtVlanError
from virtvlan.host.lock import host_lock


def _mode(path) -> int:  # type: ignore[no-untyped-def]
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_lock_file_is_root_only(tmp_path):
    path = tmp_path / "run" / "lock"
    old = os.umask(0o022)
    try:
        with host_lock(5, str(path)):
            assert _mode(path) == 0o600
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o755  # `check` by a non-root user still reads the run dir


def test_existing_world_readable_lock_file_is_fixed_on_open(tmp_path):
    path = tmp_path / "lock"
    path.write_text("")
    path.chmod(0o644)  # made by an older version
    with host_lock(5, str(path)):
        assert _mode(path) == 0o600
    assert _mode(path) == 0o600


def test_lock_that_is_a_directory_is_one_line_naming_it(tmp_path):
    path = tmp_path / "lock"
    path.mkdir()
    with pytest.raises(VirtVlanError) as caught:
        with host_lock(5, str(path)):
            pass  # pragma: no cover
    message = str(caught.value)
    assert message.startswith("cannot open the virt-vlan lock file %s: Is a directory" % path)
    assert "fix or remove %s" % path in message and "\n" not in message


def test_lock_that_is_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    (tmp_path / "lock").symlink_to(target)
    with pytest.raises(VirtVlanError, match="cannot open the virt-vlan lock file"):
        with host_lock(5, str(tmp_path / "lock")):
            pass  # pragma: no cover
    assert target.read_text() == "keep\n"


def test_run_dir_that_is_a_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(VirtVlanError, match="fix or remove %s" % (tmp_path / "run")):
        with host_lock(5, str(tmp_path / "run" / "lock")):
            pass  # pragma: no cover


def test_garbage_pid_in_a_held_lock_is_no_crash(tmp_path):
    # A holder's line with a Unicode digit: the timeout message, not a ValueError.
    path = tmp_path / "lock"
    import fcntl

    with host_lock(5, str(path)):
        pass
    fd = os.open(str(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, "\u00b9\u2075 x\n".encode(), 0)
        with pytest.raises(VirtVlanError, match="has not written its pid yet"):
            with host_lock(0.01, str(path)):
                pass  # pragma: no cover
    finally:
        os.close(fd)
