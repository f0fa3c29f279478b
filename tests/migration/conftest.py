"""Fixtures for the two-host migration tests (tests/migration/two_hosts.py).

They run inside the test VM only (tests/vm/run sets VIRT_VLAN_IN_VM=1): they
create namespaces, start two libvirtds and move guests between them.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

import two_hosts as th

REPO = Path(__file__).resolve().parents[2]

# Host A: the uplink is its first section, so VLAN 5 is br05 (fed by br0.5 on trunk
# bridge br0). Host B names everything differently: the uplink is its second
# section (VLAN 5 is br15, fed by brtrunk.5) and its trunk bridge is brtrunk.
CONFIG_A = """\
[global]
default-uplink = up
# TCG: a hook that imports pyroute2 under the host lock can take a minute.
lock-timeout = 900

[uplink up]
device = vvup
wiring = trunk
allowed-vlans = 5,7,9
port-security = yes
"""

CONFIG_B = """\
[global]
default-uplink = up
lock-timeout = 900

[uplink spare]
device = vvspare
allowed-vlans = 5

[uplink up]
device = vvup
wiring = trunk
trunk-bridge = brtrunk
allowed-vlans = %s
port-security = yes
"""


@pytest.fixture(scope="session")
def hosts() -> Iterator[Dict[str, th.Host]]:
    if os.environ.get("VIRT_VLAN_IN_VM") != "1" or os.geteuid() != 0:
        pytest.fail("the migration tests run inside the test VM: `make migration`, or "
                    "`tests/vm/run .venv/bin/python -m pytest -q tests/migration`",
                    pytrace=False)
    subprocess.run([str(REPO / "tests" / "vm" / "py-ram")], check=False)
    a = th.Host("vvhA", "10.99.0.1", "0b8c3a3e-6a35-4c3c-9d6a-00000000000a")
    b = th.Host("vvhB", "10.99.0.2", "0b8c3a3e-6a35-4c3c-9d6a-00000000000b")
    started = time.monotonic()
    shutil.rmtree(th.ROOT, ignore_errors=True)
    try:
        a.prepare(CONFIG_A)
        b.prepare(CONFIG_B % "5,7,9")
        th.switch_up([a, b])
        a.boot()  # first: it may probe QEMU into the shared capabilities cache
        b.boot()
        print("two hosts up in %.0fs" % (time.monotonic() - started))
        yield {"A": a, "B": b}
    finally:
        for host in (a, b):
            print(host.log_tail())
            host.stop()
        th.switch_down()


@pytest.fixture
def guests(hosts) -> Iterator[list]:  # type: ignore[no-untyped-def]
    """Names of guests a test makes; destroyed and undefined on both hosts after it."""
    names: list = []
    yield names
    for host in hosts.values():
        for name in names:
            host.virsh("destroy", name, check=False)
            host.virsh("managedsave-remove", name, check=False)
            host.virsh("undefine", name, check=False)
