"""The agent at boot: up before the libvirt daemons, connected to libvirt later.

The unit is ordered Before= libvirtd, virtqemud and virtnetworkd, so the
hooks of the guests and networks they autostart are served; for that to
cost libvirt nothing but the agent's start, the agent must send READY=1
once its hook socket listens, without waiting for libvirt, and connect in
the background with backoff (its first resync follows the connection).
systemd-analyze (Debian package systemd, installed by tests/setup-host)
checks the packaged unit in a boot transaction with libvirt's units.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import libvirt
import pytest

from test_hook_dropin import TAGGED, _load_dropin
from virtvlan.agent import service
from virtvlan.cli import install
from virtvlan.virt import adapter as virt

DAEMONS = ("libvirtd.service", "virtqemud.service", "virtnetworkd.service")
UUID = "9a7c3b2e-5d4f-4e6a-8b1c-0d2e3f40b007"
MAC = "52:54:00:0a:9e:b7"


def unit_section(text: str, section: str = "Unit") -> Dict[str, List[str]]:
    """{key: every value word} of one section of a unit file (repeated keys add up)."""
    out: Dict[str, List[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current == section:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).extend(value.split())
    return out


def test_the_unit_is_ordered_before_the_libvirt_daemons_and_waits_for_no_network():
    unit = unit_section(install.unit_text("/usr/bin/python3"))
    assert set(DAEMONS) <= set(unit.get("Before", []))
    for key in ("After", "Wants", "Requires", "Requisite", "BindsTo", "PartOf"):
        named = set(unit.get(key, []))
        assert "network-online.target" not in named, key
        assert not named & set(DAEMONS), key
        # A libvirt socket in front of the agent would wait for the agent's
        # own start; one behind it (Before=) is a cycle through basic.target.
        assert not [u for u in named if u.startswith(("libvirt", "virt")) and
                    u.endswith(".socket")], key
    assert not [u for u in unit["Before"] if u.endswith(".socket")]
    # Type=notify: "started" means READY=1 (the hook socket listens), not exec().
    assert unit_section(install.unit_text("/usr/bin/python3"), "Service")["Type"] == ["notify"]


# --- systemd-analyze verify ---------------------------------------------------

# The ordering lines of libvirt's modular daemons (socket-activated), for
# hosts whose libvirt ships only libvirtd (Debian 12): a boot transaction
# with them must have no cycle either.
MODEL_UNITS = {
    "%s.socket": "[Unit]\nDescription=model of libvirt's %s socket\n"
                 "[Socket]\nListenStream=/run/vv-model-%s-sock\n"
                 "[Install]\nWantedBy=sockets.target\n",
    "%s.service": "[Unit]\nDescription=model of libvirt's %s daemon\nBindsTo=%s.socket\n"
                  "After=%s.socket\nAfter=network.target\n"
                  "[Service]\nType=notify\nExecStart=/bin/true\n"
                  "[Install]\nWantedBy=multi-user.target\n",
}
SYSTEM_UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or next(
        (p for p in ("/usr/bin/systemd-analyze", "/bin/systemd-analyze") if os.path.exists(p)),
        None)
    if found is None:
        pytest.fail("systemd-analyze is missing: install the Debian package systemd "
                    "(tests/setup-host does)")
    return found


def _verify_boot(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` of a boot to multi-user.target with the
    agent's unit (`unit_text`) enabled beside the host's own units, plus
    models of the modular daemons the host lacks (enabled)."""
    units = tmp_path / "units"
    for wants in ("multi-user.target.wants", "sockets.target.wants"):
        (units / wants).mkdir(parents=True, exist_ok=True)
    agent = units / install.UNIT_NAME
    agent.write_text(unit_text)
    (units / "multi-user.target.wants" / install.UNIT_NAME).symlink_to(agent)
    for daemon in ("virtqemud", "virtnetworkd"):
        if any(os.path.exists(os.path.join(d, daemon + ".service")) for d in SYSTEM_UNIT_DIRS):
            continue
        for name, text in MODEL_UNITS.items():
            path = units / (name % daemon)
            path.write_text(text.replace("%s", daemon))
            wants = "sockets.target.wants" if name.endswith(".socket") else \
                "multi-user.target.wants"
            (units / wants / path.name).symlink_to(path)
    # --man=no: the man page is not installed here. The unit's directory
    # joins the search path (first), with its .wants directories.
    return subprocess.run([_systemd_analyze(), "verify", "--man=no", str(agent),
                           "multi-user.target"], capture_output=True, text=True, timeout=120)


def _cycles(done: subprocess.CompletedProcess) -> List[str]:
    return [line for line in (done.stdout + done.stderr).splitlines()
            if "ordering cycle" in line or "Found dependency" in line]


# The unit as debian/rules packages it (Debian's python3), else this interpreter.
PACKAGED_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def test_systemd_analyze_verify_finds_no_ordering_cycle_in_a_boot_with_the_agent(tmp_path):
    done = _verify_boot(tmp_path, install.unit_text(PACKAGED_PYTHON))
    assert _cycles(done) == []
    mine = [line for line in (done.stdout + done.stderr).splitlines()
            if install.UNIT_NAME in line]
    assert mine == [], "systemd-analyze verify about the agent's unit: %s" % mine
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_analyze_verify_here_does_find_an_ordering_cycle(tmp_path):
    """The check above can fail: a unit ordered before a socket (which
    comes before basic.target, which the unit is after) is a cycle."""
    text = install.unit_text(PACKAGED_PYTHON).replace(
        "\nBefore=", "\nBefore=sockets.target ", 1)
    assert "Before=sockets.target " in text
    assert _cycles(_verify_boot(tmp_path / "broken", text)) != []


# --- READY before the connection, the connection retried -------------------------

def _domain_xml() -> str:
    return ("<domain type='test'><name>vv-agent-boot</name><uuid>%s</uuid>"
            "<memory>65536</memory><os><type>hvm</type></os><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='%s' mode='access' "
            "vlan='7'/></vv:vlan></metadata><devices><interface type='bridge'>"
            "<mac address='%s'/><source bridge='lan'/><target dev='vvnotapb0'/></interface>"
            "</devices></domain>" % (UUID, MAC, MAC))


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.02)


class _Backoff(threading.Event):
    """The agent's stop event, recording each pause of the connector (the
    seconds it would wait) and not waiting them."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: List[float] = []

    def wait(self, timeout=None):  # type: ignore[override]
        if timeout is None:
            return super().wait()
        self.pauses.append(timeout)
        return super().wait(0.001)


@pytest.fixture
def guest():
    """A running tagged guest on libvirt's test driver (shared in-process)."""
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(_domain_xml())
    dom.create()
    yield dom
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    finally:
        conn.close()


def test_the_agent_serves_hooks_and_is_ready_before_libvirt_answers(tmp_path, monkeypatch,
                                                                     guest):
    sock = tmp_path / "run" / "agent.sock"
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\ndevice = vvnouplink0\nallowed-vlans = 7\n")
    monkeypatch.setenv("VIRT_VLAN_AGENT_SOCKET", str(sock))
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(conf))
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "run" / "lock"))
    monkeypatch.delenv("VIRT_VLAN_NO_AGENT", raising=False)
    seen: List[str] = []
    # Each notification, and whether the hook socket was there when it was sent.
    monkeypatch.setattr(service.sdnotify, "notify", lambda state: seen.append(
        "%s%s" % (state.split("\n")[0], " listening" if sock.exists() else "")) or True)
    libvirt_up = threading.Event()
    failures = 7

    def connect(uri, readonly=False):
        seen.append("connect")
        attempt = seen.count("connect")
        if attempt == 1:
            # libvirt not up yet: the first connect hangs, as one to a
            # socket whose daemon has not started does.
            libvirt_up.wait(60)
        if attempt <= failures:
            raise virt.ConnectError("cannot connect to libvirt at %s: not up yet" % uri)
        return virt.connect(uri, readonly=readonly)

    agent = service.Agent("test:///default", str(conf), heal=False, connect=connect)
    agent._stop = backoff = _Backoff()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: "connect" in seen, "the first connect")
        # Ready before connecting, and ready means served: the socket
        # listened before READY=1.
        assert seen.index("READY=1 listening") < seen.index("connect")
        dropin = _load_dropin()
        code, err = dropin["ask_agent"]("qemu", ["vm1", "prepare", "begin", "-"], TAGGED)
        assert (code, "VLAN 5 not allowed on uplink eth0" in err) == (1, True)
        assert agent._connection() is None and agent.domains == {}
        libvirt_up.set()
        # The first resync follows the connection: the guest libvirt runs
        # already is read without any event about it.
        _wait(lambda: "domain-" + UUID in agent.domains, "the running guest in the cache")
        assert [w.port for w in agent.domains["domain-" + UUID].wants] == ["vvnotapb0"]
        assert seen.count("connect") == failures + 1
        # 1 s doubling up to 30 s, one pause per failed connect.
        assert backoff.pauses[:failures] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
        assert agent._connection() is not None
    finally:
        agent.stop()
        thread.join(30)
    assert not thread.is_alive(), "the agent did not stop"
