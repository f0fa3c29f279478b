#!/usr/bin/env python3
"""Hot-plug benchmark: time from `virsh attach-interface` to the tap on its VLAN bridge.

Prints figures, asserts nothing (`make bench`). Runs INSIDE the test VM as
root: it brings up libvirtd with the hooks (tests/vm/libvirt-up) and a
scratch uplink, starts `virt-vlan agent`, then, for each run, hot-plugs a
tagged NIC (access VLAN 5) whose <source bridge> is a parking bridge into a
paused q35 guest and watches sysfs until that NIC's tap (found by its MAC)
has br05 as its master. Each run plugs a new NIC (a guest without an OS never
completes a hot-unplug, see tests/e2e/test_agent.py), so the guest has as
many spare PCIe root ports as runs.

Figures per run: attach-to-wired (from launching virsh to the tap on br05)
and how long the tap was seen on the parking bridge (<source bridge>), the
window in which a guest would talk on the wrong network.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VIRT_VLAN = os.path.join(REPO, ".venv", "bin", "virt-vlan")
LIBVIRT_UP = os.path.join(REPO, "tests", "vm", "libvirt-up")
URI = "qemu:///system"
UPLINK, PEER = "vvhpup", "vvhpsw"
PARK, BRIDGE = "vvhppark", "br05"
NAME = "vv-hotplug-bench"
MAX_RUNS = 8


def mac(run: int) -> str:
    return "52:54:00:be:0f:%02x" % (run + 1)



CONFIG = "[global]\nlock-timeout = 900\n\n[uplink hp]\ndevice = %s\nallowed-vlans = 5\n" % UPLINK
DOMAIN = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
%s    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (NAME, "".join("    <controller type='pci' index='%d' model='pcie-root-port'/>\n" % i
                     for i in range(1, MAX_RUNS + 1)))


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit("bench: %s failed (%d): %s" % (" ".join(args), done.returncode,
                                                        done.stderr.strip()))
    return done


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("virsh", "-q", "-c", URI, *args, check=check)


def tap_of(nic_mac: str) -> Optional[str]:
    """The host tap of the guest NIC `nic_mac`: libvirt gives a tap the
    guest's MAC with the first byte set to 0xfe (so the bridge never takes
    the guest's address as its own)."""
    wanted = "fe" + nic_mac[2:]
    for name in os.listdir("/sys/class/net"):
        try:
            with open("/sys/class/net/%s/address" % name) as handle:
                if handle.read().strip() == wanted:
                    return name
        except OSError:
            continue
    return None


def master_of(dev: str) -> Optional[str]:
    try:
        return os.path.basename(os.readlink("/sys/class/net/%s/master" % dev))
    except OSError:
        return None


def one_run(run: int, timeout: float) -> "tuple[float, float, float]":
    """(attach-to-wired, virsh attach-interface duration, time seen on PARK), seconds.
    Follows this run's own tap (found by its MAC), never another port of BRIDGE."""
    start = time.monotonic()
    proc = subprocess.Popen(["virsh", "-q", "-c", URI, "attach-interface", NAME, "bridge", PARK,
                             "--mac", mac(run), "--model", "virtio", "--live"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    virsh_done: Optional[float] = None
    parked: Optional[float] = None
    tap: Optional[str] = None
    while True:
        now = time.monotonic()
        if virsh_done is None and proc.poll() is not None:
            virsh_done = now
            if proc.returncode != 0:
                raise SystemExit("bench: attach-interface failed: %s" % proc.stderr.read())
        if tap is None:
            tap = tap_of(mac(run))
        master = master_of(tap) if tap is not None else None
        if parked is None and master == PARK:
            parked = now
        if master == BRIDGE:
            wired = now
            break
        if now - start > timeout:
            raise SystemExit("bench: the tap of %s was not on %s within %.0f s (tap %s, on %s)"
                             % (mac(run), BRIDGE, timeout, tap, master))
        time.sleep(0.001)
    proc.wait()
    if virsh_done is None:
        virsh_done = time.monotonic()
    on_park = (wired - parked) if parked is not None else 0.0
    return wired - start, virsh_done - start, on_park


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if os.geteuid() != 0 or os.environ.get("VIRT_VLAN_IN_VM") != "1":
        raise SystemExit("bench: runs inside the test VM as root (make bench)")
    work = tempfile.mkdtemp(prefix="vv-hotplug-")
    agent: Optional[subprocess.Popen] = None
    try:
        if not os.path.exists("/sys/class/net/" + UPLINK):
            sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", PEER)
        for dev in (UPLINK, PEER):
            sh("ip", "link", "set", dev, "up")
        sh("ip", "link", "add", PARK, "type", "bridge", check=False)
        sh("ip", "link", "set", PARK, "up")
        conf = os.path.join(work, "virt-vlan.conf")
        with open(conf, "w") as handle:
            handle.write(CONFIG)
        print("bench: starting libvirtd (the first boot probes QEMU for minutes)",
              file=sys.stderr, flush=True)
        sh(LIBVIRT_UP, conf)
        xml = os.path.join(work, "domain.xml")
        with open(xml, "w") as handle:
            handle.write(DOMAIN)
        virsh("define", xml)
        virsh("start", "--paused", NAME)
        virsh("metadata", NAME, "urn:virt-vlan:1", "--key", "vv", "--set",
              "<vlan>%s</vlan>" % "".join("<interface mac='%s' mode='access' vlan='5'/>" % mac(i)
                                          for i in range(MAX_RUNS)), "--live")
        log_path = os.path.join(work, "agent.log")
        with open(log_path, "w") as log:
            agent = subprocess.Popen([VIRT_VLAN, "agent", "-c", URI], stdout=subprocess.DEVNULL,
                                     stderr=log)
        deadline = time.monotonic() + args.timeout
        while "reconcile done" not in open(log_path).read():
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the agent did not come up:\n%s" % open(log_path).read())
            time.sleep(0.2)
        samples = []
        for run in range(min(args.runs, MAX_RUNS)):
            sample = one_run(run, args.timeout)
            samples.append(sample)
            print("bench: run %d: attach-to-wired %.0f ms (virsh returned after %.0f ms, "
                  "on %s for %.0f ms)" % (run + 1, sample[0] * 1000, sample[1] * 1000, PARK,
                                          sample[2] * 1000), file=sys.stderr, flush=True)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(120)
        virsh("destroy", NAME, check=False)
        virsh("undefine", NAME, check=False)
        sh("ip", "link", "del", PARK, check=False)
    print("hot-plug, %d runs (ms); kernel %s, Python %s, %s" % (
        len(samples), os.uname().release, sys.version.split()[0],
        "inside the test VM (TCG)" if os.environ.get("VIRT_VLAN_IN_VM") == "1" else "on a host"))
    for label, index in (("attach-interface to tap on its VLAN bridge", 0),
                         ("virsh attach-interface returned after", 1),
                         ("tap seen on <source bridge> for", 2)):
        values = [s[index] * 1000 for s in samples]
        print("  %-44s median %8.0f  min %8.0f  max %8.0f"
              % (label, statistics.median(values), min(values), max(values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
