"""Shared fixtures for the pure unit tests: parsed host configs.

Links and snapshots are built inline with model.Link / model.Snapshot in the
tests themselves (they read better than another layer of helpers); what is
shared here is the config text the planner tests run against.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from virtvlan.parse import config

# These configs are about wiring: they turn port security (on by default)
# off, so that plans and findings hold only the wiring's; port security has
# its own configs in test_port_security.py.

# Access wiring: eth0 carries VLAN devices eth0.<V>, each feeding br0<V>.
ACCESS_CONF = """\
[uplink eth0]
allowed-vlans = 5,7,100-110
port-security = no
"""

# Trunk wiring: eth1 is a port of br0, which feeds br0<V> from br0.<V>.
TRUNK_CONF = """\
[uplink eth1]
wiring = trunk
allowed-vlans = 5,7,100-110
port-security = no
"""

# Both at once, as on a host with a guest NIC and a trunk NIC.
MIXED_CONF = """\
[global]
default-uplink = eth0

[uplink eth0]
allowed-vlans = 5,7
port-security = no

[uplink eth1]
wiring = trunk
allowed-vlans = 5,7,100-110
host-vlans = 10
port-security = no
"""


def parse_config(text: str, path: str = "test.conf") -> config.Config:
    return config.parse(textwrap.dedent(text), path)


@pytest.fixture(scope="session")
def make_config():
    """Factory: config text (dedented) -> Config, path 'test.conf'."""
    return parse_config


@pytest.fixture(scope="session")
def access_config() -> config.Config:
    return parse_config(ACCESS_CONF)


@pytest.fixture(scope="session")
def trunk_config() -> config.Config:
    return parse_config(TRUNK_CONF)


@pytest.fixture(scope="session")
def mixed_config() -> config.Config:
    return parse_config(MIXED_CONF)



SRC = Path(__file__).resolve().parents[2] / "src"

# Runs a drop-in file as libvirt does (argv[0] names the driver, the XML on
# stdin) and reports its exit status and every module it loaded.
_DROPIN_PROBE = r"""
import io, json, runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
sys.stdin = io.TextIOWrapper(io.BytesIO(sys.stdin.buffer.read()))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    rc = 0
except SystemExit as done:
    rc = done.code
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def run_dropin(hooks: Path, args: Tuple[str, ...], xml: bytes,
               env: Optional[Dict[str, str]] = None) -> Tuple[int, set, str]:
    """Copy the drop-in to `hooks`/qemu, run it with `args` (domain, op,
    subop, extra) and `xml` on stdin: (exit status, modules loaded, stderr)."""
    hooks.mkdir(exist_ok=True)
    (hooks / "qemu").write_bytes((SRC / "virtvlan" / "hook" / "dropin.py").read_bytes())
    proc = subprocess.run([sys.executable, "-c", _DROPIN_PROBE, str(hooks / "qemu")] + list(args),
                          input=xml, capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(SRC), **(env or {})))
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout.decode().splitlines()[-1])
    return result["rc"] or 0, set(result["modules"]), proc.stderr.decode()


# --- the scope check: every plan() of the planner tests also from a scoped read
#
# In the modules below, `plan` is replaced (module-scoped, so hypothesis's
# function-scoped-fixture check stays quiet) by a wrapper that plans twice:
# from the test's snapshot, and from restrict(snapshot, scope_for(wants,
# config)), what the hook's scoped read returns. Both must give the same
# actions and warnings, or the same refusal. So every planner case of the
# unit tests is also a case of plan/scope.py (tests/unit/test_scope.py
# counts them).

SCOPE_CHECKED_MODULES = ("test_plan", "test_plan_properties", "test_port_security",
                         "test_protection_upgrade")
SCOPE_CHECKS = {"calls": 0}


def _outcome(func, *args, **kwargs):
    from virtvlan.errors import VirtVlanError

    try:
        return ("plan", func(*args, **kwargs))
    except VirtVlanError as err:
        return (type(err).__name__, str(err))


def scope_checked(plan_func):
    """`plan_func` (planner.plan), also run on the scoped snapshot: an
    AssertionError names the wants when the two outcomes differ."""
    from virtvlan.plan.scope import first_read, refine, restrict, scope_for

    def checked(wants, config_, snap, *args, **kwargs):
        full = _outcome(plan_func, wants, config_, snap, *args, **kwargs)
        scope = scope_for(wants, config_)
        # As the engine reads: the named links first, then (refine) only
        # the VLAN devices the plan can look at.
        refined = refine(scope, wants, config_, restrict(snap, first_read(scope)))
        for each in (scope, refined):
            scoped = _outcome(plan_func, wants, config_, restrict(snap, each), *args, **kwargs)
            assert scoped == full, "scoped read plans differently for %r from %r:\n%r\n%r" % (
                wants, each, scoped, full)
        SCOPE_CHECKS["calls"] += 1
        if full[0] != "plan":
            return plan_func(wants, config_, snap, *args, **kwargs)  # raises it again
        return full[1]
    return checked


@pytest.fixture(autouse=True, scope="module")
def _plan_scope_checked(request):
    from virtvlan.plan import planner

    module = request.module
    if (module.__name__.rsplit(".", 1)[-1] not in SCOPE_CHECKED_MODULES
            or getattr(module, "plan", None) is not planner.plan):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "plan", scope_checked(planner.plan))
        yield


# Unit tests fake the host through rtnl.read_snapshot. The scoped read
# (scoped.read_scoped) is that host cut to the scope: plan.scope.restrict,
# which tests/kernel/test_scope.py proves equal to the kernel's answers.
# Modules that test read_scoped itself keep the real one.
REAL_SCOPED_READ_MODULES = ("test_rtnl",)


@pytest.fixture(autouse=True, scope="module")
def _scoped_read_follows_read_snapshot(request):
    from virtvlan.host import rtnl, scoped
    from virtvlan.plan.scope import restrict

    if request.module.__name__.rsplit(".", 1)[-1] in REAL_SCOPED_READ_MODULES:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoped, "read_scoped",
                      lambda scope, netns=None: restrict(rtnl.read_snapshot(netns), scope))
        yield
