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

from virtvlan import NAMESPACE, PREFIX
from virtvlan.errors import InputError, VirtVlanError

log = logging.getLogger(__name__)

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
                             "check that the guest can take a hot-plugged device (<features><acpi/>, a "
                             "free PCI slot) or use --config and restart it") from err

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
        if name_or_uuid.isascii() and name_or_uuid.isdigit():  # not "¹": int() refuses it
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
        return self._xmls(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE, 0, "running domains")

    def defined_domain_xmls(self) -> List[bytes]:
        """The persistent definition (inactive XML) of every persistent
        domain, running or not (one undefined while we read is skipped)."""
        return self._xmls(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT,
                          libvirt.VIR_DOMAIN_XML_INACTIVE, "defined domains")

    def _xmls(self, list_flags: int, xml_flags: int, what: str) -> List[bytes]:
        try:
            doms = self._conn.listAllDomains(list_flags)
        except libvirt.libvirtError as err:
            raise LibvirtError("libvirt at %s failed to list %s: %s; check the "
                               "daemon" % (self.uri, what, _message(err))) from err
        out = []
        for dom in doms:
            try:
                text = dom.XMLDesc(xml_flags)
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
#
# The agent's side of libvirt: the native event loop, event registration on
# one connection, and the calls a reconcile needs beyond Connection's. The
# callbacks run on libvirt's event thread and only hand a small Event to the
# agent (a queue put): libvirt calls made from there would stall every other
# event, and an exception raised there is printed by the C glue and lost.

import threading  # noqa: E402  (kept in this section: the lead merges it below B1's)
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

_loop_lock = threading.Lock()
_loop_thread: Optional[threading.Thread] = None

# Close reasons (virConnectCloseReason), for the log.
_CLOSE_REASONS = {0: "error", 1: "end of file (daemon exited)", 2: "keepalive timeout",
                  3: "closed by the client"}
_LIFECYCLE = {getattr(libvirt, "VIR_DOMAIN_EVENT_" + n): n.lower() for n in (
    "DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED", "STOPPED", "SHUTDOWN",
    "PMSUSPENDED", "CRASHED")}
# Seconds between keepalive probes, and unanswered probes before libvirt
# closes the connection: a hung daemon is noticed after about 20 s. A daemon
# that exits is seen at once (end of file on the socket).
KEEPALIVE = (5, 3)


def start_event_loop() -> None:
    """Register libvirt's native event implementation and run it in a daemon
    thread. Must run before the first connect(): libvirt picks the event
    implementation when a connection is opened and cannot change it later.
    Idempotent."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-events",
                                        daemon=True)
        _loop_thread.start()


def _run_event_loop() -> None:
    import time

    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # never let the loop die: events and keepalive stop with it
            log.exception("libvirt event loop iteration failed")
            time.sleep(1)


@dataclass(frozen=True)
class Event:
    """One libvirt event, as the agent needs it.

    `kind`: "lifecycle", "device-added", "device-removed", "metadata" (domain
    events: `uuid` and `name` are the domain's), "network" (`name` is the
    network's), or "closed" (the connection died; `detail` says why).
    """

    kind: str
    uuid: str = ""
    name: str = ""
    detail: str = ""


def _safe(what: str, func: Callable[..., None]) -> Callable[..., None]:
    def callback(*args: object) -> None:
        try:
            func(*args)
        except Exception:  # libvirt's C glue would only print it
            log.exception("libvirt %s callback failed", what)
    return callback


class Watch:
    """The agent's registrations on one open Connection.

    `on_event` is called on libvirt's event thread, once per event; it must
    not block or call libvirt. After a "closed" event the connection is dead:
    `closed` is set and `close()` only forgets the registrations.
    """

    def __init__(self, connection: Connection, on_event: Callable[[Event], None]) -> None:
        self.connection = connection
        self.closed = threading.Event()
        self.reason = ""
        self._on_event = on_event
        self._domain_ids: List[int] = []
        self._network_ids: List[int] = []
        conn = connection._conn
        domain_events = (
            (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, "lifecycle", self._lifecycle),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, "device-added", self._device_added),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, "device-removed", self._device_removed),
            (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, "metadata", self._metadata))
        try:
            for event_id, what, func in domain_events:
                self._domain_ids.append(
                    conn.domainEventRegisterAny(None, event_id, _safe(what, func), None))
            self._network_ids.append(conn.networkEventRegisterAny(
                None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, _safe("network", self._network),
                None))
            conn.registerCloseCallback(_safe("close", self._closed), None)
        except libvirt.libvirtError as err:
            self.close()
            raise ConnectError("libvirt at %s: cannot register for events: %s; check the "
                               "daemon's version (6.5 or later)" % (connection.uri,
                                                                     _message(err))) from err

        try:
            conn.setKeepAlive(*KEEPALIVE)
        except libvirt.libvirtError as err:
            # In-process drivers (test:///) have no socket to keep alive.
            log.debug("libvirt at %s: no keepalive: %s", connection.uri, _message(err))

    def _emit(self, kind: str, dom: "libvirt.virDomain", detail: str) -> None:
        # name() and UUIDString() read the local object: no call to the daemon.
        self._on_event(Event(kind, uuid=dom.UUIDString(), name=dom.name(), detail=detail))

    def _lifecycle(self, _conn: object, dom: "libvirt.virDomain", event: int, detail: int,
                   _opaque: object) -> None:
        self._emit("lifecycle", dom, "%s/%d" % (_LIFECYCLE.get(event, str(event)), detail))

    def _device_added(self, _conn: object, dom: "libvirt.virDomain", alias: str,
                      _opaque: object) -> None:
        self._emit("device-added", dom, alias)

    def _device_removed(self, _conn: object, dom: "libvirt.virDomain", alias: str,
                        _opaque: object) -> None:
        self._emit("device-removed", dom, alias)

    def _metadata(self, _conn: object, dom: "libvirt.virDomain", mtype: int,
                  nsuri: Optional[str], _opaque: object) -> None:
        if nsuri and nsuri != NAMESPACE:
            return  # another tool's element
        self._emit("metadata", dom, nsuri or "type %d" % mtype)

    def _network(self, _conn: object, net: "libvirt.virNetwork", event: int, detail: int,
                 _opaque: object) -> None:
        self._on_event(Event("network", name=net.name(), detail="%d/%d" % (event, detail)))

    def _closed(self, _conn: object, reason: int, _opaque: object) -> None:
        self.reason = _CLOSE_REASONS.get(reason, "reason %d" % reason)
        self.closed.set()
        self._on_event(Event("closed", detail=self.reason))

    def lost(self, why: str) -> None:
        """Declare the connection dead (a call failed and it no longer
        answers) when libvirt has not said so itself."""
        if not self.closed.is_set():
            self.reason = why
            self.closed.set()
            self._on_event(Event("closed", detail=why))

    def close(self) -> None:
        """Deregister (best effort: a dead connection refuses, and that is fine)."""
        conn = self.connection._conn
        if conn is None:
            return
        for ids, dereg in ((self._domain_ids, conn.domainEventDeregisterAny),
                           (self._network_ids, conn.networkEventDeregisterAny)):
            for cid in ids:
                try:
                    dereg(cid)
                except libvirt.libvirtError:
                    pass
            ids.clear()
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass


def is_alive(connection: Connection) -> bool:
    """Whether the connection still answers (virConnectIsAlive: local check)."""
    conn = connection._conn
    try:
        return conn is not None and bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def running_network_xmls(connection: Connection) -> List[bytes]:
    """The XML of every active libvirt network (one that stops while we read
    is skipped)."""
    try:
        nets = connection._conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
    except libvirt.libvirtError as err:
        raise LibvirtError("libvirt at %s failed to list running networks: %s; check the "
                           "daemon" % (connection.uri, _message(err))) from err
    out = []
    for net in nets:
        try:
            text = net.XMLDesc(0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                continue
            raise LibvirtError("libvirt at %s failed to return the XML of network %s: %s"
                               % (connection.uri, net.name(), _message(err))) from err
        out.append(text.encode("utf-8") if isinstance(text, str) else text)
    return out


def running_domain_xml(connection: Connection, uuid: str) -> Optional[bytes]:
    """The live XML of domain `uuid` if it is running, else None (stopped,
    undefined, or gone while we asked)."""
    try:
        dom = connection._conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            return None
        text = dom.XMLDesc(0)
    except libvirt.libvirtError as err:
        if err.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            return None
        raise LibvirtError("libvirt at %s failed to return the XML of domain %s: %s"
                           % (connection.uri, uuid, _message(err))) from err
    return text.encode("utf-8") if isinstance(text, str) else text
