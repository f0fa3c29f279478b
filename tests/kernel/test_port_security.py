"""Port security (issue 20, docs/port-security.md) on a real kernel, with
traffic as the oracle.

Topology (Lab in topology.py): a switch namespace with VLANs 5 and 7
(10.V.0.1/24), the host namespace running virt-vlan (port-security = yes),
guests behind veth "taps". From a guest, raw frames (AF_PACKET, built by
hand) are sent; capture sockets on the switch's eth0 (everything that left
the host, whatever its tags) and on a second guest look for each frame's
unique token. Every frame is followed by a sentinel frame that must arrive
on the same path: once the sentinel is in, anything sent before it has
arrived or was dropped, so no assertion waits on a clock.

Each test runs protected and unprotected (`plug` without --mac): the
unprotected run shows every forbidden frame arriving, so the protected
run's "none arrives" can fail.
"""

import ctypes
import os
import select
import socket
import struct
import threading
from typing import Dict, List, Optional, Tuple

import pytest

try:
    from .topology import SW5, SW7, Lab, call_in_netns, ip, reachable, run, unreachable
except ImportError:  # tests/kernel is no package: pytest put this folder on sys.path
    from topology import (SW5, SW7, Lab, call_in_netns, ip, reachable,  # type: ignore
                          run, unreachable)

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_AUXDATA = 263, 8
FORGED = "02:00:00:66:66:66"  # a source MAC that is not the guest's
BROADCAST = "ff:ff:ff:ff:ff:ff"
G1_IP, G2_IP = "10.5.0.10", "10.5.0.11"
SECURE = "port-security = yes\n"


# -- frames, built by hand (no scapy) ----------------------------------------------

def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def tagged(dst: str, src: str, tpid: int, vid: int, ethertype: int, payload: bytes) -> bytes:
    return (mac_bytes(dst) + mac_bytes(src) + struct.pack("!HHH", tpid, vid, ethertype)
            + payload)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return (struct.pack("!IHBB", 6 << 28, len(payload), next_header, 255)
            + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + payload)


def icmpv6(src: str, dst: str, kind: int, body: bytes) -> bytes:
    message = struct.pack("!BBH", kind, 0, 0) + body
    pseudo = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
              + struct.pack("!I3xB", len(message), 58))
    message = message[:2] + struct.pack("!H", checksum(pseudo + message)) + message[4:]
    return ipv6(src, dst, 58, message)


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return (struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sha) + socket.inet_aton(spa)
            + mac_bytes(tha) + socket.inet_aton(tpa))


def forbidden_frames(mac: str, token: bytes, mode: str) -> Dict[str, bytes]:
    """Every frame port security must drop, by name, each carrying `token`.
    `mode`: what the NIC is (a trunk NIC's defaults are narrower). Untagged
    frames of a trunk NIC go to its native VLAN (7 in the trunk test)."""
    frames = {
        # 802.1D config BPDU (LLC 42 42 03), STP off on virt-vlan's bridges.
        "bpdu": ether("01:80:c2:00:00:00", mac, 38 + len(token),
                      b"\x42\x42\x03" + b"\0" * 35 + token),
        "forged source": ether(BROADCAST, FORGED, 0x88B5, token),
        "802.1ad": tagged(BROADCAST, mac, 0x88A8, 5, 0x88B5, token),
    }
    if mode == "trunk":
        frames["forged source on VLAN 5"] = tagged(BROADCAST, FORGED, 0x8100, 5, 0x88B5, token)
        frames["BPDU on VLAN 5"] = tagged("01:80:c2:00:00:00", mac, 0x8100, 5, 38 + len(token),
                                          b"\x42\x42\x03" + b"\0" * 35 + token)
    if mode == "access":
        frames.update({
            # An ARP reply that claims the gateway's address for another MAC,
            # sent from the guest's own source MAC.
            "forged ARP sender MAC": ether(BROADCAST, mac, 0x0806,
                                           arp(2, FORGED, SW5, BROADCAST, SW5) + token),
            # The gateway's address for the guest's own MAC: ips= lists only G1_IP.
            "ARP for the gateway's address": ether(BROADCAST, mac, 0x0806,
                                                   arp(2, mac, SW5, BROADCAST, SW5) + token),
            # Neighbour advertisements: another MAC for the guest's own
            # link-local target, and its own MAC for an address not in ips=.
            "NA with a forged target MAC": ether("33:33:00:00:00:01", mac, 0x86DD, icmpv6(
                "fe80::10", "ff02::1", 136, struct.pack("!I", 0x20000000)
                + socket.inet_pton(socket.AF_INET6, "fe80::10") + b"\x02\x01"
                + mac_bytes(FORGED) + token)),
            "NA for an address not its own": ether("33:33:00:00:00:01", mac, 0x86DD, icmpv6(
                "fe80::10", "ff02::1", 136, struct.pack("!I", 0x20000000)
                + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\x02\x01"
                + mac_bytes(mac) + token)),
            "router advertisement": ether("33:33:00:00:00:01", mac, 0x86DD, icmpv6(
                "fe80::1", "ff02::1", 134, struct.pack("!BBHII", 64, 0, 1800, 0, 0) + token)),
            "DHCP offer": ether(BROADCAST, mac, 0x0800, ipv4_udp(
                G1_IP, "255.255.255.255", 67, 68, b"\x02\x01\x06\x00" + token)),
            "DHCPv6 reply": ether("33:33:00:01:00:02", mac, 0x86DD, ipv6(
                "fe80::1", "ff02::1:2", 17, struct.pack("!HHHH", 547, 546, 8 + len(token), 0)
                + token)),
            "802.1Q tagged (VLAN 7)": tagged(BROADCAST, mac, 0x8100, 7, 0x88B5, token),
        })
    return frames


def allowed_frames(mac: str, token: bytes, mode: str) -> Dict[str, bytes]:
    """Frames that must still pass, each carrying `token`."""
    frames = {
        "own source": ether(BROADCAST, mac, 0x88B5, token),
    }
    if mode == "access":
        frames.update({
            "ARP for its own address": ether(BROADCAST, mac, 0x0806,
                                             arp(1, mac, G1_IP, "00:00:00:00:00:00", SW5)
                                             + token),
            "DHCP client request": ether(BROADCAST, mac, 0x0800, ipv4_udp(
                "0.0.0.0", "255.255.255.255", 68, 67, b"\x01\x01\x06\x00" + token)),
            "priority-tagged (VID 0)": tagged(BROADCAST, mac, 0x8100, 0, 0x88B5, token),
        })
    else:
        frames["tagged on its VLAN 5"] = tagged(BROADCAST, mac, 0x8100, 5, 0x88B5, token)
    return frames


# -- sockets in other namespaces ---------------------------------------------------

def _in_netns(ns: str, make):  # type: ignore[no-untyped-def]
    """make() run in a thread that entered `ns` (setns moves only the
    calling thread; a socket keeps the namespace it was made in)."""
    out: List[object] = []

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/%s" % ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns %s" % ns)
            finally:
                os.close(fd)
            out.append(make())
        except BaseException as err:  # noqa: B902 - re-raised in the caller
            out.append(err)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def packet_socket(ns: str, ifname: str) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, 0))
        return sock
    return _in_netns(ns, make)


def link_mac(ns: str, ifname: str) -> str:
    return ip(ns, "-br", "link", "show", "dev", ifname).split()[2]


class Probe:
    """Send frames from one guest, capture at the switch and a second guest."""

    def __init__(self, lab: Lab, sender: str, mac: str, watch: Dict[str, Tuple[str, str]]) -> None:
        self.sender = packet_socket(sender, "eth0")
        self.mac = mac
        self.captures = {name: packet_socket(ns, ifname) for name, (ns, ifname) in watch.items()}
        self.count = 0

    def close(self) -> None:
        for sock in [self.sender] + list(self.captures.values()):
            sock.close()

    def token(self, what: str) -> bytes:
        self.count += 1
        return ("VVPS%04d-%s" % (self.count, what)).encode()[:40].ljust(40, b".")

    def arrivals(self, frame: bytes, token: bytes) -> Dict[str, bool]:
        """Send `frame` (carrying `token`), then a sentinel of the guest's
        own that must arrive everywhere; where did `token` arrive?"""
        sentinel = self.token("sentinel")
        self.sender.send(frame)
        self.sender.send(ether(BROADCAST, self.mac, 0x88B5, sentinel))
        seen = {}
        for name, sock in self.captures.items():
            got_token = False
            while True:
                ready, _, _ = select.select([sock], [], [], 60)
                assert ready, "the sentinel frame never reached %s" % name
                data = sock.recv(65536)
                got_token = got_token or token in data
                if sentinel in data:
                    break
            seen[name] = got_token
        return seen


# -- the lab ---------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _preload():
    if os.environ.get("VIRT_VLAN_IN_VM") == "1":
        import virtvlan.apply.executor  # noqa: F401
        import virtvlan.cli.commands  # noqa: F401
        import virtvlan.apply.engine  # noqa: F401


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def nft_ruleset(ns: str) -> str:
    return run("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout


def plug(lab: Lab, tap: str, guest_ns: str, protected: bool, *args: str) -> None:
    extra = ["--mac", link_mac(guest_ns, "eth0")] if protected else []
    lab.ok("plug", tap, *args, *extra)


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "unprotected"])
@pytest.mark.parametrize("wiring", ["access", "trunk"])
def test_access_guest_sends_nothing_forbidden(lab, wiring, protected):
    """An access guest on VLAN 5 (access or trunk wiring of the uplink)."""
    lab.build(wiring=wiring, extra_conf=SECURE)
    g1 = lab.guest("g1", "vnet1", untagged=[G1_IP + "/24"])
    g2 = lab.guest("g2", "vnet2", untagged=[G2_IP + "/24"])
    mac = link_mac(g1, "eth0")
    plug(lab, "vnet1", g1, protected, "--access", "5", *(["--ips", G1_IP] if protected else []))
    plug(lab, "vnet2", g2, False, "--access", "5")
    if protected:
        assert "chain port-vnet1" in nft_ruleset(lab.host)
    # Legitimate traffic first: the wiring works (ARP for its own address,
    # ping), and IPv6 link-local (NDP with its own MAC) too.
    assert reachable(g1, SW5), "protected guest cannot reach the switch"
    assert reachable(g1, G2_IP), "protected guest cannot reach the other guest"
    g2_ll = [a["local"] for e in lab_json(g2, "-6", "addr", "show", "dev", "eth0")
             for a in e.get("addr_info", []) if a.get("scope") == "link"]
    assert g2_ll and reachable(g1, "%s%%eth0" % g2_ll[0]), "no IPv6 link-local between guests"
    probe = Probe(lab, g1, mac, {"switch": (lab.sw, "eth0"), "guest 2": (g2, "eth0")})
    try:
        for name, frame in allowed_frames(mac, b"", "access").items():
            token = probe.token(name)
            seen = probe.arrivals(allowed_frames(mac, token, "access")[name], token)
            assert all(seen.values()), "%s did not arrive: %s" % (name, seen)
        leaked = {}
        for name in forbidden_frames(mac, b"", "access"):
            token = probe.token(name)
            seen = probe.arrivals(forbidden_frames(mac, token, "access")[name], token)
            leaked[name] = sorted(where for where, got in seen.items() if got)
    finally:
        probe.close()
    if protected:
        assert not any(leaked.values()), "forbidden frames arrived: %s" % leaked
    else:
        # Without protection every one of them reaches the switch: the
        # protected run's silence is the filters' doing.
        assert all("switch" in where for where in leaked.values()), leaked


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "unprotected"])
def test_trunk_guest_keeps_its_vlans_and_loses_the_rest(lab, protected):
    lab.build(wiring="trunk", extra_conf=SECURE)
    # VLAN 7 native: without protection the guest's untagged (and 802.1ad)
    # frames would reach the switch on it, so the test can fail.
    gt = lab.guest("gt", "vnet1", untagged=["10.7.0.20/24"], tagged={5: "10.5.0.20/24"})
    mac = link_mac(gt, "eth0")
    plug(lab, "vnet1", gt, protected, "--trunk", "5", "--native", "7")
    assert reachable(gt, SW5), "trunk guest cannot reach VLAN 5"
    assert reachable(gt, SW7), "trunk guest cannot reach its native VLAN 7"
    probe = Probe(lab, gt, mac, {"switch": (lab.sw, "eth0")})
    try:
        for name in allowed_frames(mac, b"", "trunk"):
            token = probe.token(name)
            seen = probe.arrivals(allowed_frames(mac, token, "trunk")[name], token)
            assert all(seen.values()), "%s did not arrive: %s" % (name, seen)
        leaked = {}
        for name in forbidden_frames(mac, b"", "trunk"):
            token = probe.token(name)
            leaked[name] = probe.arrivals(forbidden_frames(mac, token, "trunk")[name],
                                          token)["switch"]
    finally:
        probe.close()
    if protected:
        assert not any(leaked.values()), "forbidden frames arrived: %s" % leaked
    else:
        assert all(leaked.values()), leaked


@pytest.mark.parametrize("wiring", ["access", "trunk"])
def test_isolated_guests_reach_the_switch_not_each_other(lab, wiring):
    lab.build(wiring=wiring, extra_conf=SECURE)
    g1 = lab.guest("g1", "vnet1", untagged=[G1_IP + "/24"])
    g2 = lab.guest("g2", "vnet2", untagged=[G2_IP + "/24"])
    plug(lab, "vnet1", g1, True, "--access", "5", "--isolated")
    plug(lab, "vnet2", g2, True, "--access", "5")
    assert reachable(g2, G1_IP), "a non-isolated guest cannot reach an isolated one"
    plug(lab, "vnet2", g2, True, "--access", "5", "--isolated")
    assert reachable(g1, SW5) and reachable(g2, SW5), "isolated guests lost the switch"
    assert unreachable(g1, G2_IP), "two isolated guests on one VLAN reach each other"
    link = lab_json(lab.host, "-d", "link", "show", "dev", "vnet1")[0]
    assert link["linkinfo"]["info_slave_data"]["isolated"] is True


def test_unplug_and_vanished_taps_leave_no_filter(lab):
    lab.build(wiring="access", extra_conf=SECURE)
    g1 = lab.guest("g1", "vnet1", untagged=[G1_IP + "/24"])
    g2 = lab.guest("g2", "vnet2", untagged=[G2_IP + "/24"])
    plug(lab, "vnet1", g1, True, "--access", "5")
    plug(lab, "vnet2", g2, True, "--access", "5")
    # A second plug changes nothing (idempotent), and says so.
    assert lab.vv("plug", "vnet1", "--access", "5", "--mac", link_mac(g1, "eth0"),
                  "--dry-run").out.strip() == "# nothing to change"
    assert call_in_netns(lab.host, _both_readers)[0], "the netlink and nft readers differ"
    lab.unplug("vnet1")
    rules = nft_ruleset(lab.host)
    assert "port-vnet1" not in rules and "port-vnet2" in rules, rules
    ip(lab.host, "link", "del", "vnet2")  # the guest stopped: its tap is gone
    lab.ok("cleanup")
    assert "port-vnet2" not in nft_ruleset(lab.host)


def test_flushed_ruleset_is_rebuilt_at_the_next_plug(lab):
    lab.build(wiring="access", extra_conf=SECURE)
    g1 = lab.guest("g1", "vnet1", untagged=[G1_IP + "/24"])
    plug(lab, "vnet1", g1, True, "--access", "5")
    run("ip", "netns", "exec", lab.host, "nft", "flush", "ruleset")
    assert "port-vnet1" not in nft_ruleset(lab.host)
    plug(lab, "vnet1", g1, True, "--access", "5")
    assert "port-vnet1" in nft_ruleset(lab.host)


def _both_readers():  # type: ignore[no-untyped-def]
    from virtvlan.host import nftables

    fast, slow = nftables.read_filters_netlink(), nftables.read_filters_nft()
    return fast == slow and len(fast) == 2, fast, slow


def lab_json(ns: str, *args: str):  # type: ignore[no-untyped-def]
    import json

    out = ip(ns, "-json", *args).strip()
    return json.loads(out) if out else []


def _nft_table(ns: str):  # type: ignore[no-untyped-def]
    """`nft -j list table bridge virt_vlan` of `ns` without what differs
    between two equal tables (handles, nft's version line)."""
    import json

    def strip(value):  # type: ignore[no-untyped-def]
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "handle"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = run("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "bridge",
              "virt_vlan").stdout
    return [strip(item) for item in json.loads(out)["nftables"] if "metainfo" not in item]


def test_in_process_and_nft_process_write_the_same_table(lab):
    """The chains `plug` wrote (in process, through libnftables), written
    again into two fresh namespaces, once in process and once by an
    `nft -f -` process: nft's own listing is the same all three times,
    after a removal too."""
    from virtvlan.host import nftables, nftwrite
    from virtvlan.plan import actions as act

    assert nftwrite.library() is not None, "%s does not load: nothing in process to compare" \
        % nftwrite.LIBRARY
    lab.build(wiring="trunk", extra_conf=SECURE)
    g1 = lab.guest("g1", "vnet1", untagged=[G1_IP + "/24"])
    gt = lab.guest("gt", "vnet2", untagged=["10.7.0.20/24"])
    plug(lab, "vnet1", g1, True, "--access", "5", "--ips", G1_IP + ",2001:db8::10")
    plug(lab, "vnet2", gt, True, "--trunk", "5", "--native", "7", "--guard", "router")
    filters = call_in_netns(lab.host, nftables.read_filters_netlink)
    assert [f.port for f in filters] == ["vnet1", "vnet2"], filters
    written = _nft_table(lab.host)
    library, process = lab.netns("lib"), lab.netns("proc")
    for port_filter in filters:
        script = "\n".join(act.SetPortFilter(port_filter.port, port_filter.rules).script()) + "\n"
        assert nftwrite.run_script_in_process(script, library) is None
        assert nftwrite.run_script_nft(script, process) is None
    assert _nft_table(library) == written
    assert _nft_table(process) == written
    assert nftables.read_filters_netlink(library) == filters
    gone = "\n".join(act.SetPortFilter("vnet1", ()).script()) + "\n"
    assert nftwrite.run_script_in_process(gone, library) is None
    assert nftwrite.run_script_nft(gone, process) is None
    assert _nft_table(library) == _nft_table(process)
    assert "port-vnet1" not in json_text(_nft_table(library))


def json_text(value) -> str:  # type: ignore[no-untyped-def]
    import json

    return json.dumps(value)
