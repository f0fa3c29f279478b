"""The one module that imports libvirt-python (the CLI's domain commands, the agent).

The hook path (dropin.py, hook.py, engine, plan, apply, rtnl) never imports
it: libvirt runs the hook while it holds the domain, and a call back into
the daemon from there deadlocks.

Everything libvirt raises leaves this module as a one-line VirtVlanError
naming the URI or the domain and the fix. libvirt's default error handler
prints every error on stderr itself; `connect` replaces it with a silent one
so that the CLI's one line is the only output.

Metadata goes through virDomainGetMetadata/SetMetadata with our namespace
and a fixed prefix, never through edits of the domain XML: libvirt merges
the element into <metadata> itself and keeps other tools' elements intact.
"""

import logging
from typing import List, Optional, Tuple

import libvirt

from . import NAMESPACE
from .errors import InputError, VirtVlanError

log = logging.getLogger(__name__)

# The prefix libvirt writes for our namespace (<vv:vlan xmlns:vv=...>); the
# README and the xml-examples use the same.
PREFIX = "vv"

# virDomainModificationImpact, as `virsh metadata` maps its options.
AFFECT_CURRENT = libvirt.VIR_DOMAIN_AFFECT_CURRENT
AFFECT_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
AFFECT_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


class ConnectError(VirtVlanError):
    """libvirt did not answer at the URI (daemon down, no permission, bad URI)."""


class LibvirtError(VirtVlanError):
    """libvirt refused or failed a call on a domain; nothing more was done."""


class NotSupported(LibvirtError):
    """The connection's driver does not implement the call (e.g. the test
    driver has no device update); callers may carry on without it."""


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt's error callback: say nothing, the caller reports the error."""


def affect_flags(live: bool, config: bool, current: bool) -> int:
    """--live/--config/--current -> virDomainModificationImpact, as virsh does.

    --current excludes the other two; neither given is CURRENT (the live
    definition of a running guest, the persistent one of a stopped guest).
    Raises InputError for --current together with --live or --config.
    """
    if current and (live or config):
        raise InputError("--current cannot be combined with --%s; use --live and/or --config, "
                         "or --current alone" % ("live" if live else "config"))
    flags = AFFECT_CURRENT
    if live:
        flags |= AFFECT_LIVE
    if config:
        flags |= AFFECT_CONFIG
    return flags


def _message(err: "libvirt.libvirtError") -> str:
    return str(err.get_error_message() or err).strip()


class Guest:
    """A libvirt domain, with the calls the domain commands need."""

    def __init__(self, dom: "libvirt.virDomain", uri: str) -> None:
        self._dom = dom
        self.uri = uri
        self.name: str = dom.name()
        self.uuid: str = dom.UUIDString()

    def __repr__(self) -> str:
        return "Guest(%r, %r)" % (self.name, self.uuid)

    def _fail(self, what: str, err: "libvirt.libvirtError", fix: str) -> LibvirtError:
        cls = NotSupported if err.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT else LibvirtError
        return cls("domain %s: libvirt at %s refused to %s: %s; %s"
                   % (self.name, self.uri, what, _message(err), fix))

    @property
    def active(self) -> bool:
        try:
            return bool(self._dom.isActive())
        except libvirt.libvirtError as err:
            raise self._fail("report its state", err, "check that it still exists") from err

    @property
    def persistent(self) -> bool:
        try:
            return bool(self._dom.isPersistent())
        except libvirt.libvirtError as err:
            raise self._fail("report whether it is defined", err,
                             "check that it still exists") from err

    def targets(self, flags: int) -> Tuple[bool, bool]:
        """(live, config): which definitions a call with `flags` changes.

        CURRENT resolves as libvirt does: the live one of a running guest,
        else the persistent one. Raises InputError where libvirt would refuse
        (--live on a stopped guest, --config on a transient one).
        """
        active = self.active
        live = bool(flags & AFFECT_LIVE)
        config = bool(flags & AFFECT_CONFIG)
        if not live and not config:
            live, config = active, not active
        if live and not active:
            raise InputError("domain %s is not running, so it has no live definition; drop "
                             "--live (or start it first)" % self.name)
        if config and not self.persistent:
            raise InputError("domain %s is transient (no persistent definition); drop --config"
                             % self.name)
        return live, config

    def xml(self, inactive: bool = False) -> bytes:
        """The domain XML: live (with tap names) or, with `inactive`, the
        persistent definition the next start uses."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        try:
            text = self._dom.XMLDesc(flags)
        except libvirt.libvirtError as err:
            raise self._fail("return its XML", err, "check that it still exists") from err
        return text.encode("utf-8") if isinstance(text, str) else text

    def metadata(self, flags: int = AFFECT_CURRENT) -> Optional[bytes]:
        """Our metadata element of the definition `flags` selects, or None.

        libvirt returns it without namespace: <vlan><interface .../></vlan>.
        """
        try:
            text = self._dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, flags)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise self._fail("read its virt-vlan metadata", err,
                             "check the domain and your access to it") from err
        return text.encode("utf-8") if isinstance(text, str) else text

    def set_metadata(self, element: Optional[bytes], flags: int) -> None:
        """Replace our metadata element (None: remove it) in the definitions
        `flags` selects. `element` is unnamespaced (<vlan>...</vlan>): libvirt
        puts the whole subtree into NAMESPACE with PREFIX."""
        text = element.decode("utf-8") if element is not None else None
        try:
            self._dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, text,
                                  PREFIX if text is not None else None, NAMESPACE, flags)
        except libvirt.libvirtError as err:
            raise self._fail("write its virt-vlan metadata", err,
                             "check the options (--live needs a running guest, --config a "
                             "defined one) and that the connection is not read-only") from err

    def update_device(self, xml: bytes, flags: int) -> None:
        """virDomainUpdateDeviceFlags: change a device in place (for a NIC's
        <source bridge> libvirt moves a running guest's tap itself)."""
        try:
            self._dom.updateDeviceFlags(xml.decode("utf-8"), flags)
        except libvirt.libvirtError as err:
            raise self._fail("update the device", err,
                             "check the device XML with 'virsh dumpxml %s'" % self.name) from err

    def attach_device(self, xml: bytes, flags: int) -> None:
        try:
            self._dom.attachDeviceFlags(xml.decode("utf-8"), flags)
        except libvirt.libvirtError as err:
            raise self._fail("attach the device", err,
                             "check the device XML and the guest's free PCI slots") from err

    def detach_device(self, xml: bytes, flags: int) -> None:
        try:
            self._dom.detachDeviceFlags(xml.decode("utf-8"), flags)
        except libvirt.libvirtError as err:
            raise self._fail("detach the device", err,
                             "the guest must acknowledge the unplug (ACPI); retry, or "
                             "detach it with --config and restart the guest") from err


class Connection:
    """An open libvirt connection; `uri` is the one libvirt actually chose."""

    def __init__(self, conn: "libvirt.virConnect") -> None:
        self._conn = conn
        try:
            self.uri: str = conn.getURI()
        except libvirt.libvirtError:
            self.uri = "?"

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError as err:
                log.debug("closing %s: %s", self.uri, _message(err))
            self._conn = None

    def _lookup(self, name_or_uuid: str) -> "libvirt.virDomain":
        # virsh's order: ID, UUID, name. Each miss is VIR_ERR_NO_DOMAIN; any
        # other error (daemon gone) is reported as it is.
        tries = []
        if name_or_uuid.isdigit():
            tries.append(lambda: self._conn.lookupByID(int(name_or_uuid)))
        if len(name_or_uuid) in (32, 36):
            tries.append(lambda: self._conn.lookupByUUIDString(name_or_uuid))
        tries.append(lambda: self._conn.lookupByName(name_or_uuid))
        for attempt in tries:
            try:
                return attempt()
            except libvirt.libvirtError as err:
                if err.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                                libvirt.VIR_ERR_INVALID_ARG):
                    raise LibvirtError("domain %s: libvirt at %s failed to look it up: %s; "
                                       "check the daemon" % (name_or_uuid, self.uri,
                                                             _message(err))) from err
        raise InputError("domain %s: no such domain at %s; see 'virsh -c %s list --all' for "
                         "names and UUIDs" % (name_or_uuid, self.uri, self.uri))

    def guest(self, name_or_uuid: str) -> Guest:
        """The domain called `name_or_uuid` (a name, UUID or ID, as virsh takes).

        Raises InputError naming the domain when there is none.
        """
        return Guest(self._lookup(name_or_uuid), self.uri)

    def guests(self) -> List[Guest]:
        """Every domain, running or defined, sorted by name."""
        try:
            doms = self._conn.listAllDomains(0)
        except libvirt.libvirtError as err:
            raise LibvirtError("libvirt at %s failed to list domains: %s; check the daemon"
                               % (self.uri, _message(err))) from err
        return sorted((Guest(d, self.uri) for d in doms), key=lambda g: g.name)

    def domain_xml(self, name_or_uuid: str, inactive: bool = False) -> bytes:
        return self.guest(name_or_uuid).xml(inactive=inactive)

    def running_domain_xmls(self) -> List[bytes]:
        """The live XML of every running domain (a domain that stops while
        we read is skipped)."""
        try:
            doms = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as err:
            raise LibvirtError("libvirt at %s failed to list running domains: %s; check the "
                               "daemon" % (self.uri, _message(err))) from err
        out = []
        for dom in doms:
            try:
                text = dom.XMLDesc(0)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise LibvirtError("libvirt at %s failed to return the XML of %s: %s"
                                   % (self.uri, dom.name(), _message(err))) from err
            out.append(text.encode("utf-8") if isinstance(text, str) else text)
        return out


def connect(uri: Optional[str] = None, readonly: bool = False) -> Connection:
    """Open `uri` (None: libvirt's default, $LIBVIRT_DEFAULT_URI etc.).

    Raises ConnectError, one line naming the URI and the fix.
    """
    libvirt.registerErrorHandler(_quiet, None)
    try:
        conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise ConnectError("cannot connect to libvirt at %s: %s; start the daemon "
                           "(systemctl start libvirtd or virtqemud), check your access to it "
                           "(root or the libvirt group), or pass another URI with -c"
                           % (uri or "the default URI", _message(err))) from err
    if conn is None:  # old bindings returned None instead of raising
        raise ConnectError("cannot connect to libvirt at %s; start the daemon or pass -c URI"
                           % (uri or "the default URI"))
    return Connection(conn)


# --- events (the agent) ---
