"""End to end: real libvirtd + virtlogd + qemu (TCG) + kernel 6.1, our hooks installed.

Every assertion is about state observed with `ip -json -d link show` (and
`virsh` for libvirt's side), never with virt-vlan's own code. Guests are
started paused: they only need their taps. See conftest.py for the uplinks
and the host config (eacc: access wiring, etrk: trunk wiring, emix: access).
"""

import time

import pytest

import libvirt_env as env
from libvirt_env import Nic, links, mac, ports, vv_access, vv_trunk

TRUNK_BRIDGE = "br1"  # trunk bridge of uplink etrk (second [uplink] section)


# --- 1. access --------------------------------------------------------------------------

@pytest.mark.installed
@pytest.mark.hooks_alone  # the hooks' own path, end to end, with no agent to serve them
def test_access_guest_lands_on_its_vlan_bridge(guests):
    guests.define("acc1", [Nic(mac(0x101), source_bridge="br05")], [vv_access(mac(0x101), 5)])
    guests.start("acc1")
    assert env.state("acc1") == "paused"

    tap = env.tap("acc1")
    now = links()
    assert env.kind(now[tap]) == "tun", now[tap]
    assert now[tap].get("master") == "br05", "tap %s is on %s" % (tap, now[tap].get("master"))
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    assert ports(now, "br05") == sorted(["vvacc.5", tap])
    # The uplink itself stays free of any bridge (access wiring).
    assert now["vvacc"].get("master") is None
    assert set(env.managed(now)) >= {"br05", "vvacc.5"}


# --- 2. trunk, and access + trunk on one trunk-wired uplink -----------------------------

def test_trunk_and_access_guests_on_trunk_wired_uplink(guests):
    guests.define("trk1", [Nic(mac(0x201), source_bridge=TRUNK_BRIDGE)],
                  [vv_trunk(mac(0x201), "5,7", uplink="etrk")])
    guests.define("trkacc1", [Nic(mac(0x202), source_bridge="br15")],
                  [vv_access(mac(0x202), 5, uplink="etrk")])
    guests.start("trk1")
    guests.start("trkacc1")

    now = links()
    trunk_tap, access_tap = env.tap("trk1"), env.tap("trkacc1")
    assert env.kind(now[TRUNK_BRIDGE]) == "bridge"
    assert now["vvtrk"].get("master") == TRUNK_BRIDGE, "uplink vvtrk is not a port of br1"
    assert now[trunk_tap].get("master") == TRUNK_BRIDGE
    # The access bridge is fed from the trunk bridge, never from the NIC.
    env.assert_access_bridge(now, "br15", feed="br1.5", parent=TRUNK_BRIDGE, vlan=5)
    assert now[access_tap].get("master") == "br15"
    assert ports(now, TRUNK_BRIDGE) == sorted(["vvtrk", trunk_tap])
    assert ports(now, "br15") == sorted(["br1.5", access_tap])
    # Never both VLAN devices and bridge-port on one NIC.
    on_nic = [n for n, l in now.items() if env.kind(l) == "vlan" and l.get("link") == "vvtrk"]
    assert on_nic == [], "VLAN devices on the trunk-wired NIC vvtrk: %s" % on_nic

    guests.destroy("trkacc1")
    env.wait_for(env.gone("br15", "br1.5"), 20, "br15 and br1.5 to be removed")
    guests.destroy("trk1")
    now = links()
    # The trunk bridge is never removed automatically; the NIC stays its port.
    assert TRUNK_BRIDGE in now and now["vvtrk"].get("master") == TRUNK_BRIDGE
    assert ports(now, TRUNK_BRIDGE) == ["vvtrk"]


# --- 3. destroy: cleanup when unused, kept while used -----------------------------------

def test_destroy_keeps_shared_bridge_and_removes_unused(guests):
    for n, name in enumerate(("sh1", "sh2")):
        guests.define(name, [Nic(mac(0x301 + n), source_bridge="br07")],
                      [vv_access(mac(0x301 + n), 7)])
        guests.start(name)
    tap1, tap2 = env.tap("sh1"), env.tap("sh2")
    now = links()
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)
    assert ports(now, "br07") == sorted(["vvacc.7", tap1, tap2])

    guests.destroy("sh1")
    now = links()
    assert tap1 not in now
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)
    assert ports(now, "br07") == sorted(["vvacc.7", tap2]), "br07 lost its other guest"

    guests.destroy("sh2")
    env.wait_for(env.gone("br07", "vvacc.7"), 20, "br07 and vvacc.7 to be removed")
    assert "vvacc" in links(), "the uplink itself was removed"
    assert not [r for r in env.reservations() if "sh1" in r or "sh2" in r]


# --- 4. refusals: metadata errors and the mixing rule -----------------------------------

M = mac(0x401)
REFUSALS = {
    "vlan0": (vv_access(M, 0), "VLAN 0 is the 802.1p priority tag"),
    "vlan-not-allowed": (vv_access(M, 99), "VLAN 99 not allowed on uplink eacc"),
    "unknown-uplink": (vv_access(M, 5, uplink="nosuch"), "unknown uplink 'nosuch'"),
    "unknown-mode": (env.vv_interface(mac=M, mode="hybrid", vlan="5"), "mode='hybrid'"),
    "vlan-on-trunk": (env.vv_interface(mac=M, mode="trunk", vlan="5"),
                      "unknown attribute vlan='5' for mode trunk"),
    # Metadata for a MAC the domain does not have (yet) is how a hot-plug is
    # prepared: a warning at start, not a refusal (tests/unit/test_hook_dropin.py;
    # `virt-vlan check-domain` still refuses it, see xml-examples).
    "trunk-on-access-uplink": (vv_trunk(M, "5,7"), "trunk mode needs uplink eacc wired as trunk"),
}


def _assert_refused(guests, name: str, vv: str, expected: str) -> None:
    guests.define(name, [Nic(M, source_bridge="br05")], [vv])
    before, reserved = env.topology(), env.reservations()
    proc = guests.start(name, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "virsh start succeeded:\n%s" % output
    assert "virt-vlan: " in output, "no virt-vlan message in virsh's error:\n%s" % output
    assert expected in output, "expected %r in virsh's error:\n%s" % (expected, output)
    assert env.state(name) == "shut off"
    assert env.topology() == before, "kernel state changed by a refused start"
    assert env.reservations() == reserved


@pytest.mark.hooks_alone  # the hook's own refusal reaches virsh's error
@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.installed) if case == "vlan-not-allowed" else case
    for case in sorted(REFUSALS)])
def test_metadata_error_refuses_start(guests, case):
    vv, expected = REFUSALS[case]
    _assert_refused(guests, "bad-" + case, vv, expected)


@pytest.fixture
def admin_bridge(libvirt):
    """A plain bridge the admin made (not virt-vlan's), removed afterwards."""
    made = []

    def make(name: str, *port_names: str) -> str:
        env.ip("link", "add", name, "type", "bridge")
        made.append(name)
        env.ip("link", "set", name, "up")
        for port in port_names:
            env.ip("link", "set", port, "master", name)
        return name

    yield make
    for name in made:
        env.ip("link", "del", name, check=False)


@pytest.mark.hooks_alone
def test_mixing_refused_on_access_uplink_that_is_a_bridge_port(guests, admin_bridge):
    admin_bridge("vvadm", "vvmix")  # vvmix, access-wired in the config, is a bridge port
    _assert_refused(guests, "bad-mixing", vv_access(M, 5, uplink="emix"),
                    "refusing to create vvmix.5 on vvmix")
    assert links()["vvmix"].get("master") == "vvadm"


# --- 5. untagged guests are not ours -----------------------------------------------------

def test_untagged_guest_on_admin_bridge_is_untouched(guests, admin_bridge):
    admin_bridge("vvplain")
    guests.define("plain1", [Nic(mac(0x501), source_bridge="vvplain")])
    before = env.topology()
    guests.start("plain1")
    tap = env.tap("plain1")
    after = env.topology()
    assert after[tap][:2] == ("tun", "vvplain")
    del after[tap]
    assert after == before, "starting an untagged guest changed more than its tap"
    guests.destroy("plain1")
    assert env.topology() == before


# --- 6. libvirtd restarted while guests run ----------------------------------------------

# hooks_alone: this is the reconnect hook's job; a running agent may move the
# tap back off vvpark before the restart, and the test would prove nothing.
@pytest.mark.hooks_alone
def test_libvirtd_restart_keeps_taps_on_vlan_bridges(guests, admin_bridge):
    # rs2's <source bridge> is a parking bridge: libvirt attaches its tap
    # there (at start, and again when it reconnects after a restart); the
    # hooks must move it to br07 each time.
    admin_bridge("vvpark")
    guests.define("rs1", [Nic(mac(0x601), source_bridge="br05")], [vv_access(mac(0x601), 5)])
    guests.define("rs2", [Nic(mac(0x602), source_bridge="vvpark")], [vv_access(mac(0x602), 7)])
    guests.start("rs1")
    guests.start("rs2")
    tap1, tap2 = env.tap("rs1"), env.tap("rs2")
    now = links()
    assert now[tap1].get("master") == "br05"
    assert now[tap2].get("master") == "br07", "start hook did not move rs2's tap off vvpark"
    # Whether or not libvirt re-attaches taps to <source bridge> when it
    # reconnects, a tap found on the wrong bridge then must end on its VLAN's.
    env.ip("link", "set", tap2, "master", "vvpark")
    assert links()[tap2].get("master") == "vvpark"

    env.restart_libvirtd()
    for name in ("rs1", "rs2"):
        # Needs the domain job, which the reconnect thread holds until the
        # reconnect hook has run: after this, reconnect is complete.
        env.virsh("qemu-monitor-command", name, '{"execute":"query-status"}', timeout=600)
        assert env.state(name) == "paused", "%s did not survive the restart" % name
    assert (env.tap("rs1"), env.tap("rs2")) == (tap1, tap2)
    now = links()
    assert now[tap1].get("master") == "br05"
    assert now[tap2].get("master") == "br07", \
        "after reconnect rs2's tap is on %s, not br07" % now[tap2].get("master")
    assert ports(now, "vvpark") == []
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)


# --- 7. concurrency -----------------------------------------------------------------------

def test_ten_guests_started_concurrently(guests):
    plan = {}  # guest -> VLAN
    for n in range(10):
        vlan = (5, 7, 9)[n % 3]
        name = "par%d" % n
        guests.define(name, [Nic(mac(0x700 + n), source_bridge="br0%d" % vlan)],
                      [vv_access(mac(0x700 + n), vlan)])
        plan[name] = vlan
    started = time.monotonic()
    results = guests.start_many(sorted(plan))
    took = time.monotonic() - started
    failed = ["%s: %s%s" % (n, r.stdout, r.stderr) for n, r in zip(sorted(plan), results)
              if r.returncode != 0]
    assert not failed, "concurrent starts failed:\n" + "\n".join(failed)
    print("10 concurrent starts took %.0fs" % took)
    paused = set(env.virsh("list", "--state-paused", "--name").stdout.split())
    assert paused >= set(plan), "not running: %s" % sorted(set(plan) - paused)

    now = links()
    taps = {name: env.tap(name) for name in plan}
    for name, vlan in plan.items():
        assert now[taps[name]].get("master") == "br0%d" % vlan, \
            "%s (VLAN %d): tap %s is on %s" % (name, vlan, taps[name], now[taps[name]].get("master"))
    bridges = sorted(n for n in env.managed(now)
                     if env.kind(now[n]) == "bridge" and n != TRUNK_BRIDGE)
    assert bridges == ["br05", "br07", "br09"]
    for vlan in (5, 7, 9):
        bridge = "br0%d" % vlan
        env.assert_access_bridge(now, bridge, feed="vvacc.%d" % vlan, parent="vvacc", vlan=vlan)
        assert ports(now, bridge) == sorted(["vvacc.%d" % vlan] +
                                            [taps[n] for n, v in plan.items() if v == vlan])

    results = guests.destroy_many(sorted(plan))
    failed = ["%s: %s" % (n, r.stderr) for n, r in zip(sorted(plan), results) if r.returncode]
    assert not failed, "concurrent destroys failed:\n" + "\n".join(failed)
    now = links()
    left = [n for n in env.managed(now) if n != TRUNK_BRIDGE]
    assert left == [], "virt-vlan devices left after all guests stopped: %s" % left
    assert [n for n in now if n.startswith("vvacc.")] == []
    assert env.reservations() == []


# --- 8. libvirt networks with VLAN metadata ------------------------------------------------

NETWORK_XML = """<network>
  <name>vlan5</name>
  <forward mode='bridge'/>
  <bridge name='br05'/>
  <metadata>
    <vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:network vlan='5'/></vv:vlan>
  </metadata>
</network>
"""


@pytest.fixture
def vlan5_network(libvirt, tmp_path):
    path = tmp_path / "vlan5.xml"
    path.write_text(NETWORK_XML)
    env.virsh("net-define", str(path))
    yield "vlan5"
    env.virsh("net-destroy", "vlan5", check=False)
    env.virsh("net-undefine", "vlan5", check=False)


def test_guest_on_vlan_network(guests, vlan5_network):
    assert "urn:virt-vlan:1" in env.virsh("net-dumpxml", vlan5_network).stdout, \
        "libvirt dropped the network's <metadata>"
    assert not {"br05", "vvacc.5"} & set(links())
    env.virsh("net-start", vlan5_network)
    now = links()
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    assert ports(now, "br05") == ["vvacc.5"]

    guests.define("net1", [Nic(mac(0x801), source_network=vlan5_network)])
    guests.start("net1")
    tap = env.tap("net1")
    now = links()
    assert now[tap].get("master") == "br05"
    assert ports(now, "br05") == sorted(["vvacc.5", tap])

    guests.destroy("net1")
    now = links()
    # The running network still holds its bridge and feed.
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    env.virsh("net-destroy", vlan5_network)
    env.wait_for(env.gone("br05", "vvacc.5"), 20, "net-destroy to remove br05 and vvacc.5")
    assert not [r for r in env.reservations() if "vlan5" in r]


# --- 9. VLAN filtering: a trunk guest's tap carries exactly its list ---------------------

@pytest.mark.installed
def test_trunk_guest_tap_gets_exactly_its_vlans(guests):
    # etrk allows 5,7,9; the guest asks for 5 and 9 only.
    guests.define("trkf1", [Nic(mac(0x901), source_bridge=TRUNK_BRIDGE)],
                  [vv_trunk(mac(0x901), "5,9", uplink="etrk")])
    guests.start("trkf1")
    tap = env.tap("trkf1")
    now = links()
    assert now[tap].get("master") == TRUNK_BRIDGE
    assert now[TRUNK_BRIDGE]["linkinfo"]["info_data"].get("vlan_filtering") == 1, \
        "trunk bridge %s does not filter VLANs" % TRUNK_BRIDGE
    # Exactly 5 and 9, tagged; no PVID (the bridge's default PVID removed).
    assert env.bridge_vlans(tap) == {5: [], 9: []}, env.bridge_vlans(tap)
    # The uplink: the VLANs in use, tagged, and its untagged default PVID.
    untagged = ["Egress Untagged", "PVID"]
    assert env.bridge_vlans("vvtrk") == {1: untagged, 5: [], 9: []}, env.bridge_vlans("vvtrk")

    guests.destroy("trkf1")
    assert env.bridge_vlans("vvtrk") == {1: untagged}, "uplink entries did not shrink back"
