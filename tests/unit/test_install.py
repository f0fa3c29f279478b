"""install-hooks / uninstall-hooks on a scratch hooks folder."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from virtvlan.cli import install
from virtvlan.cli.commands import main
from virtvlan.errors import InputError

# The drop-in tests below never touch systemd: these paths do not exist.
NO_SYSTEMD = "/nonexistent/virt-vlan-test"
NO_UNIT = {"systemd_runtime": NO_SYSTEMD, "unit_dir": NO_SYSTEMD}


def _tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def test_install_writes_executable_dropins_and_is_idempotent(tmp_path):
    hooks = tmp_path / "hooks"
    first = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"), agent=False)
    assert any(line.startswith("wrote ") and line.endswith("qemu.d/virt-vlan") for line in first)
    for driver in ("qemu", "network"):
        path = hooks / (driver + ".d") / "virt-vlan"
        assert path.stat().st_mode & stat.S_IXUSR
        assert path.read_text().startswith("#!")
        assert " -IS\n" in path.read_text().splitlines(True)[0]
    before = _tree(hooks)
    second = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"), agent=False)
    assert [l for l in second if l.startswith(("wrote", "updated"))] == []
    assert _tree(hooks) == before
    assert any("restart" in line for line in second)


def test_install_never_touches_a_monolithic_hook(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text("#!/bin/sh\necho admin\n")
    lines = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"), agent=False)
    assert (hooks / "qemu").read_text() == "#!/bin/sh\necho admin\n"
    assert any(line.startswith("left alone ") and line.endswith("qemu (libvirt runs it before "
                                                                  "our drop-in)") for line in lines)
    install.uninstall(str(hooks), apparmor_dir=str(tmp_path / "aa"), **NO_UNIT)
    assert (hooks / "qemu").read_text() == "#!/bin/sh\necho admin\n"


def test_install_refuses_to_overwrite_a_foreign_dropin(tmp_path):
    foreign = tmp_path / "hooks" / "qemu.d" / "virt-vlan"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\n# someone else's\n")
    with pytest.raises(InputError, match="exists and is not virt-vlan's; move it away"):
        install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), agent=False)
    assert foreign.read_text() == "#!/bin/sh\n# someone else's\n"
    lines = install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), **NO_UNIT)
    assert foreign.exists()
    assert any("left alone" in line for line in lines)


def test_dry_run_changes_nothing(tmp_path, capsys):
    hooks = tmp_path / "hooks"
    assert main(["install-hooks", "--hooks-dir", str(hooks), "--dry-run"]) == 0
    assert not hooks.exists()
    assert "would write" in capsys.readouterr().out


def test_apparmor_block_added_once_and_removed(tmp_path):
    aa = tmp_path / "aa"
    (aa / "local").mkdir(parents=True)
    (aa / "usr.sbin.libvirtd").write_text("profile\n")
    (aa / "local" / "usr.sbin.libvirtd").write_text("# admin rule\n")
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(aa), agent=False)
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(aa), agent=False)
    text = (aa / "local" / "usr.sbin.libvirtd").read_text()
    assert text.startswith("# admin rule\n")
    assert text.count(install.APPARMOR_BEGIN) == 1
    assert "network netlink raw," in text
    install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(aa), **NO_UNIT)
    assert (aa / "local" / "usr.sbin.libvirtd").read_text() == "# admin rule\n"
    assert not (tmp_path / "hooks" / "qemu.d" / "virt-vlan").exists()


def test_no_apparmor_no_apparmor_file(tmp_path):
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), agent=False)
    assert not (tmp_path / "aa").exists()


# --- the agent's systemd unit ---------------------------------------------------


def _unit_paths(tmp_path):
    systemd = tmp_path / "run-systemd-system"  # stands for /run/systemd/system
    systemd.mkdir()
    return {"systemd_runtime": str(systemd), "unit_dir": str(tmp_path / "units"),
            "systemctl": None}


def _settings(text):
    """key -> [values] of a unit file (comments and sections dropped)."""
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_install_writes_the_agent_unit_where_systemd_runs(tmp_path):
    paths = _unit_paths(tmp_path)
    lines = install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), **paths)
    unit = tmp_path / "units" / install.UNIT_NAME
    assert "wrote %s" % unit in lines
    assert "run: systemctl enable --now virt-vlan-agent.service" in lines
    settings = _settings(unit.read_text())
    assert settings["ExecStart"] == ["%s -I -m virtvlan.cli agent -c qemu:///system"
                                     % sys.executable]
    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    # Before the libvirt daemons (test_agent_boot.py has the whole ordering).
    assert settings["After"] == ["network.target"]
    assert {"libvirtd.service", "virtqemud.service"} <= set(settings["Before"][0].split())
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == ["/run/virt-vlan"]
    assert settings["RuntimeDirectoryPreserve"] == ["yes"]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK"]
    again = install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), **paths)
    assert "unchanged %s" % unit in again


def test_unit_exec_start_runs_the_installed_agent_command(tmp_path):
    # The command systemd would run, with --help: the interpreter, -I and the
    # module path resolve outside the source tree.
    text = install.unit_text()
    exec_start = _settings(text)["ExecStart"][0].split()
    done = subprocess.run(exec_start + ["--help"], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "-c URI" in done.stdout


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "install systemd (tests/setup-host)"
    unit = tmp_path / install.UNIT_NAME
    unit.write_text(install.unit_text())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=120, check=False)
    # Units it points at that this machine lacks (libvirtd...) are not errors of ours.
    problems = [line for line in done.stderr.splitlines()
                if install.UNIT_NAME in line and "not found" not in line]
    assert problems == [], done.stderr


def test_no_unit_without_systemd(tmp_path):
    lines = install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"),
                            systemd_runtime=str(tmp_path / "absent"),
                            unit_dir=str(tmp_path / "units"), systemctl=None)
    assert not (tmp_path / "units").exists()
    assert any(line.startswith("skipped virt-vlan-agent.service: systemd is not running")
               for line in lines)


def test_no_agent_option_skips_the_unit(tmp_path):
    paths = _unit_paths(tmp_path)
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), agent=False,
                    **paths)
    assert not (tmp_path / "units").exists()


def test_install_refuses_a_foreign_unit_and_uninstall_leaves_it(tmp_path):
    paths = _unit_paths(tmp_path)
    unit = tmp_path / "units" / install.UNIT_NAME
    unit.parent.mkdir()
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(InputError, match="exists and is not virt-vlan's"):
        install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), **paths)
    lines = install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"),
                              **paths)
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert "left alone %s (not virt-vlan's)" % unit in lines


def test_uninstall_removes_the_unit_and_its_enable_link(tmp_path):
    paths = _unit_paths(tmp_path)
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"), **paths)
    unit = tmp_path / "units" / install.UNIT_NAME
    wants = tmp_path / "units" / "multi-user.target.wants" / install.UNIT_NAME
    wants.parent.mkdir()
    wants.symlink_to(unit)  # what `systemctl enable` makes
    lines = install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"),
                              **paths)
    assert "run: systemctl disable --now virt-vlan-agent.service" in lines
    assert not unit.exists() and not os.path.lexists(wants)
    assert install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"),
                             **paths)[0] == "absent %s" % unit
