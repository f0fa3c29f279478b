"""Host configuration: /etc/virt-vlan/virt-vlan.conf (INI), checked at load.

The file is the admin's, not the guest owner's: it lists which VLANs guests
may ask for on which uplink, so an unprivileged libvirt user cannot bridge a
guest into the management VLAN or make us enslave an arbitrary interface.
Every refusal names the file and line. The keys are defined once, in KEYS
below; virt-vlan.conf(5) is generated from that table.
"""

import os
import re
import string
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from virtvlan.errors import InputError, cut
from virtvlan.model import ACCESS, TRUNK
from virtvlan.parse.vlans import VlanSyntax, format_vlan_list, parse_vlan_list

DEFAULT_PATH = "/etc/virt-vlan/virt-vlan.conf"
ENV_PATH = "VIRT_VLAN_CONFIG"

# Linux limits interface names to IFNAMSIZ-1 = 15 bytes, no '/', ':', space or NUL
# (dev_valid_name in net/core/dev.c).
IFNAMSIZ_MAX = 15
_BAD_NAME = re.compile(r"[/:\s\x00]")

@dataclass(frozen=True)
class Key:
    """One config key. KEYS is the only list of keys: the loader accepts
    exactly these (per section), and virt-vlan.conf(5) is generated from
    them (cli/manpage.py), so the page cannot miss or invent a key."""

    section: str  # GLOBAL or UPLINK
    name: str
    kind: str  # the value's type, one of KINDS (the loader checks bool, vlans
    # and template values by kind, the others by key)
    default: str  # as written in the file; "" when there is none
    example: str  # a value the loader accepts (a test loads them all)
    meaning: str  # one paragraph for the man page
    required: bool = False
    fields: Tuple[str, ...] = ()  # kind "template": the placeholders it may use


GLOBAL = "global"
UPLINK = "uplink"
# The sections the loader accepts: (section, header as written, meaning).
SECTIONS = (
    (GLOBAL, "[global]", "Host-wide settings; at most one such section."),
    (UPLINK, "[uplink NAME]", "One per uplink: a NIC or bond that carries tagged VLANs to "
     "the switch. NAME is what domains write in uplink='NAME'; {n} in the default names "
     "is the section's position in the file: 0 for the first [uplink], 1 for the second."),
)
# Value types: what each accepts, as the man page says it.
KINDS = {
    "uplink": "the NAME of an [uplink NAME] section",
    "seconds": "a number of seconds",
    "template": "an interface name template: text with {placeholders}, at most 15 "
                "bytes once filled in, no '/', ':' or spaces",
    "wiring": "access or trunk",
    "vlans": "comma-separated VLAN ids (1-4094) and inclusive ranges, e.g. 5,7,100-110",
    "bool": "yes, true, on, 1 or no, false, off, 0",
    "mtu": "an MTU in 68-65535, or empty",
    "exceptions": "comma-separated port-security exceptions from mac-spoof, router, stp, "
                  "or empty (none)",
}
# Port-security exceptions a NIC's allow="..." may name (docs/port-security.md).
EXCEPTIONS = ("mac-spoof", "router", "stp")
_ALL_FIELDS = ("uplink", "n", "device", "bridge", "vlan")
KEYS: Tuple[Key, ...] = (
    Key(GLOBAL, "default-uplink", "uplink", "", "eth0",
        "The uplink used by <vv:interface> and <vv:network> entries that have no "
        "uplink='...' attribute. Default: the first [uplink] section."),
    Key(GLOBAL, "lock-timeout", "seconds", "30", "30",
        "Seconds (1-3600) to wait for the host-wide lock while another virt-vlan run "
        "(another guest starting or stopping) holds it."),
    Key(GLOBAL, "reconcile-interval", "seconds", "300", "300",
        "Seconds (10-86400) between the agent's full reconciles: the live XML of every "
        "running tagged guest against the host, the safety net for lost events."),
    Key(UPLINK, "device", "template", "{uplink}", "enp3s0f0",
        "The network device (NIC or bond) of this uplink.", fields=("uplink", "n")),
    Key(UPLINK, "wiring", "wiring", ACCESS, TRUNK,
        "access: one VLAN device per VLAN on the NIC (eth0.5), bridged untagged into a "
        "per-VLAN bridge (br05); the NIC is no bridge port. trunk: the NIC becomes a port "
        "of the trunk bridge; trunk guests join it and see tagged frames, access bridges "
        "are fed from VLAN devices on it (br1.5)."),
    Key(UPLINK, "allowed-vlans", "vlans", "", "5,7,100-110",
        "The VLANs guests may ask for on this uplink.", required=True),
    Key(UPLINK, "trunk-bridge", "template", "br{n}", "br{n}",
        "With wiring = trunk: the trunk bridge.", fields=("uplink", "n", "device")),
    Key(UPLINK, "trunk-vlan-name", "template", "{bridge}.{vlan}", "{bridge}.{vlan}",
        "With wiring = trunk: the VLAN device on the trunk bridge for VLAN {vlan}; it "
        "feeds the access bridge or carries a host VLAN. Must contain {vlan}.",
        fields=_ALL_FIELDS),
    Key(UPLINK, "access-bridge", "template", "br{n}{vlan}", "br{n}{vlan}",
        "The access bridge of VLAN {vlan}: guests with mode='access' and virt-vlan "
        "networks are its ports. Must contain {vlan}.", fields=_ALL_FIELDS),
    Key(UPLINK, "access-feed", "template", "{device}.{vlan}", "{device}.{vlan}",
        "With wiring = access: the VLAN device that feeds VLAN {vlan} into its access "
        "bridge. Must contain {vlan}.", fields=_ALL_FIELDS),
    Key(UPLINK, "keep-empty-bridges", "bool", "no", "yes",
        "Whether access bridges and their feeds stay when their last guest stops. "
        "Devices the admin made are never deleted."),
    Key(UPLINK, "host-vlans", "vlans", "", "10",
        "With wiring = trunk only: VLANs the host itself uses on this uplink; virt-vlan "
        "makes their VLAN devices on the trunk bridge and never deletes them. Not in "
        "allowed-vlans."),
    Key(UPLINK, "trunk-filtering", "bool", "no", "yes",
        "With wiring = trunk only: yes turns VLAN filtering on for an adopted (admin-made) "
        "trunk bridge that runs without it, after programming every port's VLANs. Bridges "
        "virt-vlan creates always filter."),
    Key(UPLINK, "port-security", "bool", "yes", "no",
        "Port security for every guest port virt-vlan wires on this uplink: no STP BPDUs "
        "or other link-local control frames, frames only from the guest's own MAC, ARP and "
        "neighbour advertisements only for it, no router advertisements or DHCP server "
        "replies, no tagged frames on access NICs (trunk NICs: control frames, MAC and "
        "802.1ad only), enforced by the kernel with virt-vlan's nftables table bridge "
        "virt_vlan (needs nft). A guest running when it is switched on keeps its traffic "
        "until its next start; no turns it off (see docs/port-security.md)."),
    Key(UPLINK, "allowed-exceptions", "exceptions", "mac-spoof,router,stp", "router",
        "Which port-security exceptions a domain's allow='...' may ask for on this uplink; "
        "a definition asking for another is refused when the guest starts. A host whose "
        "guests belong to different people should narrow it (empty: none)."),
    Key(UPLINK, "mtu", "mtu", "", "1496",
        "MTU of the feeds, bridges and taps virt-vlan builds on this uplink. Default: "
        "they inherit the uplink device's."),
)


def keys(section: str) -> Tuple[Key, ...]:
    """The keys of `section` (GLOBAL or UPLINK), in the table's order."""
    return tuple(k for k in KEYS if k.section == section)


GLOBAL_KEYS = {k.name for k in keys(GLOBAL)}
UPLINK_KEYS = {k.name for k in keys(UPLINK)}
UPLINK_DEFAULTS = {k.name: k.default for k in keys(UPLINK) if not k.required}
# Which placeholders each template may use.
TEMPLATE_FIELDS = {k.name: set(k.fields) for k in KEYS if k.kind == "template"}
_DEFAULT = {k.name: k.default for k in keys(GLOBAL)}
_BOOL = {"yes": True, "true": True, "on": True, "1": True,
         "no": False, "false": False, "off": False, "0": False}


@dataclass(frozen=True)
class Uplink:
    """One uplink: a physical NIC or bond and how guests reach its VLANs."""

    name: str
    position: int  # 0 for the first [uplink] section: "br0", "br05"
    device: str
    wiring: str  # ACCESS: feeds are <device>.<V>; TRUNK: device is a port of trunk_bridge
    allowed_vlans: FrozenSet[int]
    trunk_bridge: str
    trunk_vlan_template: str
    access_bridge_template: str
    access_feed_template: str
    keep_empty_bridges: bool
    host_vlans: Tuple[int, ...]
    where: str  # "file:line" of the section header, for messages
    # Trunk wiring: turn VLAN filtering on for an adopted (admin-made) trunk
    # bridge that runs without it. Bridges virt-vlan creates always filter.
    trunk_filtering: bool = False
    # MTU of the feeds, bridges and taps virt-vlan builds on this uplink;
    # None: they inherit the uplink device's.
    mtu: Optional[int] = None
    # Port security for the guest ports wired here, and the exceptions a
    # domain may ask for (EXCEPTIONS).
    port_security: bool = False
    allowed_exceptions: FrozenSet[str] = frozenset(EXCEPTIONS)

    def _fill(self, template: str, vlan: int) -> str:
        return template.format(uplink=self.name, n=self.position, device=self.device,
                               bridge=self.trunk_bridge, vlan=vlan)

    def access_bridge(self, vlan: int) -> str:
        return self._fill(self.access_bridge_template, vlan)

    def trunk_vlan(self, vlan: int) -> str:
        """The sub-interface `br0.V` on the trunk bridge."""
        return self._fill(self.trunk_vlan_template, vlan)

    def feed(self, vlan: int) -> str:
        """The device that feeds VLAN `vlan` untagged into its access bridge."""
        if self.wiring == TRUNK:
            return self.trunk_vlan(vlan)
        return self._fill(self.access_feed_template, vlan)

    def feed_parent(self) -> str:
        return self.trunk_bridge if self.wiring == TRUNK else self.device


@dataclass(frozen=True)
class Config:
    path: str
    uplinks: Tuple[Uplink, ...] = ()
    default_uplink: Optional[str] = None
    lock_timeout: float = 30.0
    # Seconds between the agent's full reconciles (live XML of every running
    # guest against the host), its safety net for lost events.
    reconcile_interval: float = 300.0

    def uplink(self, name: Optional[str], who: str) -> Uplink:
        """The uplink called `name` (the default one when None).

        `who` names the asker in the error ("domain vm1, interface 52:54:...").
        """
        want = name if name is not None else self.default_uplink
        for uplink in self.uplinks:
            if uplink.name == want:
                return uplink
        known = ", ".join(u.name for u in self.uplinks) or "none"
        if name is None:
            raise InputError("%s: no uplink given and %s defines none; add an [uplink NAME] "
                             "section" % (who, self.path))
        raise InputError("%s: unknown uplink %s; %s defines: %s; use one of those or add "
                         "[uplink %s]" % (who, cut(repr(name)), self.path, cut(known, 200),
                                          cut(name)))


def load(path: Optional[str] = None) -> Optional[Config]:
    """Load and check the config; None when the file does not exist.

    The path is `path`, else $VIRT_VLAN_CONFIG, else DEFAULT_PATH.
    Raises InputError naming file:line for anything it does not accept.
    """
    path = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError("config %s: cannot read it: %s; fix its permissions or "
                         "encoding (UTF-8 text)" % (path, err)) from err
    # parse() is a pure function of (text, path) and a Config is frozen: the
    # agent reads the file at every call it serves, but parses it again only
    # when it changed (its checks are per VLAN: 20 ms for 1-4094 natively).
    key = (path, text)
    config = _PARSED.get(key)
    if config is None:
        config = parse(text, path)
        if len(_PARSED) >= 8:
            _PARSED.clear()
        _PARSED[key] = config
    return config


_PARSED: Dict[Tuple[str, str], Config] = {}


def missing_config_error(path: Optional[str], who: str) -> InputError:
    """The error for a tagged guest on a host with no config file."""
    path = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    return InputError(
        "%s asks for VLANs but %s does not exist; write it with at least "
        "'[uplink eth0]' and 'allowed-vlans = 5,7' (see virt-vlan.conf(5))"
        % (who, path))


def _seconds(values: Dict[str, Tuple[str, int]], key: str, low: float, high: float,
             example: int, path: str) -> float:
    """A [global] number of seconds in low-high (its default when unset)."""
    if key not in values:
        return float(_DEFAULT[key])
    value, line = values[key]
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not low <= seconds <= high:  # NaN fails this too
        raise InputError("config %s:%d: %s = %s is not a number of seconds in %g-%g; write "
                         "e.g. %s = %d" % (path, line, key, value, low, high, key, example))
    return seconds


def parse(text: str, path: str) -> Config:
    """Parse config text (see load)."""
    sections = _read_ini(text, path)
    global_values: Dict[str, Tuple[str, int]] = {}
    uplink_sections: List[Tuple[str, int, Dict[str, Tuple[str, int]]]] = []
    seen: Dict[str, int] = {}
    for header, line, values in sections:
        words = header.split()
        if header == "global":
            if "global" in seen:
                raise InputError("config %s:%d: [global] is listed twice (first at line %d); "
                                 "merge the two sections" % (path, line, seen["global"]))
            seen["global"] = line
            _check_keys(values, GLOBAL_KEYS, path, "[global]")
            global_values = values
        elif len(words) == 2 and words[0] == "uplink":
            name = words[1]
            if name in seen:
                raise InputError("config %s:%d: [uplink %s] is listed twice (first at line %d); "
                                 "merge the two sections" % (path, line, name, seen[name]))
            seen[name] = line
            _check_keys(values, UPLINK_KEYS, path, "[uplink %s]" % name)
            uplink_sections.append((name, line, values))
        else:
            raise InputError("config %s:%d: unknown section [%s]; use [global] or "
                             "[uplink NAME]" % (path, line, header))

    uplinks = tuple(_uplink(name, pos, line, values, path)
                    for pos, (name, line, values) in enumerate(uplink_sections))
    _check_devices(uplinks, path)
    _check_collisions(uplinks, path)

    default = uplinks[0].name if uplinks else None
    if "default-uplink" in global_values:
        default, line = global_values["default-uplink"]
        names = [u.name for u in uplinks]
        if default not in names:
            raise InputError("config %s:%d: default-uplink = %s names no [uplink] section; "
                             "use one of: %s" % (path, line, default, ", ".join(names) or "none"))
    lock_timeout = _seconds(global_values, "lock-timeout", 1, 3600, 30, path)
    reconcile_interval = _seconds(global_values, "reconcile-interval", 10, 86400, 300, path)
    return Config(path=path, uplinks=uplinks, default_uplink=default, lock_timeout=lock_timeout,
                  reconcile_interval=reconcile_interval)


def _read_ini(text: str, path: str) -> List[Tuple[str, int, Dict[str, Tuple[str, int]]]]:
    """[section] / key = value lines, with '#' and ';' comments, keeping lines."""
    sections: List[Tuple[str, int, Dict[str, Tuple[str, int]]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"\s[#;]", raw, maxsplit=1)[0].strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InputError("config %s:%d: %r is not a section header; write "
                                 "[uplink NAME]" % (path, number, raw.strip()))
            sections.append((" ".join(line[1:-1].split()), number, {}))
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError("config %s:%d: %r is not 'key = value'" % (path, number, raw.strip()))
        if not sections:
            raise InputError("config %s:%d: %s is outside any section; put it under "
                             "[global] or [uplink NAME]" % (path, number, key))
        values = sections[-1][2]
        if key in values:
            raise InputError("config %s:%d: %s is set twice in [%s] (first at line %d); "
                             "keep one" % (path, number, key, sections[-1][0], values[key][1]))
        values[key] = (value.strip(), number)
    return sections


def _check_keys(values: Dict[str, Tuple[str, int]], allowed: set, path: str, section: str) -> None:
    for key, (_, line) in values.items():
        if key not in allowed:
            raise InputError("config %s:%d: unknown key %r in %s; known keys: %s"
                             % (path, line, key, section, ", ".join(sorted(allowed))))


def _template(key: str, value: str, line: int, path: str, section: str) -> str:
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value)
                 if f is not None]
        fields = {f for f, _, _ in parts}
        for f, spec, conv in parts:
            if spec or conv:
                # "{vlan:{x}}" or "{n!r}" would fail or vary at format time.
                raise ValueError("{%s%s%s} has a format spec; write {%s}"
                                 % (f, "!" + conv if conv else "", ":" + spec if spec else "", f))
    except ValueError as err:
        raise InputError("config %s:%d: %s = %s in %s is not a valid template (%s); use "
                         "placeholders like {vlan}" % (path, line, key, value, section, err)) from err
    unknown = fields - TEMPLATE_FIELDS[key]
    if unknown or "" in fields:
        raise InputError("config %s:%d: %s = %s in %s uses {%s}; it may use only %s"
                         % (path, line, key, value, section, sorted(unknown or {""})[0],
                            ", ".join("{%s}" % f for f in sorted(TEMPLATE_FIELDS[key]))))
    if "vlan" in TEMPLATE_FIELDS[key] and "vlan" not in fields:
        raise InputError("config %s:%d: %s = %s in %s must contain {vlan}, or every VLAN "
                         "gets the same name" % (path, line, key, value, section))
    return value


def _uplink(name: str, position: int, line: int, values: Dict[str, Tuple[str, int]],
            path: str) -> Uplink:
    section = "[uplink %s]" % name

    def get(key: str) -> Tuple[str, int]:
        return values.get(key) or (UPLINK_DEFAULTS.get(key, ""), line)

    if "allowed-vlans" not in values:
        raise InputError("config %s:%d: %s has no allowed-vlans; list the VLANs guests may "
                         "use, e.g. allowed-vlans = 5,7,100-110" % (path, line, section))
    vlan_lists = {}
    for entry in (k for k in keys(UPLINK) if k.kind == "vlans"):
        key = entry.name
        text, where = get(key)
        if not entry.required and not text:
            vlan_lists[key] = ()
            continue
        try:
            vlan_lists[key] = parse_vlan_list(text)
        except VlanSyntax as err:
            raise InputError("config %s:%d: %s in %s: %s" % (path, where, key, section, err)) from err

    wiring, where = get("wiring")
    if wiring not in (ACCESS, TRUNK):
        raise InputError("config %s:%d: wiring = %s in %s; use wiring = access (VLAN devices "
                         "on the NIC) or wiring = trunk (NIC in a trunk bridge)"
                         % (path, where, wiring, section))
    if vlan_lists["host-vlans"] and wiring != TRUNK:
        raise InputError("config %s:%d: host-vlans in %s applies to wiring = trunk only; on "
                         "access wiring configure the host's VLAN devices in the host's "
                         "network config" % (path, get("host-vlans")[1], section))
    both = sorted(set(vlan_lists["host-vlans"]) & set(vlan_lists["allowed-vlans"]))
    if both:
        raise InputError("config %s:%d: VLAN %d in %s is in both host-vlans and allowed-vlans; "
                         "the host's %s device cannot also feed guests' bridge: remove it from "
                         "one list (for a host address on a guest VLAN, put it on that VLAN's "
                         "bridge and set keep-empty-bridges = yes)"
                         % (path, get("host-vlans")[1], both[0], section, "VLAN"))
    flags: Dict[str, bool] = {}
    for key in (k.name for k in keys(UPLINK) if k.kind == "bool"):
        text, where = get(key)
        if text.lower() not in _BOOL:
            raise InputError("config %s:%d: %s = %s in %s; use yes or no"
                             % (path, where, key, text, section))
        flags[key] = _BOOL[text.lower()]
    if flags["trunk-filtering"] and wiring != TRUNK:
        where = get("trunk-filtering")[1]
        raise InputError("config %s:%d: trunk-filtering in %s applies to wiring = trunk only; "
                         "remove it or set wiring = trunk" % (path, where, section))
    mtu_text, where = get("mtu")
    mtu: Optional[int] = None
    if mtu_text:
        # 68: the IPv4 minimum (RFC 791); 65535: the largest MTU netlink carries
        # for Ethernet-like devices in practice. Taps and bridges accept both.
        # isascii: "¹⁵⁰⁰" passes isdigit() but not int().
        if not (mtu_text.isascii() and mtu_text.isdigit() and len(mtu_text) <= 5
                and 68 <= int(mtu_text) <= 65535):
            raise InputError("config %s:%d: mtu = %s in %s is not an MTU in 68-65535; write "
                             "e.g. mtu = 1496 (or leave it out to inherit the NIC's)"
                             % (path, where, mtu_text, section))
        mtu = int(mtu_text)

    exceptions_text, where = get("allowed-exceptions")
    try:
        allowed_exceptions = parse_exceptions(exceptions_text)
    except ValueError as err:
        raise InputError("config %s:%d: allowed-exceptions in %s: %s"
                         % (path, where, section, err)) from err

    templates = {key: _template(key, get(key)[0], get(key)[1], path, section)
                 for key in TEMPLATE_FIELDS}
    device = templates["device"].format(uplink=name, n=position)
    bridge = templates["trunk-bridge"].format(uplink=name, n=position, device=device)
    uplink = Uplink(
        name=name, position=position, device=device, wiring=wiring,
        allowed_vlans=frozenset(vlan_lists["allowed-vlans"]), trunk_bridge=bridge,
        trunk_vlan_template=templates["trunk-vlan-name"],
        access_bridge_template=templates["access-bridge"],
        access_feed_template=templates["access-feed"],
        keep_empty_bridges=flags["keep-empty-bridges"],
        host_vlans=tuple(vlan_lists["host-vlans"]), where="%s:%d" % (path, line),
        trunk_filtering=flags["trunk-filtering"], mtu=mtu,
        port_security=flags["port-security"], allowed_exceptions=allowed_exceptions)
    for key, made in (("device", device), ("trunk-bridge", bridge)):
        _check_name(made, key, get(key)[1], path, section)
    for vlan in sorted(uplink.allowed_vlans | set(uplink.host_vlans)):
        for key, made in _generated(uplink, vlan):
            _check_name(made, key, get(key)[1], path, section, vlan)
    return uplink


def parse_exceptions(text: str) -> FrozenSet[str]:
    """'mac-spoof, router' -> the set; ValueError naming an unknown one."""
    found = {word.strip() for word in text.split(",") if word.strip()}
    unknown = sorted(found - set(EXCEPTIONS))
    if unknown:
        raise ValueError("unknown exception %r; use %s" % (unknown[0], ", ".join(EXCEPTIONS)))
    return frozenset(found)


def _generated(uplink: Uplink, vlan: int) -> List[Tuple[str, str]]:
    """(template key, name) pairs this uplink can create for `vlan`."""
    names = []
    if vlan in uplink.allowed_vlans:
        names.append(("access-bridge", uplink.access_bridge(vlan)))
        if uplink.wiring == ACCESS:
            names.append(("access-feed", uplink.feed(vlan)))
    if uplink.wiring == TRUNK:
        names.append(("trunk-vlan-name", uplink.trunk_vlan(vlan)))
    return names


def _check_name(name: str, key: str, line: int, path: str, section: str,
                vlan: Optional[int] = None) -> None:
    what = "%s gives %r" % (key, name) + (" for VLAN %d" % vlan if vlan is not None else "")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > IFNAMSIZ_MAX:
        # Bytes, not characters: IFNAMSIZ counts bytes ("brü" is 4).
        raise InputError("config %s:%d: %s in %s: %d bytes, Linux allows %d; use a "
                         "shorter template" % (path, line, what, section, size, IFNAMSIZ_MAX))
    if not name or name in (".", "..") or _BAD_NAME.search(name):
        raise InputError("config %s:%d: %s in %s: not a valid interface name (no '/', ':', "
                         "spaces or NUL); fix the template" % (path, line, what, section))


def _check_devices(uplinks: Tuple[Uplink, ...], path: str) -> None:
    owner: Dict[str, Uplink] = {}
    for uplink in uplinks:
        first = owner.setdefault(uplink.device, uplink)
        if first is not uplink:
            raise InputError("config %s: uplinks %s and %s (at %s) both use device %s; "
                             "one device is one uplink" % (uplink.where, first.name,
                                                           uplink.name, first.where, uplink.device))


def _check_collisions(uplinks: Tuple[Uplink, ...], path: str) -> None:
    """No two things (across all uplinks) may be given the same device name."""
    owner: Dict[str, str] = {}

    def claim(name: str, what: str, where: str) -> None:
        first = owner.setdefault(name, what)
        if first != what:
            raise InputError("config %s: %s and %s are both named %r; change a naming "
                             "template so names cannot collide" % (where, first, what, name))

    for uplink in uplinks:
        claim(uplink.device, "device of uplink %s" % uplink.name, uplink.where)
        if uplink.wiring == TRUNK:
            claim(uplink.trunk_bridge, "trunk bridge of uplink %s" % uplink.name, uplink.where)
    for uplink in uplinks:
        for vlan in sorted(uplink.allowed_vlans | set(uplink.host_vlans)):
            for key, name in _generated(uplink, vlan):
                claim(name, "%s of uplink %s for VLAN %d" % (key, uplink.name, vlan), uplink.where)


def describe(config: Config) -> str:
    """A short human summary, for `virt-vlan check-config`."""
    lines = ["%s: %d uplink(s), default %s" % (config.path, len(config.uplinks),
                                               config.default_uplink)]
    for u in config.uplinks:
        example = min(u.allowed_vlans)
        lines.append("  %s: device %s, wiring %s, VLANs %s; VLAN %d -> bridge %s fed by %s"
                     % (u.name, u.device, u.wiring, format_vlan_list(u.allowed_vlans),
                        example, u.access_bridge(example), u.feed(example)))
    return "\n".join(lines)


def load_or_refuse(path: Optional[str], who: str) -> Config:
    """The config for `who` (a tagged guest or network, a command, the agent),
    which needs one: load(path), or missing_config_error(path, who) raised
    when the file does not exist. Other errors as load()."""
    config = load(path)
    if config is None:
        raise missing_config_error(path, who)
    return config
