"""The layer rules: import-linter's contracts hold, each can fail, and what
the hook loads at run time stays small.

import-linter counts imports inside functions too, so the hook's lazy
loading cannot be proven by a contract: the run-time rule ("an untagged hook
call loads no lxml, pyroute2 or libvirt"; no package __init__ does either)
is checked here in subprocesses that read sys.modules.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_dropin

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CONFIG = ROOT / ".importlinter"
LINT = Path(sys.executable).with_name("lint-imports")
HEAVY = ("lxml", "pyroute2", "libvirt", "libvirtmod")
PACKAGES = ("virtvlan", "virtvlan.parse", "virtvlan.plan", "virtvlan.host", "virtvlan.apply",
            "virtvlan.checks", "virtvlan.virt", "virtvlan.hook", "virtvlan.cli", "virtvlan.agent")


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([str(LINT), str(CONFIG), "--no-cache"], cwd=str(src.parent),
                          capture_output=True, text=True, env=env, timeout=120)


def test_the_layer_contracts_hold():
    proc = _lint(SRC)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith(" 0 broken."), proc.stdout[-500:]


# One violating import per contract, added to a copy of the tree: each must
# turn lint-imports red, or the contract checks nothing.
VIOLATIONS = {
    "layers": ("parse/vlans.py", "from virtvlan.plan import planner"),
    "pyroute2": ("host/rtnl.py", "import pyroute2"),
    "libvirt": ("cli/nics.py", "import libvirt"),
    "hook-no-libvirt": ("apply/engine.py", "from virtvlan.virt import adapter"),
    "lxml": ("plan/actions.py", "import lxml.etree"),
}


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_each_contract_fails_on_a_violating_import(tmp_path, contract):
    copy = tmp_path / "src"
    shutil.copytree(SRC / "virtvlan", copy / "virtvlan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    path, line = VIOLATIONS[contract]
    target = copy / "virtvlan" / path
    target.write_text(target.read_text() + "\n\ndef _violation():  # added by the test\n    %s\n" % line)
    proc = _lint(copy)
    assert proc.returncode != 0, proc.stdout[-2000:]
    sections = {"layers": "Layers:", "pyroute2": "pyroute2 is imported only",
                "libvirt": "libvirt-python is imported only", "hook-no-libvirt": "The hook never reaches",
                "lxml": "lxml stays out"}
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert sections[contract] in broken, proc.stdout[-2000:]


def _modules_after(code: str) -> set:
    proc = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_init_loads_lxml_pyroute2_or_libvirt(package):
    modules = _modules_after("import %s" % package)
    assert package in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


UNTAGGED = b"""<domain type='kvm'><name>vm0</name>
<description>mentions urn:virt-vlan:2 only in passing</description>
<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='virbr0'/></interface>
</devices></domain>"""



@pytest.mark.parametrize("op", ["prepare", "start", "release", "migrate"])
def test_an_untagged_hook_call_loads_nothing_of_ours(tmp_path, op):
    rc, modules, stderr = run_dropin(tmp_path / "hooks", ("vm0", op, "begin", "-"), UNTAGGED,
                                     env={"VIRT_VLAN_NO_AGENT": "1"})
    assert rc == 0 and stderr == ""
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not {m for m in modules if m.startswith("virtvlan")}
