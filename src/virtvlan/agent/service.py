"""`virt-vlan agent`: wires what no hook sees (hot-plugged NICs, drift).

Threads and who does what:
- libvirt's native event loop (virt.start_event_loop) runs callbacks that
  only put an Event on the queue;
- the connector thread opens the connection (read-only: the agent only
  reads XML and listens), registers for events, waits for it to close, and
  opens it again with backoff; each (re)connect queues a full resync,
  because events in the gap are lost. It starts after READY=1: the unit is
  ordered before the libvirt daemons, which wait for READY (a connect
  before it would wait for a daemon that waits for the agent);
- the link monitor (monitor.py) queues the devices a netlink burst changed;
- the main thread acts on that queue: it drains it, reads XML from libvirt
  (never under the host lock), then wires through the engine under the
  lock, one domain at a time;
- the hook server (serve.py) runs libvirt's hook calls that the drop-ins
  hand over, on its own worker thread, through the hook's own code and the
  same host lock; it never calls libvirt and listens before READY=1, so
  the hooks of guests libvirt autostarts at boot are served.

The agent owns nothing on the host: it never keeps state the hooks need and
never makes a change the hooks would not make, so killing it at any point
leaves the host as the last completed engine call left it, and a restart
reconciles. It exits only when asked to (SIGTERM/SIGINT); libvirt errors
are logged and retried. An exception that escapes any of its threads is
logged and ends the agent with exit 1 (systemd restarts it: Restart=
on-failure), and the hook server's socket goes with it: never a half-alive
agent whose socket makes every hook wait for a reply that never comes.
"""

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from virtvlan.virt import adapter as virt
from virtvlan.parse.config import Config, load_or_refuse
from virtvlan.errors import VirtVlanError
from virtvlan.apply import engine
from virtvlan.host import state
from virtvlan.host.live import LiveHost
from virtvlan.agent import reconcile, sdnotify, serve
from virtvlan.agent.network_ports import with_network_ports
from virtvlan.agent.reconcile import Desired

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds before the first reconnect attempt, doubled up to
BACKOFF_MAX = 30.0
DEFAULT_INTERVAL = 300.0  # reconcile interval while the config cannot be read
# libvirt domain events that may add or re-tag a NIC of a running guest
# (virsh attach-interface, a metadata edit): its changed NICs are wired with
# port security. Lifecycle events are not: a start's hook protected the
# guest already, and a guest running across an upgrade keeps its traffic.
GROWING_EVENTS = ("device-added", "metadata")
SERVE_HOOKS_ENV = "VIRT_VLAN_SERVE_HOOKS"  # "0": do not serve libvirt's hooks (serve.py)

Item = Tuple[str, Any]


class Agent:
    """The agent's state; `run()` is the main loop (call it from the main thread)."""

    def __init__(self, uri: Optional[str] = None, config_path: Optional[str] = None,
                 heal: bool = True, serve_hooks: bool = True,
                 connect: Callable[..., virt.Connection] = virt.connect) -> None:
        self.uri = uri
        self.connect = connect  # virt.connect; tests pass one that fails first
        self.config_path = config_path
        self.heal = heal
        self.serve_hooks = serve_hooks
        self.hook_server: Optional[serve.HookServer] = None
        self.live: Optional[LiveHost] = None
        # SimpleQueue: its put() is reentrant, so the SIGTERM handler may call
        # it even when the signal lands inside a get() of the main thread.
        self.queue: "queue.SimpleQueue[Item]" = queue.SimpleQueue()
        self.domains: Dict[str, Desired] = {}  # key "domain-<uuid>"
        self.networks: Dict[str, Desired] = {}  # key "network-<name>"
        self.monitor: Any = None
        self._stop = threading.Event()
        self._conn_lock = threading.Lock()
        self._watch: Optional[virt.Watch] = None
        self._config_error: Optional[str] = None
        self._interval = DEFAULT_INTERVAL
        self.failed: Optional[str] = None  # the thread whose death ends the agent (exit 1)

    # --- producers (any thread) -----------------------------------------------------------

    def on_libvirt_event(self, event: virt.Event) -> None:
        self.queue.put(("libvirt", event))

    def on_links_changed(self, changes: Any) -> None:
        self.queue.put(("links", changes))

    def stop(self) -> None:
        self._stop.set()
        self.queue.put(("stop", None))

    def _thread_died(self, args: "threading.ExceptHookArgs") -> None:
        """threading.excepthook while the agent runs: a thread of ours died
        (every loop catches what it expects, so this is a bug): log it and
        stop, exit 1, for systemd to start a whole agent again."""
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.critical("agent: thread %s died; stopping so that systemd restarts the agent", name,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        self.failed = name
        self.stop()

    # --- the connection ----------------------------------------------------------------------

    def _connector(self) -> None:
        while not self._stop.is_set():
            try:
                self._connect_loop()
            except Exception:  # a bug of ours must not end reconnecting for good
                log.exception("agent: libvirt connection thread failed; restarting it")
                self._stop.wait(BACKOFF_MAX)

    def _connect_loop(self) -> None:
        delay = BACKOFF_FIRST
        where = self.uri or "the default URI"
        while not self._stop.is_set():
            try:
                connection = self.connect(self.uri, readonly=True)
            except VirtVlanError as err:
                log.warning("%s; retrying in %.0f s", err, delay)
                self._status("waiting for libvirt at %s" % where)
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            try:
                watch = virt.Watch(connection, self.on_libvirt_event)
            except VirtVlanError as err:
                connection.close()
                log.warning("%s; retrying in %.0f s", err, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_FIRST
            with self._conn_lock:
                self._watch = watch
            log.info("connected to libvirt at %s (read-only); listening for domain events",
                     connection.uri)
            self.queue.put(("resync", "connected to %s" % connection.uri))
            while not self._stop.is_set() and not watch.closed.wait(1.0):
                pass
            with self._conn_lock:
                self._watch = None
            watch.close()
            connection.close()
            if self._stop.is_set():
                return
            log.warning("lost the connection to libvirt at %s (%s); reconnecting (events "
                        "until then are lost: a full resync follows)", connection.uri,
                        watch.reason)
            self._status("reconnecting to libvirt at %s" % where)

    def _connection(self) -> Optional[virt.Watch]:
        with self._conn_lock:
            watch = self._watch
        return watch if watch is not None and not watch.closed.is_set() else None

    def _libvirt_failed(self, watch: virt.Watch, err: VirtVlanError) -> None:
        log.warning("%s", err)
        if not virt.is_alive(watch.connection):
            watch.lost("a call failed and the connection is dead")

    # --- config ------------------------------------------------------------------------------

    def _config(self) -> Optional[Config]:
        """The host config, read again for each batch as the hooks do; None
        (logged once per distinct error) when it cannot be used."""
        try:
            config = load_or_refuse(self.config_path, "the virt-vlan agent")
        except VirtVlanError as err:
            if str(err) != self._config_error:
                log.error("%s; the agent wires nothing until it is fixed", err)
                self._status("config error: %s" % err)
            self._config_error = str(err)
            return None
        if self._config_error is not None:
            log.info("config %s is usable again", config.path)
        self._config_error = None
        self._interval = config.reconcile_interval
        return config

    # --- the work ------------------------------------------------------------------------------

    def _held(self, extra: FrozenSet[str] = frozenset()) -> FrozenSet[str]:
        held = frozenset(extra)
        if self.monitor is not None:
            try:
                held |= frozenset(self.monitor.held())
            except Exception:  # the monitor is C2's: its failure must not stop wiring
                log.exception("link monitor: cannot read held devices")
        return held

    def _cache(self) -> List[Desired]:
        return list(self.domains.values()) + list(self.networks.values())

    def resync(self, config: Config, why: str) -> None:
        """Re-read every running domain and network from libvirt, then wire
        them all and clean up. Without a connection: wire from the cache."""
        watch = self._connection()
        if watch is None:
            self.heal_from_cache(config, why + " (libvirt unreachable: from the cache)",
                                 self._cache(), cleanup=True)
            return
        try:
            xmls = watch.connection.running_domain_xmls()
            net_xmls = virt.running_network_xmls(watch.connection)
        except VirtVlanError as err:
            self._libvirt_failed(watch, err)
            self.heal_from_cache(config, why + " (libvirt failed: from the cache)",
                                 self._cache(), cleanup=True)
            return
        domains = self._index(with_network_ports(reconcile.domain_desired(x, config), x, config)
                              for x in xmls)
        networks = self._index(reconcile.network_desired(x, config) for x in net_xmls)
        for line in reconcile.changes({**self.domains, **self.networks}, {**domains, **networks}):
            log.info("agent: %s", line)
        self.domains, self.networks = domains, networks
        held = self._held()
        failed = reconcile.wire_all(self._cache(), config, why, held)
        reconcile.cleanup(config, why)
        summary = ("%d tagged guest(s), %d virt-vlan network(s)%s"
                   % (len(domains), len(networks),
                      ", %d refused (see above)" % failed if failed else ""))
        log.info("agent: reconcile done (%s): %s", why, summary)
        self._status("%s; last full reconcile: %s" % (summary, why))

    @staticmethod
    def _index(found: Iterable[Optional[Desired]]) -> Dict[str, Desired]:
        out: Dict[str, Desired] = {}
        for number, desired in enumerate(found):
            if desired is None:
                continue
            key = desired.key if not desired.key.endswith("?") else "%s%d" % (desired.key, number)
            out[key] = replace(desired, key=key) if key != desired.key else desired
        return out

    def sync_domain(self, config: Config, uuid: str, name: str, why: str,
                    grew: bool = False) -> None:
        """One domain changed (lifecycle, device, metadata): re-read it, wire
        it, clean up what it no longer needs. `grew`: a NIC may have been
        hot-plugged or re-tagged (GROWING_EVENTS); the NICs that changed get
        port security as at a start (reconcile.new_ports)."""
        watch = self._connection()
        if watch is None:
            return  # the resync after the reconnect covers it
        try:
            xml = virt.running_domain_xml(watch.connection, uuid)
        except VirtVlanError as err:
            self._libvirt_failed(watch, err)
            return
        key = state.domain_key(uuid, name)
        old = self.domains.get(key)
        new = (with_network_ports(reconcile.domain_desired(xml, config), xml, config)
               if xml is not None else None)
        if new is not None and new.key != key:
            new = replace(new, key=key)
        if old is None and new is None:
            return  # an untagged guest
        for line in reconcile.changes({key: old} if old else {}, {key: new} if new else {}):
            log.info("agent: %s", line)
        if new is None:
            self.domains.pop(key, None)
        else:
            self.domains[key] = new
            fresh = reconcile.new_ports(old, new) if grew else frozenset()
            reconcile.wire(new, config, why, self._held(), fresh=fresh)
        reconcile.cleanup(config, "domain %s %s" % (name, why))

    def sync_networks(self, config: Config, why: str) -> None:
        watch = self._connection()
        if watch is None:
            return
        try:
            xmls = virt.running_network_xmls(watch.connection)
        except VirtVlanError as err:
            self._libvirt_failed(watch, err)
            return
        networks = self._index(reconcile.network_desired(x, config) for x in xmls)
        for line in reconcile.changes(self.networks, networks):
            log.info("agent: %s", line)
        self.networks = networks
        # The network hooks wire and release networks themselves; this only
        # refreshes the cache the heal path uses.

    def heal_from_cache(self, config: Config, why: str, entries: List[Desired],
                        held: FrozenSet[str] = frozenset(), cleanup: bool = False) -> None:
        """Wire `entries` from the cache (no libvirt call): the netlink path.
        It rebuilds devices and re-enslaves taps left on no bridge, but moves
        no tap off another bridge (reconcile._moved_away)."""
        reconcile.wire_all(entries, config, why, self._held(held), move_taps=False)
        if cleanup:
            reconcile.cleanup(config, why)

    def handle(self, items: List[Item]) -> bool:
        """Act on one drained batch of queue items; False once asked to stop."""
        if any(kind == "stop" for kind, _ in items):
            return False
        resync: List[str] = []
        domains: Dict[str, Tuple[str, str]] = {}
        grown: set = set()  # domains with a GROWING_EVENTS event in this batch
        networks: List[str] = []
        links_names: set = set()
        links_resync = False
        links_held: FrozenSet[str] = frozenset()
        periodic = False
        for kind, value in items:
            if kind == "resync":
                resync.append(value)
            elif kind == "periodic":
                periodic = True
            elif kind == "libvirt":
                event: virt.Event = value
                if event.kind == "closed":
                    continue  # the connector reconnects and queues a resync
                if event.kind == "network":
                    networks.append(event.name)
                else:
                    log.debug("libvirt event: domain %s %s %s", event.name, event.kind,
                              event.detail)
                    domains[event.uuid] = (event.name, "%s %s" % (event.kind, event.detail))
                    if event.kind in GROWING_EVENTS:
                        grown.add(event.uuid)
            elif kind == "links":
                links_names |= set(getattr(value, "names", ()) or ())
                links_resync = links_resync or bool(getattr(value, "resync", False))
                links_held |= frozenset(getattr(value, "held", ()) or ())
        config = self._config()
        if config is None:
            return True
        if resync or periodic:
            self.resync(config, ", ".join(resync) or "periodic reconcile")
            return True  # re-read everything: covers the events of this batch
        for uuid, (name, why) in domains.items():
            self.sync_domain(config, uuid, name, why, grew=uuid in grown)
        if networks:
            self.sync_networks(config, "network %s" % ", ".join(sorted(set(networks))))
        if links_names or links_resync:
            entries = (self._cache() if links_resync else
                       reconcile.affected(self._cache(), frozenset(links_names), config))
            if entries:
                self.heal_from_cache(config, "heal after link changes (%s)"
                                     % (", ".join(sorted(links_names)[:8]) or "resync"),
                                     entries, links_held)
        return True

    # --- the main loop -----------------------------------------------------------------------

    def _status(self, text: str) -> None:
        sdnotify.notify("STATUS=%s" % text[:200])

    def _start_monitor(self) -> None:
        if not self.heal:
            return
        try:
            from virtvlan.agent import monitor  # the netlink link monitor (heal)
        except ImportError:
            log.warning("no link monitor in this build: devices deleted under running guests "
                        "are rebuilt only by the periodic reconcile")
            return
        try:
            self.monitor = monitor.LinkMonitor(self.on_links_changed)
            self.monitor.start()
        except Exception as err:  # heal is optional; hot-plug and reconcile still work
            log.error("link monitor did not start (%s); devices deleted under running guests "
                      "are rebuilt only by the periodic reconcile", err)
            self.monitor = None

    def _start_live_model(self) -> None:
        """Served calls and reconciles plan from a live host model (one full
        read now, then netlink events; host/live.py), or, when it cannot be
        made, from a full read each, as a hook alone does."""
        try:
            self.live = LiveHost()
        except (OSError, VirtVlanError) as err:
            log.warning("agent: no live host model (%s); every call reads the whole host", err)
            return
        engine.use_live(self.live)

    def _check_live_model(self) -> None:
        """At each periodic reconcile: the model against a full read. A
        difference is a bug of ours (or a change the kernel did not
        announce): logged, and the model read again."""
        if self.live is None:
            return
        try:
            found = self.live.consistency()
        except VirtVlanError as err:
            log.warning("agent: cannot check the live host model: %s", err)
            return
        if found:
            log.error("agent: live host model differs from the host at the periodic check "
                      "(%d): %s; reading it again", len(found), "; ".join(found[:3]))
            self.live.reset()

    def _start_hook_server(self) -> None:
        if not self.serve_hooks:
            return
        try:
            server = serve.HookServer(config_path=self.config_path)
            server.start()
        except OSError as err:  # the hooks then do their work themselves, as without an agent
            log.error("agent: cannot serve hooks on %s (%s); hooks do their work themselves",
                      serve.socket_path(), err)
            return
        self.hook_server = server

    def run(self) -> int:
        """The main loop, until stop(): 0, or 1 when a thread of ours died.
        Whatever ends it, the hook server's socket is removed."""
        previous_hook = threading.excepthook
        threading.excepthook = self._thread_died
        connector: Optional[threading.Thread] = None
        try:
            connector = self._run()
        finally:
            sdnotify.notify("STOPPING=1")
            log.info("virt-vlan agent stopping; the host stays as it is")
            try:
                if self.monitor is not None:
                    self.monitor.stop()
            finally:
                if self.hook_server is not None:
                    self.hook_server.stop()
                if self.live is not None:
                    engine.use_live(None)
                    self.live.close()
                self._stop.set()
                if connector is not None:
                    connector.join(5.0)
                threading.excepthook = previous_hook
        return 1 if self.failed else 0

    def _run(self) -> threading.Thread:
        log.info("virt-vlan agent starting (pid %d, libvirt %s)", os.getpid(),
                 self.uri or "default URI")
        # First, and without libvirt: the libvirt daemons start once this
        # agent is ready (the unit's Before=) and run the hooks of the
        # guests they autostart at once.
        self._start_live_model()
        self._start_hook_server()
        # READY before connecting: a libvirt daemon ordered after this unit
        # (socket-activated or not) starts only after it, so a connect that
        # waited for the daemon would wait for itself.
        sdnotify.notify("READY=1\nSTATUS=serving hooks; connecting to libvirt")
        virt.start_event_loop()
        self._start_monitor()
        connector = threading.Thread(target=self._connector, name="libvirt-connect",
                                     daemon=True)
        connector.start()
        ping = sdnotify.watchdog_interval()
        config = self._config()  # for the interval; logs a bad config at once
        del config
        next_reconcile = time.monotonic() + self._interval
        running = True
        while running:
            now = time.monotonic()
            timeout = max(0.0, next_reconcile - now)
            if ping is not None:
                timeout = min(timeout, ping)
            try:
                items = [self.queue.get(timeout=timeout)]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if ping is not None:
                sdnotify.notify("WATCHDOG=1")
            if time.monotonic() >= next_reconcile:
                items.append(("periodic", None))
                self._check_live_model()
            if not items:
                continue
            try:
                running = self.handle(items)
            except Exception:  # a bug of ours: log it, keep serving
                log.exception("agent: internal error while handling %s", items[:5])
            if any(kind in ("periodic", "resync") for kind, _ in items):
                next_reconcile = time.monotonic() + self._interval
        return connector


class _QuietNoops(logging.Filter):
    """Drops the engine's "nothing to change" lines of the agent's own runs:
    every periodic reconcile would log one per guest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "virtvlan.apply.engine" and record.msg == "%s: nothing to change"
                    and str(record.args[0] if record.args else "").startswith("agent:"))


def setup_logging(verbose: bool = False) -> None:
    """syslog/journal as the hooks log, plus stderr when not under systemd
    (under systemd stderr goes to the journal too: it would log twice)."""
    from virtvlan.host.journal import Syslog

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # pyroute2 logs every netlink message at debug: pages per change, and
    # slow (it formats each message), with nothing an admin acts on.
    logging.getLogger("pyroute2").setLevel(logging.INFO)
    handlers: List[logging.Handler] = []
    if os.path.exists("/dev/log"):
        handlers.append(Syslog())
    if not os.environ.get("JOURNAL_STREAM") or not handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(asctime)s virt-vlan agent[%(process)d]: "
                                              "%(levelname)s %(message)s"))
        handlers.append(stream)
    for handler in handlers:
        handler.addFilter(_QuietNoops())
        root.addHandler(handler)


def main(uri: Optional[str], config_path: Optional[str], verbose: bool = False) -> int:
    """Entry of `virt-vlan agent`: runs until SIGTERM/SIGINT, exit 0."""
    setup_logging(verbose)
    # Served unless switched off: a change cut short by a killed agent is
    # finished by the next run (state.py's creation intents).
    agent = Agent(uri, config_path, serve_hooks=os.environ.get(SERVE_HOOKS_ENV, "1") != "0")

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("agent: %s received", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return agent.run()
