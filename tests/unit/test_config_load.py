"""load_or_refuse: the one "load the config or refuse" every entry point calls."""

import pytest

from virtvlan.errors import InputError
from virtvlan.parse import config


def test_load_or_refuse_returns_the_loaded_config(tmp_path):
    path = tmp_path / "virt-vlan.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n", encoding="utf-8")
    loaded = config.load_or_refuse(str(path), "domain vm1")
    assert [u.name for u in loaded.uplinks] == ["eth0"]
    assert loaded.path == str(path)


def test_load_or_refuse_names_who_and_the_path_when_the_file_is_missing(tmp_path):
    path = str(tmp_path / "absent.conf")
    with pytest.raises(InputError) as err:
        config.load_or_refuse(path, "domain vm1")
    assert str(err.value) == str(config.missing_config_error(path, "domain vm1"))
    assert "domain vm1" in str(err.value) and path in str(err.value)


def test_load_or_refuse_follows_the_environment_when_no_path_is_given(tmp_path, monkeypatch):
    path = tmp_path / "env.conf"
    monkeypatch.setenv(config.ENV_PATH, str(path))
    with pytest.raises(InputError, match="network lan asks for VLANs but %s" % path):
        config.load_or_refuse(None, "network lan")
    path.write_text("[uplink eth1]\nallowed-vlans = 7\n", encoding="utf-8")
    assert config.load_or_refuse(None, "network lan").path == str(path)


def test_load_or_refuse_passes_a_broken_config_on(tmp_path):
    path = tmp_path / "broken.conf"
    path.write_text("[uplink eth0]\nnot-a-key = 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="broken.conf"):
        config.load_or_refuse(str(path), "check-config")
