"""install-hooks / uninstall-hooks on a scratch hooks folder."""

import os
import stat

import pytest

from virtvlan import install
from virtvlan.cli import main
from virtvlan.errors import InputError


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
    first = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"))
    assert any(line.startswith("wrote ") and line.endswith("qemu.d/virt-vlan") for line in first)
    for driver in ("qemu", "network"):
        path = hooks / (driver + ".d") / "virt-vlan"
        assert path.stat().st_mode & stat.S_IXUSR
        assert path.read_text().startswith("#!")
        assert " -IS\n" in path.read_text().splitlines(True)[0]
    before = _tree(hooks)
    second = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"))
    assert [l for l in second if l.startswith(("wrote", "updated"))] == []
    assert _tree(hooks) == before
    assert any("restart" in line for line in second)


def test_install_never_touches_a_monolithic_hook(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "qemu").write_text("#!/bin/sh\necho admin\n")
    lines = install.install(str(hooks), apparmor_dir=str(tmp_path / "aa"))
    assert (hooks / "qemu").read_text() == "#!/bin/sh\necho admin\n"
    assert any(line.startswith("left alone ") and line.endswith("qemu (libvirt runs it before "
                                                                  "our drop-in)") for line in lines)
    install.uninstall(str(hooks), apparmor_dir=str(tmp_path / "aa"))
    assert (hooks / "qemu").read_text() == "#!/bin/sh\necho admin\n"


def test_install_refuses_to_overwrite_a_foreign_dropin(tmp_path):
    foreign = tmp_path / "hooks" / "qemu.d" / "virt-vlan"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\n# someone else's\n")
    with pytest.raises(InputError, match="exists and is not virt-vlan's; move it away"):
        install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"))
    assert foreign.read_text() == "#!/bin/sh\n# someone else's\n"
    lines = install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"))
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
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(aa))
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(aa))
    text = (aa / "local" / "usr.sbin.libvirtd").read_text()
    assert text.startswith("# admin rule\n")
    assert text.count(install.APPARMOR_BEGIN) == 1
    assert "network netlink raw," in text
    install.uninstall(str(tmp_path / "hooks"), apparmor_dir=str(aa))
    assert (aa / "local" / "usr.sbin.libvirtd").read_text() == "# admin rule\n"
    assert not (tmp_path / "hooks" / "qemu.d" / "virt-vlan").exists()


def test_no_apparmor_no_apparmor_file(tmp_path):
    install.install(str(tmp_path / "hooks"), apparmor_dir=str(tmp_path / "aa"))
    assert not (tmp_path / "aa").exists()
