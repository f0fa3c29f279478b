"""The error kinds (errors.py) and how the executor picks them, without a kernel.

Each kind's message is one line that names the object and the fix; the
executor maps a kernel refusal to KernelRefused (errno by name), a device
that vanished to StaleSnapshot, a plan that does not fit its own snapshot
to ApplyBug, and every one of them is still an ApplyError.
"""

import errno
import importlib
from contextlib import contextmanager
from dataclasses import replace
from typing import Dict, Iterator, List, Optional

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from virtvlan.apply import executor
from virtvlan.errors import (
    ApplyBug,
    ApplyError,
    InputError,
    InternalError,
    KernelRefused,
    LockTimeout,
    Refused,
    StaleSnapshot,
    VerifyFailed,
    VirtVlanError,
)
from virtvlan.host import rtnl
from virtvlan.model import Link, Snapshot
from virtvlan.plan import actions as act


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "  " not in text
    return text


# -- the kinds ------------------------------------------------------------------

def test_every_kind_is_a_virtvlan_error_and_the_after_apply_kinds_are_apply_errors():
    for kind in (InputError, Refused, LockTimeout, InternalError, ApplyError):
        assert issubclass(kind, VirtVlanError)
    for kind in (KernelRefused, StaleSnapshot, VerifyFailed, ApplyBug):
        assert issubclass(kind, ApplyError)
    assert issubclass(ApplyBug, InternalError)
    for kind in (InputError, Refused, LockTimeout, InternalError):
        assert not issubclass(kind, ApplyError)


def test_messages_are_folded_onto_one_line():
    err = InputError("domain vm1: mac='52:54:00:00:00:01\n' is\tnot a MAC; fix it")
    assert _one_line(err) == "domain vm1: mac='52:54:00:00:00:01 ' is not a MAC; fix it"


def test_kernel_refused_names_command_device_errno_name_and_fix():
    err = KernelRefused("ip link set dev br2 mtu 70000", "br2", errno.EINVAL)
    assert (err.action, err.device, err.errno_name) == (
        "ip link set dev br2 mtu 70000", "br2", "EINVAL")
    text = _one_line(err)
    assert text.startswith("`ip link set dev br2 mtu 70000` failed: EINVAL (Invalid argument); ")
    assert "fix the config or the device, then retry" in text
    assert "22" not in text  # the errno by its name, never its number


def test_kernel_refused_names_the_device_when_the_command_does_not():
    err = KernelRefused("ip -4 route replace default via 192.0.2.1 dev br0", "br0",
                        errno.ENETUNREACH, "Nexthop has invalid gateway")
    assert "br0" in err.action.split()
    text = _one_line(err)
    assert "failed: ENETUNREACH (Nexthop has invalid gateway)" in text
    # No errno-specific advice: where to look, on that device.
    assert text.endswith("see `ip -d link show br0` and the kernel log (`dmesg`), fix the "
                         "device, then retry")
    err = KernelRefused("bridge vlan add vid 5", "u0", errno.EPERM)
    assert _one_line(err).startswith("`bridge vlan add vid 5` failed on u0: EPERM ")
    assert "run virt-vlan as root" in str(err)


def test_an_unknown_errno_is_still_named():
    err = KernelRefused("ip link set dev u0 up", "u0", 4000)
    assert err.errno_name == "errno 4000"


def test_rollback_goes_between_what_failed_and_the_fix():
    err = StaleSnapshot("g0 disappeared while virt-vlan was configuring it")
    assert _one_line(err) == ("g0 disappeared while virt-vlan was configuring it; another "
                              "program changed the host meanwhile; retry")
    err.note_rollback("rolled back 1 change(s)")
    assert str(err) == ("g0 disappeared while virt-vlan was configuring it; rolled back 1 "
                        "change(s); another program changed the host meanwhile; retry")
    assert err.args == (str(err),)


@pytest.mark.parametrize("count, head, tail", [
    (1, "verification after apply failed: m1; ", "1 mismatch in all"),
    (3, "verification after apply failed: m1; m2; m3; ", "3 mismatches in all"),
    (7, "verification after apply failed: m1; m2; m3 (and 4 more); ", "7 mismatches in all"),
])
def test_verify_failed_names_the_first_three_and_the_total(count, head, tail):
    found = ["m%d" % n for n in range(1, count + 1)]
    err = VerifyFailed(found)
    text = _one_line(err)
    assert text.startswith(head + tail + ", each logged to the journal; ")
    assert "m4" not in text
    assert err.mismatches == tuple(found)


def test_internal_error_wraps_any_exception_as_a_bug_report():
    err = InternalError.wrap(TypeError("unhashable type: 'list'"), "the qemu hook for vm1 at start")
    assert _one_line(err) == ("internal error: the qemu hook for vm1 at start failed: "
                              "TypeError: unhashable type: 'list'; please report this bug with "
                              "the log lines around it")
    err = InternalError.wrap(KeyError("x"), "virt-vlan plug", "send the -v output")
    assert str(err).endswith("KeyError: 'x'; send the -v output")


def test_apply_bug_is_an_internal_error_with_a_rollback():
    err = ApplyBug("`ip link set dev u9 up` does not fit the snapshot it was planned from")
    err.note_rollback("rolled back 2 change(s)")
    assert _one_line(err) == ("internal error: `ip link set dev u9 up` does not fit the snapshot "
                              "it was planned from; rolled back 2 change(s); please report this "
                              "bug with the log lines around it")


# -- the executor picks the kind -------------------------------------------------

class FakeMessage:
    def get_attr(self, name: str) -> None:
        return None


class FakeSocket:
    """Just enough of pyroute2's IPRoute for the executor: links by name,
    and `refuse` maps an attribute of a `set` request to the errno the
    kernel answers it with."""

    def __init__(self, names: List[str], refuse: Optional[Dict[str, object]] = None) -> None:
        self.index = {name: number for number, name in enumerate(names, 1)}
        self.refuse = refuse or {}
        self.done: List[Dict[str, object]] = []

    def link(self, command: str, **attrs: object) -> list:
        if command == "get" and "index" in attrs:  # only to read an alias: none
            return [FakeMessage()]
        if command == "get":
            if attrs.get("ifname") not in self.index:
                raise NetlinkError(errno.ENODEV)
            return [{"index": self.index[str(attrs["ifname"])]}]
        for key, failure in self.refuse.items():
            if key in attrs:
                if isinstance(failure, int):
                    raise NetlinkError(failure)
                raise failure  # type: ignore[misc]
        self.done.append(dict(attrs, command=command))
        return []


@pytest.fixture
def fake(monkeypatch):
    """Run executor.apply on a FakeSocket; `found` is what it reads back."""
    box: Dict[str, object] = {}

    @contextmanager
    def open_socket(netns: Optional[str] = None) -> Iterator[FakeSocket]:
        yield box["socket"]  # type: ignore[misc]

    monkeypatch.setattr(executor, "open_socket", open_socket)
    monkeypatch.setattr(rtnl, "read_snapshot", lambda netns=None: box["found"])
    monkeypatch.delenv(executor.FAIL_AT_ENV, raising=False)

    def run(plan: act.Plan, before: Optional[Snapshot], found: Snapshot,
            socket: FakeSocket) -> Snapshot:
        box["socket"], box["found"] = socket, found
        return executor.apply(plan, "vvt-fake", before)

    return run


U0 = Link("u0", kind="veth", up=False)
BEFORE = Snapshot((U0,))


def test_a_kernel_refusal_is_kernel_refused_with_the_errno_name(fake):
    socket = FakeSocket(["u0"], refuse={"mtu": errno.EBUSY})
    plan = act.Plan((act.SetUp("u0"), act.SetMtu("u0", 9000)))
    with pytest.raises(KernelRefused) as info:
        fake(plan, BEFORE, BEFORE, socket)
    err = info.value
    assert (err.errno_name, err.device, err.action) == ("EBUSY", "u0", "ip link set dev u0 mtu 9000")
    assert isinstance(err.__cause__, NetlinkError)
    assert _one_line(err).startswith("`ip link set dev u0 mtu 9000` failed: EBUSY (Device or "
                                     "resource busy); rolled back 1 change(s); another program")
    # The rollback undid the SetUp (the last request sent).
    assert socket.done[-1] == {"index": 1, "state": "down", "command": "set"}


def test_an_os_error_from_the_kernel_is_kernel_refused_too(fake):
    socket = FakeSocket(["u0"], refuse={"state": PermissionError(errno.EPERM, "Operation not "
                                                                 "permitted")})
    with pytest.raises(KernelRefused) as info:
        fake(act.Plan((act.SetUp("u0"),)), BEFORE, BEFORE, socket)
    assert info.value.errno_name == "EPERM"
    assert "run virt-vlan as root" in str(info.value)


def test_a_vanished_device_is_a_stale_snapshot(fake):
    plan = act.Plan((act.SetUp("u0"), act.SetMaster("g0", "u0")))
    before = Snapshot((U0, Link("g0", kind="tap")))
    with pytest.raises(StaleSnapshot, match=r"^g0 disappeared while virt-vlan was configuring "
                                            r"it \(another tool deleted it\?\); rolled back 1 "
                                            r"change\(s\); another program changed the host"):
        fake(plan, before, before, FakeSocket(["u0"]))


def test_a_plan_that_does_not_fit_its_snapshot_is_a_bug_and_otherwise_stale(fake):
    plan = act.Plan((act.SetUp("u9"),))
    with pytest.raises(ApplyBug, match=r"^internal error: cannot run `ip link set dev u9 up`: "
                                       r"the snapshot the plan was made from lacks 'u9'; "):
        fake(plan, BEFORE, BEFORE, FakeSocket(["u0"]))
    # Without `before` the executor reads the host itself: the plan is older.
    with pytest.raises(StaleSnapshot, match=r"the host read now lacks 'u9'"):
        fake(plan, None, BEFORE, FakeSocket(["u0"]))


def test_creating_what_exists_is_a_bug_or_a_race_by_what_the_snapshot_showed(fake):
    plan = act.Plan((act.CreateVlan("u0.5", "u0", 5),))
    there = Snapshot((U0, Link("u0.5", kind="bridge")))
    socket = FakeSocket(["u0", "u0.5"], refuse={"ifname": errno.EEXIST})
    with pytest.raises(ApplyBug, match=r"^internal error: cannot create VLAN 5 on u0 as u0\.5: "
                                       r"u0\.5 already exists as a bridge device in the snapshot "
                                       r"the plan was made from; rolled back 0 change\(s\); "):
        fake(plan, there, there, socket)
    with pytest.raises(StaleSnapshot, match=r"^cannot create VLAN 5 on u0 as u0\.5: u0\.5 already "
                                            r"exists as a bridge device \(made after virt-vlan "
                                            r"read the host\); rolled back 0 change\(s\); rename "):
        fake(plan, BEFORE, there, socket)


def test_deleting_a_device_without_our_mark_is_a_bug_or_a_race(fake):
    plan = act.Plan((act.DeleteLink("u0"),))
    with pytest.raises(ApplyBug, match=r"^internal error: refusing to delete u0: it has no "
                                       r"'virt-vlan:managed' alias, so virt-vlan did not create "
                                       r"it \(nor does the snapshot the plan was made from say "
                                       r"so\); "):
        fake(plan, BEFORE, BEFORE, FakeSocket(["u0"]))
    ours = Snapshot((replace(U0, managed=True),))
    with pytest.raises(StaleSnapshot, match=r"alias when virt-vlan read the host: another tool "
                                            r"replaced it\?\); rolled back 0"):
        fake(plan, ours, ours, FakeSocket(["u0"]))


def test_an_unexpected_exception_is_an_apply_bug(fake):
    socket = FakeSocket(["u0"], refuse={"state": TypeError("bad attribute")})
    with pytest.raises(ApplyBug) as info:
        fake(act.Plan((act.SetUp("u0"),)), BEFORE, BEFORE, socket)
    assert isinstance(info.value, InternalError) and isinstance(info.value, ApplyError)
    assert "`ip link set dev u0 up` failed: TypeError: bad attribute; rolled back 0 change(s); " \
           "please report this bug" in _one_line(info.value)


def test_a_result_unlike_the_plan_is_verify_failed(fake):
    plan = act.Plan((act.SetUp("u0"), act.SetMtu("u0", 9000)))
    with pytest.raises(VerifyFailed) as info:
        fake(plan, BEFORE, BEFORE, FakeSocket(["u0"]))
    assert info.value.mismatches == ("u0 has mtu=1500, expected 9000",
                                     "u0 has up=False, expected True")
    assert "rolled back 2 change(s)" in _one_line(info.value)


def test_a_result_like_the_plan_is_returned(fake):
    plan = act.Plan((act.SetUp("u0"),))
    found = plan.simulate(BEFORE)
    # What was read back: the devices the plan touched (here all of them).
    assert fake(plan, BEFORE, found, FakeSocket(["u0"])) == found


# -- the entry points render them -----------------------------------------------

def test_the_hook_words_an_unexpected_exception_as_an_internal_error(monkeypatch):
    from virtvlan.hook import handler

    def broken(args, xml, config_path, stdout=None):  # type: ignore[no-untyped-def]
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(handler, "_qemu", broken)
    code, text = handler.serve("qemu", ["vm1", "start", "begin", "-"], b"<domain/>")
    assert code == 1
    assert text == ("virt-vlan: internal error: the qemu hook for vm1 at start failed: "
                    "TypeError: unhashable type: 'list'; please report this bug with the "
                    "traceback logged to the journal with it\n")
    # Where libvirt ignores the hook's failure, the hook neither fails nor
    # prints (release's contract); the journal has the line.
    code, text = handler.serve("qemu", ["vm1", "release", "end", "-"], b"<domain/>")
    assert (code, text) == (0, "")


def test_the_hook_passes_a_kind_through_with_exit_1(monkeypatch):
    from virtvlan.hook import handler

    def refused(args, xml, config_path, stdout=None):  # type: ignore[no-untyped-def]
        raise KernelRefused("ip link set dev br05 up", "br05", errno.ENOMEM)

    monkeypatch.setattr(handler, "_qemu", refused)
    code, text = handler.serve("qemu", ["vm1", "start", "begin", "-"], b"<domain/>")
    assert (code, text) == (1, "virt-vlan: `ip link set dev br05 up` failed: ENOMEM (Cannot "
                               "allocate memory); the kernel ran out of memory; retry\n")


def test_the_cli_words_an_unexpected_exception_as_an_internal_error(monkeypatch, capsys):
    cli = importlib.import_module("virtvlan.cli.commands")

    def broken(args):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "cmd_cleanup", broken)
    assert cli.main(["cleanup"]) == 1
    err = capsys.readouterr().err
    assert err == ("virt-vlan: internal error: virt-vlan cleanup failed: ZeroDivisionError: "
                   "division by zero; please report this bug with the traceback that -v prints\n")
    assert cli.main(["-v", "cleanup"]) == 1
    assert "Traceback" in capsys.readouterr().err
