#!/usr/bin/env python3
"""What port security adds to a tap plug, natively: prints medians, asserts nothing.

Runs as root in a scratch network namespace (created here, deleted at the
end) on any kernel with bridges, veth and nf_tables' bridge family (no
802.1Q needed): an admin's trunk bridge br0 without VLAN filtering with a
veth uplink, a parking bridge, one veth "tap". Each run parks the tap
(untimed), then times one in-process plan-and-apply of the tap onto br0
(engine.wire, what a served hook call or the agent runs): without port
security, and with it (the snapshot also reads virt-vlan's nftables table,
the plan adds the port's filter chain, one nft transaction, and the
read-back for verification), the transaction written in process by
libnftables (what virt-vlan does when the library loads) and, for
comparison, by an `nft -f -` process (its fallback). Runs alternate, so a
shared machine's load falls on all alike. The issue's goal: protection
adds under 10% of a served call.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))

NS = "vvpsbench"
INNER = "VIRT_VLAN_BENCH_PS"
MAC = "52:54:00:00:be:01"
CONFIG = """[uplink up0]
wiring = trunk
trunk-bridge = br0
trunk-filtering = no
allowed-vlans = 5,7
port-security = %s
"""


def sh(*argv: str, stdin: str = "") -> None:
    subprocess.run(argv, input=stdin.encode(), check=True, stdout=subprocess.DEVNULL)


def cpu_time() -> float:
    """CPU seconds of this process and its waited-for children (an nft process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def inner(runs: int) -> None:
    from virtvlan.apply import engine
    from virtvlan.apply import executor  # noqa: F401 - imported once, as a served call has it
    from virtvlan.model import TRUNK, Protection, Want
    from virtvlan.parse import config as cfg

    sh("ip", "-batch", "-", stdin="\n".join([
        "link set lo up", "link add up0 type veth peer name up0p", "link set up0p up",
        "link add br0 type bridge stp_state 0 forward_delay 0", "link set br0 up",
        "link set up0 master br0 up", "link add park type bridge", "link set park up",
        "link add vnet0 type veth peer name vnet0p", "link set vnet0p up",
        "link set vnet0 master park up"]) + "\n")
    work = tempfile.mkdtemp(prefix="vvps")
    os.environ["VIRT_VLAN_RUN_DIR"] = work
    os.environ["VIRT_VLAN_LOCK"] = os.path.join(work, "lock")
    configs = {}
    for on in (False, True):
        path = os.path.join(work, "on.conf" if on else "off.conf")
        with open(path, "w") as handle:
            handle.write(CONFIG % ("yes" if on else "no"))
        configs[on] = cfg.load(path)
    from virtvlan.host import nftwrite

    if nftwrite.library() is None:
        print("port_security.py: %s cannot be loaded: both protected figures are `nft -f -`"
              % nftwrite.LIBRARY, file=sys.stderr)
    in_process = nftwrite.run_script
    kinds = ("off", "libnftables", "nft process")
    times = {kind: [] for kind in kinds}
    cpu = {kind: [] for kind in kinds}
    for number in range(runs):
        for kind in kinds:
            on = kind != "off"
            sh("ip", "link", "set", "vnet0", "master", "park")
            if on:  # a fresh tap: its chain is gone (the table stays, as on a busy host)
                subprocess.run(["nft", "delete", "chain", "bridge", "virt_vlan", "port-vnet0"],
                               stderr=subprocess.DEVNULL)
                subprocess.run(["nft", "delete", "element", "bridge", "virt_vlan", "ports",
                                '{ "vnet0" }'], stderr=subprocess.DEVNULL)
            # The executor calls nftwrite.run_script: pointed at the process for that kind.
            nftwrite.run_script = nftwrite.run_script_nft if kind == "nft process" else in_process
            want = Want(uplink="up0", mode=TRUNK, vlans=(5, 7), port="vnet0", who="bench",
                        protection=Protection(mac=MAC) if on else None)
            start, start_cpu = time.perf_counter(), cpu_time()
            engine.wire([want], configs[on], why="bench")
            took, took_cpu = time.perf_counter() - start, cpu_time() - start_cpu
            if number:  # the first of each is a warm-up
                times[kind].append(took)
                cpu[kind].append(took_cpu)
    nftwrite.run_script = in_process
    print("port security, %s (median of %d runs each; wall clock, and in brackets this "
          "process's CPU time and its children's, which a loaded machine's waits do not inflate):" % (
              "native, in a scratch network namespace", runs - 1))
    off, off_cpu = statistics.median(times["off"]), statistics.median(cpu["off"])
    print("  tap plug onto br0, in process (a served call's work): %.1f ms [%.1f ms]"
          % (off * 1000, off_cpu * 1000))
    # A served call is at least the drop-in's interpreter start (python -IS,
    # as the drop-in runs) plus this in-process work: the goal's yardstick.
    starts = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run([sys.executable, "-IS", "-c", "pass"], check=True)
        starts.append(time.perf_counter() - begin)
    served = statistics.median(starts) + off
    print("  a served call, at least (a bare python -IS start %.1f ms + that work): %.1f ms"
          % (statistics.median(starts) * 1000, served * 1000))
    for kind in kinds[1:]:
        on, on_cpu = statistics.median(times[kind]), statistics.median(cpu[kind])
        print("  with port security, chain written by %-12s %.1f ms (%+.1f ms, %+.0f%%) "
              "[%.1f ms (%+.1f ms, %+.0f%%)]; %+.0f%% of a served call (goal under +10%%)"
              % (kind + ":", on * 1000, (on - off) * 1000, (on - off) / off * 100,
                 on_cpu * 1000, (on_cpu - off_cpu) * 1000, (on_cpu - off_cpu) / off_cpu * 100,
                 (on - off) / served * 100))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    if os.environ.get(INNER):
        inner(args.runs)
        return 0
    if os.geteuid() != 0:
        print("port_security.py: needs root (a scratch network namespace)", file=sys.stderr)
        return 1
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", NS)
    try:
        return subprocess.run(["ip", "netns", "exec", NS, sys.executable] + sys.argv,
                              env=dict(os.environ, **{INNER: "1"})).returncode
    finally:
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
