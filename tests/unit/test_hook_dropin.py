"""The drop-in's fast path and its agreement with hook.py (no kernel needed)."""

import os
import subprocess
import sys

import pytest

from virtvlan import NAMESPACE
from virtvlan.hook import handler as hook
from virtvlan.host import journal
from virtvlan.cli import install

DROPIN = os.path.join(os.path.dirname(hook.__file__), "dropin.py")
TAGGED = (b'<domain><name>vm1</name><devices><interface type="bridge">'
          b'<mac address="52:54:00:00:00:01"/></interface></devices><metadata>'
          b'<vv:vlan xmlns:vv="urn:virt-vlan:1"><vv:interface mac="52:54:00:00:00:01" '
          b'mode="access" vlan="5"/></vv:vlan></metadata></domain>')
UNTAGGED = b"<domain><name>plain</name></domain>"


def _load_dropin():
    namespace = {"__name__": "dropin"}
    with open(DROPIN, encoding="utf-8") as handle:
        exec(compile(handle.read(), DROPIN, "exec"), namespace)
    return namespace


def _run(path, args, xml, env=None):
    return subprocess.run([path] + args, input=xml, capture_output=True, env=env, timeout=60)


@pytest.fixture
def installed(tmp_path):
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "apparmor"),
                    agent=False)
    return str(tmp_path / "hooks" / "qemu.d" / "virt-vlan")


def test_dropin_namespace_literal_is_the_contract_namespace():
    with open(DROPIN, encoding="utf-8") as handle:
        assert ('b"%s"' % NAMESPACE) in handle.read()


def test_dropin_acts_on_exactly_the_ops_hook_handles():
    ops = _load_dropin()["OPS"]
    assert ops["qemu"] == hook.QEMU_WIRE_OPS | hook.QEMU_CHECK_OPS | hook.QEMU_RELEASE_OPS
    assert ops["network"] == {"start", "stopped", "port-deleted"}


def test_untagged_domain_never_imports_the_package(tmp_path):
    # An interpreter that cannot import virtvlan at all: if the fast path
    # imported anything of ours, the hook would fail instead of exiting 0.
    base = getattr(sys, "_base_executable", sys.executable)
    hooks = tmp_path / "hooks"
    path = hooks / "qemu.d" / "virt-vlan"
    path.parent.mkdir(parents=True)
    path.write_text(install.dropin_text(base))
    path.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin"}
    for op in ("prepare", "start", "started", "stopped", "release", "migrate"):
        done = _run(str(path), ["plain", op, "begin", "-"], UNTAGGED, env)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), op
    # ...and the same interpreter does reach the import for a tagged domain.
    done = _run(str(path), ["vm1", "prepare", "begin", "-"], TAGGED, env)
    assert done.returncode == 1 and b"virtvlan" in done.stderr
    # One line saying why and what to do: the state a Debian `apt remove`
    # leaves (the drop-ins are conffiles, kept until purge).
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and done.stdout == b"", done
    assert lines[0].startswith("virt-vlan: this hook (%s) cannot load the virt-vlan package"
                               % path), lines[0]
    assert "apt purge virt-vlan" in lines[0]


def test_ignored_ops_exit_before_parsing(installed):
    for op in ("started", "stopped", "unknown-op"):
        done = _run(installed, ["vm1", op, "begin", "-"], b"<not-xml urn:virt-vlan:1")
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), op


def test_tagged_domain_without_config_fails_start_with_one_line(installed, tmp_path):
    env = dict(os.environ, VIRT_VLAN_CONFIG=str(tmp_path / "absent.conf"))
    done = _run(installed, ["vm1", "prepare", "begin", "-"], TAGGED, env)
    assert done.returncode == 1 and done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("virt-vlan: domain vm1 asks for VLANs but ")
    assert "absent.conf does not exist" in lines[0]


def test_bad_metadata_fails_prepare_and_release_never_fails(installed, tmp_path):
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    env = dict(os.environ, VIRT_VLAN_CONFIG=str(conf))
    bad = TAGGED.replace(b'vlan="5"', b'vlan="4095"')
    done = _run(installed, ["vm1", "prepare", "begin", "-"], bad, env)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        "virt-vlan: domain vm1, interface 52:54:00:00:00:01: vlan='4095': "
        "VLAN 4095 is reserved by 802.1Q (use 1-4094)")
    # libvirt ignores release failures, and a refusal there must not block
    # the guest's teardown: we log and exit 0.
    done = _run(installed, ["vm1", "release", "end", "-"], bad, env)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")  # nothing printed


def test_migrate_prints_nothing_on_stdout(installed, tmp_path):
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\nallowed-vlans = 7\n")
    env = dict(os.environ, VIRT_VLAN_CONFIG=str(conf))
    done = _run(installed, ["vm1", "migrate", "begin", "-"], TAGGED, env)
    # VLAN 5 is not allowed here: the migration must fail early, with a reason.
    assert done.returncode == 1 and done.stdout == b""
    assert "VLAN 5 not allowed on uplink eth0" in done.stderr.decode()


class _FakeSyslog:
    """Stands in for the C `syslog` module: records what would reach syslog(3)."""

    LOG_PID, LOG_DAEMON = 1, 24

    def __init__(self) -> None:
        self.lines = []

    def openlog(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass

    def syslog(self, priority: int, line: str) -> None:
        self.lines.append((priority, line))


def test_syslog_handler_sends_one_entry_per_line_with_the_record_priority(monkeypatch):
    import logging

    fake = _FakeSyslog()
    monkeypatch.setitem(sys.modules, "syslog", fake)
    handler = journal.Syslog()
    logger = logging.getLogger("virtvlan.test-syslog")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info("domain %s prepare: %s", "vm1", "ip link add name br05 type bridge")
        logger.error("refused:\nsecond line")
    finally:
        logger.removeHandler(handler)
    assert fake.lines == [(6, "domain vm1 prepare: ip link add name br05 type bridge"),
                          (3, "refused:"), (3, "second line")]


def test_metadata_prepared_for_a_hot_plug_does_not_stop_the_guest(installed, tmp_path):
    # `virsh metadata --config` for a NIC attached later: the entry waits for
    # its NIC (the agent wires it on attach); starting the guest must work.
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    env = dict(os.environ, VIRT_VLAN_CONFIG=str(conf))
    later = TAGGED.replace(b'<vv:interface mac="52:54:00:00:00:01"',
                           b'<vv:interface mac="52:54:00:00:00:99"')
    for op in ("prepare", "start"):
        done = _run(installed, ["vm1", op, "begin", "-"], later, env)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), op


def test_release_without_the_package_prints_nothing(tmp_path):
    # Issue 19: release and stopped print nothing, even when the package is gone.
    base = getattr(sys, "_base_executable", sys.executable)
    path = tmp_path / "hooks" / "qemu.d" / "virt-vlan"
    path.parent.mkdir(parents=True)
    path.write_text(install.dropin_text(base))
    path.chmod(0o755)
    done = _run(str(path), ["vm1", "release", "end", "-"], TAGGED, {"PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.parametrize("extra", [b"<metadata><!-- <!ENTITY x 'y'> --></metadata>",
                                   b" " * (4 << 20)])
def test_untagged_domain_that_trips_a_guard_starts(tmp_path, monkeypatch, extra):
    # Issue 19: it mentions our namespace (a description) and has DOCTYPE text
    # in a comment, or is over the size cap: untagged all the same.
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(tmp_path / "absent.conf"))
    xml = (b"<domain type='kvm'><name>plain</name><description>urn:virt-vlan:1</description>"
           b"%s</domain>" % extra)
    for op in ("prepare", "start", "release"):
        assert hook.serve("qemu", ["plain", op, "begin", "-"], xml) == (0, ""), op
