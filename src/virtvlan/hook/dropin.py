#!/usr/bin/python3 -IS
# virt-vlan libvirt hook drop-in (one file for the qemu and network drivers).
# It lives in the package as virtvlan/hook/dropin.py (hooks/qemu and hooks/network
# link to it); `virt-vlan install-hooks` copies it into <hooks>/qemu.d/ and network.d/,
# with the line above pointing at the interpreter virt-vlan is installed for.
"""Wire guests with virt-vlan metadata; leave every other guest alone, fast.

-S (in -IS) skips site-packages at start-up: an untagged domain costs one read of
stdin and one substring test. A tagged document is first offered to the
virt-vlan agent (its socket below; stdlib only, before site and the package
load); only when no agent answers does the drop-in load them and do the work.
"""
import os
import sys

# The agent's hook server (virtvlan/agent/serve.py has the protocol).
# VIRT_VLAN_AGENT_SOCKET overrides the path; VIRT_VLAN_NO_AGENT=1 skips it.
AGENT_SOCKET = "/run/virt-vlan/agent.sock"
CONNECT_TIMEOUT = 0.5  # seconds; an agent that does not accept by then is not asked
# Seconds for the agent's answer, from connect to reply. It runs requests one
# at a time, each may wait for the host lock (lock-timeout): past this bound
# the hook does the work itself (idempotent: it re-plans from the host).
REPLY_TIMEOUT = 60.0


# The operations virt-vlan acts on (hook.py); for any other the drop-in
# exits before loading anything: started/stopped come on every guest start
# and stop and need no work from us.
OPS = {"qemu": {"prepare", "start", "reconnect", "attach", "release", "migrate", "restore"},
       "network": {"start", "stopped", "port-deleted"}}
# Where the network hook records the running virt-vlan networks whose ports
# get port security (virtvlan/host/netports.py; VIRT_VLAN_RUN_DIR as there).
RUN_DIR = "/run/virt-vlan"
NETWORKS = "networks"
# Ops whose answer is the domain XML on stdout (libvirt's filter hooks): the
# agent's replies carry no stdout, so the drop-in always runs these itself.
FILTER_OPS = {"migrate", "restore"}


def request_for(driver: str, args: list, xml: bytes, config, times: bool = False) -> bytes:
    """The request body (protocol version 2, see serve.py): UTF-8 JSON,
    written by hand (json and socket cost about 15 ms of a served call).
    `times`: ask for the call's time points (make bench)."""
    # Built here, not at load: untagged calls never get this far.
    escapes = {n: "\\u%04x" % n for n in range(32)}
    escapes.update({ord('"'): '\\"', ord("\\"): "\\\\"})

    def quote(text: str) -> str:
        return '"' + text.translate(escapes) + '"'
    return ('{"v": 2, "driver": %s, "args": [%s], "xml": %s, "config": %s%s}' % (
        quote(driver), ", ".join(quote(arg) for arg in args), quote(xml.decode("latin-1")),
        "null" if config is None else quote(config),
        ', "times": true' if times else "")).encode("utf-8")


def ask_agent(driver: str, args: list, xml: bytes, marks=None):  # -> Optional[Tuple[int, str]]
    """(exit code, stderr text) from the agent, or None: do the work here.

    None when the agent is absent, refuses, or fails before a whole reply
    (no socket, refused, timeout, EOF, reset, a garbled or refused reply).
    `marks` (make bench): a list of (name, monotonic time) that gets the
    call's time points, the agent's among them.
    """
    path = os.environ.get("VIRT_VLAN_AGENT_SOCKET") or AGENT_SOCKET
    # No socket (no agent, or one that does not serve hooks): one stat, and
    # none of the imports below on the hook's path.
    if os.environ.get("VIRT_VLAN_NO_AGENT") == "1" or not os.path.exists(path):
        return None
    # _socket, not socket: the C module alone (socket.py adds enum, selectors:
    # milliseconds a served call need not pay). Its timeout error is an OSError.
    import _socket
    import time

    deadline = time.monotonic() + REPLY_TIMEOUT
    try:
        request = request_for(driver, args, xml, os.environ.get("VIRT_VLAN_CONFIG"),
                              marks is not None)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(path)
            sock.settimeout(REPLY_TIMEOUT)
            if marks is not None:
                marks.append(("connected", time.monotonic()))
            sock.sendall(len(request).to_bytes(4, "big") + request)
            reply, size = b"", None
            while size is None or len(reply) < 4 + size:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return None  # the agent closed before a whole reply
                reply += chunk
                if size is None and len(reply) >= 4:
                    size = int.from_bytes(reply[:4], "big")
        finally:
            sock.close()
        # "CODE\nSTDERR"; "-\n..." (a refusal) or anything else: not served.
        line, newline, err = reply[4:4 + size].partition(b"\n")
        if not newline or not line.lstrip(b"-").isdigit():
            return None
        if marks is not None and b"\0" in err:
            err, points = err.rsplit(b"\0", 1)
            marks.extend((name.decode(), float(when)) for name, _, when in
                         (point.partition(b"=") for point in points.split()))
            marks.append(("replied", time.monotonic()))
        return int(line), err.decode("utf-8")
    except (OSError, ValueError):  # UnicodeError is a ValueError
        return None


def on_our_network(xml: bytes) -> bool:
    """Whether an untagged domain's XML names a network virt-vlan protects
    the ports of (host/netports.py records it): one listdir, failing fast
    when no such network runs. libvirt writes <source network='NAME' ...>
    with single quotes (the live XML of a port of a bridge-forward network
    says <interface type='bridge'>, its source still names the network); a
    recorded name that is not a plain word (a file "%HEX") matches any
    network port, so none is missed."""
    if b"<source network='" not in xml:
        return False
    try:
        entries = os.listdir(os.path.join(os.environ.get("VIRT_VLAN_RUN_DIR") or RUN_DIR,
                                          NETWORKS))
    except OSError:
        return False
    for entry in entries:
        if entry.startswith("%") or (not entry.endswith(".tmp") and (
                b"network='" + entry.encode("utf-8", "surrogateescape") + b"'") in xml):
            return True
    return False


def write_times(path: str, marks: list) -> None:
    """make bench: one line "PID OP name=seconds ..." appended to `path`."""
    with open(path, "a") as handle:
        handle.write("%d %s %s\n" % (os.getpid(), sys.argv[2], " ".join(
            "%s=%.6f" % point for point in marks)))


def main() -> int:
    # make bench only (host/phases.py): the file this call's time points go to.
    times = os.environ.get("VIRT_VLAN_BENCH_TIMES")
    marks = None
    if times:
        import time

        marks = [("main", time.monotonic())]
    # Read stdin even when we have nothing to do, so libvirt's write of the
    # XML never meets a closed pipe.
    xml = sys.stdin.buffer.read()
    # Installed as <hooks>/qemu.d/virt-vlan or network.d/virt-vlan; in the
    # repository as hooks/qemu and hooks/network.
    here = os.path.basename(sys.argv[0])
    driver = here if here in OPS else \
        os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))[:-2]
    if len(sys.argv) < 3 or sys.argv[2] not in OPS.get(driver, ()):
        return 0
    # virtvlan.NAMESPACE, spelled out: the package is not importable yet (-S);
    # test_hook_dropin.py checks that the two agree.
    if b"urn:virt-vlan:1" not in xml and not (driver == "qemu" and on_our_network(xml)):
        return 0
    served = None if driver == "qemu" and sys.argv[2] in FILTER_OPS else \
        ask_agent(driver, sys.argv[1:], xml, marks)
    if served is not None:
        sys.stderr.write(served[1])
        if times:
            write_times(times, marks)
        return served[0]
    import site

    site.main()
    try:
        from virtvlan.hook.handler import run
    except ImportError as err:
        # The package is gone but this drop-in stayed: a Debian `apt remove`
        # keeps conffiles until purge. Wiring cannot be promised, so a tagged
        # guest is refused (libvirt shows this line) rather than started on
        # the wrong network; untagged guests never get here. Ops whose
        # failure libvirt ignores (release, stopped) print nothing.
        if sys.argv[2] in ("release", "stopped"):
            return 0
        sys.stderr.write("virt-vlan: this hook (%s) cannot load the virt-vlan package (%s); "
                         "reinstall virt-vlan, or remove the hook (apt purge virt-vlan)\n"
                         % (sys.argv[0], err))
        return 1
    if not times:
        return run(driver, sys.argv[1:], xml)
    from virtvlan.host import phases

    marks.append(("loaded", time.monotonic()))
    phases.start()
    code = run(driver, sys.argv[1:], xml)
    write_times(times, marks + phases.stop() + [("done", time.monotonic())])
    return code


if __name__ == "__main__":
    sys.exit(main())
