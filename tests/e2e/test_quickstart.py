"""End to end: the README's quick start, run as written.

README.md holds the quick start between `<!-- quickstart -->` and
`<!-- /quickstart -->`, as one ```sh block. This test defines the guest the
quick start assumes (`vm1`, one NIC), then runs every command of the block,
one at a time, through `bash -c`, and asserts that each exits 0 (`virt-vlan
check` too: 1 would mean a warning, 2 a problem).

What the harness supplies, and nothing else (the commands are not edited):
- the host the quick start assumes: an uplink NIC `eth0` (a veth whose peer
  sits in the switch namespace, as for the other uplinks of conftest.py,
  unless the VM already has an `eth0`) and the defined domain `vm1`;
- the environment a root shell on a real host has: `virt-vlan` on PATH (the
  project's virtualenv, or /usr/bin for the installed package), libvirt's
  default URI pointing at the session's libvirtd, no $VIRT_VLAN_CONFIG.

The block overwrites /etc/virt-vlan/virt-vlan.conf, so the session's config
is put back afterwards, once vm1 is gone and its release hook has removed
what the quick start built (with the quick start's config still in place).
"""

import os
import re
import subprocess
from pathlib import Path
from typing import List

import pytest

import libvirt_env as env
from libvirt_env import Nic, links

README = env.REPO / "README.md"
CONFIG_PATH = Path("/etc/virt-vlan/virt-vlan.conf")
DOMAIN = "vm1"  # the name the quick start uses
UPLINK, SWITCH_PORT = "eth0", "sweth0"
MAC = env.mac(0xA01)


def quickstart_block(text: str) -> str:
    """The ```sh block between the quickstart markers of README.md."""
    found = re.search(r"^<!-- quickstart -->\n```sh\n(.*?)^```\n<!-- /quickstart -->$",
                      text, re.S | re.M)
    assert found, "README.md has no ```sh block between <!-- quickstart --> markers"
    return found.group(1)


def commands(block: str) -> List[str]:
    """The block's shell commands: one per line, a line ending in `\\` joined
    to the next, a here-document kept with its command; comments and blank
    lines dropped."""
    out: List[str] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line + "\n" + lines[i]
            i += 1
        heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1", line)
        if heredoc:
            word = heredoc.group(2)
            while i < len(lines):
                line += "\n" + lines[i]
                i += 1
                if lines[i - 1].strip() == word:
                    break
            else:
                pytest.fail("here-document %s in the quick start has no end line" % word)
        out.append(line)
    return out


def test_commands_split_as_a_shell_reads_them():
    # The splitter itself, so that a wrong split cannot pass silently.
    block = ("# comment\ncat > f <<'EOF'\n[a]\nb = 1\nEOF\n\nx --y \\\n  --z\nvirt-vlan check\n")
    assert commands(block) == ["cat > f <<'EOF'\n[a]\nb = 1\nEOF", "x --y \\\n  --z",
                               "virt-vlan check"]


def test_readme_quickstart_runs_as_written(guests):
    steps = commands(quickstart_block(README.read_text(encoding="utf-8")))
    # The block is the one the README describes: config, set, start, show, check.
    assert [s.split()[:2] for s in steps][1:] == [
        ["virt-vlan", "set"], ["virsh", "start"], ["virt-vlan", "show"],
        ["virt-vlan", "check"]], steps
    assert str(CONFIG_PATH) in steps[0], steps[0]

    saved = CONFIG_PATH.read_bytes() if CONFIG_PATH.exists() else None
    made_uplink = UPLINK not in links()
    if made_uplink:
        env.add_uplink(UPLINK, SWITCH_PORT)
    guests.define(DOMAIN, [Nic(MAC, source_bridge="virbr0")])
    environ = dict(os.environ)
    environ.pop("VIRT_VLAN_CONFIG", None)
    environ["PATH"] = "%s:%s" % (env.VIRT_VLAN.parent, environ.get("PATH", "/usr/bin:/bin"))
    environ["LIBVIRT_DEFAULT_URI"] = env.URI
    try:
        for step in steps:
            proc = _bash(step, environ)
            assert proc.returncode == 0, "quick start step exited %d:\n$ %s\n%s%s" % (
                proc.returncode, step, proc.stdout, proc.stderr)
        # What the README says the block did: the tap on br05, fed by eth0.5.
        now = links()
        tap = env.tap(DOMAIN)
        assert now[tap].get("master") == "br05", "tap %s is on %s" % (tap, now[tap].get("master"))
        env.assert_access_bridge(now, "br05", feed="eth0.5", parent=UPLINK, vlan=5)
    finally:
        # Stop the guest while the quick start's config is in place, so its
        # release hook removes br05 and eth0.5; then put the session back.
        guests.cleanup()
        try:
            env.wait_for(env.gone("br05", "eth0.5"), 600, "br05 and eth0.5 to go with vm1")
        finally:
            if made_uplink:
                env.ip("link", "del", UPLINK, check=False)
            if saved is None:
                CONFIG_PATH.unlink(missing_ok=True)
            else:
                CONFIG_PATH.write_bytes(saved)


def _bash(step: str, environ: dict) -> subprocess.CompletedProcess:
    """`bash -c STEP` as a root shell would run it; its output kept for the message."""
    try:
        return subprocess.run(["bash", "-c", step], capture_output=True, text=True,
                              env=environ, timeout=1800)
    except subprocess.TimeoutExpired:
        pytest.fail("quick start step did not finish within 1800 s:\n$ %s" % step)
