"""host/tapowner.py's answers where the kernel does not give one: no pid
file, a pid file that holds no pid, a name that is no file name, and files
that are not ours to read (the packaged agent without CAP_SYS_PTRACE).
A real tap held by a process: tests/kernel/test_tapowner.py."""

import errno
import os

from virtvlan.host import tapowner


def test_the_pid_comes_from_libvirts_pid_file_or_not_at_all(tmp_path):
    (tmp_path / "web.pid").write_text("4242\n")
    (tmp_path / "junk.pid").write_text("42 x")
    assert tapowner.qemu_pid("web", str(tmp_path)) == 4242
    for name in ("junk", "absent", "", ".", "..", "../web", "a/b"):
        assert tapowner.qemu_pid(name, str(tmp_path)) is None, name


def test_files_we_may_not_read_give_no_answer(monkeypatch):
    def refused(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    monkeypatch.setattr(tapowner.os, "listdir", refused)
    assert tapowner.holds_tap(os.getpid(), "vnet0") is None


def test_a_process_without_a_tun_file_holds_no_tap():
    assert tapowner.holds_tap(os.getpid(), "vnet0") is False
