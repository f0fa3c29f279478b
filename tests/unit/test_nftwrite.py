"""The port filter's writer (host/nftwrite.py): libnftables in process, the
`nft -f -` process when the library cannot be loaded, and a refused script
as KernelRefused with nft's first error line.

The tests that write a table need root and the kernel's nf_tables bridge
family; they write only in scratch network namespaces (`ip netns add`, or
`unshare -n` for the process's own namespace), never the host's.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtvlan.apply import executor
from virtvlan.errors import ApplyError, KernelRefused
from virtvlan.host import nftables, nftwrite
from virtvlan.plan import actions as act

SRC = Path(__file__).resolve().parents[2] / "src"
MAC = "52:54:00:00:be:01"
FILTER = act.SetPortFilter("vnet0", ("stp", "mac=" + MAC))


def _script(action: act.SetPortFilter) -> str:
    return "\n".join(action.script()) + "\n"


@pytest.fixture
def unloaded(monkeypatch):
    """nftwrite as before its first write: the library not tried yet."""
    monkeypatch.setattr(nftwrite, "_lib", False)
    monkeypatch.setattr(nftwrite, "_ctx", None)


# --- the library loader -------------------------------------------------------------

def test_a_missing_library_is_logged_once_and_the_nft_process_writes(unloaded, monkeypatch,
                                                                      caplog):
    monkeypatch.setattr(nftwrite, "LIBRARY", "libnftables-missing.so.0")
    written = []
    monkeypatch.setattr(nftwrite, "run_script_nft",
                        lambda script, netns=None: written.append((script, netns)))
    with caplog.at_level(logging.INFO, logger="virtvlan.host.nftwrite"):
        assert nftwrite.run_script("add table bridge t\n") is None
        assert nftwrite.run_script("add table bridge u\n", "ns1") is None
    assert written == [("add table bridge t\n", None), ("add table bridge u\n", "ns1")]
    why = [r.getMessage() for r in caplog.records if "cannot use" in r.getMessage()]
    assert len(why) == 1, why
    assert "libnftables-missing.so.0" in why[0] and "nft -f -" in why[0]


def test_a_library_without_the_api_is_not_used(caplog):
    # libc loads, but has no nft_ctx_new: as a libnftables older than the
    # buffer API would fail.
    with caplog.at_level(logging.INFO, logger="virtvlan.host.nftwrite"):
        assert nftwrite._load("libc.so.6") is None
    assert any("nft_ctx_new" in r.getMessage() for r in caplog.records)


def test_in_process_without_the_library_says_so(unloaded, monkeypatch):
    monkeypatch.setattr(nftwrite, "LIBRARY", "libnftables-missing.so.0")
    with pytest.raises(ApplyError, match="cannot load libnftables-missing.so.0"):
        nftwrite.run_script_in_process("add table bridge t\n")


def test_importing_the_writer_does_not_load_the_library():
    # The executor imports nftwrite at its top: the library (and the ~8
    # libraries it links) is loaded at the first write, not before.
    code = ("import virtvlan.host.nftwrite\n"
            "print('libnftables' in open('/proc/self/maps').read())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# --- the executor's mapping of a refusal --------------------------------------------

def test_a_refused_script_is_kernel_refused_with_nfts_first_line(monkeypatch):
    monkeypatch.setattr(nftables, "nft_command", lambda netns=None: ["nft"])
    seen = []

    def refuse(script, netns=None):  # type: ignore[no-untyped-def]
        seen.append((script, netns))
        return "Error: Could not process rule: No such file or directory"

    monkeypatch.setattr(nftwrite, "run_script", refuse)
    run = executor._Executor(None, "ns1", own_snapshot=True)
    with pytest.raises(KernelRefused) as info:
        run._port_filter(FILTER)
    assert seen == [(_script(FILTER), "ns1")]
    err = info.value
    assert err.errno_name == "EINVAL" and err.device == "vnet0"
    assert "Could not process rule: No such file or directory" in str(err)
    assert "the port filter of vnet0" in str(err)


def test_without_nft_the_filter_is_refused_before_any_write(monkeypatch):
    monkeypatch.setattr(nftables, "nft_command", lambda netns=None: None)
    monkeypatch.setattr(nftwrite, "run_script", lambda *a: pytest.fail("wrote"))
    with pytest.raises(ApplyError, match="nft is not installed"):
        executor._Executor(None, None, own_snapshot=True)._port_filter(FILTER)
