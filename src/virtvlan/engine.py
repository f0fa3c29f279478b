"""Plan-and-apply under the host lock: the one path the CLI and hooks share.

Each call takes the lock, reads a fresh snapshot, plans, and (unless a dry
run) applies with verification and rollback. The snapshot is read under the
lock so that concurrent hooks plan against what the previous one left.

No run holds the lock while importing apply.py (pyroute2: 0.4 s natively,
tens of seconds on an emulated CPU): a run that finds work to do before
apply is loaded lets go of the lock, imports it, and starts over (the host
may have changed meanwhile). Runs that plan nothing never import it.
"""

import logging
import sys
from typing import Callable, FrozenSet, Iterable, Optional, Sequence

from . import state
from .actions import Plan
from .config import Config, Uplink
from .lock import host_lock
from .model import ACCESS, Snapshot, Want
from .plan import plan, plan_cleanup, plan_unplug

log = logging.getLogger(__name__)


def target_bridges(wants: Iterable[Want], config: Config) -> FrozenSet[str]:
    """The bridges the wants' ports join (access bridge or trunk bridge)."""
    names = set()
    for want in wants:
        uplink: Uplink = config.uplink(want.uplink, want.who)
        names.add(uplink.access_bridge(want.vlans[0]) if want.mode == ACCESS
                  else uplink.trunk_bridge)
    return frozenset(names)


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
    from . import apply  # the only pyroute2 importer; not needed for dry runs

    for line in result.render():
        log.info("%s: %s", why, line)
    apply.apply(result, before=before)


def _must_import_first(result: Plan, dry_run: bool) -> bool:
    """True when `result` must be applied but apply.py is not loaded yet."""
    return bool(result) and not dry_run and __package__ + ".apply" not in sys.modules


def _import_apply() -> None:
    """Load apply.py (pyroute2); called without the host lock held."""
    from . import apply  # noqa: F401


def _snapshot() -> Snapshot:
    # rtnl, not apply: reading must not import pyroute2 (most hook calls
    # plan nothing, and the import would be most of their run time).
    from . import rtnl

    return rtnl.read_snapshot()


def wire(wants: Sequence[Want], config: Config, why: str, dry_run: bool = False,
         reserve_key: Optional[str] = None,
         select: Optional[Callable[[Sequence[Want], Snapshot], Sequence[Want]]] = None) -> Plan:
    """Make every want true. With `reserve_key`, also reserve the target
    bridges under that key (see state.py) in the same locked section.
    `select` narrows the wants against the snapshot read under the lock (the
    agent drops wants whose tap is gone or now belongs to another guest)."""
    while True:
        with host_lock(config.lock_timeout):
            snap = _snapshot()
            chosen = select(wants, snap) if select is not None else wants
            result = plan(chosen, config, snap)
            if not _must_import_first(result, dry_run):
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
                return result
        _import_apply()  # outside the lock, then plan again from a fresh snapshot


def check(wants: Sequence[Want], config: Config) -> Plan:
    """Plan without the lock and without applying: can this host serve them?"""
    return plan(wants, config, _snapshot())


def release(config: Config, why: str, port: Optional[str] = None,
            reserve_key: Optional[str] = None, dry_run: bool = False) -> Plan:
    """Drop `reserve_key`, unplug `port` if given, delete what nobody uses."""
    while True:
        with host_lock(config.lock_timeout):
            if reserve_key is not None and not dry_run:
                state.unreserve(reserve_key)  # idempotent: a second pass finds it gone
            snap = _snapshot()
            in_use = state.reserved()
            result = (plan_unplug(port, config, snap, in_use) if port is not None
                      else plan_cleanup(config, snap, in_use))
            if not _must_import_first(result, dry_run):
                _warn(result)
                if not dry_run:
                    _apply(result, why, snap)
                return result
        _import_apply()  # outside the lock, then plan again from a fresh snapshot
