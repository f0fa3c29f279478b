"""Two hypervisors in one test VM: two libvirtds, each in its own network,
mount and UTS namespaces, their uplinks on one switch bridge.

  namespace vvsw (the switch): bridge swbr (no VLAN filtering, so it floods
      frames for an unknown MAC to every port), ports swA and swB; the VLAN
      stand-ins swbr.5 and swbr.7 send and receive on it tagged.
  host A (netns vvhA, hostname vvhA): uplink vvup (peer swA), migration link
      vvmig 10.99.0.1/24.
  host B (netns vvhB, hostname vvhB): uplink vvup (peer swB), vvmig 10.99.0.2/24.

Each host gets its own /run, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt
and /etc/virt-vlan (bind mounts of folders under ROOT/<host>), its own
host_uuid, and a libvirtd started there; the hooks libvirtd runs, and the
commands run with `Host.sh`, see that host only. Clients reach each daemon
through its socket path (`Host.uri`); QEMU's migration stream goes over vvmig
(`--migrateuri tcp://10.99.0.2`). Only /var/cache/libvirt/qemu (QEMU's
capabilities, probed once) is shared.

Nothing here imports the virtvlan package: the hosts are observed with ip,
bridge and virsh.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv" / "bin"
VIRT_VLAN = VENV / "virt-vlan"
PYTHON = VENV / "python"
ROOT = Path("/tmp/vv-two-hosts")
SWITCH = "vvsw"
NS = "urn:virt-vlan:1"
HOOK_LOG = "/run/vv-hook-calls"  # inside each host's /run


def run(args: Sequence[str], check: bool = True, timeout: float = 600,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        pytest.fail("`%s` did not finish within %ss" % (" ".join(map(str, args)), timeout))
    if check and proc.returncode != 0:
        pytest.fail("`%s` exited %d:\n%s%s" % (" ".join(map(str, args)), proc.returncode,
                                                 proc.stdout, proc.stderr), pytrace=False)
    return proc


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what), pytrace=False)
        time.sleep(interval)


LIBVIRTD_CONF = """\
# written by tests/migration/two_hosts.py
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
host_uuid = "%(uuid)s"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# QEMU as root without labels or cgroups: both daemons share one kernel, and
# the same guest on both would otherwise claim the same cgroup name.
QEMU_CONF = """\
# written by tests/migration/two_hosts.py
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
migration_address = "0.0.0.0"
"""

# A qemu.d script before virt-vlan's (alphabetical order): logs each call.
HOOK_LOGGER = """#!/bin/sh
cat >/dev/null
echo "$(date +%%s.%%N) $*" >>%s
""" % HOOK_LOG

BOOT = """\
set -eu
hostname %(name)s
for pair in run:/run etc-libvirt:/etc/libvirt var-lib-libvirt:/var/lib/libvirt \\
            var-log-libvirt:/var/log/libvirt etc-virt-vlan:/etc/virt-vlan; do
    mkdir -p "${pair#*:}"
    mount --bind "%(root)s/${pair%%%%:*}" "${pair#*:}"
done
ip link set lo up
libvirtd -d
"""


class Host:
    """One hypervisor: its namespaces, its folders, its libvirtd."""

    def __init__(self, name: str, address: str, uuid: str) -> None:
        self.name = name  # also the netns and the hostname
        self.address = address
        self.uuid = uuid
        self.root = ROOT / name
        self.socket = self.root / "run" / "libvirt" / "libvirt-sock"
        self.uri = "qemu:///system?socket=%s" % self.socket

    # --- set-up -------------------------------------------------------------------

    def prepare(self, config: str) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("run", "var-log-libvirt", "etc-virt-vlan"):
            (self.root / sub).mkdir(parents=True)
        # Not the VM's definitions (its default network, or the guests and
        # networks the e2e suite, which runs beside this one, see
        # tests/vm/suites, defines and undefines there meanwhile), nor its hooks.
        shutil.copytree("/etc/libvirt", self.root / "etc-libvirt", symlinks=True,
                        ignore=lambda folder, names: (
                            [n for n in names if n in ("qemu", "storage", "secrets", "hooks")]
                            if folder == "/etc/libvirt" else []))
        lib = self.root / "var-lib-libvirt"
        lib.mkdir()
        for sub in ("qemu", "qemu/save", "qemu/snapshot", "qemu/dump", "qemu/ram",
                    "qemu/nvram", "qemu/channel/target", "dnsmasq", "network", "images",
                    "boot", "swtpm"):
            (lib / sub).mkdir(parents=True, exist_ok=True)
        etc = self.root / "etc-libvirt"
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF % {"uuid": self.uuid})
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (etc / "qemu" / "networks").mkdir(parents=True)
        hooks = etc / "hooks"
        shutil.rmtree(hooks, ignore_errors=True)
        made = ROOT / "hooks"
        if not made.exists():  # one `install-hooks` (a CLI start: slow under TCG) for both
            made.mkdir(parents=True)
            run([VIRT_VLAN, "install-hooks", "--hooks-dir", made])
        shutil.copytree(made, hooks, symlinks=True)
        logger = hooks / "qemu.d" / "00-log-calls"
        logger.write_text(HOOK_LOGGER)
        logger.chmod(0o755)
        self.write_config(config)
        run(["ip", "netns", "add", self.name])

    def write_config(self, text: str) -> None:
        """The hooks read the config at every call: a new one applies at once."""
        (self.root / "etc-virt-vlan" / "virt-vlan.conf").write_text(text)

    def boot(self) -> None:
        boot = self.root / "boot.sh"
        boot.write_text(BOOT % {"name": self.name, "root": self.root})
        run(["ip", "netns", "exec", self.name, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", boot], timeout=120)
        wait_for(self.socket.exists, 120, "%s's libvirtd socket" % self.name)
        self.virsh("version", timeout=900)

    def pid(self) -> int:
        return int((self.root / "run" / "libvirtd.pid").read_text().strip())

    def stop(self) -> None:
        try:
            pid = self.pid()
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            for name in self.virsh("list", "--name", check=False).stdout.split():
                self.virsh("destroy", name, check=False)
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        run(["ip", "netns", "del", self.name], check=False)

    # --- commands on this host ------------------------------------------------------

    def sh(self, *args: str, check: bool = True, timeout: float = 600
           ) -> subprocess.CompletedProcess:
        """Run a command in this host's namespaces (libvirtd's)."""
        return run(["nsenter", "-t", str(self.pid()), "-m", "-n", "-u", "--"] + list(args),
                   check=check, timeout=timeout)

    def virsh(self, *args: str, check: bool = True, timeout: float = 600
              ) -> subprocess.CompletedProcess:
        return run(["virsh", "-q", "-c", self.uri] + list(args), check=check, timeout=timeout)

    def virt_vlan(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(str(VIRT_VLAN), *args, check=check, timeout=900)

    def port_filters(self) -> Dict[str, List[str]]:
        """Port -> the comments of its rules in virt-vlan's nftables table, as
        `nft -j` lists it in this host's network namespace ({} without the table)."""
        done = run(["ip", "netns", "exec", self.name, "nft", "-j", "list", "table", "bridge",
                    "virt_vlan"], check=False)
        if done.returncode != 0:
            return {}
        out: Dict[str, List[str]] = {}
        for item in json.loads(done.stdout)["nftables"]:
            rule = item.get("rule")
            if rule and rule["chain"].startswith("port-"):
                out.setdefault(rule["chain"][len("port-"):], []).append(rule.get("comment", ""))
        return out

    def links(self) -> Dict[str, dict]:
        out = run(["ip", "-n", self.name, "-json", "-d", "link", "show"]).stdout.strip()
        return {link["ifname"]: link for link in (json.loads(out) if out else [])}

    def master(self, dev: str) -> Optional[str]:
        return self.links().get(dev, {}).get("master")

    def mtu(self, dev: str) -> int:
        return self.links()[dev]["mtu"]

    def bridge_vlans(self, dev: str) -> Dict[int, List[str]]:
        out = self.sh("bridge", "-json", "vlan", "show", "dev", dev).stdout.strip()
        table: Dict[int, List[str]] = {}
        for item in json.loads(out) if out else []:
            if item["ifname"] != dev:
                continue
            for vlan in item.get("vlans", []):
                for vid in range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1):
                    table[vid] = sorted(vlan.get("flags", []))
        return table

    def managed(self) -> List[str]:
        return sorted(name for name, link in self.links().items()
                      if link.get("ifalias") == "virt-vlan:managed")

    def taps(self, domain: str) -> Dict[str, str]:
        """MAC -> tap of a running guest (virsh domiflist)."""
        out = self.virsh("domiflist", domain).stdout
        found = {}
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 5:
                found[words[4].lower()] = words[0]
        return found

    def state(self, domain: str) -> str:
        proc = self.virsh("domstate", domain, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else "absent"

    def hook_calls(self) -> List[str]:
        """'vm1 migrate begin -' lines, in order (the logger's timestamps dropped)."""
        try:
            text = (self.root / "run" / "vv-hook-calls").read_text()
        except FileNotFoundError:
            return []
        return [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "var-log-libvirt" / "libvirtd.log").read_text(errors="replace")
        except OSError:
            return "(no libvirtd log for %s)" % self.name
        return "--- %s libvirtd.log ---\n%s" % (self.name, "\n".join(text.splitlines()[-lines:]))


def switch_up(hosts: Sequence[Host]) -> None:
    """The switch namespace, each host's uplink into it, the migration link."""
    run(["ip", "netns", "del", SWITCH], check=False)
    run(["ip", "netns", "add", SWITCH])
    sw = ["ip", "-n", SWITCH]
    run(sw + ["link", "set", "lo", "up"])
    run(sw + ["link", "add", "swbr", "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    run(sw + ["link", "set", "swbr", "up"])
    for vid in (5, 7):
        run(sw + ["link", "add", "link", "swbr", "name", "swbr.%d" % vid, "type", "vlan",
                  "id", str(vid)])
        run(sw + ["link", "set", "swbr.%d" % vid, "up"])
    for host in hosts:
        port = "sw" + host.name[-1]
        run(["ip", "-n", host.name, "link", "add", "vvup", "type", "veth", "peer", "name",
             port, "netns", SWITCH])
        run(["ip", "-n", host.name, "link", "set", "vvup", "up"])
        run(sw + ["link", "set", port, "master", "swbr", "up"])
    a, b = hosts
    run(["ip", "-n", a.name, "link", "add", "vvmig", "type", "veth", "peer", "name", "vvmig",
         "netns", b.name])
    for host in hosts:
        run(["ip", "-n", host.name, "addr", "add", host.address + "/24", "dev", "vvmig"])
        run(["ip", "-n", host.name, "link", "set", "vvmig", "up"])


def switch_down() -> None:
    run(["ip", "netns", "del", SWITCH], check=False)


# --- guests --------------------------------------------------------------------------

def domain_xml(name: str, nics: Sequence[tuple], vv: Sequence[str], acpi: bool = False) -> str:
    """A tiny diskless TCG guest; nics: (mac, source bridge)."""
    meta = ("  <metadata>\n    <vv:vlan xmlns:vv='%s'>\n%s    </vv:vlan>\n  </metadata>\n"
            % (NS, "".join("      %s\n" % e for e in vv))) if vv else ""
    ifaces = "".join("    <interface type='bridge'>\n      <mac address='%s'/>\n      <source "
                     "bridge='%s'/>\n      <model type='virtio'/>\n    </interface>\n" % nic
                     for nic in nics)
    return ("<domain type='qemu'>\n  <name>%s</name>\n%s  <memory unit='MiB'>64</memory>\n"
            "  <vcpu>1</vcpu>\n  <os><type arch='x86_64'>hvm</type></os>\n%s  <devices>\n%s"
            "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n"
            "  </devices>\n</domain>\n" % (name, meta,
                                          "  <features><acpi/></features>\n" if acpi else "",
                                          ifaces))


def migrate(src: Host, dst: Host, domain: str, *extra: str, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Client-driven live migration (virsh talks to both daemons)."""
    return src.virsh("migrate", "--live", *extra, domain, dst.uri,
                     "--migrateuri", "tcp://%s" % dst.address, check=check, timeout=timeout)


# --- frames: the VLAN stand-ins send, each host's sniffer counts -------------------------

SENDER = textwrap.dedent("""\
    import socket, sys, time
    dst = bytes.fromhex(sys.argv[1].replace(":", ""))
    socks = []
    for vid in (5, 7):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("swbr.%d" % vid, 0))
        socks.append((s, b"vv%d" % vid))
    frame = lambda s, tag: dst + s.getsockname()[4] + b"\\x88\\xb5" + tag + bytes(43)
    while True:
        for s, tag in socks:
            s.send(frame(s, tag))
        time.sleep(0.01)
""")

# Frames to MAC going *to* a guest tap (outgoing on vnet*): first and last
# CLOCK_MONOTONIC time and count per (tap, tag, tagged), written on SIGTERM.
SNIFFER = textwrap.dedent("""\
    import json, signal, socket, sys, time
    dst = bytes.fromhex(sys.argv[1].replace(":", ""))
    out = sys.argv[2]
    seen = {}
    def dump(*_):
        with open(out, "w") as f:
            json.dump([[k[0], k[1], k[2], v[0], v[1], v[2]] for k, v in seen.items()], f)
        sys.exit(0)
    signal.signal(signal.SIGTERM, dump)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    open(out + ".ready", "w").close()
    while True:
        data, addr = s.recvfrom(2048)
        now = time.monotonic()
        if addr[2] != 4 or not addr[0].startswith("vnet") or data[:6] != dst:
            continue
        tagged = data[12:14] == b"\\x81\\x00"
        tag = (data[18:21] if tagged else data[14:17]).decode("ascii", "replace")
        key = (addr[0], tag, tagged)
        first, last, count = seen.get(key, (now, now, 0))
        seen[key] = (first, now, count + 1)
""")


class Traffic:
    """The VLAN 5 and 7 stand-ins send to `mac` every 10 ms; a sniffer in
    each host records frames reaching that host's guest taps."""

    def __init__(self, hosts: Sequence[Host], mac: str, workdir: Path) -> None:
        self.hosts, self.mac, self.workdir = hosts, mac, workdir
        self.procs: List[subprocess.Popen] = []

    def __enter__(self) -> "Traffic":
        for host in self.hosts:
            out = self.workdir / ("sniff-%s.json" % host.name)
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", host.name, str(PYTHON), "-c", SNIFFER, self.mac,
                 str(out)]))
            wait_for(lambda: Path(str(out) + ".ready").exists(), 300,
                     "the sniffer on %s" % host.name)
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", SWITCH, str(PYTHON), "-c", SENDER, self.mac]))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def seen(self, host: Host) -> List[list]:
        """[tap, tag, tagged, first, last, count] per kind of frame seen."""
        path = self.workdir / ("sniff-%s.json" % host.name)
        return json.loads(path.read_text())


def python_exe() -> str:
    return sys.executable
