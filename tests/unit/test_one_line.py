"""Crashes where one line is due (issue 19, item 6): Unicode digits, garbage
in the run dir, and `release`/`stopped`, which print nothing."""

import os

import pytest

from test_metadata import access, domain_xml, network_xml
from virtvlan.agent import sdnotify
from virtvlan.errors import InputError
from virtvlan.hook import handler as hook
from virtvlan.host import state
from virtvlan.parse import config


@pytest.mark.parametrize("value", ["\u00b9\u2075\u2070\u2070", "\u0661\u0665\u0660\u0660",
                                   "1" * 5000])
def test_mtu_in_unicode_digits_is_one_line(value):
    with pytest.raises(InputError) as caught:
        config.parse("[uplink eth0]\nallowed-vlans = 5\nmtu = %s\n" % value, "t.conf")
    assert str(caught.value).startswith("config t.conf:3: mtu = ")
    assert "is not an MTU in 68-65535" in str(caught.value)


def test_hook_with_such_a_config_refuses_in_one_line_not_an_internal_error(tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\nmtu = \u00b9\u2075\u2070\u2070\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(path))
    code, err = hook.serve("qemu", ["vm1", "migrate", "begin", "-"], domain_xml(access()))
    assert code == 1 and err.startswith("virt-vlan: config %s:3: mtu = " % path), err


def test_watchdog_usec_in_unicode_digits_is_no_watchdog(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "\u00b9\u2070")
    assert sdnotify.watchdog_interval() is None


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    return tmp_path


def test_garbage_in_reserved_is_read_without_a_crash(run_dir):
    state.reserve("domain-a", ["br05"])
    (run_dir / "reserved" / "subdir").mkdir()
    (run_dir / "reserved" / "garbage").write_bytes(b"\xff\xfe\n")
    (run_dir / "reserved" / os.fsdecode(b"name\xff")).write_bytes(b"br07\n")
    assert state.reserved() == {"br05", "br07", "\udcff\udcfe"}


def test_garbage_in_creating_is_skipped_and_our_leftovers_still_finished(run_dir):
    state.intend("br05", "bridge", False)
    creating = run_dir / "creating"
    (creating / "subdir").mkdir()
    (creating / os.fsdecode(b"x\xff")).write_bytes(b"bridge 0\n")
    (creating / "garbage").write_bytes(b"\xff\xfe")
    (creating / "much-too-long-for-a-device").write_text("bridge 0\n")
    assert state.intents() == {"br05": ("bridge", False)}
    assert sorted(os.listdir(creating)) == ["br05", "subdir"]  # not ours: left, and logged


@pytest.mark.parametrize("folder", ["reserved", "creating"])
def test_run_dir_entry_that_is_a_file_is_read_as_empty(run_dir, folder):
    (run_dir / folder).write_text("")
    assert not (state.reserved() if folder == "reserved" else state.intents())


def test_run_dir_file_in_the_way_is_one_line_naming_it(run_dir, tmp_path, monkeypatch):
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(conf))
    (run_dir / "reserved").write_text("")  # a file where the folder belongs
    from virtvlan.apply import engine

    monkeypatch.setattr(engine, "wire", lambda *args, **kwargs: state.reserve("domain-x", ["b"]))
    code, err = hook.serve("qemu", ["vm1", "prepare", "begin", "-"], domain_xml(access()))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("virt-vlan: cannot use %s" % (run_dir / "reserved")), err
    assert "fix or remove it" in err and "internal error" not in err


@pytest.mark.parametrize("driver, args, xml", [
    ("qemu", ["vm1", "release", "end", "-"], domain_xml(access(vlan="4095"))),
    ("network", ["vlan5", "stopped", "end", "-"], network_xml(meta="<vv:network vlan='x'/>")),
])
def test_ops_whose_failure_libvirt_ignores_print_nothing(tmp_path, monkeypatch, driver, args,
                                                         xml):
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(tmp_path / "absent.conf"))
    assert hook.serve(driver, args, xml) == (0, "")
