"""The executor against a real kernel, checked with `ip -json` (conftest).

Plans here are written by hand, so these tests do not depend on the planner.
Tests that create VLAN devices take the `vlan_support` fixture and fail
outside the test VM; the others also run on a kernel without 802.1Q.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from virtvlan.plan import actions as act
from virtvlan.apply.executor import FAIL_AT_ENV, apply, read_snapshot
from virtvlan.errors import ApplyError, LockTimeout
from virtvlan.host.lock import host_lock
from virtvlan.model import MANAGED_ALIAS, Address, Route

HOST4, GW4 = "10.99.1.2", "10.99.1.1"
HOST6, GW6 = "2001:db8:99::2", "2001:db8:99::1"


def veth(ns: str, a: str = "u0", b: str = "u1", up: bool = True) -> None:
    ns.ip("link", "add", a, "type", "veth", "peer", "name", b)
    if up:
        ns.ip("link", "set", a, "up")
        ns.ip("link", "set", b, "up")


def flags(ns: str, name: str) -> list:
    return ns.link(name)["flags"]


def access_plan(bridge: str = "br05", uplink: str = "u0", vid: int = 5) -> act.Plan:
    vlan = "%s.%d" % (uplink, vid)
    return act.Plan((act.CreateBridge(bridge, 1500), act.CreateVlan(vlan, uplink, vid),
                     act.SetMaster(vlan, bridge), act.SetUp(vlan), act.SetUp(bridge)))


# -- creation ---------------------------------------------------------------

def test_bridge_vlan_enslave_up(netns, vlan_support):
    veth(netns)
    after = apply(access_plan(), netns.name)

    vlan = netns.link("u0.5")
    assert vlan["linkinfo"]["info_kind"] == "vlan"
    assert vlan["linkinfo"]["info_data"]["id"] == 5
    assert vlan["link"] == "u0"
    assert vlan["master"] == "br05"
    assert vlan["ifalias"] == MANAGED_ALIAS
    assert vlan.get("inet6_addr_gen_mode") == "none"
    assert "UP" in vlan["flags"]
    bridge = netns.link("br05")
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert bridge["ifalias"] == MANAGED_ALIAS
    assert "UP" in bridge["flags"]
    # The returned snapshot is the re-read kernel state.
    assert after.get("u0.5").parent == "u0" and after.get("u0.5").vlan_id == 5
    assert after.get("u0.5").master == "br05" and after.get("br05").managed


def test_host_vlan_keeps_addrgen(netns, vlan_support):
    veth(netns)
    apply(act.Plan((act.CreateVlan("u0.7", "u0", 7, addrgen=True),)), netns.name)
    vlan = netns.link("u0.7")
    assert vlan["ifalias"] == MANAGED_ALIAS
    assert vlan.get("inet6_addr_gen_mode") != "none"


def test_bridge_settings(netns):
    apply(act.Plan((act.CreateBridge("br9", 1400, mac="02:99:00:00:00:09"),)), netns.name)
    bridge = netns.link("br9")
    data = bridge["linkinfo"]["info_data"]
    assert data["stp_state"] == 0
    assert data["forward_delay"] == 0
    assert bridge["mtu"] == 1400
    assert bridge["address"] == "02:99:00:00:00:09"
    assert bridge["ifalias"] == MANAGED_ALIAS
    assert bridge.get("inet6_addr_gen_mode") == "none"
    assert "UP" not in bridge["flags"]  # created down; the plan says when it goes up


def _link_local(ns: str, name: str) -> list:
    return [a for entry in ns.json("-6", "addr", "show", "dev", name)
            for a in entry.get("addr_info", []) if a.get("scope") == "link"]


def test_addrgen_none_means_no_link_local(netns):
    veth(netns)
    veth(netns, "w0", "w1")
    apply(act.Plan((act.CreateBridge("brn", 1500), act.CreateBridge("bry", 1500, addrgen=True),
                    act.SetMaster("u0", "brn"), act.SetMaster("w0", "bry"),
                    act.SetUp("brn"), act.SetUp("bry"))), netns.name)
    # The control bridge (addrgen=True) gets its fe80:: as soon as it has a
    # carrier; by then the other one would have had it too.
    deadline = time.monotonic() + 30  # generous: emulated CI machines
    while not _link_local(netns, "bry") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _link_local(netns, "bry"), "control bridge never got a link-local address"
    assert _link_local(netns, "brn") == []
    assert netns.link("bry").get("inet6_addr_gen_mode") != "none"


# -- races and failures ---------------------------------------------------

def test_eexist_same_vlan_is_adopted_and_never_undone(netns, vlan_support, monkeypatch):
    veth(netns)
    before = read_snapshot(netns.name)
    netns.ip("link", "add", "link", "u0", "name", "u0.5", "type", "vlan", "id", "5")
    plan = act.Plan((act.CreateVlan("u0.5", "u0", 5), act.SetUp("u0.5")))
    after = apply(plan, netns.name, before)
    assert after.get("u0.5").up
    # Not ours: not marked, so cleanup will never delete it.
    assert "ifalias" not in netns.link("u0.5")

    # With a failure after it, rollback undoes only the SetUp: no undo was
    # recorded for a device someone else created.
    netns.ip("link", "set", "u0.5", "down")
    monkeypatch.setenv(FAIL_AT_ENV, "2")
    plan = act.Plan(plan.actions + (act.SetMtu("u0.5", 1400),))
    with pytest.raises(ApplyError, match=r"before action 2 .*; rolled back 1 change\(s\)"):
        apply(plan, netns.name, before)
    assert "u0.5" in netns.names()
    assert "UP" not in flags(netns, "u0.5")


def test_eexist_wrong_device_is_an_error(netns):
    veth(netns)
    netns.ip("link", "add", "u0.5", "type", "bridge")
    with pytest.raises(ApplyError, match=r"u0\.5 already exists as a bridge device") as err:
        apply(act.Plan((act.CreateBridge("br05", 1500), act.CreateVlan("u0.5", "u0", 5))),
              netns.name)
    assert "rolled back 1 change(s)" in str(err.value)
    names = netns.names()
    assert "u0.5" in names and "br05" not in names


def test_eexist_wrong_vlan_id_is_an_error(netns, vlan_support):
    veth(netns)
    netns.ip("link", "add", "link", "u0", "name", "u0.5", "type", "vlan", "id", "7")
    with pytest.raises(ApplyError, match=r"already exists as a vlan device \(VLAN 7 on u0\)"):
        apply(act.Plan((act.CreateVlan("u0.5", "u0", 5),)), netns.name)
    assert netns.link("u0.5")["linkinfo"]["info_data"]["id"] == 7


def test_eexist_same_vlan_under_another_name(netns, vlan_support):
    veth(netns)
    netns.ip("link", "add", "link", "u0", "name", "other5", "type", "vlan", "id", "5")
    with pytest.raises(ApplyError, match=r"VLAN 5 on u0 already exists as other5"):
        apply(act.Plan((act.CreateVlan("u0.5", "u0", 5),)), netns.name)


def test_failure_injection_rolls_back_everything(netns, vlan_support, monkeypatch):
    veth(netns)
    # Carrier flags (LOWER_UP, NO-CARRIER) of the just-raised veth settle on
    # the kernel's own time (linkwatch); the admin flags are ours to keep.
    carrier = {"LOWER_UP", "NO-CARRIER", "DORMANT", "M-DOWN"}

    def wiring() -> list:
        return [(l["ifname"], l.get("master"), sorted(set(l["flags"]) - carrier))
                for l in netns.json("-d", "link", "show")]

    before = wiring()
    monkeypatch.setenv(FAIL_AT_ENV, "2")
    with pytest.raises(ApplyError) as err:
        apply(access_plan(), netns.name)
    assert "injected failure before action 2" in str(err.value)
    assert "rolled back 2 change(s)" in str(err.value)
    assert wiring() == before


def test_failure_after_enslave_releases_port(netns, monkeypatch):
    veth(netns)
    netns.ip("link", "set", "u1", "down")
    before = netns.names()
    monkeypatch.setenv(FAIL_AT_ENV, "3")
    plan = act.Plan((act.CreateBridge("br1", 1500), act.SetMaster("u1", "br1"),
                     act.SetUp("u1"), act.SetUp("br1")))
    with pytest.raises(ApplyError, match=r"rolled back 3 change\(s\)"):
        apply(plan, netns.name)
    assert netns.names() == before
    u1 = netns.link("u1")
    assert "master" not in u1 and "UP" not in u1["flags"]


def test_vanished_device(netns):
    veth(netns)
    veth(netns, "g0", "g1")
    before = read_snapshot(netns.name)
    netns.ip("link", "del", "g0")  # another tool, after our snapshot
    plan = act.Plan((act.CreateBridge("br1", 1500), act.SetMaster("g0", "br1")))
    with pytest.raises(ApplyError, match=r"g0 disappeared while virt-vlan was configuring it"
                                         r" \(another tool deleted it\?\); rolled back 1"):
        apply(plan, netns.name, before)
    assert "br1" not in netns.names()


def test_kernel_error_names_command_and_errno(netns):
    veth(netns)
    netns.ip("link", "add", "br1", "type", "bridge")
    netns.ip("link", "set", "u0", "master", "br1")
    plan = act.Plan((act.CreateBridge("br2", 1500), act.SetMtu("br2", 70000)))
    with pytest.raises(ApplyError) as err:
        apply(plan, netns.name)
    message = str(err.value)
    assert "`ip link set dev br2 mtu 70000` failed: EINVAL" in message
    assert "rolled back 1 change(s)" in message and "\n" not in message
    assert "br2" not in netns.names()


def test_verification_mismatch_rolls_back(netns):
    # Kernel fact: an MTU given at creation does not pin a bridge's MTU
    # (BROPT_MTU_SET_BY_USER is set only by a later change), so enslaving a
    # 1500-byte port re-adjusts it: the result no longer matches the plan.
    veth(netns)
    plan = act.Plan((act.CreateBridge("br1", 1400), act.SetMaster("u0", "br1")))
    with pytest.raises(ApplyError, match=r"verification after apply failed: br1 has mtu=1500, "
                                         r"expected 1400; rolled back 2 change\(s\)"):
        apply(plan, netns.name)
    assert "br1" not in netns.names() and "master" not in netns.link("u0")


def test_delete_is_idempotent_and_only_for_marked_devices(netns):
    veth(netns)
    apply(act.Plan((act.DeleteLink("nonexistent0"),)), netns.name)
    with pytest.raises(ApplyError, match="refusing to delete u0"):
        apply(act.Plan((act.DeleteLink("u0"),)), netns.name)
    assert "u0" in netns.names()
    apply(act.Plan((act.CreateBridge("br1", 1500),)), netns.name)
    apply(act.Plan((act.DeleteLink("br1"),)), netns.name)
    assert "br1" not in netns.names()


def test_missing_netns_is_not_created():
    with pytest.raises(ApplyError, match="does not exist"):
        read_snapshot("vvt-no-such-netns")
    assert not os.path.exists("/run/netns/vvt-no-such-netns")


# -- snapshot reader --------------------------------------------------------

def _host_with_gateway(ns, peer) -> None:
    """`h0` in `ns` holds the host addresses and default routes; its peer in
    `peer` is the gateway."""
    ns.ip("link", "add", "h0", "type", "veth", "peer", "name", "p0", "netns", peer.name)
    ns.ip("addr", "add", HOST4 + "/24", "dev", "h0")
    ns.ip("-6", "addr", "add", HOST6 + "/64", "dev", "h0", "nodad")
    ns.ip("link", "set", "h0", "up")
    peer.ip("addr", "add", GW4 + "/24", "dev", "p0")
    peer.ip("-6", "addr", "add", GW6 + "/64", "dev", "p0", "nodad")
    peer.ip("link", "set", "p0", "up")
    ns.ip("route", "add", "default", "via", GW4, "dev", "h0", "proto", "static")
    ns.ip("-6", "route", "add", "default", "via", GW6, "dev", "h0", "metric", "1024")
    ns.ip("route", "add", "192.0.2.0/24", "via", GW4, "table", "100")


def test_read_snapshot(netns, netns2):
    _host_with_gateway(netns, netns2)
    netns.ip("link", "add", "br1", "type", "bridge")
    veth(netns)
    netns.ip("link", "set", "u0", "master", "br1")
    snap = read_snapshot(netns.name)
    by_ip = {l["ifname"]: l for l in netns.json("link", "show")}
    assert sorted(l.name for l in snap) == sorted(by_ip)
    for link in snap:
        assert link.index == by_ip[link.name]["ifindex"]
        assert link.mtu == by_ip[link.name]["mtu"]
    assert snap.get("lo").kind == "device"
    assert snap.get("h0").kind == "veth" and snap.get("br1").kind == "bridge"
    assert snap.get("u0").master == "br1" and snap.get("u0").up
    assert not snap.get("br1").up and not snap.get("br1").managed
    assert snap.get("h0").mac == by_ip["h0"]["address"]
    # No fe80:: (per-device, never moved); permanent addresses are not dynamic.
    assert set(snap.get("h0").addresses) == {Address("inet", HOST4, 24),
                                             Address("inet6", HOST6, 64)}
    routes = set(snap.routes_via("h0"))
    assert Route("inet", "default", "h0", gateway=GW4, proto="static") in routes
    assert Route("inet6", "default", "h0", gateway=GW6, metric=1024, proto="boot") in routes
    assert Route("inet", "192.0.2.0/24", "h0", gateway=GW4, table=100, proto="boot") in routes
    # proto kernel prefix routes and the local table are left out.
    assert len(routes) == 3


# -- moving the host's addresses ------------------------------------------

def _trunk_plan(snap) -> act.Plan:
    h0 = snap.get("h0")
    return act.Plan((act.CreateBridge("br0", h0.mtu, mac=h0.mac, addrgen=True),
                     act.SetUp("br0"), act.SetMaster("h0", "br0"),
                     act.MoveAddresses("h0", "br0", h0.addresses, snap.routes_via("h0"))))


def _addresses(ns, dev: str) -> set:
    return {"%s/%d" % (a["local"], a["prefixlen"]) for entry in ns.json("addr", "show", "dev", dev)
            for a in entry.get("addr_info", []) if a.get("scope") != "link"}


def _default_dev(ns, family: str) -> list:
    return [(r.get("dev"), r.get("gateway")) for r in ns.json(family, "route", "show", "default")]


def _wait_reachable(ns, address: str) -> None:
    for _ in range(20):
        if subprocess.run(["ip", "netns", "exec", ns.name, "ping", "-n", "-c", "1", "-W", "1",
                           address], capture_output=True).returncode == 0:
            return
    pytest.fail("%s never answered pings from %s: test setup broken" % (address, ns.name))


def test_move_addresses_keeps_host_reachable(netns, netns2):
    _host_with_gateway(netns, netns2)
    before = read_snapshot(netns.name)
    mac = before.get("h0").mac
    # Kernel fact: a device just set up drops what it sends (noop qdisc)
    # until linkwatch activates it, up to a second later; measure after that.
    _wait_reachable(netns2, HOST4)
    # The gateway pings the host every 100 ms while the plan runs.
    pinger = subprocess.Popen(["ip", "netns", "exec", netns2.name, "ping", "-n", "-D", "-O",
                               "-i", "0.1", "-c", "30", "-W", "1", HOST4],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    apply(_trunk_plan(before), netns.name, before)
    out, _ = pinger.communicate(timeout=30)

    assert _addresses(netns, "br0") == {HOST4 + "/24", HOST6 + "/64"}
    assert _addresses(netns, "h0") == set()
    assert _default_dev(netns, "-4") == [("br0", GW4)]
    assert _default_dev(netns, "-6") == [("br0", GW6)]
    assert netns.link("br0")["address"] == mac
    assert netns.json("route", "show", "table", "100")[0]["dev"] == "br0"
    received = int(out.split(" received")[0].rsplit(",", 1)[1]) if " received" in out else 0
    assert received >= 29, out  # at most one lost ping at 100 ms
    assert subprocess.run(["ip", "netns", "exec", netns.name, "ping", "-c", "1", "-W", "2", GW6],
                          capture_output=True).returncode == 0


def test_move_addresses_rolls_back(netns, netns2, monkeypatch):
    _host_with_gateway(netns, netns2)
    before = read_snapshot(netns.name)
    plan = act.Plan(_trunk_plan(before).actions + (act.SetMtu("br0", 1500),))
    monkeypatch.setenv(FAIL_AT_ENV, "4")
    with pytest.raises(ApplyError, match=r"rolled back 4 change\(s\)"):
        apply(plan, netns.name, before)
    assert "br0" not in netns.names()
    assert _addresses(netns, "h0") == {HOST4 + "/24", HOST6 + "/64"}
    assert _default_dev(netns, "-4") == [("h0", GW4)]
    assert _default_dev(netns, "-6") == [("h0", GW6)]
    assert subprocess.run(["ip", "netns", "exec", netns.name, "ping", "-c", "1", "-W", "2", GW4],
                          capture_output=True).returncode == 0


# -- the host-wide lock -----------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from virtvlan.host.lock import host_lock
    with host_lock(5, sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def _holder(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_timeout_names_the_holder(tmp_path):
    path = str(tmp_path / "run" / "lock")
    holder = _holder(path)
    try:
        start = time.monotonic()
        with pytest.raises(LockTimeout) as err:
            with host_lock(0.5, path):
                pass
        assert 0.4 < time.monotonic() - start < 3
        message = str(err.value)
        assert "pid %d" % holder.pid in message and "kill %d" % holder.pid in message
        assert "\n" not in message
    finally:
        holder.kill()  # SIGKILL: the kernel releases the flock with the process
        holder.wait()
    with host_lock(2, path):
        with open(path) as lock_file:
            assert lock_file.read().startswith("%d " % os.getpid())
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == oct(0o755 & ~_umask())


def test_lock_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "env-lock"
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(path))
    with host_lock(1):
        assert path.read_text().startswith("%d " % os.getpid())
    assert path.read_text() == ""  # emptied on release


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- bridge VLAN entries and filtering ------------------------------------------

def _bridge_vlans(ns) -> dict:
    """`bridge -json -c vlan show` as {ifname: (tagged, untagged, pvid)}."""
    out = subprocess.run(["bridge", "-n", ns.name, "-json", "-c", "vlan", "show"], check=True,
                         capture_output=True, text=True).stdout
    tables = {}
    for entry in json.loads(out or "[]"):
        tagged, untagged, pvid = set(), set(), None
        for vlan in entry.get("vlans", []):
            vids = set(range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1))
            (untagged if "Egress Untagged" in vlan.get("flags", []) else tagged).update(vids)
            if "PVID" in vlan.get("flags", []):
                pvid = vlan["vlan"]
        tables[entry["ifname"]] = (tagged, untagged, pvid)
    return tables


def _filtering(ns, bridge: str) -> int:
    return ns.link(bridge)["linkinfo"]["info_data"]["vlan_filtering"]


def _trunk_bridge(ns) -> None:
    """brt (ours, unfiltered) with uplink u0 and guest tap0; brt.5 on it."""
    veth(ns)
    ns.ip("tuntap", "add", "mode", "tap", "tap0")
    apply(act.Plan((act.CreateBridge("brt", 1500), act.SetMaster("u0", "brt"),
                    act.SetMaster("tap0", "brt"), act.SetUp("brt"))), ns.name)


FILTER_PLAN = act.Plan((
    act.DelBridgeVlan("tap0", 1, 1),
    act.AddBridgeVlan("tap0", 9, 9, pvid=True, untagged=True),
    act.AddBridgeVlan("tap0", 10, 4094),
    act.AddBridgeVlan("u0", 5, 7),
    act.AddBridgeVlan("u0", 9, 4094),
    act.AddBridgeVlan("brt", 5, 5, self_=True),
    act.SetVlanFiltering("brt"),
))


def test_bridge_vlan_entries_ranges_self_and_filtering(netns, vlan_support):
    _trunk_bridge(netns)
    assert _filtering(netns, "brt") == 0
    after = apply(FILTER_PLAN, netns.name)
    shown = _bridge_vlans(netns)
    assert shown["tap0"] == (set(range(10, 4095)), {9}, 9)
    assert shown["u0"] == ({5, 6, 7} | set(range(9, 4095)), {1}, 1)
    assert shown["brt"] == ({5}, {1}, 1)
    assert _filtering(netns, "brt") == 1
    assert after.get("tap0").vlans.tagged == frozenset(range(10, 4095))
    # Applying the same entries again changes nothing and still verifies.
    apply(act.Plan(FILTER_PLAN.actions[1:]), netns.name)
    assert _bridge_vlans(netns) == shown


def test_port_delete_keeps_the_bridge_self_entry(netns, vlan_support):
    """Deleting VLAN 5 from the uplink port must not delete brt's own entry
    (the per-VLAN master flag would): brt.5 would lose its traffic."""
    _trunk_bridge(netns)
    apply(act.Plan((act.AddBridgeVlan("u0", 5, 5), act.AddBridgeVlan("brt", 5, 5, self_=True))),
          netns.name)
    apply(act.Plan((act.DelBridgeVlan("u0", 5, 5),)), netns.name)
    shown = _bridge_vlans(netns)
    assert shown["u0"] == (set(), {1}, 1)
    assert shown["brt"] == ({5}, {1}, 1)


def test_bridge_vlan_failure_rolls_back_entries_and_filtering(netns, vlan_support, monkeypatch):
    _trunk_bridge(netns)
    before = _bridge_vlans(netns)
    monkeypatch.setenv(FAIL_AT_ENV, str(len(FILTER_PLAN)))  # filtering is on by then
    with pytest.raises(ApplyError, match=r"rolled back 7 change"):
        apply(act.Plan(FILTER_PLAN.actions + (act.SetUp("brt"),)), netns.name)
    assert _bridge_vlans(netns) == before
    assert _filtering(netns, "brt") == 0
