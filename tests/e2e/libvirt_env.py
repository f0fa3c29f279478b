"""Helpers for the end-to-end tests: a real libvirtd, real qemu (TCG), real kernel.

Everything here observes the host with tools independent of virt-vlan:
`ip -json -d link show` for the kernel, `virsh` for libvirt. Nothing in here
imports the virtvlan package.
"""

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# VIRT_VLAN_INSTALLED=1 (tests/vm/deb-e2e): the installed Debian package.
INSTALLED = os.environ.get("VIRT_VLAN_INSTALLED") == "1"
VIRT_VLAN = Path("/usr/bin/virt-vlan") if INSTALLED else VENV_BIN / "virt-vlan"
LIBVIRT_UP = REPO / "tests" / "vm" / "libvirt-up"
LIBVIRTD_LOG = Path("/var/log/libvirt/libvirtd.log")
LIBVIRTD_STDERR = Path("/var/log/libvirt/libvirtd.stderr")
RESERVED_DIR = Path("/run/virt-vlan/reserved")
MANAGED_ALIAS = "virt-vlan:managed"  # the contract in README ("Safety"), spelled out here
NS = "urn:virt-vlan:1"
URI = "qemu:///system"
SWITCH_NS = "sw"

USE_MAKE_TEST = ("the libvirt end-to-end tests run inside the test VM (real libvirtd, qemu and "
                 "a kernel with 802.1Q): use `make test`, or `tests/vm/run "
                 ".venv/bin/python -m pytest -q tests/e2e`")


# --- processes ---------------------------------------------------------------------

def run(args: Sequence[str], check: bool = True, timeout: float = 120,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run a command; with check, fail the test with its output on error."""
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        pytest.fail("`%s` did not finish within %ss" % (" ".join(map(str, args)), timeout))
    if check and proc.returncode != 0:
        pytest.fail("`%s` exited %d:\n%s%s" % (" ".join(map(str, args)), proc.returncode,
                                                 proc.stdout, proc.stderr))
    return proc


def terminate(proc: subprocess.Popen, timeout: float = 120) -> bool:
    """SIGTERM `proc` and reap it; False if it had to be killed after `timeout`."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def virsh(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return run(["virsh", "-q", "-c", URI, *args], check=check, timeout=timeout)


def log_tail(lines: int = 40) -> str:
    out = []
    for path in (LIBVIRTD_LOG, LIBVIRTD_STDERR):
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        out.append("--- last lines of %s ---\n%s" % (path, "\n".join(text[-lines:])))
    return "\n".join(out) or "(no libvirtd log found)"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until truthy; return its value, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- the kernel, seen by iproute2 ----------------------------------------------------

def ip(*args: str, netns: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip"] + (["-n", netns] if netns else []) + list(args), check=check)


def links(netns: Optional[str] = None) -> Dict[str, dict]:
    """`ip -json -d link show`: name -> the link's JSON object."""
    out = ip("-json", "-d", "link", "show", netns=netns).stdout.strip()
    return {link["ifname"]: link for link in (json.loads(out) if out else [])}


def gone(*names: str):  # type: ignore[no-untyped-def]
    """A wait_for predicate: none of `names` is a link any more."""
    return lambda: not (set(names) & set(links()))


def kind(link: dict) -> str:
    return link.get("linkinfo", {}).get("info_kind", "device")


def vlan_of(link: dict) -> Optional[int]:
    info = link.get("linkinfo", {})
    return info.get("info_data", {}).get("id") if info.get("info_kind") == "vlan" else None


def ports(all_links: Dict[str, dict], bridge: str) -> List[str]:
    return sorted(n for n, l in all_links.items() if l.get("master") == bridge)


def managed(all_links: Dict[str, dict]) -> List[str]:
    return sorted(n for n, l in all_links.items() if l.get("ifalias") == MANAGED_ALIAS)


def topology(all_links: Optional[Dict[str, dict]] = None) -> Dict[str, tuple]:
    """name -> (kind, master, VLAN id, lower device, alias): what a test
    compares before/after to prove "nothing changed"."""
    all_links = links() if all_links is None else all_links
    return {n: (kind(l), l.get("master"), vlan_of(l), l.get("link"), l.get("ifalias"))
            for n, l in all_links.items()}


def restart_libvirtd() -> None:
    """SIGTERM libvirtd, wait for it to exit, bring it back with libvirt-up."""
    pid = int(open("/run/libvirtd.pid").read().strip())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), 60, "libvirtd to exit")
    proc = run([str(LIBVIRT_UP)], check=False, timeout=900)
    if proc.returncode != 0:
        pytest.fail("libvirtd did not come back:\n%s%s\n%s"
                    % (proc.stdout, proc.stderr, log_tail()))


def bridge_vlans(dev: str) -> dict:
    """VID -> sorted flags of `dev` per `bridge -json vlan show` (ranges expanded)."""
    table = {}
    out = run(["bridge", "-json", "vlan", "show", "dev", dev]).stdout.strip()
    for item in json.loads(out) if out else []:
        if item["ifname"] != dev:
            continue
        for vlan in item.get("vlans", []):
            for vid in range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1):
                table[vid] = sorted(vlan.get("flags", []))
    return table


def reservations() -> List[str]:
    try:
        return sorted(p.name for p in RESERVED_DIR.iterdir())
    except FileNotFoundError:
        return []


def assert_access_bridge(all_links: Dict[str, dict], bridge: str, feed: str, parent: str,
                         vlan: int) -> None:
    """`bridge` is a bridge whose only VLAN port is `feed` = VLAN `vlan` on `parent`."""
    assert bridge in all_links, "bridge %s does not exist; links: %s" % (bridge, sorted(all_links))
    assert kind(all_links[bridge]) == "bridge", "%s is a %s" % (bridge, kind(all_links[bridge]))
    assert feed in all_links, "feed %s of %s does not exist" % (feed, bridge)
    f = all_links[feed]
    assert kind(f) == "vlan" and vlan_of(f) == vlan, "%s is %s VLAN %s" % (feed, kind(f), vlan_of(f))
    assert f.get("link") == parent, "%s sits on %s, not on %s" % (feed, f.get("link"), parent)
    assert f.get("master") == bridge, "%s is a port of %s, not of %s" % (feed, f.get("master"), bridge)
    feeds = [p for p in ports(all_links, bridge) if kind(all_links[p]) == "vlan"]
    assert feeds == [feed], "bridge %s has VLAN ports %s, expected only %s" % (bridge, feeds, feed)
    assert "UP" in f.get("flags", []), "%s is not up" % feed
    assert "UP" in all_links[bridge].get("flags", []), "%s is not up" % bridge


# --- uplinks: veth pairs into the switch namespace ---------------------------------------

def ensure_switch() -> None:
    if SWITCH_NS not in run(["ip", "netns", "list"]).stdout.split():
        ip("netns", "add", SWITCH_NS)
        ip("link", "set", "lo", "up", netns=SWITCH_NS)


def add_uplink(device: str, switch_port: str) -> None:
    """A veth `device` on the host whose peer `switch_port` sits in namespace sw."""
    ensure_switch()
    if device not in links():
        ip("link", "add", device, "type", "veth", "peer", "name", switch_port,
           "netns", SWITCH_NS)
    ip("link", "set", device, "up")
    ip("link", "set", switch_port, "up", netns=SWITCH_NS)


# --- guests -------------------------------------------------------------------------

@dataclass(frozen=True)
class Nic:
    mac: str
    source_bridge: Optional[str] = None  # <interface type='bridge'>
    source_network: Optional[str] = None  # <interface type='network'>


def vv_access(mac: str, vlan, uplink: Optional[str] = None, **extra: str) -> str:
    attrs = {"mac": mac, "mode": "access", "vlan": str(vlan)}
    if uplink is not None:
        attrs["uplink"] = uplink
    attrs.update(extra)
    return vv_interface(**attrs)


def vv_trunk(mac: str, vlans: str, uplink: Optional[str] = None) -> str:
    attrs = {"mac": mac, "mode": "trunk", "vlans": vlans}
    if uplink is not None:
        attrs["uplink"] = uplink
    return vv_interface(**attrs)


def vv_interface(**attrs: str) -> str:
    return "<vv:interface %s/>" % " ".join("%s='%s'" % (k, v) for k, v in attrs.items())


def domain_xml(name: str, nics: Iterable[Nic], vv: Iterable[str] = (),
               acpi: bool = False) -> str:
    """A tiny diskless qemu (TCG) guest; `vv` are <vv:interface/> elements.
    `acpi`: PCI hot-plug on i440fx goes through ACPI; without <acpi/> QEMU
    refuses device_add ("Bus 'pci.0' does not support hotplugging")."""
    vv = list(vv)
    metadata = ("  <metadata>\n    <vv:vlan xmlns:vv='%s'>\n%s    </vv:vlan>\n  </metadata>\n"
                % (NS, "".join("      %s\n" % e for e in vv))) if vv else ""
    ifaces = []
    for nic in nics:
        if nic.source_network:
            head, source = "network", "<source network='%s'/>" % nic.source_network
        else:
            head, source = "bridge", "<source bridge='%s'/>" % nic.source_bridge
        ifaces.append("    <interface type='%s'>\n      <mac address='%s'/>\n      %s\n"
                      "      <model type='virtio'/>\n    </interface>\n" % (head, nic.mac, source))
    return ("<domain type='qemu'>\n  <name>%s</name>\n%s"
            "  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n"
            "  <os><type arch='x86_64'>hvm</type></os>\n%s"
            "  <devices>\n%s    <controller type='usb' model='none'/>\n"
            "    <memballoon model='none'/>\n  </devices>\n</domain>\n"
            % (name, metadata, "  <features><acpi/></features>\n" if acpi else "",
               "".join(ifaces)))


def mac(n: int) -> str:
    return "52:54:00:e2:%02x:%02x" % (n // 256, n % 256)


class Guests:
    """Defines and starts guests; `cleanup` destroys and undefines them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.names: List[str] = []

    def define(self, name: str, nics: Iterable[Nic], vv: Iterable[str] = (),
               acpi: bool = False) -> str:
        return self.define_xml(name, domain_xml(name, nics, vv, acpi))

    def define_xml(self, name: str, xml: str) -> str:
        path = self.workdir / ("%s.xml" % name)
        path.write_text(xml)
        self.names.append(name)
        virsh("define", str(path))
        return name

    def start(self, name: str, check: bool = True) -> subprocess.CompletedProcess:
        return virsh("start", "--paused", name, check=check, timeout=1800)

    def start_many(self, names: Sequence[str]) -> List[subprocess.CompletedProcess]:
        """`virsh start --paused` of all `names` at the same time."""
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return list(pool.map(lambda n: self.start(n, check=False), names))

    def destroy(self, name: str, check: bool = True) -> subprocess.CompletedProcess:
        return virsh("destroy", name, check=check)

    def destroy_many(self, names: Sequence[str]) -> List[subprocess.CompletedProcess]:
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return list(pool.map(lambda n: self.destroy(n, check=False), names))

    def cleanup(self) -> None:
        for name in reversed(self.names):
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        self.names.clear()


def state(name: str) -> str:
    return virsh("domstate", name).stdout.strip()


def taps(name: str) -> Dict[str, str]:
    """MAC -> tap name of a running guest, from libvirt's live XML."""
    out = virsh("domiflist", name).stdout
    result = {}
    for line in out.splitlines():
        words = line.split()
        # Interface  Type  Source  Model  MAC
        if len(words) >= 5 and ":" in words[-1]:
            result[words[-1].lower()] = words[0]
    return result


def tap(name: str) -> str:
    (only,) = taps(name).values()
    return only


# --- the domain commands (virt-vlan set/clear/show/attach/detach) ----------------------

def virt_vlan(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """The installed CLI against the session's libvirtd (`-c URI`)."""
    return run([str(VIRT_VLAN), "-c", URI, *args], check=check, timeout=timeout)


def vv_metadata(name: str, live: bool) -> str:
    """`virsh metadata --uri urn:virt-vlan:1` of the live or persistent definition."""
    proc = virsh("metadata", name, "--uri", NS, "--live" if live else "--config", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def sources(name: str, inactive: bool = False) -> Dict[str, str]:
    """MAC -> <source bridge> (or network) as `virsh domiflist` lists it."""
    out = virsh("domiflist", name, *(["--inactive"] if inactive else [])).stdout
    result = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 5 and ":" in words[-1]:
            result[words[-1].lower()] = words[2]
    return result


# --- the guest's half of a PCI hot-unplug --------------------------------------------

# QEMU's ACPI PCI hotplug registers on an i440fx ("pc") machine: PIIX4's block
# at 0xae00 (hw/acpi/pcihp.c, ACPI_PCIHP_ADDR_PIIX4), where offset 0x08
# (PCI_EJ_BASE) is the eject register. `device_del` only asks the guest to
# let go of a device; QEMU removes it (and libvirt sends DEVICE_REMOVED)
# once the guest's ACPI _EJ0 method writes the slot's bit there. The test
# guests have no OS to do that, so the test does the write for them.
PIIX4_PCI_EJECT = 0xAE08


def pci_slot(name: str, nic_mac: str) -> int:
    """The PCI slot (bus 0) of the NIC `nic_mac` in the live XML of `name`."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(virsh("dumpxml", name).stdout)
    for nic in root.iter("interface"):
        found = nic.find("mac")
        if found is not None and found.get("address", "").lower() == nic_mac.lower():
            address = nic.find("address")
            assert address is not None and address.get("type") == "pci", ET.tostring(nic)
            assert int(address.get("bus", "0"), 0) == 0, "not on the root bus: %s" % (
                ET.tostring(nic))
            return int(address.get("slot"), 0)
    raise AssertionError("no NIC %s in the live XML of %s" % (nic_mac, name))


def guest_ejects(name: str, slot: int, timeout: float = 300) -> None:
    """Do what an i440fx guest's OS does to complete a PCI hot-unplug of
    `slot`: wait until QEMU asks for the eject (the slot's bit in the "down"
    register, PCI_DOWN_BASE 0xae04), then write the bit to the eject register
    (HMP `i`/`o`; `/w` is a 32-bit access, the only size these registers take)."""
    def hmp(command: str) -> str:
        return virsh("qemu-monitor-command", name, "--hmp", command).stdout.strip()

    def requested() -> bool:
        down = hmp("i /w 0x%x" % (PIIX4_PCI_EJECT - 4))
        # "port[0xae04] = 0x00000008" (QEMU's hmp_ioport_read)
        assert "=" in down, "HMP i: %r" % down
        return bool(int(down.split("=")[-1], 16) & (1 << slot))

    wait_for(requested, timeout, "QEMU to ask %s to eject PCI slot %d" % (name, slot),
             interval=0.5)
    out = hmp("o /w 0x%x 0x%x" % (PIIX4_PCI_EJECT, 1 << slot))
    assert out == "", "HMP o: %r" % out


# --- port security, seen by nft and bridge (docs/port-security.md) ----------------------

NFT_TABLE = ("bridge", "virt_vlan")


@dataclass(frozen=True)
class PortFilters:
    """virt-vlan's nftables table as `nft -j` lists it: `ports` is the verdict
    map (interface name -> the chain it jumps to), `chains` each chain's
    rules, every rule spelt from its expression (never its comment, which is
    virt-vlan's own spec), e.g. "ether saddr != 52:54:00:e2:09:01 drop"."""

    ports: Dict[str, str]
    chains: Dict[str, List[str]]
    handle: Optional[int] = None  # the table's: a table made again gets a new one

    def of(self, tap: str) -> Optional[List[str]]:
        """The rules `tap`'s map element jumps to; None without element or chain."""
        chain = self.ports.get(tap)
        return self.chains.get(chain) if chain is not None else None


def _nft_value(value) -> str:  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        if "payload" in value:
            p = value["payload"]
            if "protocol" in p:
                return "%s %s" % (p["protocol"], p["field"])
            return "@%s,%s,%s" % (p["base"], p["offset"], p["len"])
        if "meta" in value:
            return "meta %s" % value["meta"]["key"]
        if "&" in value:
            return " & ".join(_nft_value(v) for v in value["&"])
        if "set" in value:
            return "{ %s }" % ", ".join(_nft_value(v) for v in value["set"])
        if "range" in value:
            return "-".join(_nft_value(v) for v in value["range"])
    if isinstance(value, list):
        return "{ %s }" % ", ".join(_nft_value(v) for v in value)
    return str(value)


def _nft_rule(expr: List[dict]) -> str:
    words = []
    for statement in expr:
        if "match" in statement:
            m = statement["match"]
            words.append("%s %s %s" % (_nft_value(m["left"]), m["op"], _nft_value(m["right"])))
        elif "vmap" in statement:
            vmap = statement["vmap"]
            words.append("%s vmap %s" % (_nft_value(vmap["key"]), vmap["data"]))
        else:
            (verb,) = statement
            words.append(verb)
    return " ".join(words)


def port_filters() -> PortFilters:
    """`nft -j list table bridge virt_vlan`; empty when the table does not exist."""
    proc = run(["nft", "-j", "list", "table", *NFT_TABLE], check=False)
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return PortFilters({}, {})
        pytest.fail("`nft -j list table %s %s` exited %d:\n%s"
                    % (*NFT_TABLE, proc.returncode, proc.stderr))
    ports: Dict[str, str] = {}
    chains: Dict[str, List[str]] = {}
    handle = None
    for item in json.loads(proc.stdout)["nftables"]:
        if "table" in item:
            handle = item["table"]["handle"]
        elif "map" in item and item["map"]["name"] == "ports":
            for name, verdict in item["map"].get("elem", []):
                ports[name] = verdict["jump"]["target"]
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(_nft_rule(item["rule"]["expr"]))
    return PortFilters(ports, chains, handle)


def bridge_port(dev: str) -> Optional[dict]:
    """`bridge -d -json link show dev DEV`: the bridge port's flags (isolated,
    ...); None when `dev` is no bridge port (or no link)."""
    out = run(["bridge", "-d", "-json", "link", "show", "dev", dev], check=False).stdout.strip()
    found = [p for p in (json.loads(out) if out else []) if p.get("ifname") == dev]
    return found[0] if found else None
