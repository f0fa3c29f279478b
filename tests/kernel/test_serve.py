"""The agent's hook server and the engine's import order, on a real kernel.

- A hook call handed to the agent's server (agent/serve.py) by the real
  drop-in, run by an interpreter that cannot even import virtvlan, is
  wired in the server's namespace: `ip -json` shows the tap on its bridge
  and the guest reaches the switch on its VLAN.
- The engine never holds the host lock while it imports apply.py
  (pyroute2): an import hook probes the lock at that moment.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from topology import Lab, call_in_netns, reachable
from topology import ip as lab_ip
from virtvlan.cli import install

MAC = "52:54:00:5e:00:01"


@pytest.fixture
def lab(tmp_path):  # type: ignore[no-untyped-def]
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def domain_xml(tap: str, vlan: int) -> bytes:
    return ("<domain><name>sv1</name><uuid>5e5e5e5e-0000-4000-8000-000000000001</uuid>"
            "<devices><interface type='bridge'><mac address='%s'/><source bridge='lan'/>"
            "<target dev='%s'/></interface></devices><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='%s' mode='access' "
            "vlan='%d'/></vv:vlan></metadata></domain>" % (MAC, tap, MAC, vlan)).encode()


def _serve_hooks(env: Dict[str, str], conf: str, sock: str, hook: str,
                 calls: List[Tuple[List[str], bytes]]) -> Tuple[List[tuple], int]:
    """In the host namespace: a hook server, and the drop-in `hook` run once
    per call as libvirt runs it; (rc, stdout, stderr) of each, and how many
    requests the server served."""
    from virtvlan.agent import serve

    os.environ.update(env)
    server = serve.HookServer(path=sock, config_path=conf)
    server.start()
    try:
        results = []
        for args, xml in calls:
            done = subprocess.run([hook] + args, input=xml, capture_output=True, timeout=600,
                                  env={"PATH": "/usr/bin:/bin", "VIRT_VLAN_AGENT_SOCKET": sock})
            results.append((done.returncode, done.stdout, done.stderr))
        return results, server.served
    finally:
        server.stop()


def test_agent_serves_a_guest_start_in_its_namespace(lab: Lab, tmp_path: Path) -> None:
    # About the hook server, not port security (on by default): the stand-in
    # guest sends from its veth's own MAC, not the metadata's.
    lab.build(extra_conf="port-security = no\n")
    guest = lab.guest("g1", "vnet0", untagged=["10.5.0.10/24"])
    # The drop-in as install-hooks writes it, but for an interpreter without
    # the virtvlan package: only the agent can have done the work.
    base = getattr(sys, "_base_executable", sys.executable)
    hook = tmp_path / "hooks" / "qemu.d" / "virt-vlan"
    hook.parent.mkdir(parents=True)
    hook.write_text(install.dropin_text(base))
    hook.chmod(0o755)
    xml = domain_xml("vnet0", 5)
    calls = [(["sv1", op, "begin", "-"], xml) for op in ("prepare", "start")]
    results, served = call_in_netns(lab.host, _serve_hooks, lab.env, str(lab.conf),
                                    str(tmp_path / "run" / "agent.sock"), str(hook), calls)
    assert results == [(0, b"", b""), (0, b"", b"")]
    assert served == 2
    links = lab.links()
    assert links["vnet0"].get("master") == "br05", links["vnet0"]
    assert links["eth0.5"].get("master") == "br05"
    assert links["eth0.5"]["linkinfo"]["info_data"]["id"] == 5
    assert reachable(guest, "10.5.0.1")

    # The guest stops: libvirt deletes its tap, then runs `stopped` and
    # `release`; through the server the bridge and feed go.
    lab_ip(lab.host, "link", "del", "vnet0")
    results, served = call_in_netns(lab.host, _serve_hooks, lab.env, str(lab.conf),
                                    str(tmp_path / "run" / "agent.sock"), str(hook),
                                    [(["sv1", "stopped", "end", "-"], xml),
                                     (["sv1", "release", "end", "-"], xml)])
    assert results == [(0, b"", b""), (0, b"", b"")]
    assert served == 1  # `stopped` never leaves the drop-in
    links = lab.links()
    assert "br05" not in links and "eth0.5" not in links, sorted(links)


class _LockProbe:
    """An import hook: when virtvlan.apply.executor is imported, is the host lock free?"""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: List[bool] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "virtvlan.apply.executor":
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                self.seen.append(True)
            except BlockingIOError:
                self.seen.append(False)
            finally:
                os.close(fd)
        return None


def _forget_apply() -> None:
    """Unload the executor as if this process never imported it: its
    sys.modules entry and its attribute on the virtvlan.apply package."""
    import virtvlan.apply as package

    sys.modules.pop("virtvlan.apply.executor", None)
    if hasattr(package, "executor"):
        delattr(package, "executor")


def _runs_watching_the_import(env: Dict[str, str], conf: str,
                              runs: List[List[str]]) -> List[Tuple[int, List[bool], bool]]:
    """Each `virt-vlan` run with apply.py not loaded before it: (exit code,
    lock free at each import of apply, apply loaded after it)."""
    from virtvlan.cli.commands import main as cli_main

    os.environ.update(env)
    probe = _LockProbe(env["VIRT_VLAN_LOCK"])
    sys.meta_path.insert(0, probe)
    out = []
    for argv in runs:
        _forget_apply()
        probe.seen = []
        code = cli_main(["--config", conf] + argv)
        out.append((code, probe.seen, "virtvlan.apply.executor" in sys.modules))
    return out


def test_engine_imports_apply_without_holding_the_host_lock(lab: Lab) -> None:
    lab.build()
    lab.tap("vnet0", lab.netns("g1"))
    runs = [["plug", "vnet0", "--access", "5"],   # changes: imports apply, lock free
            ["plug", "vnet0", "--access", "5"],   # nothing to change: no import at all
            ["unplug", "vnet0"]]                  # changes again
    results = call_in_netns(lab.host, _runs_watching_the_import, lab.env, str(lab.conf), runs)
    assert results == [(0, [True], True), (0, [], False), (0, [True], True)], results
    links = lab.links()
    assert "br05" not in links and "eth0.5" not in links
    assert links["vnet0"].get("master") is None
