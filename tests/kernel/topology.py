"""A switch, a host and guests in network namespaces, for test_scenarios.py.

    sw (switch)                host (runs virt-vlan)             guests
    eth0.5  10.5.0.1/24        eth0  <- uplink (or bond0)        g1: eth0 <-> vnet1 (the "tap")
    eth0.7  10.7.0.1/24                                          g2: eth0 <-> vnet2 ...
    eth0 ------ veth ------ eth0

Everything is made with `ip` and checked with `ip -json` (the independent
oracle); virt-vlan itself runs inside the host namespace. Every namespace
gets a unique name and is deleted when the test ends, with whatever is in it.

virt-vlan runs through its CLI (`virt-vlan.cli.main`, the code behind the
`virt-vlan` command) in a process forked from the test process that has
entered the host namespace. Forking instead of exec'ing the script matters
in the test VM: there the root filesystem is 9p under TCG, where starting a
fresh interpreter and importing pyroute2 costs minutes, not milliseconds.
`Lab.vv(..., exec_cli=True)` runs the installed script under
`ip netns exec` instead (a real, fresh process; used where the command line
contract itself is the point).
"""

import ctypes
import io
import itertools
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

RUN_IN_VM = ("the scenario tests need root and a kernel with 802.1Q, bridges, veth and "
             "bonding, which this machine's kernel lacks: run them with `make test` "
             "(or `tests/vm/run .venv/bin/python -m pytest tests/kernel`)")

VV_BIN = os.path.join(os.path.dirname(sys.executable), "virt-vlan")
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)

# The switch's addresses: one per VLAN, in that VLAN's own subnet. A guest
# given an address in both subnets proves which VLAN it is on (see
# Lab.build: the switch answers ARP only on the VLAN the address is on).
SW5, SW7, SW_UNTAGGED = "10.5.0.1", "10.7.0.1", "10.9.0.1"
HOST_IP = "10.9.0.2"


def require_vm() -> None:
    """Fail (never skip) unless we run where VLAN devices can be made.

    That is the test VM (tests/vm/run sets VIRT_VLAN_IN_VM=1), or the
    runner's opt-in VIRT_VLAN_VM_DIRECT=1 on a root host with 802.1Q.
    """
    if os.environ.get("VIRT_VLAN_IN_VM") == "1":
        return
    if os.environ.get("VIRT_VLAN_VM_DIRECT") == "1" and os.geteuid() == 0:
        probe = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link add vvp0 type veth peer name vvp1 && "
             "ip link add link vvp0 name vvp0.5 type vlan id 5"], capture_output=True)
        if probe.returncode == 0:
            return
    pytest.fail(RUN_IN_VM, pytrace=False)


# -- running things -----------------------------------------------------------

def run(*cmd: str, check: bool = True, input: Optional[str] = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail("`%s` failed (exit %d): %s" % (" ".join(cmd), proc.returncode,
                                                  (proc.stderr or proc.stdout).strip()))
    return proc


def ip(ns: str, *args: str) -> str:
    return run("ip", "-n", ns, *args).stdout


def ip_batch(ns: str, lines: Iterable[str]) -> None:
    """Several `ip` commands in one exec (`ip -n NS -batch -`)."""
    text = "".join(line + "\n" for line in lines)
    if text:
        run("ip", "-n", ns, "-batch", "-", input=text)


def ip_json(ns: str, *args: str) -> Any:
    out = ip(ns, "-json", *args).strip()
    return json.loads(out) if out else []


def links(ns: str) -> Dict[str, Dict[str, Any]]:
    """`ip -d -json link show` of `ns`, by name."""
    return {link["ifname"]: link for link in ip_json(ns, "-d", "link", "show")}


def _strip_volatile(value: Any) -> Any:
    """Drop what changes by itself over time: counters and bridge timers."""
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items()
                if k not in ("stats", "stats64") and not k.endswith("_timer")}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


# Lifetimes count down; IPv6 duplicate address detection clears "tentative"
# a moment after a link comes up.
_CARRIER_VOLATILE = ("operstate", "carrier_changes", "carrier_up_count", "carrier_down_count")
_CARRIER_FLAGS = ("NO-CARRIER", "LOWER_UP", "DORMANT", "M-DOWN")
_ADDR_VOLATILE = ("valid_life_time", "preferred_life_time", "tentative", "optimistic")


def settled_links(ns: str, timeout: float = 120) -> Dict[str, Dict[str, Any]]:
    """links(ns) once the kernel has caught up with every carrier change.

    A veth's carrier flag (LOWER_UP) is set at once when its peer comes up,
    but the kernel announces the change later, from its linkwatch work
    (net/core/link_watch.c, delayed up to a second, longer under TCG). Only
    then, under the same rtnl lock, does it set operstate UP, move a bridge
    port from "disabled" to "forwarding" and add the IPv6 link-local address.
    A snapshot taken in between sees those appear afterwards, as if virt-vlan
    had made them (seen on CI). Waiting until no link with LOWER_UP still
    has a stale operstate closes that window; gives up after `timeout` and
    returns what it sees (the diff then names the link)."""
    deadline = time.monotonic() + timeout
    while True:
        now = links(ns)
        pending = [name for name, link in now.items()
                   if {"UP", "LOWER_UP"} <= set(link.get("flags", ()))
                   and link.get("operstate") not in ("UP", "UNKNOWN")]
        if not pending or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def host_state(ns: str) -> Dict[str, Any]:
    """Everything about a namespace's links, addresses and routes that a
    test may require to be unchanged (`ip -d -json`, minus counters/timers),
    read once carrier changes have settled (settled_links)."""

    def addr(entry: Dict[str, Any], info: Dict[str, Any]) -> str:
        kept = {k: v for k, v in info.items() if k not in _ADDR_VOLATILE}
        return json.dumps(dict(kept, dev=entry["ifname"]), sort_keys=True)

    def route_keys(*args: str) -> List[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in ip_json(ns, *args)
                      if not r.get("dst", "").startswith(("fe80", "ff00")))

    def link_state(link: Dict[str, Any]) -> Dict[str, Any]:
        # Carrier follows the veth peer and settles after `link set up` on
        # its own time (NO-CARRIER -> LOWER_UP seen mid-test); virt-vlan sets
        # the admin flag UP, which stays compared.
        kept = {k: v for k, v in _strip_volatile(link).items()
                if k not in _CARRIER_VOLATILE}
        if "flags" in kept:
            kept["flags"] = [f for f in kept["flags"] if f not in _CARRIER_FLAGS]
        return kept

    return {
        "links": {name: link_state(link) for name, link in settled_links(ns).items()},
        "addrs": sorted(addr(entry, info) for entry in ip_json(ns, "addr", "show")
                        for info in entry.get("addr_info", [])),
        "routes4": route_keys("-4", "route", "show"),
        "routes6": route_keys("-6", "route", "show"),
    }


def state_diff(before: Dict[str, Any], after: Dict[str, Any]) -> str:
    """A readable description of what changed ('' when nothing did)."""
    out = []
    bl, al = before["links"], after["links"]
    for name in sorted(set(bl) - set(al)):
        out.append("link %s disappeared" % name)
    for name in sorted(set(al) - set(bl)):
        out.append("link %s appeared: %s" % (name, json.dumps(al[name])[:300]))
    for name in sorted(set(bl) & set(al)):
        if bl[name] != al[name]:
            keys = sorted(k for k in set(bl[name]) | set(al[name])
                          if bl[name].get(k) != al[name].get(k))
            out.append("link %s changed: %s" % (name, "; ".join(
                "%s: %s -> %s" % (k, json.dumps(bl[name].get(k))[:200],
                                  json.dumps(al[name].get(k))[:200]) for k in keys)))
    for key in ("addrs", "routes4", "routes6"):
        gone = sorted(set(before[key]) - set(after[key]))
        new = sorted(set(after[key]) - set(before[key]))
        if gone or new:
            out.append("%s: removed %s, added %s" % (key, gone, new))
    return "\n".join(out)


def _setns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/%s" % name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (name, os.strerror(err)))
    finally:
        os.close(fd)


def _child_stdio(out_path: str, err_path: str) -> None:
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    # pytest's log capture handlers live on the root logger: drop them so the
    # CLI's logging.basicConfig writes to our stderr as it would standalone.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Result:
    """A finished virt-vlan run: exit status, stdout, stderr."""

    def __init__(self, argv: Sequence[str], rc: int, out: str, err: str) -> None:
        self.argv, self.rc, self.out, self.err = list(argv), rc, out, err

    def __repr__(self) -> str:
        return "virt-vlan %s -> exit %d, stdout %r, stderr %r" % (
            " ".join(self.argv), self.rc, self.out, self.err)


class Forked:
    """`virt-vlan ARGV` (cli.main) running in a forked child inside a netns."""

    def __init__(self, netns: str, argv: Sequence[str], env: Dict[str, str],
                 workdir: Path) -> None:
        n = next(_counter)
        self.argv = list(argv)
        self.out_path = str(workdir / ("vv-%d.out" % n))
        self.err_path = str(workdir / ("vv-%d.err" % n))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            rc = 70
            try:
                _child_stdio(self.out_path, self.err_path)
                _setns(netns)
                os.environ.update(env)
                sys.argv = ["virt-vlan"] + self.argv
                from virtvlan.cli.main import main as cli_main
                try:
                    rc = cli_main(self.argv)
                except SystemExit as stop:  # argparse: usage errors exit 2
                    rc = stop.code if isinstance(stop.code, int) else (0 if stop.code is None
                                                                       else 1)
            except BaseException:  # noqa: B902 - report anything, then exit
                traceback.print_exc()
                rc = 70
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(rc)
        self.pid = pid
        self.rc: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.rc is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def wait(self, timeout: float = 300) -> Result:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("virt-vlan %s did not finish within %g s"
                            % (" ".join(self.argv), timeout))
            time.sleep(0.01)
        return Result(self.argv, self.rc, Path(self.out_path).read_text(),
                      Path(self.err_path).read_text())

    def kill(self) -> None:
        if self.rc is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.rc = -9


def call_in_netns(netns: str, func: Callable[..., Any], *args: Any) -> Any:
    """func(*args) evaluated in a forked child inside `netns` (picklable result)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            _setns(netns)
            payload = pickle.dumps(("ok", func(*args)))
        except BaseException as err:  # noqa: B902
            payload = pickle.dumps(("error", "%s\n%s" % (err, traceback.format_exc())))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status != "ok":
        pytest.fail("in netns %s: %s" % (netns, value))
    return value


def _write_sysctls(values: Dict[str, str]) -> None:
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as handle:
            handle.write(value)


# -- traffic ------------------------------------------------------------------

def ping(ns: str, addr: str, count: int = 3, wait: float = 2) -> bool:
    """True when `addr` answers at least one of `count` pings from `ns`."""
    proc = run("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2",
               "-W", str(wait), addr, check=False)
    return proc.returncode == 0


def reachable(ns: str, addr: str, tries: int = 5) -> bool:
    """Positive check, patient with a slow (emulated) machine: ARP, first frames."""
    for _ in range(tries):
        if ping(ns, addr, count=2):
            return True
    return False


def unreachable(ns: str, addr: str) -> bool:
    """Negative check: no answer to 3 pings (only meaningful after a positive
    check from the same namespace has shown that its wiring works)."""
    return not ping(ns, addr, count=3, wait=1)


class _Background:
    """A helper process that Lab.close() stops if the test has not."""

    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Pinger(_Background):
    """`ping -i 0.1` in the background, from before a change until .result()
    stops it: the window covers the change however long it takes."""

    def __init__(self, ns: str, addr: str) -> None:
        self.proc = subprocess.Popen(
            # `ip netns exec` execs ping, so SIGINT reaches ping itself.
            ["ip", "netns", "exec", ns, "ping", "-n", "-i", "0.1", "-W", "2", addr],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, settle: float = 1.0, timeout: float = 120) -> Tuple[int, List[int], str]:
        """Stop the ping `settle` s from now: (sent, lost icmp_seq, summary).

        The last request may still be in flight when SIGINT ends ping (which
        then prints its statistics at once), so it never counts as lost.
        """
        time.sleep(settle)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=timeout)
        match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
        if not match:
            pytest.fail("cannot read ping statistics from:\n%s" % out)
        sent = int(match.group(1))
        answered = {int(seq) for seq in re.findall(r"icmp_seq=(\d+) ttl=", out)}
        lost = sorted(set(range(1, sent)) - answered)
        summary = "%d sent, lost icmp_seq %s (100 ms apart)" % (sent, lost or "none")
        return sent, lost, summary


class LinkMonitor(_Background):
    """`ip -n NS monitor link`, with marker links to bracket a time window."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.lines: List[str] = []
        self.proc = subprocess.Popen(["ip", "-n", ns, "-o", "monitor", "link"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.marks = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def mark(self, timeout: float = 120) -> int:
        """Make a visible event (a veth pair comes and goes) and wait until the
        monitor has printed it; returns the line index of the mark. `ip
        monitor` subscribes a while after it starts (long on a loaded VM), so
        an unseen marker is repeated under a new name until one shows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.marks += 1
            name = "vvmark%d" % self.marks
            ip_batch(self.ns, ["link add %s type veth peer name %sp" % (name, name),
                               "link del %s" % name])
            retry = time.monotonic() + 2
            while time.monotonic() < min(retry, deadline):
                for number, line in enumerate(list(self.lines)):
                    if re.search(r"\b%s\b" % name, line):
                        return number
                time.sleep(0.05)
        pytest.fail("ip monitor never reported a marker link in %g s; it printed: %s"
                    % (timeout, self.lines[-5:]))

    def between(self, start: int, end: int) -> List[str]:
        """Event lines after mark `start` and before mark `end`, minus markers."""
        return [line for line in self.lines[start:end] if "vvmark" not in line]


# -- the lab ------------------------------------------------------------------

class Lab:
    """One test's namespaces, config and virt-vlan runs (see module doc)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = "vvs%d-%d" % (os.getpid() % 100000, next(_counter))
        self.namespaces: List[str] = []
        self.children: List[Any] = []
        self.conf = workdir / "virt-vlan.conf"
        self.env = {"VIRT_VLAN_LOCK": str(workdir / "lock"),
                    "VIRT_VLAN_RUN_DIR": str(workdir / "run")}
        self.sw = self.host = ""
        self.uplink = "eth0"

    # -- namespaces -----------------------------------------------------

    def netns(self, role: str) -> str:
        name = "%s-%s" % (self.tag, role)
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        return name

    def close(self) -> None:
        for child in self.children:
            try:
                child.stop() if hasattr(child, "stop") else child.kill()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces = []

    def sysctl(self, ns: str, **values: str) -> None:
        call_in_netns(ns, _write_sysctls, {k.replace("__", "."): v for k, v in values.items()})

    # -- the topology ---------------------------------------------------

    def build(self, wiring: str = "access", allowed: str = "5,7,100-110",
              host_ip: bool = False, bond: bool = False, extra_conf: str = "",
              switch_vlans: Sequence[int] = (5, 7)) -> "Lab":
        """Switch and host linked by a veth (`eth0` on both sides), and the
        config for virt-vlan. The switch has VLAN `V` as eth0.V with
        10.V.0.1/24; it answers ARP only for addresses on the receiving
        interface and drops packets whose source is not routed back through
        it (arp_ignore=1, rp_filter=1): a guest with an address in VLAN 7's
        subnet gets answers on VLAN 7 only, never across VLANs inside sw.
        `host_ip`: the host's own address 10.9.0.2/24 on untagged eth0 with
        its default route via the switch's 10.9.0.1. `bond`: the uplink is
        bond0 (active-backup) with eth0 as its slave."""
        require_vm()
        # Forked virt-vlan runs inherit these modules: import them once here,
        # not in every child (minutes each on the VM's 9p root under TCG).
        import virtvlan.apply.executor  # noqa: F401
        import virtvlan.cli.main  # noqa: F401
        import virtvlan.apply.engine  # noqa: F401
        self.sw = self.netns("sw")
        self.host = self.netns("host")
        self.sysctl(self.sw, **{"net.ipv4.conf.all.arp_ignore": "1",
                                "net.ipv4.conf.all.rp_filter": "1",
                                "net.ipv4.conf.default.arp_ignore": "1",
                                "net.ipv4.conf.default.rp_filter": "1"})
        ip(self.host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", self.sw)
        lines = ["link set eth0 up"]
        for vid in switch_vlans:
            lines += ["link add link eth0 name eth0.%d type vlan id %d" % (vid, vid),
                      "addr add 10.%d.0.1/24 dev eth0.%d" % (vid, vid),
                      "link set eth0.%d up" % vid]
        if host_ip:
            lines.append("addr add %s/24 dev eth0" % SW_UNTAGGED)
        ip_batch(self.sw, lines)
        lines = []
        if bond:
            lines += ["link add bond0 type bond mode active-backup miimon 100",
                      "link set eth0 master bond0", "link set bond0 up"]
            self.uplink = "bond0"
        lines.append("link set eth0 up")
        if host_ip:
            lines += ["addr add %s/24 dev eth0" % HOST_IP,
                      "route add default via %s dev eth0" % SW_UNTAGGED]
        ip_batch(self.host, lines)
        self.write_conf(wiring, allowed, extra_conf)
        return self

    def write_conf(self, wiring: str = "access", allowed: str = "5,7,100-110",
                   extra_conf: str = "") -> None:
        self.conf.write_text(textwrap.dedent("""\
            [global]
            lock-timeout = 600

            [uplink {uplink}]
            wiring = {wiring}
            allowed-vlans = {allowed}
            """).format(uplink=self.uplink, wiring=wiring, allowed=allowed) + extra_conf)

    def tap(self, tap: str, peer_ns: str, peer: str = "eth0") -> None:
        """A veth standing in for a guest's tap: `tap` in the host (up, as
        libvirt leaves it), `peer` in `peer_ns`."""
        self.taps([(tap, peer_ns, peer)])

    def taps(self, specs: Sequence[Tuple[str, str, str]]) -> None:
        """Several taps at once: (tap, peer namespace, peer name) each."""
        ip_batch(self.host, [line for tap, peer_ns, peer in specs for line in (
            "link add %s type veth peer name %s netns %s" % (tap, peer, peer_ns),
            "link set %s up" % tap)])

    def guest(self, name: str, tap: str, untagged: Sequence[str] = (),
              tagged: Dict[int, str] = None) -> str:
        """A guest namespace on `tap`; `untagged` addresses (CIDR) on its eth0
        (an access guest), `tagged` {VLAN: CIDR} on its own eth0.V (trunk)."""
        ns = self.netns(name)
        self.tap(tap, ns)
        lines = ["link set eth0 up"]
        lines += ["addr add %s dev eth0" % cidr for cidr in untagged]
        for vid, cidr in sorted((tagged or {}).items()):
            lines += ["link add link eth0 name eth0.%d type vlan id %d" % (vid, vid),
                      "addr add %s dev eth0.%d" % (cidr, vid), "link set eth0.%d up" % vid]
        ip_batch(ns, lines)
        return ns

    # -- virt-vlan ----------------------------------------------------------

    def vv_start(self, *args: str, env: Optional[Dict[str, str]] = None) -> Forked:
        child = Forked(self.host, ["--config", str(self.conf)] + list(args),
                       dict(self.env, **(env or {})), self.workdir)
        self.children.append(child)
        return child

    def vv(self, *args: str, env: Optional[Dict[str, str]] = None,
           exec_cli: bool = False) -> Result:
        """Run `virt-vlan --config CONF ARGS` in the host namespace."""
        if not exec_cli:
            return self.vv_start(*args, env=env).wait()
        argv = ["--config", str(self.conf)] + list(args)
        proc = subprocess.run(["ip", "netns", "exec", self.host, VV_BIN] + argv,
                              capture_output=True, text=True, timeout=1200,
                              env=dict(os.environ, **self.env, **(env or {})))
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, env: Optional[Dict[str, str]] = None) -> Result:
        """vv() that must succeed silently on stderr."""
        result = self.vv(*args, env=env)
        assert result.rc == 0, result
        assert result.err == "", result
        return result

    def plug(self, tap: str, access: Optional[int] = None, trunk: str = None) -> Result:
        mode = ["--access", str(access)] if access is not None else ["--trunk", trunk]
        return self.ok("plug", tap, *mode)

    def unplug(self, tap: str) -> Result:
        return self.ok("unplug", tap)

    def plan_length(self, port: str, mode: str, vlans: Tuple[int, ...]) -> int:
        """How many actions virt-vlan would run for this plug now (in-process
        planner on a snapshot of the host namespace)."""
        return call_in_netns(self.host, _plan_length, str(self.conf), port, mode, vlans)

    # -- oracle ---------------------------------------------------------------

    def links(self, ns: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        return links(ns or self.host)

    def state(self) -> Dict[str, Any]:
        return host_state(self.host)


def _plan_length(conf: str, port: str, mode: str, vlans: Tuple[int, ...]) -> int:
    from virtvlan.apply import executor as apply
    from virtvlan.parse import config
    from virtvlan.plan import planner as plan
    from virtvlan.model import Want

    cfg = config.load(conf)
    assert cfg is not None
    want = Want(uplink=cfg.uplinks[0].name, mode=mode, vlans=tuple(vlans), port=port,
                who="test")
    return len(plan.plan([want], cfg, apply.read_snapshot()))


# -- assertions on `ip -json` output ----------------------------------------------

def kind(link: Dict[str, Any]) -> Optional[str]:
    return link.get("linkinfo", {}).get("info_kind")


def vlan_of(link: Dict[str, Any]) -> Tuple[Optional[str], Optional[int]]:
    """(parent, VLAN id) of a VLAN link."""
    return link.get("link"), link.get("linkinfo", {}).get("info_data", {}).get("id")


def ports(all_links: Dict[str, Dict[str, Any]], bridge: str) -> List[str]:
    return sorted(name for name, link in all_links.items() if link.get("master") == bridge)


def managed(link: Dict[str, Any]) -> bool:
    return link.get("ifalias") == "virt-vlan:managed"


def assert_access_wired(all_links: Dict[str, Dict[str, Any]], parent: str, vid: int,
                        bridge: str, feed: str, guests: Sequence[str],
                        ours: bool = True) -> None:
    """`feed` is VLAN `vid` on `parent`, the only non-guest port of `bridge`,
    which has exactly `guests` besides it; both carry our mark iff `ours`."""
    assert feed in all_links, "feed %s missing; links: %s" % (feed, sorted(all_links))
    assert bridge in all_links, "bridge %s missing; links: %s" % (bridge, sorted(all_links))
    assert kind(all_links[feed]) == "vlan", all_links[feed]
    assert vlan_of(all_links[feed]) == (parent, vid), all_links[feed]
    assert all_links[feed].get("master") == bridge, all_links[feed]
    assert kind(all_links[bridge]) == "bridge", all_links[bridge]
    assert ports(all_links, bridge) == sorted([feed] + list(guests))
    for name in (feed, bridge):
        assert managed(all_links[name]) == ours, (name, all_links[name].get("ifalias"))
        assert "UP" in all_links[name]["flags"], all_links[name]
    for guest in guests:
        assert "UP" in all_links[guest]["flags"], all_links[guest]


# -- VLAN filtering (test_filtering.py) ------------------------------------------
#
# The filtering lab: the switch has VLANs 5, 7, 9 and 10 (10.V.0.1/24 on
# eth0.V) and an untagged address 10.99.0.1/24 on eth0; the host's uplink
# eth0 is trunk-wired into br0, the host has 10.99.0.2/24 untagged (moved to
# br0) and 10.10.0.2/24 on br0.10 (host VLAN 10). Guests may ask for 5, 7, 9.

SW_NATIVE, HOST_NATIVE = "10.99.0.1", "10.99.0.2"
SW9, SW10, HOST_V10 = "10.9.0.1", "10.10.0.1", "10.10.0.2"
FILTER_VLANS = (5, 7, 9, 10)
_STRICT_ARP = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.rp_filter": "1",
               "net.ipv4.conf.default.arp_ignore": "1",
               "net.ipv4.conf.default.rp_filter": "1"}

# One bridge VLAN entry as the tests compare it: "T" tagged member, "PU" PVID
# with egress untagged, "P" PVID sent tagged, "U" untagged, not the PVID.
Entries = Dict[int, str]


def entries(tagged: Iterable[int] = (), pvid: Optional[int] = None,
            untagged: bool = True) -> Entries:
    """The expected VLAN table of one port: `tagged` VIDs plus a PVID."""
    table = {vid: "T" for vid in tagged}
    if pvid is not None:
        table[pvid] = "PU" if untagged else "P"
    return table


def _entry_flags(flags: Sequence[str]) -> str:
    return ("P" if "PVID" in flags else "") + ("U" if "Egress Untagged" in flags else "") or "T"


def bridge_vlan_json(ns: str, *args: str, compressed: bool = False) -> List[Dict[str, Any]]:
    """`bridge [-compressvlans] -json vlan show ARGS` in `ns` (the independent oracle)."""
    cmd = ["ip", "netns", "exec", ns, "bridge"] + (["-compressvlans"] if compressed else []) + \
        ["-json", "vlan", "show"] + list(args)
    out = run(*cmd).stdout.strip()
    return json.loads(out) if out else []


def bridge_vlans(ns: str) -> Dict[str, Entries]:
    """Every device's VLAN table per `bridge -json vlan show`, ranges expanded."""
    tables: Dict[str, Entries] = {}
    for dev in bridge_vlan_json(ns):
        table = tables.setdefault(dev["ifname"], {})
        for vlan in dev.get("vlans", []):
            for vid in range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1):
                table[vid] = _entry_flags(vlan.get("flags", []))
    return tables


def bridge_ranges(ns: str, dev: str) -> List[Tuple[int, int, str]]:
    """(first, last, flags) as `bridge -compressvlans -json vlan show dev DEV` prints them:
    the compressed dump, where a programmed range comes back as one entry."""
    out = []
    for item in bridge_vlan_json(ns, "dev", dev, compressed=True):
        if item["ifname"] != dev:
            continue
        for vlan in item.get("vlans", []):
            out.append((vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]),
                        _entry_flags(vlan.get("flags", []))))
    return out


def show_entries(table: Entries) -> str:
    """A table as short text for messages: 1:PU 5-7:T 10:T."""
    parts: List[str] = []
    for vid in sorted(table):
        if parts and parts[-1][1] == vid - 1 and parts[-1][2] == table[vid]:
            parts[-1] = (parts[-1][0], vid, table[vid])
        else:
            parts.append((vid, vid, table[vid]))
    return " ".join(("%d" % a if a == b else "%d-%d" % (a, b)) + ":" + f for a, b, f in parts)


def vlan_filtering(ns: str, bridge: str) -> Optional[int]:
    """The bridge's vlan_filtering per `ip -d -json link`."""
    return links(ns)[bridge].get("linkinfo", {}).get("info_data", {}).get("vlan_filtering")


def default_pvid(ns: str, bridge: str) -> Optional[int]:
    return links(ns)[bridge].get("linkinfo", {}).get("info_data", {}).get("vlan_default_pvid")


class FilterLab(Lab):
    """The filtering lab (see above); every test keeps two pings of the host
    (untagged and on br0.10) running from the switch from build() to
    check_host_pings()."""

    bridge = "br0"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.pingers: Dict[str, Pinger] = {}
        self.allowed = "5,7,9"
        self.filtering_key = ""

    def build_filtering(self, allowed: str = "5,7,9", adopted: bool = False,
                        trunk_filtering: Optional[bool] = None) -> "FilterLab":
        """Switch, host and config. `adopted`: the host's network config made
        br0 (no VLAN filtering) with eth0, the untagged address and br0.10,
        before virt-vlan ever runs; otherwise virt-vlan makes br0 and br0.10 at
        a bootstrap plug/unplug of a scratch tap. Either way the host's two
        addresses answer the switch when this returns, and the pings run."""
        require_vm()
        import virtvlan.apply.executor  # noqa: F401
        import virtvlan.cli.main  # noqa: F401
        import virtvlan.apply.engine  # noqa: F401
        self.allowed = allowed
        self.sw = self.netns("sw")
        self.host = self.netns("host")
        self.sysctl(self.sw, **{k.replace(".", "__"): v for k, v in _STRICT_ARP.items()})
        ip(self.host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", self.sw)
        lines = ["link set eth0 up", "addr add %s/24 dev eth0" % SW_NATIVE]
        for vid in FILTER_VLANS:
            lines += ["link add link eth0 name eth0.%d type vlan id %d" % (vid, vid),
                      "addr add 10.%d.0.1/24 dev eth0.%d" % (vid, vid),
                      "link set eth0.%d up" % vid]
        ip_batch(self.sw, lines)
        if adopted:
            mac = links(self.host)["eth0"]["address"]
            ip_batch(self.host, [
                "link add br0 address %s type bridge forward_delay 0 stp_state 0" % mac,
                "link set eth0 master br0", "link set eth0 up", "link set br0 up",
                "addr add %s/24 dev br0" % HOST_NATIVE,
                "link add link br0 name br0.10 type vlan id 10",
                "addr add %s/24 dev br0.10" % HOST_V10, "link set br0.10 up"])
            self.set_trunk_filtering(bool(trunk_filtering))
        else:
            ip_batch(self.host, ["link set eth0 up", "addr add %s/24 dev eth0" % HOST_NATIVE])
            if trunk_filtering is not None:
                self.set_trunk_filtering(trunk_filtering)
            else:
                self.write_filter_conf()
            peers = self.netns("boot")
            self.tap("vnet0", peers)
            self.ok("plug", "vnet0", "--trunk", "5")
            self.ok("unplug", "vnet0")
            ip(self.host, "addr", "add", "%s/24" % HOST_V10, "dev", "br0.10")
        for addr in (HOST_NATIVE, HOST_V10):
            assert reachable(self.sw, addr), "setup: the switch cannot reach the host's " + addr
            self.pingers[addr] = Pinger(self.sw, addr)
            self.children.append(self.pingers[addr])
        return self

    def write_filter_conf(self) -> None:
        self.write_conf("trunk", self.allowed,
                        "host-vlans = 10\n" + self.filtering_key)

    def set_trunk_filtering(self, on: bool) -> None:
        self.filtering_key = "trunk-filtering = %s\n" % ("yes" if on else "no")
        self.write_filter_conf()

    def filter_guest(self, name: str, tap: str, untagged: Sequence[str] = (),
                     tagged: Dict[int, str] = None) -> str:
        """Lab.guest with the switch's strict ARP: an address answers only on
        the interface (VLAN) it is on."""
        ns = self.guest(name, tap, untagged, tagged)
        self.sysctl(ns, **{k.replace(".", "__"): v for k, v in _STRICT_ARP.items()})
        return ns

    def trunk_tables(self) -> Dict[str, Entries]:
        """VLAN tables of br0 (self) and of each of its ports, by name."""
        now = links(self.host)
        members = {name for name, link in now.items() if link.get("master") == self.bridge}
        return {name: table for name, table in bridge_vlans(self.host).items()
                if name == self.bridge or name in members}

    def assert_tables(self, expected: Dict[str, Entries], step: str) -> None:
        actual = self.trunk_tables()
        if actual != expected:
            lines = ["%s: `bridge -json vlan show` differs (expected | actual):" % step]
            for name in sorted(set(actual) | set(expected)):
                want = show_entries(expected[name]) if name in expected else "(absent)"
                got = show_entries(actual[name]) if name in actual else "(absent)"
                lines.append("  %-8s %s | %s%s" % (name, want, got,
                                                   "" if want == got else "   <--"))
            pytest.fail("\n".join(lines))

    def check_host_pings(self) -> List[str]:
        """Stop the host pings; at most one lost each (100 ms apart)."""
        summaries = []
        for addr, pinger in self.pingers.items():
            assert pinger.running(), "ping of the host's %s stopped" % addr
            sent, lost, summary = pinger.result()
            summaries.append("host %s: %s" % (addr, summary))
            print(summaries[-1])
            assert sent >= 10 and len(lost) <= 1, "the host's %s: %s" % (addr, summary)
        self.pingers = {}
        return summaries

    def plug_trunk(self, tap: str, vlans: str, native: Optional[int] = None) -> Result:
        args = ["plug", tap, "--trunk", vlans]
        if native is not None:
            args += ["--native", str(native)]
        return self.ok(*args)

    def status_port(self, port: str) -> Tuple[str, str]:
        """(pvid, vlans) from the port's line of `virt-vlan status`."""
        out = self.ok("status").out
        for line in out.splitlines():
            if line.split()[:1] == [port]:
                pvid = re.search(r"\bpvid (\S+)", line)
                vids = re.search(r"\bvlans (\S+)", line)
                assert pvid and vids, "status line of %s lacks pvid/vlans: %r" % (port, line)
                return pvid.group(1).rstrip(","), vids.group(1).rstrip(",")
        pytest.fail("`virt-vlan status` has no line for %s:\n%s" % (port, out))

    def status_bridge(self, bridge: str = "br0") -> str:
        out = self.ok("status").out
        for line in out.splitlines():
            if line.split()[:1] == [bridge]:
                return line
        pytest.fail("`virt-vlan status` has no line for %s:\n%s" % (bridge, out))


def vid_set(text: str) -> List[int]:
    """'2-9,11' -> [2, ..., 9, 11] (parsed here, not with virt-vlan's code)."""
    out: List[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out
