"""The executor: turns a Plan into netlink requests, verifies, rolls back.

This module (with its helper netlink.py) is the only one that talks to the
kernel. The caller holds the host-wide lock (lock.host_lock) around
read_snapshot -> plan -> apply, so no other virt-vlan process interleaves;
other tools still can, which is why creation races and vanishing devices
are handled here.
"""

import errno
import ipaddress
import logging
import os
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Type

from pyroute2.netlink.exceptions import NetlinkError

from virtvlan.plan import actions as act
from virtvlan.host import nftables, nftwrite, rtnl, scoped, state
from virtvlan.errors import ApplyBug, ApplyError, KernelRefused, StaleSnapshot
from virtvlan.model import MANAGED_ALIAS, Address, Link, Route, Scope, Snapshot
from virtvlan.host.nlconst import (
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_RANGE_BEGIN,
    BRIDGE_VLAN_INFO_RANGE_END,
    BRIDGE_VLAN_INFO_UNTAGGED,
    IFA_F_NODAD,
)
from virtvlan.apply.verify import compared, verify
from virtvlan.apply.netlink import (
    errno_text,
    family_number,
    link_alias,
    link_index,
    open_socket,
    proto_number,
    scope_number,
)

log = logging.getLogger(__name__)

# Test aid (tests/kernel): VIRT_VLAN_FAIL_AT=N fails the run before action N.
FAIL_AT_ENV = "VIRT_VLAN_FAIL_AT"

# IFLA_INET6_ADDR_GEN_MODE value IN6_ADDR_GEN_MODE_NONE (include/uapi/linux/if_link.h).
_ADDR_GEN_NONE = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}
# Action fields naming devices, the changed one first.
_DEVICE_FIELDS = ("name", "port", "dev", "src", "dst", "parent", "bridge")
_NO_NF_CALL = {"br_nf_call_iptables": 0, "br_nf_call_ip6tables": 0, "br_nf_call_arptables": 0}


def read_snapshot(netns: Optional[str] = None) -> Snapshot:
    """All links (kind, master, VLAN id/parent, MTU, up, managed mark, MAC,
    addresses without IPv6 link-local) and the routes that name a link as
    output device (all tables but local; no proto-kernel, no IPv6 link-local
    or multicast routes) of the host or of network namespace `netns`.

    Read by rtnl, the stdlib reader engine.py calls directly so that reading
    never imports pyroute2."""
    return rtnl.read_snapshot(netns)


def read_devices(plan: act.Plan, netns: Optional[str] = None
                 ) -> Callable[[Sequence[str]], Snapshot]:
    """The default read-back of apply(): the named devices (with their
    masters and VLAN tables; with addresses and routes where `plan` moves
    addresses) read from the kernel with scoped.read_scoped."""
    moved = frozenset(name for action in plan if isinstance(action, act.MoveAddresses)
                      for name in (action.src, action.dst))

    def read(names: Sequence[str]) -> Snapshot:
        return scoped.read_scoped(Scope(names=frozenset(names), routes_of=moved), netns)
    return read


def apply(plan: act.Plan, netns: Optional[str] = None,
          before: Optional[Snapshot] = None,
          read_back: Optional[Callable[[Sequence[str]], Snapshot]] = None) -> Snapshot:
    """Execute `plan` in order, verify the result, return what was read back.

    `before` is the snapshot the plan was made from (read now when None).
    `read_back(names)` reads the devices verification compares
    (verify.compared: every device the plan changed) after the plan ran;
    None: from the kernel (read_devices). The returned snapshot holds those
    devices as read back (with virt-vlan's port filters when the plan set
    one), not the whole host.
    Either every action takes effect and the touched links then match
    plan.simulate(before), or what this run changed is undone (in reverse
    order, best effort) and an ApplyError says what failed, whose fault it
    is, and how many changes were rolled back:
    - KernelRefused: the kernel refused an `ip` command (errno name, device);
    - StaleSnapshot: another process changed the host after the snapshot (a
      device vanished, or appeared where the plan creates one); with
      `before` None, also a plan that does not fit the host read now;
    - VerifyFailed: the links read back differ from the plan (every
      mismatch is logged, the message names the first ones);
    - ApplyBug: the plan does not fit the snapshot it was made from, or any
      other bug of ours.
    Devices another process created in a race (EEXIST with the same
    kind/parent/VLAN id) are used as they are and never rolled back.

    Test aid: with VIRT_VLAN_FAIL_AT=N in the environment, an injected failure
    (a plain ApplyError) is raised before action N (0-based); it takes the
    normal rollback path.
    """
    fail_at = os.environ.get(FAIL_AT_ENV)
    with open_socket(netns) as ipr:
        run = _Executor(ipr, netns, own_snapshot=before is not None)
        try:
            model = before if before is not None else rtnl.read_snapshot(netns)
            for number, action in enumerate(plan):
                run.step, run.device, run.model = str(action), _device(action), model
                if fail_at is not None and fail_at.strip() == str(number):
                    raise ApplyError("injected failure before action %d (%s=%s)"
                                     % (number, FAIL_AT_ENV, fail_at),
                                     "unset %s (a test aid)" % FAIL_AT_ENV)
                # Simulate first: an action that does not fit the model fails
                # before it touches the kernel.
                try:
                    after = action.simulate(model)
                except (KeyError, AssertionError) as err:
                    raise run.misfit("cannot run `%s`: {snapshot} lacks %s" % (action, err)) \
                        from err
                run.execute(action, action.undo(model))
                model = after
            # Read back with rtnl, the product's reader: pyroute2's own parsing
            # of AF_BRIDGE VLAN dumps differs between releases (0.7.2 drops
            # ext_mask from a link dump, so it would see no VLAN table at all).
            # Only the devices verification compares: a full read costs as
            # much as the host is big (issue 22).
            actual = (read_back or read_devices(plan, netns))(compared(plan))
            if any(isinstance(action, act.SetPortFilter) for action in plan):
                actual = replace(actual, filters=nftables.read_filters(netns))
            verify(plan, model, actual, run.adopted)
            return actual
        except BaseException as err:
            # Classified first: the rollback's own steps overwrite run.step.
            failure = run.failure(err) if isinstance(err, Exception) else None
            summary = run.rollback()
            if failure is None:
                raise  # KeyboardInterrupt, SystemExit: rolled back, keep going up
            failure.note_rollback(summary)
            if failure is err:
                raise
            raise failure from err


def _device(action: act.Action) -> str:
    """The device an action changes (or else names)."""
    for field in _DEVICE_FIELDS:
        value = getattr(action, field, None)
        if isinstance(value, str):
            return value
    return ""


class _Executor:
    """Runs actions on one socket and keeps the undo log of this run."""

    def __init__(self, ipr, netns: Optional[str],  # type: ignore[no-untyped-def]
                 own_snapshot: bool) -> None:
        self.ipr = ipr
        self.netns = netns
        # True: the plan was made from the snapshot the model starts from
        # (apply's `before`), so a plan that does not fit it is a bug.
        self.own_snapshot = own_snapshot
        self.step = ""  # the `ip` command in flight, named in error messages
        self.device = ""  # the device it changes, named in error messages
        self.model = Snapshot(())  # the planned state before the action in flight
        self.undo_log: List[act.Action] = []
        self.pending: Tuple[act.Action, ...] = ()  # undo of the action in flight
        self.created: Set[str] = set()  # devices this run made (ours to delete)
        self.adopted: Set[str] = set()  # made by someone else during the run
        self.handlers: Dict[Type[act.Action], Callable[[act.Action], None]] = {
            act.CreateBridge: self._create_bridge, act.CreateVlan: self._create_vlan,
            act.SetMaster: self._set_master, act.Release: self._release,
            act.SetMtu: self._set_mtu, act.SetUp: self._set_up, act.SetDown: self._set_down,
            act.DeleteLink: self._delete, act.MoveAddresses: self._move,
            act.AddBridgeVlan: self._bridge_vlan, act.DelBridgeVlan: self._bridge_vlan,
            act.SetVlanFiltering: self._vlan_filtering, act.MarkManaged: self._finish_mark,
            act.SetPortFilter: self._port_filter, act.SetIsolated: self._isolated}

    # -- bookkeeping -----------------------------------------------------

    def execute(self, action: act.Action, undo: Tuple[act.Action, ...]) -> None:
        log.info("apply: %s", action)
        self.pending = undo
        handler = self.handlers.get(type(action))
        if handler is None:
            raise ApplyBug("the executor has no handler for %r" % (action,))
        try:
            handler(action)
        except NetlinkError as err:
            if err.code == errno.ENODEV:
                self._raise_vanished(action)
            raise
        # Single-request actions changed nothing if they raised; record now.
        self.commit()

    def commit(self) -> None:
        """Record the in-flight action's undo (once): handlers call it as soon
        as the kernel state changed, so a later partial failure is undone."""
        self.undo_log.extend(self.pending)
        self.pending = ()

    def misfit(self, detail: str) -> ApplyError:
        """A plan step that does not fit the model: the planner's bug when
        the plan was made from that very snapshot; else the plan was made
        from an older state of the host than the one read now. `detail`
        names the snapshot as {snapshot}."""
        if self.own_snapshot:
            return ApplyBug(detail.replace("{snapshot}", "the snapshot the plan was made from"))
        return StaleSnapshot(detail.replace("{snapshot}", "the host read now") + " (the plan was "
                             "made from an older state of the host)",
                             "plan again from a fresh read, then apply")

    def failure(self, err: Exception) -> ApplyError:
        """`err`, raised by the action in flight, as the ApplyError kind
        that says whose fault it is: errors from the kernel (netlink, or a
        sysctl write) are KernelRefused; anything unexpected is ApplyBug."""
        if isinstance(err, ApplyError):
            return err
        if isinstance(err, NetlinkError):
            return KernelRefused(self.step, self.device, err.code,
                                 err.args[1] if len(err.args) > 1 else None)
        if isinstance(err, OSError) and err.errno:
            return KernelRefused(self.step, self.device, err.errno, err.strerror)
        # A bug: the traceback goes to the journal, the message to the user.
        log.error("`%s` failed: unexpected %s", self.step, type(err).__name__, exc_info=err)
        return ApplyBug("`%s` failed: %s: %s" % (self.step, type(err).__name__, err))

    def rollback(self) -> str:
        """Undo recorded changes, newest first; never raises."""
        undo, self.undo_log, self.pending = list(reversed(self.undo_log)), [], ()
        failed = 0
        for action in undo:
            try:
                log.info("rollback: %s", action)
                self.handlers[type(action)](action)
            except Exception as err:  # best effort: keep undoing the rest
                failed += 1
                log.error("rollback: `%s` failed: %s", action, errno_text(err))
        self.pending = ()
        done = len(undo) - failed
        if failed:
            return "rolled back %d of %d change(s), %d undo step(s) failed (see log)" % (
                done, len(undo), failed)
        return "rolled back %d change(s)" % done

    def _need(self, name: str) -> int:
        index = link_index(self.ipr, name)
        if index is None:
            raise StaleSnapshot("%s disappeared while virt-vlan was configuring it "
                                "(another tool deleted it?)" % name)
        return index

    def _raise_vanished(self, action: act.Action) -> None:
        for field in _DEVICE_FIELDS:
            name = getattr(action, field, None)
            if isinstance(name, str) and link_index(self.ipr, name) is None:
                self._need(name)

    def _set(self, step: str, name: str, **attrs: object) -> None:
        self.step, self.device = step, name
        self.ipr.link("set", index=self._need(name), **attrs)

    # -- creation --------------------------------------------------------

    def _create(self, action: act.Action, name: str, attrs: Dict[str, object],
                fits: Callable[[Link], bool], wanted: str) -> bool:
        """RTM_NEWLINK with NLM_F_EXCL; False when an equal device already exists.

        True leaves the intent to mark `name` recorded (state.intend) until
        _mark clears it: a run killed in between leaves it for the next."""
        self.step, self.device = action.render()[0], name
        # Only in our own namespace: the next run (engine.py) reads the host's.
        journal = self.netns is None
        if journal:
            state.intend(name, str(attrs["kind"]), bool(getattr(action, "addrgen", False)))
        try:
            self.ipr.link("add", ifname=name, **attrs)
        except NetlinkError as err:
            # The kernel refused: nothing of ours to mark later. (Any other
            # exception keeps the intent: the device may exist by now.)
            if journal:
                state.intended(name)
            if err.code != errno.EEXIST:
                raise
            # Someone created it after our snapshot (or a VLAN with this
            # parent and id exists under another name: also EEXIST).
            parent = getattr(action, "parent", None)
            snap = scoped.read_scoped(Scope(names=frozenset({name}), vlan_parents=frozenset(
                {parent} if isinstance(parent, str) else ())), self.netns)
            there = snap.get(name)
            if there is not None and fits(there):
                log.info("%s already exists (made by another process); using it, "
                         "not marking or deleting it", name)
                self.adopted.add(name)
                self.pending = ()
                return False
            occupant = _occupant(snap, name, action)
            planned = _occupant(self.model, name, action)
            if planned is not None:
                # The snapshot showed it: this creation should not be planned.
                raise self.misfit("cannot create %s: %s in {snapshot}" % (wanted, planned))
            raise StaleSnapshot("cannot create %s: %s (made after virt-vlan read the host)"
                                % (wanted, occupant or "the kernel says it exists (EEXIST) "
                                   "but no %s is visible" % name),
                                "rename or delete it, or wait for the tool that made it")
        self.created.add(name)
        self.commit()  # DeleteLink from here on, even if marking fails below
        return True

    def _mark(self, name: str, addrgen: bool) -> None:
        # The kernel ignores IFLA_IFALIAS and rejects IFLA_AF_SPEC in
        # RTM_NEWLINK (no inet6_dev before register), so both are separate
        # requests, made while the device is still down: addrconf generates
        # the link-local address on NETDEV_UP using the mode set by then.
        self._set("ip link set dev %s alias %s" % (name, MANAGED_ALIAS), name,
                  ifalias=MANAGED_ALIAS)
        if not addrgen:
            self._addrgen_none(name)
        if self.netns is None:
            state.intended(name)

    def _finish_mark(self, action: act.Action) -> None:
        assert isinstance(action, act.MarkManaged)
        self._mark(action.name, action.addrgen)

    def _addrgen_none(self, name: str) -> None:
        try:
            self._set("ip link set dev %s addrgenmode none" % name, name,
                      IFLA_AF_SPEC=_ADDR_GEN_NONE)
        except NetlinkError as err:
            if err.code == errno.EAFNOSUPPORT:
                # No inet6_dev: IPv6 is disabled, or MTU < 1280. Such a device
                # gets no link-local address anyway.
                log.debug("%s has no IPv6 state; addrgenmode left alone", name)
                return
            path = "/proc/sys/net/ipv6/conf/%s/addr_gen_mode" % name
            if self.netns is not None or not os.path.exists(path):
                raise  # /proc/sys/net is our own namespace's, not the target's
            log.debug("netlink addrgenmode failed (%s); writing %s", errno_text(err), path)
            with open(path, "w") as sysctl:
                sysctl.write("1\n")

    def _create_bridge(self, action: act.Action) -> None:
        assert isinstance(action, act.CreateBridge)
        attrs: Dict[str, object] = {"kind": "bridge", "mtu": action.mtu,
                                    "br_stp_state": 0, "br_forward_delay": 0}
        if action.mac:
            attrs["address"] = action.mac
        fits = lambda link: link.kind == "bridge"  # noqa: E731
        wanted = "bridge %s" % action.name
        try:
            created = self._create(action, action.name, dict(attrs, **_NO_NF_CALL), fits, wanted)
        except NetlinkError as err:
            # nf_call_* exist only with CONFIG_BRIDGE_NETFILTER (ignored without
            # it); a kernel that refuses them still gets a working bridge.
            if err.code not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ERANGE):
                raise
            log.debug("kernel refused nf_call_* for %s (%s); retrying without",
                      action.name, errno_text(err))
            created = self._create(action, action.name, attrs, fits, wanted)
        if created:
            self._mark(action.name, action.addrgen)

    def _create_vlan(self, action: act.Action) -> None:
        assert isinstance(action, act.CreateVlan)
        self.step, self.device = action.render()[0], action.name
        attrs = {"kind": "vlan", "link": self._need(action.parent), "vlan_id": action.vlan_id}
        fits = lambda link: (link.kind == "vlan" and link.parent == action.parent  # noqa: E731
                             and link.vlan_id == action.vlan_id)
        wanted = "VLAN %d on %s as %s" % (action.vlan_id, action.parent, action.name)
        if self._create(action, action.name, attrs, fits, wanted):
            self._mark(action.name, action.addrgen)

    # -- single-request changes ------------------------------------------

    def _set_master(self, action: act.Action) -> None:
        assert isinstance(action, act.SetMaster)
        self._set(str(action), action.port, master=self._need(action.bridge))

    def _release(self, action: act.Action) -> None:
        assert isinstance(action, act.Release)
        self._set(str(action), action.port, master=0)

    def _set_mtu(self, action: act.Action) -> None:
        assert isinstance(action, act.SetMtu)
        self._set(str(action), action.dev, mtu=action.mtu)

    def _set_up(self, action: act.Action) -> None:
        assert isinstance(action, act.SetUp)
        self._set(str(action), action.dev, state="up")

    def _set_down(self, action: act.Action) -> None:
        assert isinstance(action, act.SetDown)
        self._set(str(action), action.dev, state="down")

    # -- bridge VLAN entries ------------------------------------------------

    def _bridge_vlan(self, action: act.Action) -> None:
        """`bridge vlan add|del`: RTM_SETLINK/RTM_DELLINK, family AF_BRIDGE,
        IFLA_AF_SPEC {IFLA_BRIDGE_VLAN_INFO...[, IFLA_BRIDGE_FLAGS self]}.

        A range is sent as a RANGE_BEGIN entry (given as a ready-made
        IFLA_AF_SPEC) followed by the RANGE_END entry (vlan_info): pyroute2
        0.7.2 sends that exactly as 0.9.x does, while 0.9's own 'A-B' syntax
        does not exist in 0.7. The per-VLAN MASTER flag is never set: on a
        port delete it would also delete the bridge's self entry."""
        assert isinstance(action, (act.AddBridgeVlan, act.DelBridgeVlan))
        self.step, self.device = str(action), action.dev
        index = self._need(action.dev)
        flags = 0
        if isinstance(action, act.AddBridgeVlan):
            flags = ((BRIDGE_VLAN_INFO_PVID if action.pvid else 0)
                     | (BRIDGE_VLAN_INFO_UNTAGGED if action.untagged else 0))
        attrs: Dict[str, object] = {}
        if action.first != action.last:
            attrs["IFLA_AF_SPEC"] = {"attrs": [["IFLA_BRIDGE_VLAN_INFO", {
                "flags": flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, "vid": action.first}]]}
            info = {"flags": flags | BRIDGE_VLAN_INFO_RANGE_END, "vid": action.last}
        else:
            info = {"flags": flags, "vid": action.first}
        if action.self_:
            # The bridge device has no master: its own entries need the
            # SELF flag (EOPNOTSUPP without it).
            attrs["vlan_flags"] = "self"
        command = "add" if isinstance(action, act.AddBridgeVlan) else "del"
        self.ipr.vlan_filter(command, index=index, vlan_info=info, **attrs)

    def _port_filter(self, action: act.Action) -> None:
        """One nft transaction (in process through libnftables, else an
        `nft -f -` process): the kernel applies all of it or none."""
        assert isinstance(action, act.SetPortFilter)
        self.step, self.device = "nft -f - (the port filter of %s)" % action.port, action.port
        if nftables.nft_command(self.netns) is None:
            raise ApplyError("%s: nft is not installed, so its port filter cannot be set"
                             % action.port, "install nftables, or set port-security = no")
        refusal = nftwrite.run_script("\n".join(action.script()) + "\n", self.netns)
        if refusal is not None:
            raise KernelRefused(self.step, action.port, errno.EINVAL, refusal)

    def _isolated(self, action: act.Action) -> None:
        assert isinstance(action, act.SetIsolated)
        self.step, self.device = str(action), action.port
        self.ipr.brport("set", index=self._need(action.port), isolated=int(action.on))

    def _vlan_filtering(self, action: act.Action) -> None:
        assert isinstance(action, act.SetVlanFiltering)
        self._set(str(action), action.bridge, kind="bridge", br_vlan_filtering=int(action.on))

    def _delete(self, action: act.Action) -> None:
        assert isinstance(action, act.DeleteLink)
        self.step, self.device = str(action), action.name
        index = link_index(self.ipr, action.name)
        if index is None:
            log.debug("%s is already gone; nothing to delete", action.name)
            return
        # Second line of defence behind the planner: only devices carrying
        # our mark (or made by this very run) are ever deleted.
        if action.name not in self.created and link_alias(self.ipr, index) != MANAGED_ALIAS:
            refusal = ("refusing to delete %s: it has no %r alias, so virt-vlan did not "
                       "create it" % (action.name, MANAGED_ALIAS))
            planned = self.model.get(action.name)
            if planned is not None and planned.managed:
                raise StaleSnapshot(refusal + " (it had the alias when virt-vlan read the "
                                    "host: another tool replaced it?)")
            raise self.misfit(refusal + " (nor does {snapshot} say so)")
        try:
            self.ipr.link("del", index=index)
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise
            log.debug("%s vanished before we deleted it", action.name)

    # -- address moves -----------------------------------------------------

    def _move(self, action: act.Action) -> None:
        """Add to dst, replace routes onto dst, then delete from src: at every
        moment the host owns its addresses and has a route to its gateway."""
        assert isinstance(action, act.MoveAddresses)
        self.commit()  # several requests: undo whatever part of it happens
        self.step, self.device = str(action), action.dst
        # Indexes resolved once: fewer round trips, a shorter window in which
        # replies may leave by the old device (an ENODEV later is still
        # reported as a vanished device by execute()).
        src, dst = self._need(action.src), self._need(action.dst)
        for addr in action.addresses:
            self._address("add", addr, action.dst, dst, errno.EEXIST)
        for route in action.routes:
            self._route(route, action.dst, dst)
        for addr in action.addresses:
            self._address("del", addr, action.src, src, errno.EADDRNOTAVAIL)

    def _address(self, command: str, addr: Address, dev: str, index: int,
                 harmless: int) -> None:
        self.step, self.device = "ip addr %s %s dev %s" % (command, addr.cidr, dev), dev
        attrs: Dict[str, object] = {"index": index, "address": addr.local,
                                    "prefixlen": addr.prefixlen,
                                    "family": family_number(addr.family)}
        if command == "add":
            attrs["scope"] = scope_number(addr.scope)
            if addr.broadcast:
                # Exactly what the address had: a move (and its rollback)
                # must leave it as it was, with or without a broadcast.
                attrs["broadcast"] = addr.broadcast
            if addr.family == "inet6":
                # Same address, same L2 segment, same MAC: DAD already passed;
                # repeating it would leave the address tentative (unusable as
                # a source) for a second.
                attrs["flags"] = IFA_F_NODAD
        try:
            self.ipr.addr(command, **attrs)
        except NetlinkError as err:
            if err.code != harmless:
                raise
            log.debug("%s: already done (%s)", self.step, errno_text(err))

    def _route(self, route: Route, dev: str, index: int) -> None:
        self.step, self.device = route.render(dev), dev
        attrs: Dict[str, object] = {"family": family_number(route.family),
                                    "oif": index, "table": route.table,
                                    "proto": proto_number(route.proto),
                                    "scope": scope_number(route.scope), "type": "unicast"}
        if route.dst == "default":
            attrs["dst_len"] = 0
        else:
            network = ipaddress.ip_network(route.dst, strict=False)
            attrs["dst"], attrs["dst_len"] = str(network.network_address), network.prefixlen
        if route.gateway:
            attrs["gateway"] = route.gateway
        if route.metric is not None:
            attrs["priority"] = route.metric
        if route.prefsrc:
            attrs["prefsrc"] = route.prefsrc
        # NLM_F_REPLACE: the route with this dst/metric/table is rewritten in
        # place, never absent for a moment (delete+add would be).
        self.ipr.route("replace", **attrs)


def _occupant(snap: Snapshot, name: str, action: act.Action) -> Optional[str]:
    """What in `snap` takes the place of the device `action` creates, or None."""
    there = snap.get(name)
    if there is not None:
        what = "%s already exists as a %s device" % (name, there.kind)
        if there.kind == "vlan":
            what += " (VLAN %s on %s)" % (there.vlan_id, there.parent)
        return what
    if isinstance(action, act.CreateVlan):
        for other in snap.vlan_children(action.parent):
            if other.vlan_id == action.vlan_id:
                return "VLAN %d on %s already exists as %s" % (
                    action.vlan_id, action.parent, other.name)
    return None
