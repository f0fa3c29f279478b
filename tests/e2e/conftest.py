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
"""

import os
import time
from dataclasses import dataclass
from typing import Iterator

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

[uplink etrk]
device = vvtrk
wiring = trunk
allowed-vlans = 5,7,9

[uplink emix]
device = vvmix
wiring = access
allowed-vlans = 5
"""

UPLINKS = {"vvacc": "swacc", "vvtrk": "swtrk", "vvmix": "swmix"}


@dataclass(frozen=True)
class Libvirt:
    """What the session set up; tests read names from here."""

    started_in: float  # seconds libvirt-up took


def pytest_report_header(config):  # type: ignore[no-untyped-def]
    return "e2e: libvirt-up %s, virt-vlan %s" % (env.LIBVIRT_UP, env.VIRT_VLAN)


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


@pytest.fixture
def guests(libvirt: Libvirt, tmp_path) -> Iterator[env.Guests]:  # type: ignore[no-untyped-def]
    """Define/start guests; all are destroyed and undefined afterwards."""
    manager = env.Guests(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()
