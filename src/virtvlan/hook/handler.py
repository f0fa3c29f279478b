"""libvirt hook logic for the `qemu` and `network` drivers.

libvirt runs `<hooks>/qemu.d/virt-vlan DOMAIN OP SUBOP EXTRA` with the domain
XML on stdin (network: the network XML inside <hookData>). The drop-ins in
hooks/ filter out untagged documents before importing this module. Contract:
- exit 0 and print nothing when there is nothing to do, for unknown ops, and
  for ops whose failure libvirt ignores (stopped, release: we log instead);
- on a refusal, exit 1 with one line "virt-vlan: ..." on stderr: libvirt puts
  it into the error of `virsh start` / `virsh net-start`;
- never call back into libvirt (the daemon waits for us: deadlock);
- never write to stdout, except the domain XML at migrate/restore: libvirt
  reads stdout there as the XML to run the guest with (each qemu.d script
  filters the previous one's), and empty output means "unchanged". We print
  the XML only when a tagged NIC's <source bridge> must name this host's
  bridge (checks/moving.py); the drop-in runs these two ops itself, never
  through the agent (docs/moving-guests.md).
"""

import logging
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from virtvlan.errors import ApplyError, InternalError, VirtVlanError, one_line
from virtvlan.host.journal import Syslog

if TYPE_CHECKING:  # lxml-free at import: parse.metadata loads only when a call needs it
    from virtvlan.parse.metadata import Domain, Network

log = logging.getLogger(__name__)

# Ops that build or re-assert wiring; a refusal there must stop the guest.
QEMU_WIRE_OPS = {"prepare", "start", "reconnect", "attach"}
QEMU_CHECK_OPS = {"migrate", "restore"}
QEMU_RELEASE_OPS = {"release"}
# Where a hook's bug leaves its traceback (log.exception below).
_HOOK_REPORT = "please report this bug with the traceback logged to the journal with it"


def _setup_logging() -> None:
    """Log what we change to syslog/journal; stderr is kept for refusals."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(logging.INFO)
    root.addHandler(Syslog() if os.path.exists("/dev/log") else logging.NullHandler())


def _qemu(args: Sequence[str], xml: bytes, config_path: Optional[str],
          stdout: Optional[List[bytes]] = None) -> int:
    from virtvlan.apply import engine
    from virtvlan.host import state
    from virtvlan.parse.config import load_or_refuse
    from virtvlan.parse.metadata import network_port_wants, parse_domain, wants

    op = args[1] if len(args) > 1 else ""
    if op not in QEMU_WIRE_OPS | QEMU_CHECK_OPS | QEMU_RELEASE_OPS:
        return 0
    # Not strict: metadata for a MAC the domain lacks is how a hot-plug is
    # prepared (`virsh metadata`, then `virsh attach-interface`); the agent
    # wires that NIC when it appears. Only check-domain refuses it.
    domain = parse_domain(xml, strict=False)
    if op in ("prepare", "start"):
        for spec in domain.pending:
            log.warning("domain %s, interface %s: virt-vlan metadata names a MAC the domain has "
                        "no <interface> for; ignored until a NIC with that MAC is attached "
                        "(the virt-vlan agent wires it then)", domain.name, spec.mac)
    networks = _port_networks(domain) if op in QEMU_WIRE_OPS | QEMU_RELEASE_OPS else {}
    if not domain.tagged and not networks:
        return 0
    who = "domain %s" % domain.name
    # An untagged guest (only ports of virt-vlan networks) reserves nothing:
    # its network holds the bridge.
    key = state.domain_key(domain.uuid, domain.name) if domain.tagged else None
    config = load_or_refuse(config_path, who)
    if op in QEMU_RELEASE_OPS:
        # Also removes the filters of its network ports (their taps are gone).
        engine.release(config, why="%s %s" % (who, op), reserve_key=key)
        return 0
    if op in QEMU_CHECK_OPS:
        # An incoming guest: validate against this host (plan only, for
        # ports that do not exist yet) and name this host's bridges.
        from virtvlan.checks.moving import incoming

        new = incoming(domain, xml, config, engine.host())
        if new is not None and stdout is not None:
            stdout.append(new)
        return 0
    wanted = wants(domain, config)
    if op == "prepare":
        if not domain.tagged:
            return 0  # a network port's tap does not exist yet
        # Taps do not exist yet: build bridges and feeds, and hold them.
        wanted = tuple(replace(w, port=None) for w in wanted)
        engine.wire(wanted, config, why="%s %s" % (who, op), reserve_key=key)
        return 0
    missing = [w.who for w in wanted if w.port is None]
    for who_missing in missing:
        log.warning("%s: no <target dev> in the XML at %s; its tap is left where libvirt put it",
                    who_missing, op)
    # Ports of virt-vlan networks: libvirt attached their taps to the
    # network's bridge already; the plan adds their filters (and isolated
    # flag) before the CPUs run.
    wanted += network_port_wants(domain, networks, config)
    if wanted:
        engine.wire(wanted, config, why="%s %s" % (who, op), reserve_key=key)
    return 0


def _port_networks(domain: "Domain") -> Dict[str, "Network"]:
    """The running virt-vlan networks (host/netports.py records) that NICs
    of `domain` are ports of, parsed; {} when none (no file is read then)."""
    from virtvlan.host import netports
    from virtvlan.parse.metadata import parse_network

    names = {nic.source_network for nic in domain.nics if nic.source_network}
    if not names:
        return {}
    return {name: parse_network(xml) for name, xml in netports.recorded().items()
            if name in names}


def _network(args: Sequence[str], xml: bytes, config_path: Optional[str]) -> int:
    from virtvlan.apply import engine
    from virtvlan.host import state
    from virtvlan.parse.config import load_or_refuse
    from virtvlan.parse.metadata import network_want, parse_network

    from virtvlan.host import netports

    op = args[1] if len(args) > 1 else ""
    if op not in ("start", "stopped", "port-deleted"):
        return 0
    network = parse_network(xml)
    if network.vlan is None:
        return 0
    who = "network %s" % network.name
    key = state.network_key(network.name)
    config = load_or_refuse(config_path, who)
    if op == "port-deleted":
        # A guest stopped or a NIC was unplugged: its tap is gone by now
        # (QEMU closed it before libvirt releases the port), and cleanup
        # removes the filter of every port that no longer exists. The
        # port's XML names no tap (libvirt allocates ports before taps).
        if network.name in netports.recorded():
            engine.release(config, why="%s port-deleted" % who)
        return 0
    if op == "stopped":
        netports.forget(network.name)
        engine.release(config, why="%s stopped" % who, reserve_key=key)
        return 0
    want = network_want(network, config)  # refuses an exception the uplink does not allow
    engine.wire([want], config, why="%s start" % who, reserve_key=key)
    if config.uplink(network.uplink, who).port_security:
        # Read by the qemu hooks of its guests (they must not ask libvirt).
        netports.record(network.name, xml)
    else:
        netports.forget(network.name)
    return 0


def serve(driver: str, args: Sequence[str], xml: bytes,
          config_path: Optional[str] = None,
          stdout: Optional[List[bytes]] = None) -> Tuple[int, str]:
    """Do what the hook call asks; return (exit code, stderr text).

    The one function behind both the drop-in's own run (`run`) and the
    agent's hook server (agent/serve.py). `config_path` None: the default
    ($VIRT_VLAN_CONFIG, else /etc/virt-vlan/virt-vlan.conf). `stdout`
    receives the rewritten XML of migrate/restore (nothing when unchanged or
    refused); the agent passes none and does not serve those two ops.
    """
    op = args[1] if len(args) > 1 else ""
    must_succeed = op in QEMU_WIRE_OPS | QEMU_CHECK_OPS | {"start"}
    try:
        if driver == "qemu":
            return _qemu(args, xml, config_path, stdout), ""
        return _network(args, xml, config_path), ""
    except VirtVlanError as err:
        # A bug found as such (InternalError) keeps its traceback in the journal.
        log.error("%s %s %s: %s", driver, " ".join(args[:2]),
                  "failed" if isinstance(err, (ApplyError, InternalError)) else "refused", err,
                  exc_info=isinstance(err, InternalError))
        line = "virt-vlan: %s\n" % err
    except OSError as err:
        # The run dir or a file in it is not what we write (a directory
        # where a file belongs, read-only): name it, so the admin can fix it.
        log.error("%s %s: %s", driver, " ".join(args[:2]), err)
        line = "virt-vlan: %s\n" % one_line(
            "cannot use %s: %s during %s %s; fix or remove it"
            % (err.filename or "a file", err.strerror or err, driver, op))
    except Exception as err:  # a bug of ours: say so; fail only where wiring is at stake
        log.exception("%s %s: internal error", driver, " ".join(args[:2]))
        bug = InternalError.wrap(err, "the %s hook for %s at %s" % (
            driver, args[0] if args else "?", op or "?"), _HOOK_REPORT)
        line = "virt-vlan: %s\n" % bug
    # Ops whose failure libvirt ignores (release, stopped) print nothing:
    # the contract above; the journal has the line.
    return (1, line) if must_succeed else (0, "")


def run(driver: str, args: List[str], xml: bytes) -> int:
    """Entry from the drop-in, for a document that mentions our namespace."""
    _setup_logging()
    out: List[bytes] = []
    code, err = serve(driver, args, xml, stdout=out)
    if err:
        sys.stderr.write(err)
    if code == 0 and out:
        sys.stdout.buffer.write(out[0])
        sys.stdout.flush()
    return code
