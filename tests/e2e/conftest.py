"""Fixtures for the libvirt end-to-end tests (real libvirtd, qemu TCG, kernel 6.1).

They run inside the test VM (tests/vm/run sets VIRT_VLAN_IN_VM=1); one
libvirtd serves the whole session (its first start probes QEMU for ~100 s).
Uplinks are veth pairs whose far ends sit in namespace `sw` (the switch).

The host config used by every test (written to /etc/virt-vlan/virt-vlan.conf
by tests/vm/libvirt-up, read by the hooks at each call):
  eacc: device vvacc, access wiring, VLANs 5,7,9 -> br05/br07/br09 fed by vvacc.V
  etrk: device vvtrk, trunk wiring, VLANs 5,7,9 -> trunk bridge br1 (VLAN
        filtering), access bridges br15/br17/br19 fed by br1.5/br1.7/br1.9
  emix: device vvmix, access wiring, VLAN 5     -> br25 fed by vvmix.5
Every uplink has port security on (docs/port-security.md): each tagged guest's
tap gets its filter; emix allows no exceptions (test_port_security.py).
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

import libvirt_env as env

CONFIG = """\
# written by tests/e2e/conftest.py
[global]
# The VM emulates its CPU (TCG): a hook that imports pyroute2 while holding
# the host lock can take a minute there (0.2 s on real hardware), and ten
# guests start at once in test_ten_guests_started_concurrently.
lock-timeout = 900

[uplink eacc]
device = vvacc
wiring = access
allowed-vlans = 5,7,9
port-security = yes

[uplink etrk]
device = vvtrk
wiring = trunk
allowed-vlans = 5,7,9
port-security = yes

[uplink emix]
device = vvmix
wiring = access
allowed-vlans = 5
port-security = yes
# No allow= exception is permitted here (a host shared by tenants).
allowed-exceptions =
"""

UPLINKS = {"vvacc": "swacc", "vvtrk": "swtrk", "vvmix": "swmix"}


@dataclass(frozen=True)
class Libvirt:
    """What the session set up; tests read names from here."""

    started_in: float  # seconds libvirt-up took


def pytest_report_header(config):  # type: ignore[no-untyped-def]
    return "e2e: libvirt-up %s, virt-vlan %s" % (env.LIBVIRT_UP, env.VIRT_VLAN)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "hooks_alone: no shared agent runs during the test (it starts its own "
        "agent, or proves what the hooks do without one)")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Within each file, the hooks_alone tests first: the shared agent then
    starts at most once per file (an agent start costs about 20 s under TCG)."""
    order = {}
    for item in items:
        order.setdefault(item.fspath, len(order))
    items.sort(key=lambda item: (order[item.fspath],
                                 item.get_closest_marker("hooks_alone") is None))


@pytest.fixture(scope="session", autouse=True)
def _in_vm() -> None:
    if os.environ.get("VIRT_VLAN_IN_VM") != "1" or os.geteuid() != 0:
        pytest.fail(env.USE_MAKE_TEST, pytrace=False)


@pytest.fixture(scope="session")
def libvirt(_in_vm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirt]:
    """Uplinks in place, config written, hooks installed, libvirtd answering.

    Fails (never skips) with libvirtd's log tail when the daemon cannot start.
    """
    for device, switch_port in UPLINKS.items():
        env.add_uplink(device, switch_port)
    conf = tmp_path_factory.mktemp("e2e") / "virt-vlan.conf"
    conf.write_text(CONFIG)
    start = time.monotonic()
    proc = env.run([str(env.LIBVIRT_UP), str(conf)], check=False, timeout=900)
    took = time.monotonic() - start
    if proc.returncode != 0:
        pytest.fail("tests/vm/libvirt-up failed (exit %d) after %.0fs:\n%s%s\n%s"
                    % (proc.returncode, took, proc.stdout, proc.stderr, env.log_tail()),
                    pytrace=False)
    # Shown with -rA / in the junit report: how long the daemon took to come up.
    print("tests/vm/libvirt-up took %.0fs:\n%s" % (took, proc.stderr.strip()))
    yield Libvirt(started_in=took)


# --- one agent shared by the tests that do not run their own ------------------------------

AGENT_SOCKET = Path("/run/virt-vlan/agent.sock")
# What the agent logs when its live host model and a full read disagree
# (host/live.py, VIRT_VLAN_MODEL_CHECK=1).
MODEL_DRIFT = "live host model differs from the host"
AGENT_READY_TIMEOUT = 900  # TCG: importing libvirt-python + pyroute2 + first reconcile


class SharedAgent:
    """`virt-vlan agent -c qemu:///system`, as the package's unit runs it on a
    real host: it serves the hooks, so their calls skip a pyroute2 import
    each (tens of seconds under TCG). Started and stopped on demand."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: Optional[subprocess.Popen] = None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        done_before = self.text().count("agent: reconcile done")
        with open(self.log, "a") as out:
            environ = dict(os.environ)
            environ.pop("NOTIFY_SOCKET", None)
            # Every call it serves compares its live host model with a full
            # read (host/live.py); _agent_as_marked fails a test that made
            # them differ.
            environ["VIRT_VLAN_MODEL_CHECK"] = "1"
            self.proc = subprocess.Popen([str(env.VIRT_VLAN), "agent", "-c", env.URI],
                                         stdout=subprocess.DEVNULL, stderr=out, env=environ)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail("the shared agent exited %s:\n%s"
                            % (self.proc.returncode, self.text()[-3000:]), pytrace=False)
            # Its first full reconcile is done and the hooks' socket is up.
            return (self.text().count("agent: reconcile done") > done_before
                    and AGENT_SOCKET.exists())
        env.wait_for(ready, AGENT_READY_TIMEOUT, "the shared agent's first reconcile",
                     interval=0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if not env.terminate(self.proc):
            pytest.fail("the shared agent did not stop within 120 s of SIGTERM:\n%s"
                        % self.text()[-3000:], pytrace=False)
        if self.proc.returncode != 0:
            pytest.fail("the shared agent exited %s on SIGTERM:\n%s"
                        % (self.proc.returncode, self.text()[-3000:]), pytrace=False)


@pytest.fixture(scope="session")
def shared_agent(libvirt: Libvirt, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[SharedAgent]:
    agent = SharedAgent(tmp_path_factory.mktemp("shared-agent") / "agent.log")
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(autouse=True)
def _agent_as_marked(request: pytest.FixtureRequest, shared_agent: SharedAgent
                     ) -> Iterator[None]:
    """The shared agent runs during each test unless it is marked hooks_alone.
    Its log lines from the test are printed at teardown (shown on failure)."""
    alone = request.node.get_closest_marker("hooks_alone") is not None
    if alone:
        shared_agent.stop()
    else:
        shared_agent.start()
    offset = len(shared_agent.text())
    yield
    if not alone:
        during = shared_agent.text()[offset:]
        print("--- shared agent log during the test ---\n%s" % during)
        drift = [line for line in during.splitlines() if MODEL_DRIFT in line]
        assert not drift, "the agent's live host model drifted from the host:\n%s" % (
            "\n".join(drift[:5]))


@pytest.fixture
def guests(libvirt: Libvirt, tmp_path) -> Iterator[env.Guests]:  # type: ignore[no-untyped-def]
    """Define/start guests; all are destroyed and undefined afterwards."""
    manager = env.Guests(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()
