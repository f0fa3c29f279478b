"""Link monitor: tells the agent which devices changed, in debounced batches.

No hook runs when the host's network changes under running guests
(`ifdown br0; ifup br0` deletes every br0.V; `ip link del eth0.5`;
`systemctl restart networking`). This module listens on a stdlib rtnetlink
socket (no pyroute2: its import alone costs more than this whole module)
subscribed to link events and bridge VLAN events, and calls
`on_change(ChangeSet)` once per burst, from its own thread.

Kernel facts it relies on (linux/rtnetlink.h, net/core/rtnetlink.c,
net/bridge/br_netlink.c, br_vlan.c):
- RTM_NEWLINK (family AF_UNSPEC) is sent for every change of a device
  (creation, flags, master, MTU, carrier...), not just creation: only the
  fields that matter here (name, master, IFF_UP) are compared with a cache.
- Bridge ports also send family AF_BRIDGE messages; their IFLA_AF_SPEC holds
  the port's VLAN entries. An AF_BRIDGE RTM_DELLINK means "left the bridge",
  not "deleted" (the deletion is the AF_UNSPEC RTM_DELLINK).
- RTNLGRP_BRVLAN (33, Linux 5.8+) reports per-VLAN changes as RTM_NEWVLAN /
  RTM_DELVLAN; groups above 32 are joined with NETLINK_ADD_MEMBERSHIP.
- Deleting a device deletes its VLAN devices (net/8021q/vlan.c,
  NETDEV_UNREGISTER): one `ip link del br1` is a burst of deletions.
- When the socket's receive buffer overflows, recv fails with ENOBUFS and
  the messages are gone: the socket is replaced and the next ChangeSet says
  resync (re-check everything).
- Port security (docs/port-security.md): a port's `isolated` flag comes in
  its AF_BRIDGE message's IFLA_PROTINFO, compared like its VLAN entries.
  nftables changes are announced on NETLINK_NETFILTER group
  NFNLGRP_NFTABLES; on any, the monitor re-reads virt-vlan's own table
  (`nft -j`, ~5 ms) and reports the ports whose filter chain vanished or
  changed (`nft flush ruleset` names every protected port). It does not
  parse the nftables messages: a re-read is simpler and as fast.

Rate limit: a device deleted more than N times in M seconds is held back
(see ratelimit.RebuildLimiter); the holds are written to HELD_FILE under the
run directory for `virt-vlan check` (host/holds.py).
"""

import _socket
import errno
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

from virtvlan.host import nftables, rtnl, state
from virtvlan.host.nlconst import (
    AF_BRIDGE,
    NETLINK_NETFILTER,
    NFNLGRP_NFTABLES,
    BR_VLAN_MSG,
    BUFSIZE,
    IFF_UP,
    IFINFOMSG,
    IFLA_AF_SPEC,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    NETLINK_ADD_MEMBERSHIP,
    NLMSGHDR,
    RTMGRP_LINK,
    RTM_DELLINK,
    RTM_DELVLAN,
    RTM_NEWLINK,
    RTM_NEWVLAN,
    RTNLGRP_BRVLAN,
    SOL_NETLINK,
    SO_RCVBUFFORCE,
)
# The held-devices file is written here and read by `virt-vlan check`.
from virtvlan.host.holds import HELD_FILE, HeldDevice, held_path, read_holds, write_holds
from virtvlan.errors import VirtVlanError
from virtvlan.agent.ratelimit import ChangeSet, Debouncer, RebuildLimiter

__all__ = ["ChangeSet", "LinkMonitor", "HeldDevice", "read_holds", "held_path",
           "limiter_from_env", "LinkEvents"]

log = logging.getLogger(__name__)

# Kinds the agent rebuilds (feeds, per-VLAN bridges, trunk VLAN devices):
# only their deletions count for the rate limit. Taps belong to libvirt.
REBUILT_KINDS = ("vlan", "bridge")
RCVBUF = 1 << 20  # as pyroute2: bursts of a network restart fit
LIMIT_ENV = "VIRT_VLAN_HEAL_LIMIT"


@dataclass(frozen=True)
class _Dev:
    name: str
    master: Optional[int]
    up: bool
    kind: str


class LinkEvents:
    """Turns raw rtnetlink datagrams into (changed names, deleted (name, kind)).

    Keeps what it knows per ifindex, so that a message repeating known
    state (a carrier blip, a statistics-driven NEWLINK) names nothing.
    Pure: fed bytes, no socket (tests feed it captured datagrams).
    """

    def __init__(self) -> None:
        self.devs: Dict[int, _Dev] = {}
        self.vlans: Dict[int, bytes] = {}  # ifindex -> IFLA_AF_SPEC of the bridge port

    def seed(self, devs: Dict[int, Tuple[str, Optional[int], bool, str]]) -> None:
        """Start from a full view: ifindex -> (name, master ifindex, up, kind)."""
        self.devs = {i: _Dev(*v) for i, v in devs.items()}
        self.vlans = {}

    def feed(self, data: bytes) -> Tuple[Set[str], List[Tuple[str, str]]]:
        """One datagram: (names to report, [(name, kind)] deleted devices)."""
        names: Set[str] = set()
        deleted: List[Tuple[str, str]] = []
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size or offset + length > len(data):
                log.warning("malformed netlink datagram (message length %d at %d of %d)",
                            length, offset, len(data))
                break
            payload = data[offset + NLMSGHDR.size:offset + length]
            offset += (length + 3) & ~3
            if kind in (RTM_NEWLINK, RTM_DELLINK) and len(payload) >= IFINFOMSG.size:
                self._link(kind, payload, names, deleted)
            elif kind in (RTM_NEWVLAN, RTM_DELVLAN) and len(payload) >= BR_VLAN_MSG.size:
                index = BR_VLAN_MSG.unpack_from(payload)[3]
                if index in self.devs:
                    names.add(self.devs[index].name)
        return names, deleted

    def _link(self, kind: int, payload: bytes, names: Set[str],
              deleted: List[Tuple[str, str]]) -> None:
        family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
        attrs = rtnl.attributes(payload, IFINFOMSG.size)
        old = self.devs.get(index)
        name = rtnl.attr_text(attrs[IFLA_IFNAME]) if IFLA_IFNAME in attrs else (
            old.name if old else "")
        if not name:
            return
        if family == AF_BRIDGE:
            # Port VLAN entries: report when they differ from what we saw.
            spec = attrs.get(IFLA_AF_SPEC, b"") + b"isolated=%d" % bool(
                rtnl.port_isolated(payload)[1])
            if kind == RTM_DELLINK:
                self.vlans.pop(index, None)
                names.add(name)  # left its bridge (the AF_UNSPEC message says which)
            elif self.vlans.get(index) != spec:
                self.vlans[index] = spec
                names.add(name)
            return
        if kind == RTM_DELLINK:
            self.devs.pop(index, None)
            self.vlans.pop(index, None)
            info = rtnl.attributes(attrs.get(IFLA_LINKINFO, b""))
            dev_kind = (rtnl.attr_text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info
                        else old.kind if old else "device")
            names.add(name)
            if old and old.master in self.devs:
                names.add(self.devs[old.master].name)  # a bridge lost a port
            deleted.append((name, dev_kind))
            return
        info = rtnl.attributes(attrs.get(IFLA_LINKINFO, b""))
        master = rtnl.attr_u32(attrs, IFLA_MASTER) or None
        new = _Dev(name=name, master=master, up=bool(flags & IFF_UP),
                   kind=rtnl.attr_text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info
                   else old.kind if old else "device")
        self.devs[index] = new
        if old == new:
            return
        names.add(name)
        if old is not None and old.name != name:
            names.add(old.name)  # renamed: the old name is gone
        for bridge in {old.master if old else None, master} - {None}:
            if old is None or old.master != master:
                dev = self.devs.get(bridge)  # type: ignore[arg-type]
                if dev:
                    names.add(dev.name)


def limiter_from_env() -> RebuildLimiter:
    """RebuildLimiter from $VIRT_VLAN_HEAL_LIMIT = "LIMIT/WINDOW/HOLD"
    (deletions, seconds, seconds; default 5/60/300)."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if not text:
        return RebuildLimiter()
    try:
        limit, window, hold = text.split("/")
        return RebuildLimiter(int(limit), float(window), float(hold))
    except ValueError as err:
        raise VirtVlanError("%s=%r: expected LIMIT/WINDOW/HOLD such as 5/60/300 (%s)"
                            % (LIMIT_ENV, text, err)) from err


# --- the monitor -----------------------------------------------------------------------

class LinkMonitor:
    """Calls on_change(ChangeSet) after each burst of link changes.

    start() starts two daemon threads: a reader that drains the netlink
    socket at once (a slow callback must not overflow the socket) and a
    dispatcher that calls on_change, one call at a time, once a burst has
    been quiet for `quiet` seconds (at most `max_delay` after its first
    event). Exceptions from on_change are logged, never raised. stop()
    ends both threads; the callback in progress, if any, finishes first.
    `netns`: a name in /run/netns or a path; default the caller's namespace.
    """

    def __init__(self, on_change: Callable[[ChangeSet], None], netns: Optional[str] = None,
                 quiet: float = 0.5, max_delay: float = 5.0,
                 limiter: Optional[RebuildLimiter] = None,
                 held_file: Optional[str] = None, rcvbuf: int = RCVBUF) -> None:
        self.on_change = on_change
        self.netns = netns
        self.limiter = limiter or limiter_from_env()
        self.held_file = held_file
        self.rcvbuf = rcvbuf  # tests make it tiny to provoke ENOBUFS
        self.events = LinkEvents()
        self._debounce = Debouncer(quiet, max_delay)
        self._cond = threading.Condition()
        self._stopping = False
        self._sock: Optional[_socket.socket] = None
        self._nft: Optional[_socket.socket] = None  # nftables notifications, if available
        self._filters: Dict[str, Tuple[str, ...]] = {}  # port -> rule specs, last read
        self._wake_r, self._wake_w = -1, -1
        self._threads: List[threading.Thread] = []
        self._epoch = time.time() - time.monotonic()  # monotonic -> wall clock for the file

    # -- public ------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe now (events from here on are seen), then run the threads.
        Raises VirtVlanError when the socket cannot be opened."""
        self._sock = self._open()
        self._nft = self._open_nft()
        self._write_holds(time.monotonic())  # a hold of an earlier run ended with it
        self._wake_r, self._wake_w = os.pipe()
        self._threads = [threading.Thread(target=self._read_loop, name="vv-linkmon-read",
                                          daemon=True),
                         threading.Thread(target=self._dispatch_loop, name="vv-linkmon-call",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._nft is not None:
            self._nft.close()
            self._nft = None
        # Holds live in this process: a stopped monitor rebuilds nothing, so
        # nothing is held back any more.
        with self._cond:
            self.limiter.expire(float("inf"))
            self._write_holds(time.monotonic())

    def held(self) -> frozenset:
        """Devices on hold now (the agent's periodic reconcile skips them too)."""
        with self._cond:
            return self.limiter.held(time.monotonic())

    # -- socket ------------------------------------------------------------------------

    def _open(self) -> _socket.socket:
        path = None if self.netns is None else rtnl.netns_path(self.netns)
        where = " in netns %s" % self.netns if self.netns else ""
        try:
            sock = rtnl.route_socket(path)
        except OSError as err:
            raise VirtVlanError("link monitor: cannot open a netlink socket%s: %s"
                                % (where, rtnl.errno_name(err.errno or 0))) from err
        try:
            try:  # above rmem_max needs CAP_NET_ADMIN (SO_RCVBUFFORCE); the agent has it
                sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((0, RTMGRP_LINK))
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_BRVLAN)
            except OSError as err:  # kernels before 5.8: AF_BRIDGE NEWLINK still reports VLANs
                log.debug("no RTNLGRP_BRVLAN%s: %s", where, rtnl.errno_name(err.errno or 0))
        except OSError as err:
            sock.close()
            raise VirtVlanError("link monitor: cannot subscribe to link events%s: %s"
                                % (where, rtnl.errno_name(err.errno or 0))) from err
        self._seed()  # after subscribing: nothing falls between view and events
        return sock

    def _open_nft(self) -> Optional[_socket.socket]:
        """A NETLINK_NETFILTER socket subscribed to nftables changes, with a
        first read of virt-vlan's port filters; None (and no healing of
        filters by events) when nft or the subsystem is missing."""
        path = None if self.netns is None else rtnl.netns_path(self.netns)
        try:
            filters = nftables.read_filters(self.netns)
        except VirtVlanError as err:
            log.warning("link monitor: cannot read virt-vlan's nftables table (%s); port "
                        "filters are rebuilt at reconcile only", err)
            return None
        if filters is None:
            return None  # no nft: no port security on this host
        try:
            sock = rtnl.route_socket(path, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except OSError as err:
            log.warning("link monitor: cannot subscribe to nftables changes: %s; port filters "
                        "are rebuilt at reconcile only", rtnl.errno_name(err.errno or 0))
            return None
        self._filters = {f.port: f.rules for f in filters}
        return sock

    def _filter_changes(self, sock: _socket.socket) -> Set[str]:
        """Drain the nftables notifications; the ports whose filter vanished
        or changed since the last read."""
        while True:
            try:
                sock.recv(BUFSIZE, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as err:  # ENOBUFS: some lost; the re-read below covers them
                log.debug("nftables notifications: %s", rtnl.errno_name(err.errno or 0))
                break
        try:
            now = {f.port: f.rules for f in nftables.read_filters(self.netns) or ()}
        except VirtVlanError as err:
            log.error("link monitor: cannot read virt-vlan's nftables table: %s", err)
            return set()
        changed = {port for port, rules in self._filters.items() if now.get(port) != rules}
        self._filters = now
        return changed

    def _seed(self) -> None:
        try:
            snap = rtnl.read_snapshot(self.netns)
        except VirtVlanError as err:
            # Without a view every device looks new: more names, nothing missed.
            log.warning("link monitor: cannot read links (%s); starting without a view", err)
            self.events.seed({})
            return
        index = {link.name: link.index for link in snap.links}
        self.events.seed({link.index: (link.name, index.get(link.master) if link.master else None,
                                       link.up, link.kind) for link in snap.links})

    # -- reader thread -------------------------------------------------------------------

    def _read_loop(self) -> None:
        buf = bytearray(BUFSIZE)
        while True:
            sock = self._sock
            if sock is None:
                return
            poller = select.poll()  # not select(): no limit on fd numbers
            poller.register(sock.fileno(), select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            nft = self._nft
            if nft is not None:
                poller.register(nft.fileno(), select.POLLIN)
            try:
                ready = [fd for fd, _ev in poller.poll()]
            except (OSError, ValueError):
                return  # closed by stop()
            if self._wake_r in ready or self._stopped():
                return
            names: Set[str] = set()
            deleted: List[Tuple[str, str]] = []
            resync = False
            if nft is not None and nft.fileno() in ready:
                names |= self._filter_changes(nft)
            while True:  # drain what is queued, then report it as one event
                try:
                    size = sock.recv_into(buf, 0, _socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as err:
                    if err.errno != errno.ENOBUFS:
                        log.error("link monitor: netlink receive failed: %s; resyncing",
                                  rtnl.errno_name(err.errno or 0))
                    else:
                        log.warning("link monitor: netlink socket overflowed (ENOBUFS), "
                                    "events lost: new socket, full resync")
                    resync = True
                    sock = self._reopen()
                    if sock is None:
                        return
                    continue
                found, gone = self.events.feed(bytes(buf[:size]))
                names |= found
                deleted += gone
            self._report(names, deleted, resync)

    def _reopen(self) -> Optional[_socket.socket]:
        old, self._sock = self._sock, None
        if old is not None:
            old.close()
        delay = 0.1
        while not self._stopped():
            try:
                self._sock = self._open()
                return self._sock
            except VirtVlanError as err:
                log.error("%s; retrying in %.1f s", err, delay)
                with self._cond:
                    self._cond.wait(delay)
                delay = min(delay * 2, 10.0)
        return None

    def _stopped(self) -> bool:
        with self._cond:
            return self._stopping

    def _report(self, names: Set[str], deleted: List[Tuple[str, str]], resync: bool) -> None:
        now = time.monotonic()
        with self._cond:
            new_holds = [hold for hold in (self.limiter.record(name, now)
                                           for name, kind in deleted if kind in REBUILT_KINDS)
                         if hold is not None]
            for hold in new_holds:
                # Logged once per hold: the deletions that follow are silent.
                log.warning("%s was deleted %d times in %.0f s: not rebuilding it for %.0f s "
                            "(something else keeps removing it; see `virt-vlan check`)",
                            hold.device, hold.deletions, self.limiter.window,
                            self.limiter.hold)
            if new_holds:
                self._write_holds(now)
            self._debounce.add(names, resync, now)
            self._cond.notify_all()

    # -- dispatcher thread -------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        # A ChangeSet naming nothing is still passed on when the held set
        # changed: the agent learns of a new hold at once.
        last_held: frozenset = frozenset()
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    ended = self.limiter.expire(now)
                    if ended:
                        log.info("hold on %s ended: rebuilding again", ", ".join(sorted(ended)))
                        self._write_holds(now)
                        self._debounce.add(ended, False, now)
                    changes = self._debounce.flush(now)
                    if changes is not None:
                        held = self.limiter.held(now)
                        changes = ChangeSet(names=changes.names - held, resync=changes.resync,
                                            held=held)
                        break
                    deadlines = [t for t in (self._debounce.deadline(),
                                             self.limiter.next_expiry()) if t is not None]
                    self._cond.wait(max(0.0, min(deadlines) - now) if deadlines else None)
                self.limiter.forget_older(now)
            if not changes.names and not changes.resync and changes.held == last_held:
                continue  # only held devices changed
            last_held = changes.held
            log.debug("link changes: %s%s", ", ".join(sorted(changes.names)),
                      " (resync)" if changes.resync else "")
            try:
                self.on_change(changes)
            except Exception:  # a failing callback must not end the monitor
                log.exception("link monitor callback failed for %s", changes)

    def _write_holds(self, now: float) -> None:
        holds = [HeldDevice(device=h.device, deletions=h.deletions, window=self.limiter.window,
                            since=h.since + self._epoch, until=h.until + self._epoch)
                 for h in self.limiter.holds(now)]
        try:
            write_holds(holds, self.held_file)
        except OSError as err:
            log.error("cannot write %s: %s", self.held_file or held_path(),
                      rtnl.errno_name(err.errno or 0))
