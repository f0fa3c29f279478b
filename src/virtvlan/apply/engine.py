"""Plan-and-apply under the host lock: the one path the CLI and hooks share.

Each call takes the lock, reads a fresh snapshot, plans, and (unless a dry
run) applies with verification and rollback. The snapshot is read under the
lock so that concurrent hooks plan against what the previous one left.
Wiring and prefilters read only what their plan needs (plan/scope.py: the
scoped read of host/scoped.py); release and cleanup read the whole host,
which is what they judge (docs/performance.md, "What a hook call reads").

No run holds the lock while importing the executor (pyroute2: 0.4 s natively,
tens of seconds on an emulated CPU): a run that finds work to do before
apply is loaded lets go of the lock, imports it, and starts over (the host
may have changed meanwhile). Runs that plan nothing never import it.

Before planning, a run finishes what a killed run left half done: a device
created but not yet marked as ours (state.py's intents; the kernel takes
the mark only in a second request).
"""

import importlib
import logging
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Dict, FrozenSet, Iterable, Optional, Sequence, Tuple

from virtvlan.host import phases, state
from virtvlan.plan.actions import MarkManaged, Plan, SetPortFilter
from virtvlan.parse.config import Config
from virtvlan.host.lock import host_lock
from virtvlan.model import Scope, Snapshot, Want
from virtvlan.plan.planner import plan, plan_cleanup, plan_prefilter, plan_unplug
from virtvlan.plan.scope import first_read, refine, scope_for
from virtvlan.plan.wiring import bridge_for

if TYPE_CHECKING:
    from virtvlan.host.live import LiveHost

log = logging.getLogger(__name__)

# The pyroute2 importer: loaded only by a run that has something to apply.
EXECUTOR = "virtvlan.apply.executor"

# The agent's live host model (host/live.py), when it has one: served calls
# plan from it instead of reading the whole host.
_live: Optional["LiveHost"] = None


def use_live(model: Optional["LiveHost"]) -> None:
    """Plan every later call of this process from `model` (None: read the
    host at each call, as hooks and the CLI do)."""
    global _live
    _live = model


def target_bridges(wants: Iterable[Want], config: Config) -> FrozenSet[str]:
    """The bridges the wants' ports join (access bridge or trunk bridge)."""
    return frozenset(bridge_for(want, config) for want in wants)


def _warn(result: Plan) -> None:
    """Log the plan's warnings (an adopted trunk bridge that does not
    filter, ...): to the journal from hooks, to stderr from the CLI."""
    for line in result.warnings:  # each names its guest or bridge already
        log.warning("%s", line)


def _apply(result: Plan, why: str, before: Snapshot) -> None:
    """Apply `result`, planned from `before` (undo and verification use it)."""
    if not result:
        log.info("%s: nothing to change", why)
        return
    from virtvlan.apply import executor as apply  # the only pyroute2 importer; not needed for dry runs

    for line in result.render():
        log.info("%s: %s", why, line)
    # The agent verifies from its model: the kernel's notifications of this
    # very apply are queued before each request returns (host/live.py).
    read_back = _live.snapshot_of if _live is not None else None
    after = apply.apply(result, before=before, read_back=read_back)
    _record_filters(result, after)


def _record_filters(result: Plan, after: Snapshot) -> None:
    """Record each port `result` gave a filter (with its tap's ifindex) and
    forget each it took one from (host/state.py, "ports virt-vlan
    protects"): the agent rebuilds only the filters virt-vlan installed.
    Called with the lock held, once the kernel took the plan. A record that
    cannot be written costs only the agent's rebuild of that filter after a
    flush, not the change: logged, not raised."""
    for action in result.actions:
        if not isinstance(action, SetPortFilter):
            continue
        link = after.get(action.port)
        try:
            if action.rules:
                # 0: a tap filtered before libvirt creates it (prefilter).
                state.protect(action.port, link.index if link is not None else 0)
            else:
                state.unprotect(action.port)
        except OSError as err:
            log.warning("%s: cannot record its port security under %s (%s); the agent will "
                        "not rebuild its filter if it vanishes: check that directory",
                        action.port, state.run_dir(), err.strerror or err)


def _must_import_first(result: Plan, dry_run: bool) -> bool:
    """True when `result` must be applied but the executor is not loaded yet."""
    return bool(result) and not dry_run and EXECUTOR not in sys.modules


def _import_apply() -> None:
    """Load the executor (pyroute2); called without the host lock held.

    By its name in sys.modules, which is what _must_import_first asks: a
    `from ... import` could be satisfied by a stale package attribute
    without registering the module, and the run would plan again forever."""
    importlib.import_module(EXECUTOR)


def _snapshot(config: Optional[Config] = None, scope: Optional[Scope] = None,
              wants: Sequence[Want] = ()) -> Snapshot:
    """The snapshot to plan from (the one place that obtains it): the host
    as `scope` names it (None: all of it), with virt-vlan's port filters
    when the config has port security. With `wants` (those `scope` is
    scope_for's of), the named links are read first, then ports and VLAN
    devices only where their plan can look at them (plan/scope.py refine):
    a warm call on an admin's trunk bridge dumps no link at all."""
    # rtnl, not apply: reading must not import pyroute2 (most hook calls
    # plan nothing, and the import would be most of their run time).
    if _live is not None:
        snap = _live.snapshot()  # the agent's model: the whole host, current
    else:
        from virtvlan.host import rtnl, scoped

        if scope is None:
            snap = rtnl.read_snapshot()
        elif (scope.vlan_parents or scope.port_sets) and wants and config is not None:
            snap = scoped.read_scoped(first_read(scope))
            refined = refine(scope, wants, config, snap)
            if refined.vlan_parents or refined.port_sets:
                snap = scoped.read_scoped(refined)
        else:
            snap = scoped.read_scoped(scope)
    if config is not None and any(u.port_security for u in config.uplinks):
        # Port security: virt-vlan's nftables table too (one nft run, ~5 ms).
        from virtvlan.host import nftables

        snap = replace(snap, filters=_live.filters() if _live is not None
                       else nftables.read_filters())
    return snap


def unfinished(pending: Dict[str, Tuple[str, bool]],
               snap: Snapshot) -> Tuple[Tuple[MarkManaged, ...], Tuple[str, ...]]:
    """Split leftover creation intents into marks to finish and intents to drop.

    A device is finished only if it is what we were creating: present, of
    the recorded kind, still down (apply.py sets it up only after marking
    it) and unmarked. Anything else is either gone, marked already, or not
    the device we made (the admin's since): its intent is dropped and the
    device left alone."""
    marks = []
    drop = []
    for name in sorted(pending):
        kind, addrgen = pending[name]
        link = snap.get(name)
        if link is not None and not link.managed and not link.up and link.kind == kind:
            marks.append(MarkManaged(name, addrgen))
        else:
            if link is not None and not link.managed:
                log.warning("%s: an interrupted virt-vlan run meant to create it, but it is %s; "
                            "left alone as not virt-vlan's", name,
                            "up" if link.up else "a %s device" % link.kind)
            drop.append(name)
    return tuple(marks), tuple(drop)


def _finish_creations(snap: Snapshot, pending: Dict[str, Tuple[str, bool]],
                      reread: Callable[[], Snapshot]) -> Optional[Snapshot]:
    """Mark what a killed run created (see unfinished; `pending` is
    state.intents()); the snapshot to plan from (`reread` after marking), or
    None when apply.py must be imported first (without the lock). Called
    with the lock held."""
    if not pending:
        return snap
    marks, drop = unfinished(pending, snap)
    for name in drop:
        state.intended(name)
    finish = Plan(marks)
    if not finish:
        return snap
    if _must_import_first(finish, False):
        return None
    from virtvlan.apply import executor as apply

    for mark in marks:
        log.warning("%s: created by an interrupted virt-vlan run; marking it as virt-vlan's",
                    mark.name)
    apply.apply(finish, before=snap)
    return reread()


def _read(dry_run: bool, config: Optional[Config] = None, scope: Optional[Scope] = None,
          wants: Sequence[Want] = ()) -> Optional[Snapshot]:
    """The snapshot to plan from, read under the lock (as `scope` names it;
    None: all of it); None when apply.py must be imported first (the caller
    lets go of the lock for that). The common case costs one failed listdir
    for the intents of a killed run; their devices join the scope."""
    if dry_run:
        return _snapshot(config, scope, wants)
    pending = state.intents()
    if pending and scope is not None:
        scope = replace(scope, names=scope.names | frozenset(pending))
    snap = _snapshot(config, scope, wants)
    return _finish_creations(snap, pending, lambda: _snapshot(config, scope, wants))


def _forget_gone(snap: Snapshot) -> None:
    """Drop the protection records of taps that are gone (their guest
    stopped after its filter vanished, so no removal recorded it). One
    failed listdir when there are none. Called with the lock held."""
    for port, index in state.protected().items():
        link = snap.get(port)
        # index 0: filtered before its tap existed; the tap that came is it.
        if link is None or index not in (0, link.index):
            state.unprotect(port)


def wire(wants: Sequence[Want], config: Config, why: str, dry_run: bool = False,
         reserve_key: Optional[str] = None,
         select: Optional[Callable[[Sequence[Want], Snapshot], Sequence[Want]]] = None,
         new_ports: Optional[FrozenSet[str]] = None) -> Plan:
    """Make every want true. With `reserve_key`, also reserve the target
    bridges under that key (see state.py) in the same locked section.
    `select` narrows the wants against the snapshot read under the lock (the
    agent drops wants whose tap is gone or now belongs to another guest).
    `new_ports` None: every want gets its port security (a start, plug or
    re-tag). A set (the agent's passes over running guests): only those
    ports (hot-plugged or re-tagged NICs) and the ports virt-vlan protected
    before get it (planner.kept_protection, against state.protected() read
    under the lock); a port never protected keeps its traffic as it is.
    Reads only what the plan needs (scope_for), except with `select`
    (the agent's passes judge the taps against more of the host)."""
    scope = scope_for(wants, config) if select is None else None
    while True:
        phases.mark("lock")  # make bench's breakdown (host/phases.py); a no-op otherwise
        with host_lock(config.lock_timeout):
            phases.mark("locked")
            snap = _read(dry_run, config, scope, wants)
            phases.mark("read")
            chosen = wants
            result = None
            if snap is not None:
                chosen = select(wants, snap) if select is not None else wants
                result = (plan(chosen, config, snap) if new_ports is None else
                          plan(chosen, config, snap, state.protected(), new_ports))
            phases.mark("planned")
            if result is not None and not _must_import_first(result, dry_run):
                _warn(result)
                if dry_run:
                    return result
                if reserve_key is not None:
                    state.reserve(reserve_key, target_bridges(chosen, config))
                try:
                    _apply(result, why, snap)
                except Exception:
                    if reserve_key is not None:
                        state.unreserve(reserve_key)
                    raise
                phases.mark("applied")
                return result
        _import_apply()  # outside the lock, then plan again from a fresh snapshot
        phases.mark("imported")


def prefilter(want: Want, config: Config, why: str) -> Plan:
    """Put the port filter of `want` in place for a tap that libvirt is
    about to create under the name `want.port` (plan_prefilter), under the
    lock, verified like any change. The caller removes it (release) when
    libvirt then fails to create the tap. Reads only that port's name (a
    stale tap of that name is verified too), the filters and a killed run's
    intents."""
    scope = Scope(names=frozenset({want.port} if want.port else ()), filters=True)
    while True:
        with host_lock(config.lock_timeout):
            snap = _read(False, config, scope)
            if snap is not None:
                result = plan_prefilter(want, config, snap)
                if not _must_import_first(result, False):
                    _apply(result, why, snap)
                    return result
        _import_apply()  # outside the lock, then plan again from a fresh snapshot


def host() -> Snapshot:
    """The host's links and routes as wire() would plan from them (the live
    model in the agent, a full read elsewhere), without port filters; no lock."""
    return _snapshot()


def check(wants: Sequence[Want], config: Config) -> Plan:
    """Plan without the lock and without applying: can this host serve them?"""
    return plan(wants, config, _snapshot(config, scope_for(wants, config), wants))


def release(config: Config, why: str, port: Optional[str] = None,
            reserve_key: Optional[str] = None, dry_run: bool = False) -> Plan:
    """Drop `reserve_key`, unplug `port` if given, delete what nobody uses."""
    while True:
        phases.mark("lock")
        with host_lock(config.lock_timeout):
            phases.mark("locked")
            if reserve_key is not None and not dry_run:
                state.unreserve(reserve_key)  # idempotent: a second pass finds it gone
            snap = _read(dry_run, config)
            phases.mark("read")
            if snap is not None:
                if not dry_run:
                    _forget_gone(snap)
                in_use = state.reserved()
                result = (plan_unplug(port, config, snap, in_use) if port is not None
                          else plan_cleanup(config, snap, in_use))
                phases.mark("planned")
                if not _must_import_first(result, dry_run):
                    _warn(result)
                    if not dry_run:
                        _apply(result, why, snap)
                    phases.mark("applied")
                    return result
        _import_apply()  # outside the lock, then plan again from a fresh snapshot
        phases.mark("imported")
