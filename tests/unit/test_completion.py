"""Bash completion: the generated script, run by a real bash.

Each case sources the script in `bash --norc`, sets COMP_WORDS/COMP_CWORD as
bash's programmable completion would, calls the function `complete` names
for virt-vlan and prints COMPREPLY. `virsh` is a stand-in script on PATH
that records its arguments and prints two domain names, so the test sees
the -c URI reach virsh (the real virsh needs a daemon).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from virtvlan.cli.commands import build_parser, main
from virtvlan.cli.completion import SHIPPED, script

BASH = shutil.which("bash")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "virt-vlan"
    path.write_text(script(build_parser()))
    return path


@pytest.fixture
def fake_virsh(tmp_path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    virsh = bindir / "virsh"
    virsh.write_text('#!/bin/sh\necho "$@" >> "%s"\nprintf "web1\\nweb2\\ndb1\\n"\n'
                     % (tmp_path / "virsh.args"))
    virsh.chmod(0o755)
    return bindir


def complete(script_path: Path, line: str, bindir: Path = None) -> list:
    """COMPREPLY for `line` (the cursor at its end; a trailing space starts a new word)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    quoted = " ".join("'%s'" % w for w in words)
    program = ("source '%s'\n"
               "fn=$(complete -p virt-vlan | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n"
               "COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE='%s'; COMP_POINT=${#COMP_LINE}\n"
               "$fn virt-vlan '%s' '%s'\n"
               "printf '%%s\\n' \"${COMPREPLY[@]}\"\n"
               % (script_path, quoted, len(words) - 1, line, words[-1],
                  words[-2] if len(words) > 1 else ""))
    env = dict(os.environ)
    if bindir is not None:
        env["PATH"] = "%s:%s" % (bindir, env["PATH"])
    proc = subprocess.run([BASH, "--norc", "--noprofile", "-c", program], capture_output=True,
                          text=True, env=env, timeout=30, check=True)
    assert proc.stderr == ""
    # Sorted: bash sorts the candidates it shows.
    return sorted(w for w in proc.stdout.split("\n") if w)


def test_bash_is_there():
    assert BASH, "bash is needed to test the completion script"


def test_commands(generated):
    got = complete(generated, "virt-vlan ")
    assert {"check", "explain", "completion", "plug", "status"} <= set(got)
    assert complete(generated, "virt-vlan ch") == ["check", "check-config", "check-domain"]
    assert complete(generated, "virt-vlan ex") == ["explain"]


def test_global_options_and_command_after_them(generated):
    assert complete(generated, "virt-vlan --ver") == ["--verbose", "--version"]
    # --config takes a value: the command is the word after it.
    assert complete(generated, "virt-vlan --config /tmp/x.conf ex") == ["explain"]


def test_command_options(generated):
    assert complete(generated, "virt-vlan check --") == ["--connect", "--help", "--json"]
    assert complete(generated, "virt-vlan explain --m") == ["--mac"]
    assert complete(generated, "virt-vlan plug vnet0 --dr") == ["--dry-run"]


def test_domain_names_from_virsh_with_uri(generated, fake_virsh):
    assert complete(generated, "virt-vlan explain ", fake_virsh) == ["db1", "web1", "web2"]
    assert complete(generated, "virt-vlan explain -c test:///default w", fake_virsh) == [
        "web1", "web2"]
    # virsh's habit: -c before the command.
    assert complete(generated, "virt-vlan -c qemu:///session show d", fake_virsh) == ["db1"]
    calls = (fake_virsh.parent / "virsh.args").read_text().splitlines()
    assert calls == ["-q list --all --name", "-q -c test:///default list --all --name",
                     "-q -c qemu:///session list --all --name"]


def test_no_domain_after_the_first_positional_or_for_option_values(generated, fake_virsh):
    assert complete(generated, "virt-vlan explain web1 ", fake_virsh) == []
    assert complete(generated, "virt-vlan explain --mac ", fake_virsh) == []
    assert not (fake_virsh.parent / "virsh.args").exists()


def test_paths_for_files(generated, tmp_path):
    (tmp_path / "vm1.xml").write_text("<domain/>")
    prefix = str(tmp_path / "vm")
    assert complete(generated, "virt-vlan check-domain " + prefix) == [prefix + "1.xml"]
    assert complete(generated, "virt-vlan --config " + prefix) == [prefix + "1.xml"]


def test_completion_command_prints_the_shipped_script(capsys):
    """No shtab on hosts: the command prints the file the package installs."""
    assert main(["completion"]) == 0
    assert capsys.readouterr().out == Path(SHIPPED).read_text()


def test_port_names_from_sys_class_net(generated):
    assert "lo" in complete(generated, "virt-vlan plug ")
    assert complete(generated, "virt-vlan plug l") == ["lo"]


def test_shipped_script_is_from_the_pinned_shtab():
    """The shipped file is byte-compared with fresh output: the [test] extra pins
    shtab so every developer generates the same file."""
    import shtab

    text = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "shtab==%s" % shtab.__version__ in text


def test_shipped_script_is_up_to_date():
    """The installed file is the generated one; after adding a command or an
    option, regenerate it (see the message)."""
    assert Path(SHIPPED).read_text() == script(build_parser()), (
        "src/virtvlan/data/virt-vlan is stale: run '.venv/bin/python -m "
        "virtvlan.cli.completion > src/virtvlan/data/virt-vlan'")


def test_setup_cfg_installs_it():
    text = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "share/bash-completion/completions = src/virtvlan/data/virt-vlan" in text
    assert "virtvlan = data/virt-vlan" in text
