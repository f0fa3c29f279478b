"""The pure planner: (wants, config, snapshot) -> ordered Plan. No I/O.

Rules it enforces (each refusal is a Refused with one line saying why):
- never create a VLAN sub-interface on a device that has a master: on a
  bridge port the VLAN device takes that VLAN's tagged frames before the
  bridge sees them (checked on kernel 6.1: 100% loss for the bridge's guests);
- never enslave a device that has VLAN sub-interfaces, for the same reason;
- access wiring feeds access bridges from <device>.<V>; trunk guests need
  trunk wiring; trunk wiring feeds access bridges from <trunkbridge>.<V>;
- a device with an expected name is adopted only if it is what we need;
- only devices carrying our mark (Link.managed) are ever deleted.
The planner models its own actions on the snapshot (Action.simulate), so a
second plan against the applied result is empty.
"""

from dataclasses import replace
from functools import lru_cache
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from virtvlan.plan.actions import (
    Action,
    AddBridgeVlan,
    CreateBridge,
    CreateVlan,
    DelBridgeVlan,
    DeleteLink,
    MoveAddresses,
    Plan,
    Release,
    SetMaster,
    SetIsolated,
    SetMtu,
    SetPortFilter,
    SetUp,
    SetVlanFiltering,
    vlan_ranges,
)
from virtvlan.parse.config import Config, Uplink
from virtvlan.errors import Refused
from virtvlan.model import ACCESS, TRUNK, Link, PortVlans, Protection, Snapshot, Want
from virtvlan.parse.vlans import format_vlan_list
from virtvlan.plan import wiring

# Kinds a guest port may be: libvirt's taps ("tun"), and veth pairs that
# stand in for taps in tests and containers. Anything else is a host device
# that a domain XML must not be able to make us enslave.
PORT_KINDS = ("tun", "veth")

# Apply order: create, then enslave (and MTU), then up, then re-home the host
# addresses, then bridge VLAN entries, then VLAN filtering on (only once every
# entry is there: switching it on drops every tagged flow whose VIDs are not
# members yet), then deletions. A stable sort keeps dependencies within a
# phase (a bridge is created before the VLAN device on top of it).
# A guest port's filter goes in with the creations, before the port joins its
# bridge (its rules match the input name, so they hold from that moment); the
# isolated flag exists only on a port, so after the enslaving.
_PHASE = {CreateBridge: 0, CreateVlan: 0, SetPortFilter: 0, SetMtu: 1, SetMaster: 1,
          Release: 1, SetUp: 2, SetIsolated: 2, MoveAddresses: 3, DelBridgeVlan: 4,
          AddBridgeVlan: 4, SetVlanFiltering: 5, DeleteLink: 6}
# Re-homing an uplink into its trunk bridge goes before everything (trunk()).
_FIRST = -1


class _Builder:
    """Accumulates actions while keeping a model of the resulting host."""

    def __init__(self, config: Config, snap: Snapshot,
                 protected: Optional[Mapping[str, int]] = None,
                 new_ports: FrozenSet[str] = frozenset()) -> None:
        self.config = config
        self.model = snap
        self.protected, self.new_ports = protected, new_ports  # see kept_protection
        self.actions: List[Tuple[int, Action]] = []
        self.warnings: List[str] = []
        self.trunks: Dict[str, Uplink] = {}  # trunk bridges this plan serves
        self.plugged: Set[str] = set()  # guest ports named by this plan's wants

    def emit(self, action: Action, phase: Optional[int] = None) -> None:
        """Add `action`; `phase` overrides its place in the apply order."""
        self.actions.append((_PHASE[type(action)] if phase is None else phase, action))
        self.model = action.simulate(self.model)

    def plan(self) -> Plan:
        return Plan(tuple(action for _, action in sorted(self.actions, key=lambda p: p[0])),
                    tuple(self.warnings))

    def warn(self, line: str) -> None:
        if line not in self.warnings:
            self.warnings.append(line)

    # --- helpers -------------------------------------------------------

    def conf_hint(self, uplink: Uplink) -> str:
        return "[uplink %s] of %s" % (uplink.name, self.config.path)

    def need(self, name: str, who: str, what: str, fix: str) -> Link:
        link = self.model.get(name)
        if link is None:
            raise Refused("%s: %s %s does not exist on this host; %s" % (who, what, name, fix))
        return link

    def fit_mtu(self, name: str, uplink: Uplink, who: str, what: str) -> None:
        """Give `name` the uplink's configured MTU (key `mtu`): ours (or made
        by this plan) are corrected, another tool's device is refused."""
        link = self.model.get(name)
        if uplink.mtu is None or link is None or link.mtu == uplink.mtu:
            return
        if not link.managed:
            raise Refused("%s: %s %s has MTU %d, but mtu = %d in %s; virt-vlan does not change "
                          "a device it did not create: set mtu = %d there or give %s MTU %d"
                          % (who, what, name, link.mtu, uplink.mtu, self.conf_hint(uplink),
                             link.mtu, name, uplink.mtu))
        self.emit(SetMtu(name, uplink.mtu))

    def check_uplink_mtu(self, uplink: Uplink, who: str) -> None:
        nic = self.model.get(uplink.device)
        if uplink.mtu is not None and nic is not None and uplink.mtu > nic.mtu:
            raise Refused("%s: mtu = %d in %s exceeds the MTU %d of uplink device %s (tagged "
                          "frames must fit it); lower mtu there or raise %s's MTU"
                          % (who, uplink.mtu, self.conf_hint(uplink), nic.mtu, nic.name,
                             nic.name))

    def up(self, name: str) -> None:
        link = self.model.get(name)
        if link is not None and not link.up:
            self.emit(SetUp(name))

    # --- the rules -----------------------------------------------------

    def vlan_device(self, name: str, parent_name: str, vid: int, who: str,
                    uplink: Uplink, addrgen: bool = False) -> None:
        """Ensure VLAN device `name` = VLAN `vid` on `parent_name`, up."""
        parent = self.need(parent_name, who, "device", "check device = in %s"
                           % self.conf_hint(uplink))
        existing = self.model.get(name)
        if existing is not None:
            if existing.kind != "vlan" or existing.parent != parent_name or existing.vlan_id != vid:
                actual = ("VLAN %s on %s" % (existing.vlan_id, existing.parent)
                          if existing.kind == "vlan" else "a %s device" % existing.kind)
                raise Refused("%s: %s exists but is %s, not VLAN %d on %s; delete or rename it, "
                              "or change the naming template in %s"
                              % (who, name, actual, vid, parent_name, self.conf_hint(uplink)))
            self.up(name)
            return
        if parent.master is not None:
            master = self.model.get(parent.master)
            kind = master.kind if master else "device"
            fix = ("set wiring = trunk and trunk-bridge = %s in %s so access bridges are fed "
                   "from %s.%d" % (parent.master, self.conf_hint(uplink), parent.master, vid)
                   if kind == "bridge" else "use the %s %s as the uplink device in %s"
                   % (kind, parent.master, self.conf_hint(uplink)))
            raise Refused("%s: refusing to create %s on %s: %s is a port of %s %s, and a VLAN "
                          "device on it would take VLAN %d's tagged frames before %s sees them "
                          "(its guests would lose VLAN %d); %s"
                          % (who, name, parent_name, parent_name, kind, parent.master, vid,
                             parent.master, vid, fix))
        for other in self.model.vlan_children(parent_name):
            if other.vlan_id == vid:
                raise Refused("%s: %s already carries VLAN %d as %s; the kernel allows one "
                              "device per VLAN: delete %s or make the naming template in %s "
                              "produce %s" % (who, parent_name, vid, other.name, other.name,
                                              self.conf_hint(uplink), other.name))
        self.emit(CreateVlan(name, parent_name, vid, addrgen))
        self.up(name)

    def bridge(self, name: str, mtu: int, who: str, uplink: Uplink) -> Link:
        existing = self.model.get(name)
        if existing is None:
            self.emit(CreateBridge(name, mtu))
        elif existing.kind != "bridge":
            raise Refused("%s: %s exists but is a %s device, not a bridge; rename it or change "
                          "the naming template in %s" % (who, name, existing.kind,
                                                         self.conf_hint(uplink)))
        link = self.model.get(name)
        assert link is not None
        return link

    def enslave(self, port_name: str, bridge: str, who: str,
                phase: Optional[int] = None) -> None:
        """Make `port_name` a port of `bridge` (mixing rule checked)."""
        port = self.model.get(port_name)
        assert port is not None
        if port.master == bridge:
            return
        children = self.model.vlan_children(port_name)
        if children:
            vids = format_vlan_list(c.vlan_id or 0 for c in children)
            raise Refused("%s: refusing to make %s a port of %s: %s has VLAN devices (%s), "
                          "which would take VLAN %s's tagged frames before %s sees them; "
                          "remove them first (virt-vlan removes its own when their guests stop)"
                          % (who, port_name, bridge, port_name,
                             ", ".join(c.name for c in children), vids, bridge))
        self.emit(SetMaster(port_name, bridge), phase)

    def trunk(self, uplink: Uplink, who: str) -> str:
        """Ensure the uplink's trunk bridge, with the uplink as port."""
        bridge = uplink.trunk_bridge
        nic = self.need(uplink.device, who, "uplink device",
                        "fix device = in %s" % self.conf_hint(uplink))
        if nic.master is not None and nic.master != bridge:
            raise Refused("%s: uplink device %s is already a port of %s, not of the trunk bridge "
                          "%s; set trunk-bridge = %s in %s to use it"
                          % (who, nic.name, nic.master, bridge, nic.master,
                             self.conf_hint(uplink)))
        if nic.master is None:
            host_addresses = bool(nic.addresses or self.model.routes_via(nic.name))
            dynamic = [a for a in nic.addresses if a.dynamic]
            if dynamic:
                raise Refused("%s: %s holds %s from DHCP/SLAAC; moving it into %s would fight "
                              "the client that manages it; make %s a port of bridge %s in the "
                              "host's network config (the bridge holding the address), then "
                              "virt-vlan adopts it" % (who, nic.name, dynamic[0].cidr, bridge,
                                                       nic.name, bridge))
            # Re-homing the uplink runs first, in exactly this order: from
            # the moment the NIC is a port, its frames go to the bridge, so
            # the bridge must already be up (a port of a down bridge drops
            # everything: 100-300 ms of lost host traffic measured under TCG)
            # and the addresses follow at once. Bringing up an empty bridge
            # is harmless.
            existing = self.model.get(bridge)
            if existing is None:
                # The bridge takes the uplink's MAC: neighbours keep their ARP
                # entries for the host while its addresses move over.
                self.emit(CreateBridge(bridge, nic.mtu, mac=nic.mac or None,
                                       addrgen=host_addresses), _FIRST)
            else:
                self.bridge(bridge, nic.mtu, who, uplink)
            if not self.model.get(bridge).up:  # type: ignore[union-attr]
                self.emit(SetUp(bridge), _FIRST)
            self.enslave(nic.name, bridge, who, _FIRST)
            if host_addresses:
                self.emit(MoveAddresses(nic.name, bridge, nic.addresses,
                                        self.model.routes_via(nic.name)), _FIRST)
        self.fit_mtu(bridge, uplink, who, "trunk bridge")
        self.up(bridge)
        for vid in uplink.host_vlans:
            self.vlan_device(uplink.trunk_vlan(vid), bridge, vid, who, uplink, addrgen=True)
        return bridge

    def access_bridge(self, uplink: Uplink, vid: int, who: str) -> str:
        """Ensure VLAN `vid`'s access bridge, fed by its VLAN device."""
        name, feed = uplink.access_bridge(vid), uplink.feed(vid)
        parent_name = uplink.feed_parent()
        existing = self.model.get(name)
        if existing is not None and existing.kind == "bridge":
            strangers = [p.name for p in self.model.ports(name)
                         if p.kind == "vlan" and p.name != feed]
            if strangers:
                raise Refused("%s: bridge %s is fed by %s, not by %s; virt-vlan will not mix "
                              "two feeds in one bridge: remove %s from %s or change "
                              "access-bridge in %s" % (who, name, strangers[0], feed,
                                                       strangers[0], name, self.conf_hint(uplink)))
        feed_link = self.model.get(feed)
        if feed_link is not None and feed_link.master not in (None, name):
            raise Refused("%s: %s is already a port of %s, so it cannot feed %s; remove it from "
                          "%s or change access-bridge in %s" % (
                              who, feed, feed_link.master, name, feed_link.master,
                              self.conf_hint(uplink)))
        self.vlan_device(feed, parent_name, vid, who, uplink)
        self.fit_mtu(feed, uplink, who, "feed")
        feed_link = self.model.get(feed)
        assert feed_link is not None
        self.bridge(name, feed_link.mtu, who, uplink)
        self.fit_mtu(name, uplink, who, "access bridge")
        self.enslave(feed, name, who)
        self.up(name)
        return name

    def port(self, port_name: str, bridge: str, who: str) -> None:
        port = self.need(port_name, who, "port", "start the guest first (libvirt creates "
                         "its tap) or name an existing tap/veth")
        if port.kind not in PORT_KINDS:
            what = "a host NIC" if port.kind == "device" else "a %s device" % port.kind
            raise Refused("%s: %s is %s, not a guest tap or veth; virt-vlan only "
                          "wires guest ports" % (who, port_name, what))
        if port.managed:
            raise Refused("%s: %s is a device virt-vlan created itself, not a guest port"
                          % (who, port_name))
        bridge_link = self.model.get(bridge)
        assert bridge_link is not None
        if port.mtu != bridge_link.mtu:
            # Before enslaving: a port with a smaller MTU would pull the
            # bridge's MTU down (br_mtu_auto_adjust) for every guest on it.
            self.emit(SetMtu(port_name, bridge_link.mtu))
        self.enslave(port_name, bridge, who)
        self.up(port_name)

    # --- trunk VLAN filtering ----------------------------------------------

    def filters(self, uplink: Uplink) -> bool:
        """Whether the trunk bridge of `uplink` filters, or will once this
        plan runs: it does already, or it is owned (ours, or handed over with
        trunk-filtering = yes) and gets converted."""
        return wiring.filters(self.model.get(uplink.trunk_bridge), uplink)

    def untagged_on_uplink(self, uplink: Uplink) -> FrozenSet[int]:
        """The VIDs the uplink carries untagged: the bridge's default PVID
        (what a new port gets) and the uplink port's own untagged entries."""
        bridge = self.model.get(uplink.trunk_bridge)
        nic = self.model.get(uplink.device)
        vids = {bridge.default_pvid} if bridge is not None else {1}
        if nic is not None and nic.vlans is not None:
            vids |= nic.vlans.untagged | {nic.vlans.pvid or 0}
        return frozenset(vids - {0})

    def check_trunk_list(self, want: Want, uplink: Uplink, who: str) -> None:
        listed = set(want.vlans) | ({want.native} if want.native else set())
        clash = sorted(listed & self.untagged_on_uplink(uplink))
        if clash:
            vid = clash[0]
            raise Refused("%s: VLAN %d is the VLAN uplink %s carries untagged on trunk bridge %s "
                          "(its default PVID); a guest allowed it could send double-tagged "
                          "frames that leave %s with only the inner tag and hop into another "
                          "VLAN; remove %d from the guest's vlans/native (or from allowed-vlans "
                          "in %s)" % (who, vid, uplink.device, uplink.trunk_bridge,
                                      uplink.device, vid, self.conf_hint(uplink)))

    def vlan_adds(self, dev: str, vids: Iterable[int], self_: bool = False) -> None:
        for first, last in vlan_ranges(vids):
            self.emit(AddBridgeVlan(dev, first, last, self_=self_))

    def vlan_dels(self, dev: str, vids: Iterable[int], self_: bool = False) -> None:
        for first, last in vlan_ranges(vids):
            self.emit(DelBridgeVlan(dev, first, last, self_=self_))

    def trunk_port(self, want: Want, uplink: Uplink, who: str) -> None:
        """Give a trunk guest's port exactly its VLANs: `vlans` tagged, the
        native VLAN as PVID untagged, nothing else (the bridge's default PVID
        goes)."""
        assert want.port is not None
        bridge = uplink.trunk_bridge
        if not self.filters(uplink):
            self.warn("%s: trunk bridge %s does not filter VLANs (an adopted bridge): %s sees and "
                      "can send on every VLAN of %s, not only %s; set trunk-filtering = yes in "
                      "%s to enforce the list" % (
                          who, bridge, want.port, uplink.device,
                          format_vlan_list(want.vlans), self.conf_hint(uplink)))
            return
        port = self.model.get(want.port)
        assert port is not None
        now = port.vlans or PortVlans()
        native = want.native
        tagged = set(want.vlans) - {native}
        wanted = tagged | ({native} if native else set())
        self.vlan_dels(want.port, now.members - wanted)
        if native and not (native in now.untagged and now.pvid == native):
            self.emit(AddBridgeVlan(want.port, native, native, pvid=True, untagged=True))
        self.vlan_adds(want.port, {v for v in tagged
                                   if v not in now.tagged or now.pvid == v})

    def sync_trunk(self, uplink: Uplink, convert: bool) -> None:
        """Uplink and self entries of the trunk bridge for what is in use;
        with `convert`, switch filtering on for an owned bridge without it.

        Uplink port: a tagged entry per VID in use (other ports' members, the
        VIDs of the brN.V devices on the bridge, host VLANs); bridge self: a
        tagged entry per brN.V. Their default-PVID entries are never touched.
        On owned bridges tagged entries nobody uses are removed; on an
        adopted filtering bridge changes are additive only (the entries may
        be the admin's)."""
        bridge = self.model.get(uplink.trunk_bridge)
        nic = self.model.get(uplink.device)
        if (bridge is None or bridge.kind != "bridge" or nic is None or nic.master != bridge.name
                or bridge.vlans is None or nic.vlans is None):
            return
        owned = wiring.owns_vlans(bridge, uplink)
        converting = not bridge.vlan_filtering
        if converting and not (owned and convert):
            return
        if not owned and not convert:
            return  # an admin's filtering bridge: cleanup has nothing to remove there
        default = bridge.default_pvid
        if converting:
            self.widen_old_trunk_guests(uplink, bridge)
            bridge = self.model.get(uplink.trunk_bridge)
            assert bridge is not None
        children = {c.vlan_id for c in self.model.vlan_children(bridge.name) if c.vlan_id}
        in_use = set(children) | set(uplink.host_vlans)
        for port in self.model.ports(bridge.name):
            # On an admin's bridge only the guests this plan wires count: the
            # admin's own ports may keep VLANs off the wire on purpose.
            if (port.name != nic.name and port.vlans is not None
                    and (owned or port.name in self.plugged)):
                in_use |= port.vlans.members
        in_use.discard(default)
        now = nic.vlans or PortVlans()
        self.vlan_adds(nic.name, in_use - now.members)
        if owned:
            self.vlan_dels(nic.name, now.tagged - in_use - {now.pvid, default})
        mine = bridge.vlans or PortVlans()
        self.vlan_adds(bridge.name, children - mine.members - {default}, self_=True)
        if owned:
            self.vlan_dels(bridge.name, mine.tagged - children - {mine.pvid, default}, self_=True)
        if converting:
            self.emit(SetVlanFiltering(bridge.name, True))

    def widen_old_trunk_guests(self, uplink: Uplink, bridge: Link) -> None:
        """At a conversion: guest ports already on the bridge with only the
        default PVID entry (trunk guests started while it did not filter)
        get every allowed VLAN tagged, so they keep their VLANs."""
        default = bridge.default_pvid
        only_default = PortVlans(untagged=frozenset({default}), pvid=default)
        widen = sorted(uplink.allowed_vlans - {default})
        for port in self.model.ports(bridge.name):
            if (port.kind not in PORT_KINDS or port.name in self.plugged
                    or port.name == uplink.device or port.vlans != only_default or not widen):
                continue
            self.warn("%s: port %s was on trunk bridge %s before it filtered VLANs; it keeps "
                      "every allowed VLAN of uplink %s (%s): plug it again with its own list "
                      "(or restart its guest) to narrow it" % (
                          bridge.name, port.name, bridge.name, uplink.name,
                          format_vlan_list(widen), ))
            self.vlan_adds(port.name, widen)

    def want(self, want: Want) -> None:
        want = kept_protection(want, self.model, self.protected, self.new_ports)
        who = want.who or (want.port or "request")
        uplink = self.config.uplink(want.uplink, who)
        denied = [v for v in want.vlans if v not in uplink.allowed_vlans]
        if denied:
            # The parsers check this already; the planner is the last line.
            raise Refused("%s: VLAN %s not allowed on uplink %s; add it to allowed-vlans in %s"
                          % (who, format_vlan_list(denied), uplink.name, self.conf_hint(uplink)))
        if want.port is not None:
            self.plugged.add(want.port)
        self.check_uplink_mtu(uplink, who)
        if uplink.wiring == TRUNK:
            self.trunk(uplink, who)
            self.trunks[uplink.trunk_bridge] = uplink
            if want.mode == TRUNK and self.filters(uplink):
                self.check_trunk_list(want, uplink, who)
        elif want.mode == TRUNK:
            raise Refused("%s: trunk mode needs uplink %s wired as trunk, but it has wiring = "
                          "access; set wiring = trunk in %s (its NIC then joins bridge %s)"
                          % (who, uplink.name, self.conf_hint(uplink), uplink.trunk_bridge))
        else:
            self.need(uplink.device, who, "uplink device",
                      "fix device = in %s" % self.conf_hint(uplink))
        if want.mode == ACCESS:
            self.access_bridge(uplink, want.vlans[0], who)
        target = wiring.uplink_bridge(uplink, want.mode, want.vlans)
        if want.port is not None:
            self.protect(want, uplink, who)
            self.port(want.port, target, who)
            if want.mode == TRUNK:
                self.trunk_port(want, uplink, who)
            if want.protection is not None:
                link = self.model.get(want.port)
                assert link is not None
                if bool(link.isolated) != want.protection.isolated:
                    self.emit(SetIsolated(want.port, want.protection.isolated))

    def protect(self, want: Want, uplink: Uplink, who: str) -> None:
        """Give the port exactly the filter its protection asks for (none
        when port security is off and virt-vlan's table has a stale chain)."""
        assert want.port is not None
        rules = filter_rules(want.mode, want.protection) if want.protection else ()
        if rules and self.model.filters is None:
            raise Refused("%s: port-security = yes in %s needs nft (package nftables), which "
                          "is not installed; install nftables or set port-security = no there"
                          % (who, self.conf_hint(uplink)))
        if self.model.port_filter(want.port) != rules:
            self.emit(SetPortFilter(want.port, rules))


def kept_protection(want: Want, snap: Snapshot, protected: Optional[Mapping[str, int]],
                    new_ports: FrozenSet[str] = frozenset()) -> Want:
    """The want as this run may wire it: whether a pass over a running guest
    adds port security to its port (docs/port-security.md, "Upgrade notes").

    `protected` None (a guest's start, a plug, a re-tag through the CLI):
    `want` as it is. Otherwise the run is a pass of the agent (reconcile,
    heal, a libvirt event) and `protected` maps each port virt-vlan gave a
    filter to the ifindex its tap had then (host/state.py). A port keeps its
    protection when it is in `new_ports` (a NIC the event hot-plugged or
    re-tagged: wired as its start would be), when its tap has a filter now,
    or when it is that very tap (same ifindex, or 0: filtered before it
    existed) and so lost the filter
    virt-vlan gave it (`nft flush ruleset`): the plan rebuilds it. Any other
    port was never wired with protection (its guest was running before the
    upgrade or the switch to port-security = yes): its want loses its
    protection, so nothing of port security is planned for it (no filter, no
    isolated flag) and the guest keeps its traffic until its next start."""
    if (protected is None or want.protection is None or want.port is None
            or want.port in new_ports):
        return want
    link = snap.get(want.port)
    # Index 0: the filter went in before the tap existed (plan_prefilter).
    if snap.port_filter(want.port) or (link is not None
                                       and protected.get(want.port) in (0, link.index)):
        return want
    return replace(want, protection=None)


def filter_rules(mode: str, protection: Protection) -> Tuple[str, ...]:
    """The filter rule specs (plan/actions.py SetPortFilter) of a port.

    access: control frames, MAC (source, ARP, NDP; the addresses when
    `ips` lists them), rogue servers (RAs, DHCP/DHCPv6 server replies),
    tagged frames and 802.1ad. trunk: control frames, MAC (source only),
    802.1ad, rogue servers only with guard="router". Exceptions (`allow`)
    take out their group: stp, mac-spoof, router."""
    allow = protection.allow
    rules: List[str] = []
    if "stp" not in allow:
        rules.append("stp")
    if "mac-spoof" not in allow:
        rules.append("mac=" + protection.mac)
        if mode == ACCESS:
            rules += ["arp=" + protection.mac, "nd=" + protection.mac]
            v4 = [ip for ip in protection.ips if ":" not in ip]
            v6 = [ip for ip in protection.ips if ":" in ip]
            if protection.ips:
                # Only what is listed: a guest with IPv6 addresses only
                # announces no IPv4 address, and the other way round.
                rules += ["arp-ip=" + ",".join(v4) if v4 else "arp-ip=",
                          "nd-ip=" + ",".join(v6)]
    if "router" not in allow and (mode == ACCESS or protection.guard_router):
        rules += ["ra", "dhcp", "dhcp6"]
    if mode == ACCESS:
        rules.append("tagged")
    rules.append("qinq")
    return tuple(rules)


def plan(wants: Sequence[Want], config: Config, snap: Snapshot,
         protected: Optional[Mapping[str, int]] = None,
         new_ports: FrozenSet[str] = frozenset()) -> Plan:
    """Actions that wire every want onto `snap`; empty when already wired.

    `protected`: None for a start, plug or re-tag (every want gets its
    protection); for a pass of the agent, the ports recorded as protected,
    and `new_ports` those its event hot-plugged or re-tagged (see
    kept_protection).
    Raises Refused (nothing to apply) when any want is unsafe or impossible.
    """
    builder = _Builder(config, snap, protected, new_ports)
    for want in wants:
        builder.want(want)
    for uplink in builder.trunks.values():
        builder.sync_trunk(uplink, convert=True)
    return builder.plan()


def plan_prefilter(want: Want, config: Config, snap: Snapshot) -> Plan:
    """The port filter of `want` for a tap that does not exist yet: its name
    is chosen by the caller, which then has libvirt create the tap already
    on its bridge (`virt-vlan attach --live`). nftables matches the filter
    by interface name, so the tap is filtered from its first frame. Empty
    when the want has no protection or its filter is in place; Refused as
    the planner refuses a protected port without nft."""
    builder = _Builder(config, snap)
    if want.port is not None and want.protection is not None:
        who = want.who or want.port
        builder.protect(want, config.uplink(want.uplink, who), who)
    return builder.plan()


@lru_cache(maxsize=8)
def _access_names(config: Config) -> Dict[str, Tuple[Uplink, int]]:
    """Every access bridge name the config can produce -> (uplink, VLAN)."""
    return {u.access_bridge(v): (u, v) for u in config.uplinks for v in u.allowed_vlans}


@lru_cache(maxsize=8)
def _feed_names(config: Config) -> Dict[str, Tuple[Uplink, int]]:
    return {u.feed(v): (u, v) for u in config.uplinks for v in u.allowed_vlans}


def plan_unplug(port: str, config: Config, snap: Snapshot,
                in_use: FrozenSet[str] = frozenset()) -> Plan:
    """Take `port` off its virt-vlan bridge, then clean up (plan_cleanup)."""
    link = snap.get(port)
    if link is None:
        raise Refused("%s: no such port; nothing to unplug" % port)
    if link.master is not None:
        ours = set(_access_names(config)) | {u.trunk_bridge for u in config.uplinks
                                            if u.wiring == TRUNK}
        if link.master not in ours:
            raise Refused("%s: it is a port of %s, which is not a virt-vlan bridge; leaving it "
                          "alone (use 'ip link set dev %s nomaster' yourself)"
                          % (port, link.master, port))
        snap = Release(port).simulate(snap)
        first: Tuple[Action, ...] = (Release(port),)
        if snap.port_filter(port):
            first += (SetPortFilter(port, ()),)
            snap = SetPortFilter(port, ()).simulate(snap)
        rest = plan_cleanup(config, snap, in_use)
        return Plan(first + rest.actions, rest.warnings)
    return plan_cleanup(config, snap, in_use)


def plan_cleanup(config: Config, snap: Snapshot, in_use: FrozenSet[str] = frozenset()) -> Plan:
    """Delete what virt-vlan made for VLANs that no guest uses any more.

    An access bridge of the config is idle when its only port is its feed,
    it is not in `in_use` (bridges reserved by guests between libvirt's
    prepare and start, and by running virt-vlan networks), and its uplink
    does not keep empty bridges. An idle bridge is deleted if it carries our
    mark; an admin's idle bridge stays, but a feed we added to it goes, so
    the host is as before. A marked feed also goes when its bridge is gone
    and it has no master. Trunk bridges and host VLANs are never removed.
    """
    access, feeds = _access_names(config), _feed_names(config)
    idle = set()
    for link in snap:
        if link.kind != "bridge" or link.name not in access:
            continue
        uplink, vid = access[link.name]
        feed = uplink.feed(vid)
        guests = [p for p in snap.ports(link.name) if p.name != feed]
        if not guests and link.name not in in_use and not uplink.keep_empty_bridges:
            idle.add(link.name)
    doomed = [link.name for link in snap if link.managed and link.name in idle]
    for link in snap:
        if not link.managed or link.kind != "vlan" or link.name not in feeds:
            continue
        uplink, vid = feeds[link.name]
        if vid in uplink.host_vlans:
            continue
        bridge = uplink.access_bridge(vid)
        if link.master in idle or (link.master is None and snap.get(bridge) is None):
            doomed.append(link.name)
    builder = _Builder(config, snap)
    # Filters of guest ports that are gone (their guest stopped): the chain
    # would otherwise wait for the next tap of that name.
    for found in snap.filters or ():
        if snap.get(found.port) is None:
            builder.emit(SetPortFilter(found.port, ()))
    for name in doomed:
        builder.emit(DeleteLink(name))
    # Trunk bridges that filter: uplink and self entries follow what is left
    # (a trunk guest's tap vanishes with its entries when the guest stops).
    for uplink in config.uplinks:
        if uplink.wiring == TRUNK:
            builder.sync_trunk(uplink, convert=False)
    return builder.plan()


def describe(plan_: Plan) -> Optional[str]:
    """The plan as `ip` commands, one per line; None when empty."""
    return "\n".join(plan_.render()) if plan_ else None
