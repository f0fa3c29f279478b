"""Shared pieces of the scale benchmarks (native.py on this machine's CPU,
at_scale.py in the test VM): hook processes called as libvirt calls them,
medians, peak memory, the storm and its lock waits, an optional agent.

Figures only: nothing here asserts a timing. A failed hook call stops the
bench with its stderr (a figure of a failing call would mean nothing).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

MANAGED_ALIAS = "virt-vlan:managed"  # model.MANAGED_ALIAS: what cleanup may delete
NS_URI = "urn:virt-vlan:1"


# The bash reference of issue "Fast at scale": a careful hand-written hook
# that reads the XML on stdin, tests for our namespace, takes the tap from
# <target dev> with sed, reads the bridge MTU with ip and runs one
# `ip link set`. `prepare` (and `more`, further case branches) are the
# shell for the rest of the work of the topology at hand.
BASH_REFERENCE = r"""#!/bin/bash
xml=$(cat)
case "$xml" in *urn:virt-vlan:1*) ;; *) exit 0 ;; esac
case "$2" in
prepare)
%(prepare)s ;;
start)
    tap=$(printf '%%s' "$xml" | sed -n "s/.*<target dev='\([^']*\)'.*/\1/p")
    mtu=$(ip -o link show dev %(bridge)s | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
    ip link set dev "$tap" mtu "$mtu" master %(bridge)s up ;;
%(more)s
esac
exit 0
"""

# prepare for an access guest on VLAN 5: feed and bridge made and marked.
ACCESS_PREPARE = r"""    ip link show dev %(feed)s >/dev/null 2>&1 || {
        ip link add link %(uplink)s name %(feed)s type vlan id 5 &&
        ip link set dev %(feed)s alias virt-vlan:managed; } || exit 1
    ip link show dev %(bridge)s >/dev/null 2>&1 || {
        ip link add name %(bridge)s type bridge stp_state 0 forward_delay 0 &&
        ip link set dev %(bridge)s alias virt-vlan:managed; } || exit 1
    ip link set dev %(feed)s master %(bridge)s up && ip link set dev %(bridge)s up"""


def bash_reference(bridge: str, prepare: str, more: str = "", **names: str) -> str:
    """The reference hook's text; `names` fill %(...)s in `prepare`/`more`."""
    names["bridge"] = bridge
    return BASH_REFERENCE % {"bridge": bridge, "prepare": prepare % names,
                             "more": more % names}


def domain_xml(name: str, index: int, mac: str, tap: str, source: str, spec: str) -> bytes:
    """A libvirt domain document with one bridge interface and our metadata
    `spec` (the attributes of <vv:interface> after mac=)."""
    return ("<domain type='qemu'><name>%s</name><uuid>6f1c3a52-0000-4000-8000-%012x</uuid>"
            "<devices><interface type='bridge'><mac address='%s'/><source bridge='%s'/>"
            "<target dev='%s'/></interface></devices><metadata><vv:vlan xmlns:vv='%s'>"
            "<vv:interface mac='%s' %s/></vv:vlan></metadata></domain>"
            % (name, index, mac, source, tap, NS_URI, mac, spec)).encode()


def untagged(xml: bytes) -> bytes:
    return xml.split(b"<metadata>")[0] + b"</domain>"


def mac_of(index: int) -> str:
    return "52:54:00:be:%02x:%02x" % (index >> 8 & 0xFF, index & 0xFF)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def ip_args(netns: Optional[str]) -> List[str]:
    """`ip`, in namespace `netns` (a name in /run/netns) if given."""
    return ["ip"] + (["-n", netns] if netns else [])


def ip_batch(lines: Sequence[str], netns: Optional[str] = None) -> None:
    """Many `ip` commands in one process (`ip -batch`): thousands of
    devices in seconds rather than thousands of process starts."""
    subprocess.run(ip_args(netns) + ["-force", "-batch", "-"], input="\n".join(lines) + "\n",
                   text=True, check=True, stdout=subprocess.DEVNULL)


def links(netns: Optional[str] = None) -> Dict[str, dict]:
    """`ip -json -details link` by name: the independent oracle."""
    out = subprocess.run(ip_args(netns) + ["-json", "-details", "link", "show"], check=True,
                         capture_output=True, text=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


_CLONE_NEWNET = 0x40000000


def _entering(netns: str) -> Callable[[], None]:
    """A preexec_fn moving the child into /run/netns/`netns` before exec,
    so that its timing has no `ip netns exec` in it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the child
    path = os.path.join("/run/netns", netns)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns %s" % path)
        os.close(fd)
    return enter


class Failed(SystemExit):
    pass


def run_hook(argv: Sequence[str], stdin: bytes, env: Dict[str, str],
             netns: Optional[str] = None) -> Tuple[float, int]:
    """(seconds, peak RSS in KiB) of one hook process; Failed on non-zero exit.

    Peak memory is the child's own ru_maxrss from wait4(2), so concurrent
    children do not mix (RUSAGE_CHILDREN would give the largest of all).
    With `netns` the child runs in that namespace."""
    enter = _entering(netns) if netns else None
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, preexec_fn=enter)
    # Write stdin and read stderr without proc.wait(): the child must be
    # reaped by our wait4 to get its rusage.
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(stdin)
    except BrokenPipeError:
        pass
    proc.stdin.close()
    err = proc.stderr.read()
    proc.stderr.close()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise Failed("bench: %s failed (%d): %s" % (" ".join(argv), proc.returncode,
                                                     err.decode(errors="replace").strip()))
    return elapsed, usage.ru_maxrss


# Peak memory: a child's ru_maxrss also counts what its parent had mapped
# when it forked (Linux keeps the high-water mark across exec), so the hook
# is started from this small interpreter rather than from the bench, whose
# own heap grows with the namespaces it reads.
_LAUNCHER = ("import os, sys\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    os.execv(sys.argv[1], sys.argv[1:])\n"
             "_, status, usage = os.wait4(pid, 0)\n"
             "sys.stderr.write('maxrss %d\\n' % usage.ru_maxrss)\n"
             "sys.exit(os.waitstatus_to_exitcode(status))\n")


def peak_kib(argv: Sequence[str], stdin: bytes, env: Dict[str, str],
             netns: Optional[str] = None) -> int:
    """ru_maxrss (KiB) of one run of `argv`, started by a minimal launcher
    (`launcher_kib()` is what the launcher alone brings)."""
    proc = subprocess.run([sys.executable, "-IS", "-c", _LAUNCHER] + list(argv), input=stdin,
                          env=env, capture_output=True, preexec_fn=_entering(netns) if netns
                          else None)
    text = proc.stderr.decode(errors="replace")
    found = re.search(r"^maxrss (\d+)$", text, re.M)
    if proc.returncode != 0 or not found:
        raise Failed("bench: %s failed (%d): %s" % (" ".join(argv), proc.returncode, text.strip()))
    return int(found.group(1))


def launcher_kib() -> int:
    return peak_kib(["/bin/true"], b"", dict(os.environ))


def timed(argv: Sequence[str], stdin: bytes, env: Dict[str, str],
          netns: Optional[str] = None) -> float:
    return run_hook(argv, stdin, env, netns)[0]


# --- where the time goes -------------------------------------------------------

# The phases of one hook call, each named by the time point that ends it
# (host/phases.py; the drop-in, the hook server and the engine record
# them when $VIRT_VLAN_BENCH_TIMES is set), with the table's label. A
# phase a call does not pass through counts 0 ("imported": only a hook
# that had to load pyroute2; "connected" to "replied": only served calls).
PHASES = (
    ("main", "interpreter start (spawn to drop-in main)"),
    ("loaded", "site + package import (hook alone)"),
    ("connected", "drop-in: read stdin, connect"),
    ("received", "request sent, read by the agent"),
    ("dequeued", "agent queue"),
    ("lock", "config, XML, wants (before the lock)"),
    ("locked", "lock wait"),
    ("read", "snapshot read (under the lock)"),
    ("planned", "plan"),
    ("imported", "pyroute2 import (lock let go)"),
    ("applied", "apply + verify"),
    ("done", "after apply (reservations, unlock)"),
    ("replied", "reply back to the drop-in"),
    ("exit", "drop-in exit, reaped"),
)


def breakdown(argv: Sequence[str], stdin: bytes, env: Dict[str, str], times: str,
              netns: Optional[str] = None) -> Dict[str, float]:
    """Seconds per phase (PHASES, and "total") of one call of `argv`, from
    the time points it appends to the file `times`. CLOCK_MONOTONIC is the
    host's, so this process's spawn and reap times join the call's."""
    try:
        os.unlink(times)
    except FileNotFoundError:
        pass
    spawn = time.monotonic()
    run_hook(argv, stdin, dict(env, VIRT_VLAN_BENCH_TIMES=times), netns)
    end = time.monotonic()
    with open(times) as handle:
        fields = handle.read().split()[2:]  # PID OP name=seconds ...
    points = [("spawn", spawn)] + [(name, float(when)) for name, _, when in
                                   (field.partition("=") for field in fields)] + [("exit", end)]
    out: Dict[str, float] = {"total": end - spawn}
    for (_, before), (name, when) in zip(points, points[1:]):
        out[name] = out.get(name, 0.0) + when - before
    return out


def median_phases_ms(samples: List[Dict[str, float]]) -> Dict[str, float]:
    """The median of each phase over `samples` (ms); medians do not add up
    to the median total."""
    return {name: statistics.median(s.get(name, 0.0) for s in samples) * 1000
            for name in [n for n, _ in PHASES] + ["total"]}


def print_breakdown(title: str, columns: Sequence[Tuple[str, Dict[str, float]]]) -> None:
    """One table: a row per phase, a column per (label, median_phases_ms)."""
    print(title)
    print("  %-44s" % "phase (ms)" + "".join(" %12s" % label for label, _ in columns))
    for name, label in PHASES + (("total", "total (spawn to reaped)"),):
        if name != "total" and not any(values[name] >= 0.05 for _, values in columns):
            continue  # a phase none of these calls went through
        print("  %-44s" % label + "".join(" %12.1f" % values[name] for _, values in columns))


def medians_ms(runs: int, ones: Dict[str, Callable[[], float]]) -> Dict[str, float]:
    """{label: median ms} of `runs` rounds, each calling every `one` once
    (seconds, host reset included but not timed). Interleaved, so that the
    load of a shared machine falls on every variant alike and the ratios
    between them hold."""
    samples: Dict[str, List[float]] = {label: [] for label in ones}
    for _ in range(runs):
        for label, one in ones.items():
            samples[label].append(one())
    out = {}
    for label, values in samples.items():
        out[label] = statistics.median(values) * 1000
        print("bench: %-40s %8.1f ms (min %.1f, max %.1f)"
              % (label, out[label], min(values) * 1000, max(values) * 1000),
              file=sys.stderr, flush=True)
    return out


# --- the storm -------------------------------------------------------------

# strace prints e.g. `1234 1700000000.123456 flock(3, LOCK_EX|LOCK_NB) = -1
# EAGAIN (...)`; -f adds the pid, -ttt the epoch time.
_FLOCK = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+flock\(\d+, LOCK_EX\|LOCK_NB\)\s+=\s+(-?\d+)")


def lock_waits(trace_dir: str) -> Tuple[List[float], int]:
    """(waits, gave up): per hook process that tried the host lock, seconds
    from its first try to the try that got it (0 when the first did), or
    to its last try when it never got it (it timed out: counted in `gave
    up`), from strace logs of flock(2) calls (lock.py polls with LOCK_NB)."""
    waits, gave_up = [], 0
    for name in os.listdir(trace_dir):
        first: Dict[str, float] = {}
        last: Dict[str, float] = {}
        got: Dict[str, float] = {}
        with open(os.path.join(trace_dir, name)) as handle:
            for line in handle:
                match = _FLOCK.match(line)
                if not match:
                    continue
                pid, when, result = match.group(1), float(match.group(2)), int(match.group(3))
                first.setdefault(pid, when)
                last[pid] = when
                if result == 0:
                    got.setdefault(pid, when)
        for pid in first:
            waits.append(got.get(pid, last[pid]) - first[pid])
            gave_up += pid not in got
    return waits, gave_up


def storm(guests: Sequence[Tuple[bytes, str]], hook: str, env: Dict[str, str],
          concurrent: bool, trace_dir: Optional[str] = None) -> Tuple[float, List[str]]:
    """Seconds for every guest's prepare then start hook call; `guests` are
    (domain XML, name). Concurrent: one thread per guest, all released at
    once (libvirt's worker threads). With `trace_dir`, each call runs under
    `strace -e flock` (seccomp-filtered: other syscalls are not stopped) for
    lock_waits(). Returns (seconds, the stderr line of each failed guest): a
    guest whose prepare fails is not started, as libvirt does."""
    errors: List[str] = []

    def one(xml: bytes, name: str, gate: Optional[threading.Barrier]) -> None:
        if gate is not None:
            gate.wait()
        try:
            for op in ("prepare", "start"):
                argv = [hook, name, op, "begin", "-"]
                if trace_dir is not None:
                    argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-ttt", "-e", "trace=flock",
                            "-o", os.path.join(trace_dir, "%s-%s" % (name, op))] + argv
                run_hook(argv, xml, env)
        except Failed as err:  # counted by the caller
            errors.append(str(err))

    start = time.perf_counter()
    if concurrent:
        gate = threading.Barrier(len(guests) + 1)
        threads = [threading.Thread(target=one, args=(xml, name, gate)) for xml, name in guests]
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        gate.wait()
        for thread in threads:
            thread.join()
    else:
        for xml, name in guests:
            one(xml, name, None)
    return time.perf_counter() - start, errors


# --- an agent serving the hooks (optional) -----------------------------------

class Agent:
    """`--with-agent CMD`: CMD started in namespace `netns` (None: this
    one) before measuring; ready when its socket exists. Hooks find it
    through VIRT_VLAN_AGENT_SOCKET (one socket per namespace: an agent
    serves the namespace it runs in); without an agent they get
    VIRT_VLAN_NO_AGENT=1."""

    def __init__(self, command: Optional[str], socket: str,
                 netns: Optional[str] = None) -> None:
        self.command = command
        self.socket = socket
        self.netns = netns
        self.proc: Optional[subprocess.Popen] = None
        self.ready_s: Optional[float] = None  # start to READY=1, of the last start()

    def modes(self) -> List[str]:
        return ["hook"] + (["agent"] if self.command else [])

    def env(self, base: Dict[str, str], mode: str) -> Dict[str, str]:
        env = dict(base, VIRT_VLAN_AGENT_SOCKET=self.socket)
        env.pop("VIRT_VLAN_NO_AGENT", None)
        if mode == "hook":
            env["VIRT_VLAN_NO_AGENT"] = "1"
        return env

    def start(self, env: Dict[str, str], timeout: float = 300) -> None:
        assert self.command
        argv = ["/bin/sh", "-c", "exec " + self.command]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        # Its log (a line per served call) would bury the figures: kept in
        # a file beside the socket, shown if it fails to come up.
        log_path = self.socket + ".log"
        # systemd's readiness protocol, as under the unit: the time to
        # READY=1 is what the libvirt daemons, ordered after the agent,
        # wait for at boot.
        notify_path = self.socket + ".notify"
        cleanup(notify_path)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(0.01)
        deadline = time.monotonic() + timeout
        try:
            started = time.monotonic()
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(argv, env=dict(self.env(env, "agent"),
                                                            NOTIFY_SOCKET=notify_path),
                                             stdout=subprocess.DEVNULL, stderr=log)
            while self.ready_s is None and self.proc.poll() is None \
                    and time.monotonic() < deadline:
                try:
                    if b"READY=1" in notify.recv(4096).split(b"\n"):
                        self.ready_s = time.monotonic() - started
                except socket.timeout:
                    pass
        finally:
            # Later notifications (status) then fail at once, logged by the agent.
            notify.close()
            os.unlink(notify_path)
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                with open(log_path, errors="replace") as log:
                    tail = log.read()[-2000:]
                raise Failed("bench: agent `%s` exited (%d) before its socket %s appeared:\n%s"
                             % (self.command, self.proc.returncode, self.socket, tail))
            if time.monotonic() > deadline:
                raise Failed("bench: agent socket %s did not appear within %g s"
                             % (self.socket, timeout))
            time.sleep(0.01)

    def peak_mib(self) -> float:
        """The agent's peak resident memory so far (VmHWM; CMD is exec'd:
        its pid is the agent's)."""
        assert self.proc is not None
        with open("/proc/%d/status" % self.proc.pid) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return mib(int(line.split()[1]))
        raise Failed("bench: no VmHWM in /proc/%d/status" % self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def install_hook(work: str) -> str:
    """The drop-in installed as `virt-vlan install-hooks` does; its path."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "src"))
    from virtvlan.cli import install

    install.install(os.path.join(work, "hooks"), apparmor_dir=os.path.join(work, "aa"))
    return os.path.join(work, "hooks", "qemu.d", "virt-vlan")


def write_script(path: str, text: str) -> str:
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o755)
    return path


def scratch() -> str:
    return tempfile.mkdtemp(prefix="vv-bench-")


def cleanup(path: str) -> None:
    """Remove `path` (a tree or a file) if it is there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def mib(kib: int) -> float:
    return kib / 1024.0
