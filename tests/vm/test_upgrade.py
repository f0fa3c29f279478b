"""The upgrade from the previous release, as an admin does it (run by tests/vm/deb-e2e).

Runs INSIDE the test VM as root, on a VM without virt-vlan installed:
  1. installs the previous release's package (tests/vm/previous-deb built it
     from its tagged commit) with apt; its drop-ins are its conffiles;
  2. brings libvirtd up with them and starts a tagged access guest and a
     trunk guest (wired by the old version's hooks, no agent);
  3. the admin has edited the qemu drop-in, so dpkg keeps the old one on
     upgrade (--force-confold; the package's new one lands beside it as
     virt-vlan.dpkg-dist), while the unedited network drop-in is replaced;
  4. upgrades to the new package with apt: the running guests stay wired
     (the kernel's links are exactly as before the upgrade) and, although
     port security is now on by default, their taps get no filter, not even
     from the new agent's first full reconcile; `virt-vlan check` lists
     them as unprotected (docs/port-security.md, "Upgrade notes");
  5. starts another guest through the old drop-in (it imports
     `virtvlan.hook.run` from the new package): it is wired and protected;
     the restarted access guest's tap has its filter;
  6. stops all guests: exactly what virt-vlan created for them is gone
     (the trunk bridge stays by design, with its uplink as the only port).
At the end the package's own drop-in is put back in place (the admin
resolving the .dpkg-dist), so the rest of the package suite sees the new
package as a fresh install would leave it.

`ip -json` and `virsh` are the oracles (tests/e2e/libvirt_env.py).
Inputs: VIRT_VLAN_PREVIOUS_DEB and VIRT_VLAN_NEW_DEB, paths of the two packages.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import libvirt_env as env  # noqa: E402
from libvirt_env import Nic, links, mac, ports, vv_access, vv_trunk  # noqa: E402

QEMU_D = Path("/etc/libvirt/hooks/qemu.d/virt-vlan")
NETWORK_D = Path("/etc/libvirt/hooks/network.d/virt-vlan")
DIST = QEMU_D.with_name("virt-vlan.dpkg-dist")
ADMIN_EDIT = "# edited by the admin: dpkg keeps this file on upgrade\n"
TRUNK_BRIDGE = "br1"
UNTAGGED = ["Egress Untagged", "PVID"]

CONFIG = """\
# written by tests/vm/test_upgrade.py
[global]
# TCG: a hook importing pyroute2 while another holds the lock can take a minute.
lock-timeout = 900

[uplink eacc]
device = vvacc
wiring = access
allowed-vlans = 5,7,9

[uplink etrk]
device = vvtrk
wiring = trunk
allowed-vlans = 5,7,9
"""


def deb_path(name: str) -> Path:
    value = os.environ.get(name, "")
    if not value or not Path(value).is_file():
        pytest.fail("%s=%r is not a package file: run this test through tests/vm/deb-e2e "
                    "(make debtest)" % (name, value), pytrace=False)
    return Path(value)


def deb_version(deb: Path) -> str:
    return env.run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def installed_version() -> str:
    return env.run(["dpkg-query", "-W", "-f=${Version}", "virt-vlan"]).stdout.strip()


def apt_install(deb: Path) -> None:
    """`apt-get install DEB` offline; an edited conffile is kept (confold)."""
    environ = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends",
         "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
         str(deb)], capture_output=True, text=True, timeout=900, env=environ)
    assert proc.returncode == 0, "apt-get install %s exited %d:\n%s%s" % (
        deb, proc.returncode, proc.stdout, proc.stderr)


AGENT_TIMEOUT = 900  # TCG: importing libvirt-python (and pyroute2) before the first pass


def port_filter(tap: str) -> List[str]:
    """The rule specs (their comments) of `tap`'s chain in virt-vlan's
    nftables table; [] when the table or the chain does not exist."""
    proc = env.run(["nft", "-j", "list", "chain", "bridge", "virt_vlan", "port-" + tap],
                   check=False)
    if proc.returncode != 0:
        return []
    return [item["rule"].get("comment", "") for item in json.loads(proc.stdout)["nftables"]
            if "rule" in item]


def unprotected(tap: str) -> List[dict]:
    """`virt-vlan check --json`'s findings that tap `tap` has no port security."""
    proc = env.run(["/usr/bin/virt-vlan", "-c", env.URI, "check", "--json"], check=False)
    assert proc.returncode in (0, 1, 2), proc.stdout + proc.stderr
    return [f for f in json.loads(proc.stdout)["findings"]
            if f["what"] == "tap %s has no port security" % tap]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[[], int]]:
    """Starts the installed `virt-vlan agent` (the VM runs no systemd to
    start its unit) and returns how many full reconciles it has finished;
    stops it at the end."""
    log = tmp_path / "agent.log"
    procs: List[subprocess.Popen] = []

    def passes() -> int:
        if not procs:
            environ = dict(os.environ)
            environ.pop("NOTIFY_SOCKET", None)
            with open(log, "a") as out:
                procs.append(subprocess.Popen(["/usr/bin/virt-vlan", "agent", "-c", env.URI],
                                              stdout=subprocess.DEVNULL, stderr=out, env=environ))
        if procs[0].poll() is not None:
            pytest.fail("the agent exited %s:\n%s" % (procs[0].returncode, log.read_text()[-3000:]),
                        pytrace=False)
        return log.read_text(errors="replace").count("agent: reconcile done")

    yield passes
    if procs and procs[0].poll() is None:
        assert env.terminate(procs[0]), "the agent did not stop on SIGTERM"


@pytest.fixture
def guests(tmp_path: Path) -> Iterator[env.Guests]:
    manager = env.Guests(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()
        # The package's drop-in back in place, as an admin resolves a .dpkg-dist.
        parked = tmp_path / "virt-vlan.dpkg-dist"
        if parked.exists():
            shutil.move(str(parked), str(QEMU_D))


def assert_wired(now: Dict[str, dict], acc_tap: str, trk_tap: str) -> None:
    """The access guest on br05 (fed by vvacc.5), the trunk guest on br1 with
    exactly VLANs 5 and 7, the uplink vvtrk a port of br1."""
    assert now[acc_tap].get("master") == "br05", "tap %s is on %s" % (acc_tap, now[acc_tap].get("master"))
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    assert ports(now, "br05") == sorted(["vvacc.5", acc_tap])
    assert now[trk_tap].get("master") == TRUNK_BRIDGE, "tap %s is on %s" % (
        trk_tap, now[trk_tap].get("master"))
    assert ports(now, TRUNK_BRIDGE) == sorted(["vvtrk", trk_tap])
    assert env.bridge_vlans(trk_tap) == {5: [], 7: []}, env.bridge_vlans(trk_tap)
    assert env.bridge_vlans("vvtrk") == {1: UNTAGGED, 5: [], 7: []}, env.bridge_vlans("vvtrk")


def test_upgrade_keeps_guests_wired_and_old_dropins_working(guests: env.Guests, tmp_path: Path,
                                                             agent: Callable[[], int]) -> None:
    old_deb, new_deb = deb_path("VIRT_VLAN_PREVIOUS_DEB"), deb_path("VIRT_VLAN_NEW_DEB")
    old_version, new_version = deb_version(old_deb), deb_version(new_deb)
    assert old_version != new_version, "both packages are version %s" % old_version

    # 1. The previous release, installed as an admin installs it.
    apt_install(old_deb)
    assert installed_version() == old_version
    old_dropin = QEMU_D.read_text()
    assert "from virtvlan.hook import run" in old_dropin, "not the 0.1.0-style drop-in"
    assert NETWORK_D.read_text() == old_dropin

    # 2. Its hooks in a running libvirtd; the uplinks and the host config.
    for device, switch_port in {"vvacc": "swacc", "vvtrk": "swtrk"}.items():
        env.add_uplink(device, switch_port)
    conf = tmp_path / "virt-vlan.conf"
    conf.write_text(CONFIG)
    env.run([str(env.LIBVIRT_UP), str(conf)], timeout=900)
    before = env.topology()
    assert not env.reservations()

    # 3. Guests wired by the old version.
    guests.define("upacc", [Nic(mac(0xA01), source_bridge="br05")], [vv_access(mac(0xA01), 5)])
    guests.define("uptrk", [Nic(mac(0xA02), source_bridge=TRUNK_BRIDGE)],
                  [vv_trunk(mac(0xA02), "5,7", uplink="etrk")])
    started = guests.start_many(["upacc", "uptrk"])
    assert all(p.returncode == 0 for p in started), [p.stdout + p.stderr for p in started]
    acc_tap, trk_tap = env.tap("upacc"), env.tap("uptrk")
    assert_wired(links(), acc_tap, trk_tap)
    wired = env.topology()
    QEMU_D.write_text(old_dropin + ADMIN_EDIT)

    # 4. The upgrade: nothing moves.
    apt_install(new_deb)
    assert installed_version() == new_version
    assert env.run(["/usr/bin/virt-vlan", "--version"]).stdout.split() == ["virt-vlan", new_version]
    assert env.topology() == wired, "the upgrade changed the kernel's links"
    assert_wired(links(), acc_tap, trk_tap)
    assert env.state("upacc") == env.state("uptrk") == "paused"
    # The edited drop-in stays; the unedited one is the new package's.
    assert QEMU_D.read_text() == old_dropin + ADMIN_EDIT
    assert DIST.exists(), "dpkg did not leave the new drop-in beside the edited one"
    new_dropin = DIST.read_text()
    assert new_dropin != old_dropin
    assert NETWORK_D.read_text() == new_dropin, "the unedited network drop-in was not upgraded"
    # libvirt runs every executable in qemu.d: park the new one so that only
    # the old drop-in serves the next start (the fixture puts it back).
    shutil.move(str(DIST), str(tmp_path / "virt-vlan.dpkg-dist"))

    # 4b. Port security is on by default now (the config has no port-security
    # line), but the guests running across the upgrade keep their traffic
    # until their next start: no filter, not even after the new agent's first
    # full reconcile (it re-reads every running guest and wires it).
    assert port_filter(acc_tap) == port_filter(trk_tap) == []
    env.wait_for(lambda: agent() >= 1, AGENT_TIMEOUT, "the agent's first full reconcile",
                 interval=0.5)
    assert port_filter(acc_tap) == [], "the agent's reconcile protected a guest running " \
        "across the upgrade"
    assert port_filter(trk_tap) == []
    assert env.topology() == wired, "the agent's reconcile changed the kernel's links"
    # ... and `check` lists them as unprotected, a warning saying what to do.
    for tap in (acc_tap, trk_tap):
        (finding,) = unprotected(tap)
        assert finding["severity"] == "warning", finding
        assert "restart the guest" in finding["fix"] and "allow=" in finding["fix"], finding

    # 5. A new guest, started through the old drop-in and the new package.
    guests.define("upacc7", [Nic(mac(0xA03), source_bridge="br07")], [vv_access(mac(0xA03), 7)])
    guests.start("upacc7")
    acc7_tap = env.tap("upacc7")
    now = links()
    assert now[acc7_tap].get("master") == "br07", "tap %s is on %s" % (
        acc7_tap, now[acc7_tap].get("master"))
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)
    assert_wired(now, acc_tap, trk_tap)
    assert "mac=" + mac(0xA03) in port_filter(acc7_tap), port_filter(acc7_tap)

    # 5b. The access guest's next start protects it (its tap has its filter).
    guests.destroy("upacc")
    guests.start("upacc")
    acc_tap = env.tap("upacc")
    assert "mac=" + mac(0xA01) in port_filter(acc_tap), port_filter(acc_tap)
    assert not unprotected(acc_tap)
    assert port_filter(trk_tap) == [], "the trunk guest was not restarted"
    assert_wired(links(), acc_tap, trk_tap)

    # 6. Stopping the guests removes exactly what virt-vlan made for them.
    stopped = guests.destroy_many(["upacc", "uptrk", "upacc7"])
    assert all(p.returncode == 0 for p in stopped), [p.stdout + p.stderr for p in stopped]
    env.wait_for(env.gone("br05", "vvacc.5", "br07", "vvacc.7", acc_tap, trk_tap, acc7_tap), 60,
                 "the guests' taps and access bridges to be removed")
    after = env.topology()
    # The trunk bridge is never removed automatically; the uplink stays its port.
    assert set(after) == set(before) | {TRUNK_BRIDGE}, (
        "left behind: %s; removed: %s" % (sorted(set(after) - set(before) - {TRUNK_BRIDGE}),
                                          sorted(set(before) - set(after))))
    assert after[TRUNK_BRIDGE][0] == "bridge"
    assert after["vvtrk"] == before["vvtrk"][:1] + (TRUNK_BRIDGE,) + before["vvtrk"][2:]
    changed = {n: (before[n], after[n]) for n in before if n != "vvtrk" and after[n] != before[n]}
    assert not changed, "links changed by the guests' lifetime: %s" % changed
    assert ports(links(), TRUNK_BRIDGE) == ["vvtrk"]
    assert env.bridge_vlans("vvtrk") == {1: UNTAGGED}, env.bridge_vlans("vvtrk")
    assert not env.reservations(), env.reservations()
